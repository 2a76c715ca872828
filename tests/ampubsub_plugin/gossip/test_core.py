"""The facade, GossipCore: when it is due, the events it returns, a network of cores.

``next_due`` says when ``collect`` has something to send; a long lossy run
checks that it never asks for a busy loop and that every peer converges.
``receive``, ``heartbeat``, ``refuse`` and ``dispose`` return events (see
``ampubsub_plugin/_gossip/events.py``), checked here on the bare core,
without the remote views that ``CorePeer`` adds.
"""

from __future__ import annotations

import random

import pytest

from ampubsub_plugin._gossip import (
    BYE_GRACE,
    Advanced,
    Discovered,
    Gone,
    Refused,
    Revived,
    SchemaKnown,
)
from ampubsub_plugin.protocol import ByeMach, ByeMsg, GossipMsg, InfoMsg, UpdatesMsg
from ampubsub_plugin.remote import remote_schema
from asyncmachine import Machine

from ..coreutil import HASH, STATES, Mesh, info, make, of_type, worker


def test_nothing_is_sent_before_joining() -> None:
    a = make("A")
    a.export(worker("a1"))
    assert a.next_due(0.0) is None
    assert a.collect(0.0) == []


@pytest.mark.parametrize("seed", range(3))
def test_long_random_simulation_never_busy_loops_and_converges(seed: int) -> None:
    rng = random.Random(seed)
    cfg = {"peer_ttl": 40.0, "gone_ttl": 40.0, "keepalive": 10.0}
    cores = [make(f"P{i}", seed, **cfg) for i in range(4)]
    machines: dict[str, list[Machine]] = {}
    for core in cores:
        machines[core.peer_id] = [worker(f"{core.peer_id}-m{j}") for j in range(2)]
        for m in machines[core.peer_id]:
            core.export(m)
        core.joined(0.0)
    mesh = Mesh(*cores, seed=seed)
    mesh.loss = 0.2
    for second in range(300):
        for _ in range(rng.randrange(4)):
            core = rng.choice(cores)
            index = rng.randrange(2)
            machines[core.peer_id][index].toggle(rng.choice(["Bar", "Baz"]))
            core.mark_dirty(index)
        mesh.run(second + rng.random())
    mesh.loss = 0.0
    mesh.run(400.0)
    for core in cores:
        seen = {(r.peer_id, r.id): r for r in core.remotes()}
        assert len(seen) == 6, (core.peer_id, sorted(seen))
        for owner, ms in machines.items():
            if owner == core.peer_id:
                continue
            for m in ms:
                remote = seen[(owner, m.id)]
                assert remote.time() == m.time() and remote.is_connected
    # quiet when nothing changes: at most a keepalive per peer and 10 s
    before = len(mesh.sent)
    mesh.run(500.0)
    assert len(mesh.sent) - before <= 4 * 100 / 10 * 2
    assert mesh.empty_collects <= mesh.wakeups / 2


# -- events returned by receive, heartbeat, refuse and dispose -----------------------


def blank() -> list[int]:
    return [0, 0, 0, 0]


def test_discovered_carries_the_clock_including_a_buffered_newer_one() -> None:
    a = make("A").core
    a.joined(0.0, alone=True)
    schema = worker("x1").schema
    # X's clock of a machine arrives before X introduced it (its hello was lost)
    assert a.receive("X", UpdatesMsg({"X": {1: [1, 1, 2, 0]}}), 1.0) == []
    x1 = info("x1", [1, 0, 0, 0], schema=schema)
    x2 = info("x2", blank())  # by hash: x1 brings the schema
    shown = remote_schema(STATES, schema)
    assert a.receive("X", InfoMsg({"X": {0: x1, 1: x2}}, {}), 2.0) == [
        Discovered("X", 0, x1, [1, 0, 0, 0], shown),
        Discovered("X", 1, x2, [1, 1, 2, 0], shown),  # the buffered clock
    ]
    assert a.stats()["pending_updates"] == 0


def test_schema_known_follows_a_machine_discovered_by_hash_alone() -> None:
    a = make("A").core
    a.joined(0.0, alone=True)
    x1 = info("x1", blank())
    assert a.receive("X", InfoMsg({"X": {0: x1}}, {}), 1.0) == [
        Discovered("X", 0, x1, blank(), None)
    ]
    schema = worker("x1").schema
    full = info("x1", blank(), schema=schema)
    assert a.receive("X", InfoMsg({"X": {0: full}}, {}), 2.0) == [
        SchemaKnown("X", 0, remote_schema(STATES, schema), HASH)
    ]
    assert a.receive("X", InfoMsg({"X": {0: full}}, {}), 3.0) == []


