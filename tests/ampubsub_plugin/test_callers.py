"""Topics from plain threads, asyncio and trio: same protocol, three callers.

Sync and asyncio callers get the shared background trio thread; trio callers
run the topic on their own run. Real time here, so waits are bounded.
"""

from __future__ import annotations

import asyncio
import threading

import trio

from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.runtime import SharedRuntime
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
