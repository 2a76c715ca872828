"""The protocol over real py-libp2p on 127.0.0.1: a representative subset.

Real time and real sockets here (no mock clock), so every wait is bounded
with trio.fail_after and waits on states and clocks, never on sleeps.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from ampubsub_plugin import Libp2pTransport, Topic

from .netutil import worker

TIMEOUT = 30


async def start(
    bootstrap: Sequence[str], machines: Sequence[object], listen: str
) -> Topic:
    topic = Topic(
        "libp2p-test",
        transport=Libp2pTransport(listen=[listen]),
        bootstrap=bootstrap,
        machines=machines,  # type: ignore[arg-type]
    )
    topic.start()
    assert await topic.mach.when("Connected"), topic.mach.err
    topic.join()
    assert await topic.mach.when("Joined"), topic.mach.err
    return topic


async def network(peers: int, listen: str) -> list[Topic]:
    topics: list[Topic] = []
    for i in range(peers):
        boot = [a for t in topics[-4:] for a in t.addrs]
        topics.append(await start(boot, [worker(f"p{i}")], listen))
    for topic in topics:
        assert await topic.mach.when_query(
            lambda _, t=topic: len(t.list_machines(connected=True)) == peers - 1
        )
    return topics


async def close(topics: Sequence[Topic]) -> None:
    for topic in topics:
        topic.dispose()
    for topic in topics:
        assert await topic.mach.when_disposed()


@pytest.mark.parametrize(
    "listen",
    ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"],
    ids=["tcp", "quic"],
)
def test_three_peers_discover_and_follow_a_burst(listen: str) -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            topics = await network(3, listen)
            source = topics[1].exported[0]
            for _ in range(1000):
                source.toggle("Bar")
            source.add(["Bar", "Foo"])
            final = source.time()
            for topic in (topics[0], topics[2]):
                (remote,) = topic.list_machines(id=source.id)
                assert await remote.when_time(source.state_names, final)
                assert remote.time() == final
            # a publish rate this low needs no more than a few messages
            assert topics[1].counters["out_updates"] < 50
            await close(topics)

    trio.run(main)


def test_disposed_peer_turns_disconnected_and_waiters_wake() -> None:
    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            topics = await network(3, "/ip4/127.0.0.1/tcp/0")
            (remote,) = topics[0].list_machines(id="p2")
            baz = remote.when("Baz")
            topics[2].exported[0].add("Baz")
            assert await baz
            await close([topics[2]])
            assert await topics[0].mach.when_query(lambda _: not remote.is_connected)
            assert not topics[1].list_machines(id="p2")[0].is_connected
            await close(topics[:2])

    trio.run(main)