def test_advanced_only_when_the_time_sum_grows() -> None:
    a = make("A").core
    a.joined(0.0, alone=True)
    (found,) = a.receive("X", InfoMsg({"X": {0: info("x1", [1, 1, 0, 0])}}, {}), 1.0)
    assert a.receive("X", UpdatesMsg({"X": {0: [2, 0, 0, 0]}}), 2.0) == []  # equal
    assert a.receive("X", UpdatesMsg({"X": {0: [1, 0, 0, 0]}}), 2.0) == []  # older
    grown = [1, 1, 1, 0]
    assert a.receive("X", UpdatesMsg({"X": {0: grown}}), 3.0) == [
        Advanced("X", 0, grown)
    ]
    assert a.receive("X", UpdatesMsg({"X": {0: grown}}), 3.0) == []  # again
    # an info carries a clock too
    again = info("x1", [3, 1, 1, 0])
    assert a.receive("X", InfoMsg({"X": {0: again}}, {}), 4.0) == [
        Advanced("X", 0, [3, 1, 1, 0])
    ]
    # an event keeps the clock of its moment
    assert isinstance(found, Discovered) and found.time == [1, 1, 0, 0]


def test_gone_on_bye_then_gone_forgotten_after_gone_ttl() -> None:
    a = make("A", gone_ttl=30.0).core
    a.joined(0.0, alone=True)
    a.receive(
        "X", InfoMsg({"X": {0: info("x1", blank()), 1: info("x2", blank())}}, {}), 1.0
    )
    bye = ByeMsg(
        {
            0: ByeMach(peer_bye=True, id="x1", time=[1, 0, 0, 0]),
            1: ByeMach(peer_bye=True, id="x2", time=blank()),
        }
    )
    assert a.receive("X", bye, 5.0) == [
        Advanced("X", 0, [1, 0, 0, 0]),  # its last clock, then it leaves
        Gone("X", 0, forgotten=False),
        Gone("X", 1, forgotten=False),
    ]
    assert a.heartbeat(35.0) == []
    assert a.heartbeat(35.5) == [
        Gone("X", 0, forgotten=True),
        Gone("X", 1, forgotten=True),
    ]
    assert a.heartbeat(36.0) == [] and a.peers() == []


def test_a_bye_of_one_machine_is_gone_forgotten_at_once() -> None:
    a = make("A").core
    a.joined(0.0, alone=True)
    a.receive(
        "X", InfoMsg({"X": {0: info("x1", blank()), 1: info("x2", blank())}}, {}), 1.0
    )
    bye = ByeMsg({1: ByeMach(peer_bye=False, id="x2", time=blank())})
    assert a.receive("X", bye, 2.0) == [Gone("X", 1, forgotten=True)]
    assert [(p, i) for p, i, _ in a.records()] == [("X", 0)]


def test_revived_when_a_silent_peer_speaks_but_not_just_after_its_bye() -> None:
    a = make("A", peer_ttl=20.0).core
    a.joined(0.0, alone=True)
    a.receive("X", InfoMsg({"X": {0: info("x1", blank())}}, {}), 1.0)
    assert a.heartbeat(21.0) == []
    assert a.heartbeat(21.5) == [Gone("X", 0, forgotten=False)]
    assert a.receive("X", GossipMsg({"X": {0: 0}}), 22.0) == [Revived("X", 0)]
    # a message arriving just after a bye was sent before it: no revival
    a.receive("X", ByeMsg({0: ByeMach(peer_bye=True, id="x1", time=blank())}), 30.0)
    late = 30.0 + BYE_GRACE - 0.1
    assert a.receive("X", GossipMsg({"X": {0: 0}}), late) == []
    assert a.counters["drop_after_bye"] == 1
    assert a.receive("X", GossipMsg({"X": {0: 0}}), 30.0 + BYE_GRACE) == [
        Revived("X", 0)
    ]


def test_refused_from_refuse_and_the_machine_stays_hidden() -> None:
    a = make("A").core
    a.joined(0.0, alone=True)
    a.receive("X", InfoMsg({"X": {0: info("x1", blank())}}, {}), 1.0)
    assert a.refuse("X", 0) == [Refused("X", 0)]
    assert a.refuse("X", 0) == [] and a.refuse("Y", 0) == []
    assert a.records() == [] and a.counters["refused_remote"] == 1
    # its clocks are acknowledged, never shown
    assert a.receive("X", UpdatesMsg({"X": {0: [1, 0, 0, 0]}}), 2.0) == []
    assert a.receive("C", InfoMsg({"X": {0: info("x1", [1, 1, 0, 0])}}, {}), 3.0) == []
    assert a.records() == []


def test_dispose_forgets_every_remote_machine_and_says_no_bye() -> None:
    a = make("A").core
    a.export(worker("a1"))
    a.joined(0.0, alone=True)
    a.collect(0.0)
    a.receive(
        "X", InfoMsg({"X": {0: info("x1", blank()), 1: info("x2", blank())}}, {}), 1.0
    )
    a.receive("Y", InfoMsg({"Y": {0: info("y1", blank())}}, {}), 1.0)
    assert a.dispose() == [
        Gone("X", 0, forgotten=True),
        Gone("X", 1, forgotten=True),
        Gone("Y", 0, forgotten=True),
    ]
    assert a.records() == [] and a.peers() == [] and a.exported() == []
    assert of_type(a.collect(2.0), ByeMsg) == []
    assert a.dispose() == []
