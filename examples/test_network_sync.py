"""Copyable: test machines shared over an ampubsub network from plain tests.

The ``ampubsub_network`` fixture (installed with ampubsub, entry point
``pytest11``) builds started, connected and joined peers on the in-memory
transport; every check waits for updates and, when it gives up, says what
each peer saw.

Run: pytest examples/test_network_sync.py
"""

from __future__ import annotations

import pytest

import pytest_ampubsub
from asyncmachine import Machine, State

SCHEMA = {
    "Ready": State(),
    "Working": State(require=["Ready"]),
    "Done": State(remove=["Working"]),
}


def test_other_peers_see_the_worker(ampubsub_network):
    net = ampubsub_network(peers=3)
    worker = Machine(SCHEMA, id="worker")
    worker.export_to(net[0])

    worker.add(["Ready", "Working"])
    # peers=None: every peer but the owner (net[0]) must see it
    net.assert_eventually_active("worker", ["Ready", "Working"])

    worker.add("Done")
    net.assert_eventually_inactive("worker", "Working")
    net.assert_eventually_clock("worker", {"Working": 2, "Done": 1})


@pytest.mark.ampubsub(peers=2, machines=1)
def test_everyone_converges(ampubsub_network):
    net = ampubsub_network()  # the marker sets the defaults: 2 peers, 1 machine each
    net.assert_eventually_discovered(1)  # each peer lists the other's machine
    for topic in net:  # machines=N exports p<peer>-m<j> with states Foo, Bar, Baz
        topic.exported[0].add(["Foo", "Bar"])  # Foo requires Bar
    net.assert_eventually_active("p0-m0", ["Foo", "Bar"])
    net.assert_converged()


def test_stays_ready_while_working(ampubsub_network):
    net = ampubsub_network(peers=2)
    worker = Machine(SCHEMA, id="worker")
    worker.export_to(net[0])
    worker.add("Ready")
    net.assert_eventually_active("worker", "Ready")  # first see it...
    worker.add("Working")
    # ...then require it to hold; fails the moment any peer sees it leave
    net.assert_consistently_active("worker", "Ready", duration=0.2)


def test_a_late_peer_and_a_custom_condition(ampubsub_network):
    net = ampubsub_network(peers=2)
    worker = Machine(SCHEMA, id="worker")
    worker.export_to(net[0])
    worker.add("Ready")
    late = net.add_peer()

    def late_sees_ready():  # plain asserts; retried on every change
        remotes = late.list_machines(id="worker")
        assert remotes, "the late peer lists no worker yet"
        assert remotes[0].is_active("Ready")
        return remotes[0]

    remote = net.eventually(late_sees_ready)
    assert remote.peer_id == net[0].peer_id


def test_eventually_for_any_machine():
    local = Machine(SCHEMA, id="local")

    def ready():  # only AssertionError means "not yet"; anything else fails at once
        assert local.is_active("Ready"), "not ready yet"

    local.add("Ready")
    # watch=[...]: retried whenever one of these machines changes
    pytest_ampubsub.eventually(ready, timeout=1, watch=[local])
