"""Topics from plain threads, asyncio and trio: same protocol, three callers.

Sync and asyncio callers get the shared background trio thread; trio callers
run the topic on their own run. Real time here, so waits are bounded.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from ampubsub_plugin._runtime import SharedRuntime
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.remote import RemoteMachine
from ampubsub_plugin.topic import Topic

from .netutil import worker

TIMEOUT = 10


def make_pair(net: MemoryNetwork) -> tuple[Topic, Topic]:
    a = Topic("t", transport=net.transport(), machines=[worker("a")])
    b = Topic("t", transport=net.transport())
    return a, b


def test_plain_threads_use_the_shared_runtime() -> None:
    net = MemoryNetwork()
    a, b = make_pair(net)
    a.start()
    assert a.mach.when("Connected").wait(TIMEOUT)
    assert a.runtime is SharedRuntime.get()
    b.bootstrap = a.addrs
    b.start()
    assert b.mach.when("Connected").wait(TIMEOUT)
    a.join()
    b.join()
    assert a.mach.when("Joined").wait(TIMEOUT)
    assert b.mach.when("Joined").wait(TIMEOUT)
    # one shared thread for every topic of the process
    assert b.runtime is a.runtime
    names = [t.name for t in threading.enumerate()]
    assert names.count("ampubsub-trio") == 1
    assert b.mach.when_query(lambda _: bool(b.list_machines(id="a"))).wait(TIMEOUT)
    remote = b.list_machines(id="a")[0]
    waiter = remote.when("Baz")
    a.exported[0].add("Baz")  # mutated from this (non-trio) thread
    assert waiter.wait(TIMEOUT)
    for topic in (a, b):
        topic.dispose()
    assert a.mach.when_disposed().wait(TIMEOUT)
    assert b.mach.when_disposed().wait(TIMEOUT)


def test_asyncio_callers_await_states() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        a, b = make_pair(net)
        a.start()
        assert await asyncio.wait_for(a.mach.when("Connected"), TIMEOUT)
        b.bootstrap = a.addrs
        b.start()
        a.join()
        await asyncio.wait_for(b.mach.when("Connected"), TIMEOUT)
        b.join()
        assert await asyncio.wait_for(b.mach.when("Joined"), TIMEOUT)
        found = b.mach.when_query(lambda _: bool(b.list_machines(id="a")))
        assert await asyncio.wait_for(found, TIMEOUT)
        remote = b.list_machines(id="a")[0]
        a.exported[0].add("Baz")
        assert await asyncio.wait_for(remote.when("Baz"), TIMEOUT)
        for topic in (a, b):
            topic.dispose()
        assert await asyncio.wait_for(b.mach.when_disposed(), TIMEOUT)
        assert await asyncio.wait_for(a.mach.when_disposed(), TIMEOUT)

    asyncio.run(main())


def test_trio_callers_host_the_topic_on_their_own_run() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        a, b = make_pair(net)
        with trio.fail_after(TIMEOUT):
            a.start()
            assert await a.mach.when("Connected")
            assert a.runtime is not None and a.runtime.in_thread
            assert a.runtime is not SharedRuntime._instance
            b.bootstrap = a.addrs
            b.start()
            assert await b.mach.when("Connected")
            a.join()
            b.join()
            assert await b.mach.when("Joined")
            assert await b.mach.when_query(lambda _: bool(b.list_machines(id="a")))
            remote = b.list_machines(id="a")[0]
            a.exported[0].add("Baz")
            assert await remote.when("Baz")
            for topic in (a, b):
                topic.dispose()
            assert await a.mach.when_disposed()
            assert await b.mach.when_disposed()

    trio.run(main)


class _InTransition:
    """A tracer of the topic machine: which threads are inside its transitions."""

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def transition_start(self, tx: object) -> None:
        self.threads.add(threading.get_ident())

    def transition_end(self, tx: object) -> None:
        self.threads.discard(threading.get_ident())


def test_remote_machines_change_only_in_topic_handlers_under_user_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A user thread mutates the topic machine while clocks arrive.

    Whichever thread ends up running the topic machine's queue, every change
    of a remote machine happens inside one of its transitions, so waiting on
    ``topic.mach`` is an exact way to wait for what the network shows.
    """
    net = MemoryNetwork()
    a, b = make_pair(net)
    inside = _InTransition()
    b.mach.bind_tracer(inside)
    outside: list[str] = []
    threads: set[int] = set()
    show = RemoteMachine._show
    built: set[int] = set()

    def checked_show(self: RemoteMachine, time: list[int]) -> None:
        if id(self) not in built:
            # its first clock is its construction, on whichever thread first
            # asked for it (views are built lazily): nobody saw it change
            built.add(id(self))
            show(self, time)
            return
        me = threading.get_ident()
        threads.add(me)
        if me not in inside.threads:
            outside.append(f"{self.id} {time} on {threading.current_thread().name}")
        show(self, time)

    monkeypatch.setattr(RemoteMachine, "_show", checked_show)
    a.start()
    assert a.mach.when("Connected").wait(TIMEOUT)
    b.bootstrap = a.addrs
    b.start()
    assert b.mach.when("Connected").wait(TIMEOUT)
    a.join()
    b.join()
    assert b.mach.when("Joined").wait(TIMEOUT)
    assert b.mach.when_query(lambda _: bool(b.list_machines(id="a"))).wait(TIMEOUT)
    (remote,) = b.list_machines(id="a")
    stop = threading.Event()

    def busy_user() -> None:  # mutates the topic machine from its own thread
        while not stop.is_set():
            b.mach.add("ListMachines", {"callback": lambda found: None})

    user = threading.Thread(target=busy_user, name="user")
    user.start()
    try:
        mine = a.exported[0]
        for _ in range(40):
            mine.toggle("Baz")
            assert remote.when_time(["Baz"], [mine.tick("Baz")]).wait(TIMEOUT)
    finally:
        stop.set()
        user.join(TIMEOUT)
    assert outside == []
    assert len(threads) >= 1
    for topic in (a, b):
        topic.dispose()
    assert b.mach.when_disposed().wait(TIMEOUT)
