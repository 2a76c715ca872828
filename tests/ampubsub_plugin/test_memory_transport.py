"""The in-process network (``ampubsub_plugin/memory_transport.py``), without topics.

Transports serve a recording handler under trio's MockClock (``netutil.run``),
so latency is virtual time: a delivery's timestamp is exactly when it landed.
Tests wait for what they expect with bounded waits; to show that something
did *not* arrive they first let everything in flight land (``advance``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from ampubsub_plugin.memory_transport import MemoryNetwork, MemoryTransport
from ampubsub_plugin.transport import TransportError

from .netutil import advance, run

TIMEOUT = 10


class Inbox:
    """A TransportHandler that records what its transport reports, and when."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, float]] = []
        self.joined: list[str] = []
        self.left: list[str] = []
        self._changed = trio.Event()

    def on_message(self, sender: str, data: bytes) -> None:
        self.messages.append((sender, data, trio.current_time()))
        self._poke()

    def on_peer_joined(self, peer_id: str) -> None:
        self.joined.append(peer_id)
        self._poke()

    def on_peer_left(self, peer_id: str) -> None:
        self.left.append(peer_id)
        self._poke()

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def got(self) -> list[tuple[str, bytes]]:
        return [(sender, data) for sender, data, _ in self.messages]

    async def until(self, check: Callable[[], bool]) -> None:
        with trio.fail_after(TIMEOUT):
            while not check():
                await self._changed.wait()


class Peer:
    def __init__(self, transport: MemoryTransport, inbox: Inbox) -> None:
        self.t = transport
        self.inbox = inbox

    @property
    def id(self) -> str:
        return self.t.peer_id


@asynccontextmanager
async def serving(net: MemoryNetwork, count: int) -> AsyncIterator[list[Peer]]:
    """``count`` transports serving in a nursery that ends with the block."""
    async with trio.open_nursery() as nursery:
        peers = []
        for _ in range(count):
            peer = Peer(net.transport(), Inbox())
            await nursery.start(peer.t.serve, peer.inbox)
            peers.append(peer)
        yield peers
        nursery.cancel_scope.cancel()


async def mesh(peers: Sequence[Peer], topic: str = "t") -> None:
    """Link every pair, then join everyone to ``topic``."""
    for i, peer in enumerate(peers):
        others = [a for p in peers[:i] for a in p.t.addrs]
        if others:
            assert await peer.t.connect(others) == len(others)
    for peer in peers:
        await peer.t.join(topic)
    await trio.testing.wait_all_tasks_blocked()


# -- delivery ----------------------------------------------------------------------


def test_publish_reaches_every_subscriber_but_not_the_sender() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        async with serving(net, 3) as (a, b, c):
            await mesh([a, b, c])
            await a.t.publish(b"hi")
            for peer in (b, c):
                await peer.inbox.until(lambda p=peer: bool(p.inbox.messages))
            await advance(1.0)
            assert b.inbox.got() == c.inbox.got() == [(a.id, b"hi")]
            assert a.inbox.messages == []
            assert (net.delivered, net.dropped) == (2, 0)

    run(main)


def test_latency_delays_each_delivery_in_virtual_time() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.25)
        async with serving(net, 2) as (a, b):
            await mesh([a, b])
            sent = trio.current_time()
            await a.t.publish(b"x")
            await b.inbox.until(lambda: bool(b.inbox.messages))
            ((_, _, at),) = b.inbox.messages
            assert at - sent == pytest.approx(0.25)

    run(main)


def test_jitter_adds_up_to_its_amount_to_the_latency() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.25, jitter=0.1, seed=7)
        async with serving(net, 2) as (a, b):
            await mesh([a, b])
            sent = trio.current_time()
            for i in range(20):
                await a.t.publish(bytes([i]))
            await b.inbox.until(lambda: len(b.inbox.messages) == 20)
            delays = [at - sent for _, _, at in b.inbox.messages]
            assert all(0.25 - 1e-9 <= d <= 0.35 + 1e-9 for d in delays), delays
            assert len({round(d, 6) for d in delays}) > 1

    run(main)


