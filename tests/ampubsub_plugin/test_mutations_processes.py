"""Remote mutations across two real processes over py-libp2p on 127.0.0.1.

The owner is this module run as a program (``python -m
tests.ampubsub_plugin.test_mutations_processes BOOTSTRAP``): it exports
"open" (``mutable_by="*"``) and "locked" (read-only); "open" has a state
"Hang" whose handler blocks its owner (printing ``hanging`` first), so a
call can be caught mid-flight and the owner killed. It obeys ``clock NAME``
(prints the machine's clock as JSON) and ``exit`` on stdin.

The test process holds two peers: the caller and a watcher, both connected
to the owner (so "shows on every peer" means both of them).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ampubsub_plugin import (
    Libp2pTransport,
    MutationDenied,
    OwnerUnreachable,
    RemoteMachine,
    Topic,
)
from asyncmachine import Event, Machine, Result, State

from .procutil import Process

TOPIC = "mutations-test"
TIMEOUT = 30
SCHEMA = {"Bar": State(), "Baz": State(), "Hang": State()}  # + Exception
REPO = Path(__file__).resolve().parents[2]


class Hangs:
    """The owner's handlers: Hang blocks the owner's trio thread for good."""

    def Hang_state(self, e: Event) -> None:
        print("hanging", flush=True)
        threading.Event().wait()  # a stuck owner (until it is killed)


def owner(bootstrap: str) -> None:
    topic = Topic(TOPIC, transport=Libp2pTransport(), bootstrap=[bootstrap])
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT)
    machines = {
        "open": Machine(SCHEMA, id="open"),
        "locked": Machine(SCHEMA, id="locked"),
    }
    machines["open"].bind(Hangs())
    machines["open"].export_to(topic, mutable_by="*")
    machines["locked"].export_to(topic)
    print("ready", topic.peer_id, flush=True)
    for line in sys.stdin:
        command, _, name = line.strip().partition(" ")
        if command == "clock":
            print(json.dumps(machines[name].time()), flush=True)
        elif command == "exit":
            break
    topic.dispose().wait(TIMEOUT)


def joined(bootstrap: list[str]) -> Topic:
    topic = Topic(TOPIC, transport=Libp2pTransport(), bootstrap=bootstrap)
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    return topic


class Network:
    def __init__(self, caller: Topic, watcher: Topic, owner: Process, peer: str):
        self.caller, self.watcher, self.owner, self.peer = caller, watcher, owner, peer

    def remote(self, topic: Topic, name: str) -> RemoteMachine:
        assert topic.mach.when_query(
            lambda _: bool(topic.list_machines(id=name, peer_id=self.peer))
        ).wait(TIMEOUT), topic.list_machines()
        (found,) = topic.list_machines(id=name, peer_id=self.peer)
        return found

    def owner_clock(self, name: str) -> list[int]:
        self.owner.send(f"clock {name}")
        clock: list[int] = json.loads(self.owner.line())
        return clock


@pytest.fixture
def network() -> Iterator[Network]:
    caller = joined([])
    watcher = joined(caller.addrs)
    proc = Process(
        [
            sys.executable,
            "-m",
            "tests.ampubsub_plugin.test_mutations_processes",
            caller.addrs[0],
        ],
        cwd=REPO,
    )
    try:
        ready, peer = proc.line().split()
        assert ready == "ready"
        yield Network(caller, watcher, proc, peer)
    finally:
        proc.kill()
        assert watcher.dispose().wait(TIMEOUT)
        assert caller.dispose().wait(TIMEOUT)


def test_a_permitted_add_returns_executed_and_shows_on_every_peer(
    network: Network,
) -> None:
    remote = network.remote(network.caller, "open")
    seen_by_watcher = network.remote(network.watcher, "open")
    # the blocking form, from this (non-trio) thread
    assert remote.add("Bar") is Result.EXECUTED
    assert network.owner_clock("open") == [1, 0, 0, 0]
    assert remote.when("Bar").wait(TIMEOUT)
    assert seen_by_watcher.when("Bar").wait(TIMEOUT)

    # the awaitable form under asyncio
    async def remove() -> Result:
        return await asyncio.wait_for(remote.remove_async("Bar"), TIMEOUT)

    assert asyncio.run(remove()) is Result.EXECUTED
    assert seen_by_watcher.when_not("Bar").wait(TIMEOUT)
    assert network.owner_clock("open") == [2, 0, 0, 0]


def test_a_denied_add_raises_and_changes_nothing(network: Network) -> None:
    remote = network.remote(network.caller, "locked")
    with pytest.raises(MutationDenied, match="not exported as mutable"):
        remote.add("Bar")
    assert network.owner_clock("locked") == [0, 0, 0, 0]
    # the owner still answers (and still shows nothing changed)
    assert network.remote(network.caller, "open").add("Baz") is Result.EXECUTED
    assert network.owner_clock("locked") == [0, 0, 0, 0]
    assert remote.time() == [0, 0, 0, 0]


def test_the_owner_killed_mid_call_is_a_clear_error_within_the_timeout(
    network: Network,
) -> None:
    remote = network.remote(network.caller, "open")
    pending = remote.mutate("add", "Hang", timeout=10.0)
    assert network.owner.line_with("hanging") == "hanging"  # the call is in flight
    killed = time.monotonic()
    network.owner.proc.kill()
    with pytest.raises(OwnerUnreachable, match="mid-call") as caught:
        pending.wait(TIMEOUT)
    assert time.monotonic() - killed < 10.0
    assert caught.value.peer_id == network.peer


if __name__ == "__main__":
    owner(sys.argv[1])
