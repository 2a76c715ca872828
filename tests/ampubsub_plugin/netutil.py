"""Helpers for protocol tests: memory networks of topics under trio.

Tests run under trio's MockClock (autojump), so protocol timers run in
virtual time: a test that waits for convergence takes milliseconds, and a
timeout means a real protocol bug, not a slow machine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio
import trio.testing

from ampubsub_plugin.gossip import GossipConfig
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.topic import Topic
from ampubsub_plugin.transport import Transport
from asyncmachine import Machine, State

WORKER = {"Foo": State(require=["Bar"]), "Bar": State(), "Baz": State()}

#: virtual seconds a convergence may take before a test fails
CONVERGE = 120


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async test body under a MockClock that jumps when idle."""
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


async def advance(seconds: float) -> None:
    """Move virtual time forward, then let every task react (no real sleep)."""
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    clock.jump(seconds)
    await trio.testing.wait_all_tasks_blocked()


def worker(name: str, **kwargs: Any) -> Machine:
    return Machine(WORKER, id=name, **kwargs)


async def start_topic(
    net: MemoryNetwork,
    bootstrap: Sequence[str] = (),
    machines: Sequence[Machine] = (),
    *,
    name: str = "t",
    config: GossipConfig | None = None,
    join: bool = True,
    transport: Transport | None = None,
) -> Topic:
    topic = Topic(
        name,
        transport=transport or net.transport(),
        bootstrap=bootstrap,
        machines=machines,
        config=config,
    )
    topic.start()
    with trio.fail_after(10):
        assert await topic.mach.when("Connected")
    if join:
        topic.join()
        with trio.fail_after(10):
            assert await topic.mach.when("Joined")
    return topic


async def start_network(
    net: MemoryNetwork,
    peers: int,
    machines_per_peer: int = 0,
    *,
    config: GossipConfig | None = None,
) -> list[Topic]:
    """Peers bootstrapping from up to 3 earlier ones (never a star)."""
    topics: list[Topic] = []
    for i in range(peers):
        machines = [worker(f"p{i}-m{j}") for j in range(machines_per_peer)]
        boot = [a for t in topics[-3:] for a in t.addrs]
        topics.append(await start_topic(net, boot, machines, config=config))
    return topics


async def until(
    topics: Sequence[Topic],
    check: Callable[[Topic], bool],
    timeout: float = CONVERGE,
) -> None:
    """Wait (virtual time) until ``check(topic)`` holds on every topic.

    Remote views change only inside the topic machine's handlers, so a
    ``when_query`` on ``topic.mach`` wakes exactly when they may have changed.
    """
    with trio.fail_after(timeout):
        for topic in topics:
            assert await topic.mach.when_query(lambda _clock, t=topic: check(t))


def sees(count: int) -> Callable[[Topic], bool]:
    """A check: the topic lists at least ``count`` connected remote machines."""
    return lambda topic: len(topic.list_machines(connected=True)) >= count


async def dispose_all(topics: Sequence[Topic]) -> None:
    for topic in topics:
        topic.dispose()
    with trio.fail_after(30):
        for topic in topics:
            await topic.mach.when_disposed()