def test_loss_drops_deliveries_and_counts_them() -> None:
    async def main() -> None:
        net = MemoryNetwork(loss=0.3, seed=1)
        async with serving(net, 2) as (a, b):
            await mesh([a, b])
            for i in range(200):
                await a.t.publish(i.to_bytes(2, "big"))
            await advance(1.0)
            assert net.delivered + net.dropped == 200
            assert 0 < net.dropped < 200
            assert len(b.inbox.messages) == net.delivered

    run(main)


def test_total_loss_delivers_nothing() -> None:
    async def main() -> None:
        net = MemoryNetwork(loss=1.0)
        async with serving(net, 2) as (a, b):
            await mesh([a, b])
            await a.t.publish(b"x")
            await advance(1.0)
            assert b.inbox.messages == [] and net.dropped == 1

    run(main)


# -- topology ------------------------------------------------------------------------


def test_relays_are_implicit_but_peer_events_only_for_direct_links() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        async with serving(net, 3) as (a, b, c):
            # a chain: A - B - C
            assert await a.t.connect(b.t.addrs) == 1
            assert await c.t.connect(b.t.addrs) == 1
            await a.t.join("t")
            await trio.testing.wait_all_tasks_blocked()
            assert a.inbox.joined == []  # nobody else subscribed yet
            for peer in (b, c):
                await peer.t.join("t")
            await a.inbox.until(lambda: a.inbox.joined == [b.id])
            await advance(0.1)
            assert a.t.topic_peers() == {b.id} and c.t.topic_peers() == {b.id}
            assert b.t.topic_peers() == {a.id, c.id}
            assert sorted(b.inbox.joined) == sorted([a.id, c.id])
            assert (a.t.connection_count(), b.t.connection_count()) == (1, 2)
            await a.t.publish(b"far")
            await c.inbox.until(lambda: bool(c.inbox.messages))
            assert c.inbox.got() == [(a.id, b"far")]

    run(main)


def test_a_partition_cuts_delivery_and_links_until_healed() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        async with serving(net, 3) as (a, b, c):
            await mesh([a, b, c])
            net.partition([a.t])  # B and C, named in no group, stay together
            await a.inbox.until(lambda: sorted(a.inbox.left) == sorted([b.id, c.id]))
            assert a.t.topic_peers() == frozenset() and a.t.connection_count() == 0
            assert b.t.topic_peers() == {c.id}
            await a.t.publish(b"alone")
            await b.t.publish(b"inside")
            await advance(1.0)
            assert a.inbox.messages == [] and b.inbox.messages == []
            assert c.inbox.got() == [(b.id, b"inside")]
            net.heal()
            await a.inbox.until(lambda: len(a.inbox.joined) == 4)
            assert a.t.topic_peers() == {b.id, c.id}
            await a.t.publish(b"back")
            await advance(1.0)
            assert b.inbox.got() == [(a.id, b"back")]
            assert c.inbox.got() == [(b.id, b"inside"), (a.id, b"back")]

    run(main)


def test_a_partition_cuts_messages_already_in_flight() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.5)
        async with serving(net, 2) as (a, b):
            await mesh([a, b])
            await a.t.publish(b"late")
            await advance(0.1)
            net.partition([a.t])
            await advance(1.0)
            assert b.inbox.messages == []
            assert net.dropped == 1

    run(main)


def test_partition_refuses_members_that_are_not_peers() -> None:
    net = MemoryNetwork()
    with pytest.raises(TypeError, match="peer ids or MemoryTransports"):
        net.partition([object()])  # type: ignore[list-item]


def test_a_partition_also_cuts_relays_through_the_other_side() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        async with serving(net, 3) as (a, b, c):
            assert await a.t.connect(b.t.addrs) == 1
            assert await c.t.connect(b.t.addrs) == 1
            for peer in (a, b, c):
                await peer.t.join("t")
            net.partition([b.id])  # A and C share a group but no link
            await advance(1.0)
            await a.t.publish(b"via B")
            await advance(1.0)
            assert b.inbox.messages == [] and c.inbox.messages == []

    run(main)


def test_leave_stops_messages_and_tells_the_neighbours() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        async with serving(net, 3) as (a, b, c):
            await mesh([a, b, c])
            await b.t.leave()
            await a.inbox.until(lambda: a.inbox.left == [b.id])
            await c.inbox.until(lambda: c.inbox.left == [b.id])
            assert b.t.topic_peers() == frozenset()
            assert a.t.topic_peers() == {c.id}
            assert b.inbox.left == []  # the leaver hears of nobody
            with pytest.raises(TransportError, match="not joined"):
                await b.t.publish(b"gone")
            await a.t.publish(b"after")
            await advance(1.0)
            assert b.inbox.messages == [] and c.inbox.got() == [(a.id, b"after")]
            # joining again: back in the topic
            await b.t.join("t")
            await a.inbox.until(lambda: a.inbox.joined.count(b.id) == 2)
            await a.t.publish(b"again")
            await b.inbox.until(lambda: bool(b.inbox.messages))
            assert b.inbox.got() == [(a.id, b"again")]

    run(main)


def test_peers_on_another_topic_are_linked_but_not_listed_or_reached() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        async with serving(net, 3) as (a, b, c):
            await mesh([a, c], "t")
            assert await b.t.connect([*a.t.addrs, *c.t.addrs]) == 2
            await b.t.join("u")
            await advance(0.1)
            assert a.t.topic_peers() == {c.id} and b.t.topic_peers() == frozenset()
            assert a.t.connection_count() == 2
            await a.t.publish(b"t only")
            await advance(1.0)
            assert b.inbox.messages == [] and c.inbox.got() == [(a.id, b"t only")]

    run(main)


def test_a_transport_that_stops_serving_leaves_the_network() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        async with serving(net, 1) as (a,):
            async with trio.open_nursery() as nursery:
                b = Peer(net.transport(), Inbox())
                await nursery.start(b.t.serve, b.inbox)
                await mesh([a, b])
                assert a.t.topic_peers() == {b.id}
                nursery.cancel_scope.cancel()
            await a.inbox.until(lambda: a.inbox.left == [b.id])
            assert a.t.topic_peers() == frozenset() and a.t.connection_count() == 0
            with pytest.raises(TransportError, match="no peer reachable"):
                await a.t.connect(b.t.addrs)

    run(main)


# -- misuse ------------------------------------------------------------------------


def test_misuse_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="loss in"):
        MemoryNetwork(loss=1.5)
    with pytest.raises(ValueError, match="latency"):
        MemoryNetwork(latency=-1)

    async def main() -> None:
        net = MemoryNetwork()
        idle = net.transport()
        with pytest.raises(TransportError, match="not serving"):
            await idle.publish(b"x")
        with pytest.raises(TransportError, match="not serving"):
            await idle.join("t")
        async with serving(net, 1) as (a,):
            with pytest.raises(TransportError, match="already serving"):
                await a.t.serve(Inbox())
            with pytest.raises(TransportError, match="not joined"):
                await a.t.publish(b"x")
            with pytest.raises(ValueError, match="not a memory address"):
                await a.t.connect(["/ip4/127.0.0.1/tcp/1"])
            with pytest.raises(TransportError, match="no peer reachable"):
                await a.t.connect(idle.addrs)  # exists, but never served
            with pytest.raises(TransportError, match="no peer reachable"):
                await a.t.connect(a.t.addrs)  # itself

    run(main)


def test_a_request_reaching_a_peer_that_is_closing_is_closed_not_a_crash() -> None:
    """The request lands while the server's nursery takes no more tasks: the
    caller gets ``DirectClosed`` and the trio run goes on."""
    from ampubsub_plugin.transport import DirectClosed

    async def main() -> None:
        net = MemoryNetwork()
        async with serving(net, 2) as (a, b):
            await mesh([a, b])

            async def handler(caller: str, payload: bytes) -> bytes:
                return b"ok"

            b.t.serve_requests(handler)
            assert await a.t.request(b.id, b"x", 1.0) == b"ok"
            async with trio.open_nursery() as closed:
                pass  # a nursery that takes no new tasks, as when stopping
            serving_nursery, b.t._nursery = b.t._nursery, closed
            with pytest.raises(DirectClosed):
                await a.t.request(b.id, b"x", 1.0)
            b.t._nursery = serving_nursery
            assert await a.t.request(b.id, b"x", 1.0) == b"ok"  # still running

    run(main)
