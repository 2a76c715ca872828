"""An in-process network: the Transport interface without sockets.

It behaves like a gossipsub topic seen from the outside: a publish reaches
every subscribed peer in the publisher's connected component (relays are
implicit), after a configurable latency with jitter, each delivery lost with
a configurable probability, and never across a partition. Peer join/leave
events are reported for direct links only, as gossipsub does.

Most protocol tests run on it: it is fast, needs no ports, and under trio's
``MockClock`` its timers run in virtual time. Peers may live on different
trio runs (threads); each delivery runs in the receiver's own trio thread.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import trio

from .transport import (
    DIRECT_HANDLER_TIMEOUT,
    DIRECT_MAX_REPLY,
    DIRECT_MAX_REQUEST,
    HANDLER_TIMED_OUT,
    MESH_POLL_INTERVAL,
    DirectClosed,
    DirectError,
    DirectRefused,
    DirectTimeout,
    DirectUnreachable,
    PeerFilter,
    RequestHandler,
    Transport,
    TransportError,
    TransportHandler,
)

log = logging.getLogger("ampubsub.memory")

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
PREFIX = "/memory/"


class MemoryNetwork:
    """A shared medium for :class:`MemoryTransport` peers of one process."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if latency < 0 or jitter < 0 or not 0 <= loss <= 1:
            raise ValueError("latency and jitter must be >= 0 and loss in [0, 1]")
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.rng = random.Random(seed)
        self._lock = threading.Lock()
        self._peers: dict[str, MemoryTransport] = {}
        self._links: dict[str, set[str]] = {}
        self._group: dict[str, int] = {}
        #: each peer's signing secret (an HMAC key stands in for a key pair)
        self._keys: dict[str, bytes] = {}
        self.delivered = 0
        self.dropped = 0

    def transport(self, peer_id: str | None = None) -> MemoryTransport:
        """A new peer on this network (it joins once it serves).

        ``peer_id``: the identity of an earlier transport (a restart with the
        same key); it must not be serving any more.
        """
        with self._lock:
            if peer_id is not None:
                if peer_id in self._peers:
                    raise ValueError(f"peer {peer_id} is still on this network")
            else:
                while True:
                    suffix = "".join(self.rng.choice(_BASE58) for _ in range(44))
                    peer_id = "12D3KooW" + suffix
                    if peer_id not in self._peers and peer_id not in self._keys:
                        break
            if peer_id not in self._keys:
                self._keys[peer_id] = self.rng.randbytes(32)
        return MemoryTransport(self, peer_id)

    def _sign(self, peer_id: str, data: bytes) -> bytes:
        return hmac.digest(self._keys[peer_id], data, "sha256")

    def _verify(self, peer_id: str, data: bytes, signature: bytes) -> bool:
        key = self._keys.get(peer_id)
        if key is None:
            return False
        return hmac.compare_digest(hmac.digest(key, data, "sha256"), signature)

    # -- topology ----------------------------------------------------------

    def partition(self, *groups: Iterable[str | MemoryTransport]) -> None:
        """Split the network: peers only reach peers of their own group.

        Peers named in no group form one more group together.
        """
        mapping: dict[str, int] = {}
        for i, group in enumerate(groups, start=1):
            for member in group:
                if isinstance(member, MemoryTransport):
                    peer_id = member.peer_id
                elif isinstance(member, str):
                    peer_id = member
                else:
                    raise TypeError(
                        "partition() takes peer ids or MemoryTransports, "
                        f"not {type(member).__name__}"
                    )
                mapping[peer_id] = i
        with self._lock:
            self._group = mapping
        self._announce_links()

    def heal(self) -> None:
        """Undo :meth:`partition`."""
        with self._lock:
            self._group = {}
        self._announce_links()

    def _linked(self, a: str, b: str) -> bool:
        return b in self._links.get(a, ()) and self._group.get(a, 0) == self._group.get(
            b, 0
        )

    def _component(self, start: str) -> set[str]:
        seen = {start}
        frontier = [start]
        while frontier:
            node = frontier.pop()
            for other in self._links.get(node, ()):
                if other not in seen and self._linked(node, other):
                    seen.add(other)
                    frontier.append(other)
        return seen

    def _announce_links(self) -> None:
        """Tell every peer about direct topic neighbours it gained or lost."""
        with self._lock:
            peers = list(self._peers.values())
            views = {
                p.peer_id: frozenset(
                    q
                    for q in self._links.get(p.peer_id, ())
                    if self._linked(p.peer_id, q)
                    and self._peers.get(q) is not None
                    and self._peers[q]._topic is not None
                    and self._peers[q]._topic == p._topic
                )
                for p in peers
                if p._topic is not None
            }
        for peer in peers:
            peer._set_neighbours(views.get(peer.peer_id, frozenset()))

    # -- peers -------------------------------------------------------------

    def _register(self, transport: MemoryTransport) -> None:
        with self._lock:
            self._peers[transport.peer_id] = transport
            self._links.setdefault(transport.peer_id, set())

    def _unregister(self, transport: MemoryTransport) -> None:
        with self._lock:
            self._peers.pop(transport.peer_id, None)
            for other in self._links.pop(transport.peer_id, set()):
                self._links.get(other, set()).discard(transport.peer_id)
        self._announce_links()

    def _connect(self, a: str, b: str) -> bool:
        with self._lock:
            if b not in self._peers or a == b:
                return False
            if not (self._peers[a]._allows(b) and self._peers[b]._allows(a)):
                return False  # a peer filter refused the other side
            self._links[a].add(b)
            self._links[b].add(a)
        self._announce_links()
        return True

    def _cut_refused(self, transport: MemoryTransport) -> None:
        """Drop the links of ``transport`` to peers its filter now refuses."""
        with self._lock:
            mine = self._links.get(transport.peer_id, set())
            for other in [p for p in mine if not transport._allows(p)]:
                mine.discard(other)
                self._links.get(other, set()).discard(transport.peer_id)
        self._announce_links()

    def _reaches(self, sender: str, target: str) -> bool:
        """Are ``sender`` and ``target`` on the same side of any partition now?"""
        group = self._group
        return group.get(sender, 0) == group.get(target, 0)

    def _publish(self, sender: MemoryTransport, data: bytes) -> None:
        with self._lock:
            topic = sender._topic
            targets = [
                self._peers[p]
                for p in self._component(sender.peer_id)
                if p != sender.peer_id
                and p in self._peers
                and self._peers[p]._topic == topic
            ]
            plans = []
            for target in targets:
                if self.loss and self.rng.random() < self.loss:
                    self.dropped += 1
                    continue
                delay = self.latency
                if self.jitter:
                    delay += self.rng.uniform(0, self.jitter)
                plans.append((target, delay))
                self.delivered += 1
        for target, delay in plans:
            target._enqueue(sender.peer_id, data, delay)


class MemoryTransport(Transport):
    """One peer of a :class:`MemoryNetwork`."""

    def __init__(self, network: MemoryNetwork, peer_id: str) -> None:
        self.network = network
        self._peer_id = peer_id
        self._topic: str | None = None
        self._handler: TransportHandler | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._inbox: trio.MemorySendChannel[tuple[str, bytes, float]] | None = None
        self._neighbours: frozenset[str] = frozenset()
        self._serving = False
        # direct requests and the peer filter (see Transport)
        self._nursery: trio.Nursery | None = None
        self._request_handler: RequestHandler | None = None
        self._peer_filter: PeerFilter | None = None

    def __repr__(self) -> str:
        return f"<MemoryTransport {self._peer_id[-6:]} topic={self._topic}>"

    def sign(self, data: bytes) -> bytes | None:
        return self.network._sign(self._peer_id, data)

    def verify(self, peer_id: str, data: bytes, signature: bytes) -> bool:
        return self.network._verify(peer_id, data, signature)

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def addrs(self) -> list[str]:
        return [f"{PREFIX}{self._peer_id}/p2p/{self._peer_id}"]

    async def serve(
        self, handler: TransportHandler, *, task_status: Any = None
    ) -> None:
        if self._serving:
            raise TransportError(f"{self!r} is already serving")
        send, receive = trio.open_memory_channel[tuple[str, bytes, float]](math.inf)
        self._handler = handler
        self._token = trio.lowlevel.current_trio_token()
        self._inbox = send
        self._serving = True
        self.network._register(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if task_status is not None:
                    task_status.started()
                async for sender, data, delay in receive:
                    if delay > 0:
                        nursery.start_soon(self._deliver_later, sender, data, delay)
                    else:
                        self._deliver(sender, data)
        finally:
            self._serving = False
            self._nursery = None
            self._topic = None
            self._inbox = None
            self.network._unregister(self)
            self._neighbours = frozenset()

    async def _deliver_later(self, sender: str, data: bytes, delay: float) -> None:
        await trio.sleep(delay)
        # a partition made while the message was in flight cuts it, too
        if self.network._reaches(sender, self._peer_id):
            self._deliver(sender, data)
        else:
            self.network.dropped += 1

    def _deliver(self, sender: str, data: bytes) -> None:
        if self._topic is None or self._handler is None:
            return
        try:
            accept = getattr(self._handler, "accept", None)
            if accept is not None and not accept(sender, data):
                return
            self._handler.on_message(sender, data)
        except Exception:
            log.exception("%r: on_message raised", self)

    def _enqueue(self, sender: str, data: bytes, delay: float) -> None:
        inbox, token = self._inbox, self._token
        if inbox is None or token is None:
            return

        def put() -> None:
            if self._inbox is not None:
                self._inbox.send_nowait((sender, data, delay))

        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(put)

    def _set_neighbours(self, neighbours: frozenset[str]) -> None:
        token = self._token
        if token is None:
            return

        def update() -> None:
            old, self._neighbours = self._neighbours, neighbours
            handler = self._handler
            if handler is None or self._topic is None:
                return
            for peer in sorted(neighbours - old):
                _call(handler.on_peer_joined, peer)
            for peer in sorted(old - neighbours):
                _call(handler.on_peer_left, peer)

        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(update)

    async def connect(self, addrs: Sequence[str]) -> int:
        self._require_serving("connect")
        made = 0
        failed = []
        for addr in addrs:
            if not addr.startswith(PREFIX) or "/p2p/" not in addr:
                raise ValueError(
                    f"not a memory address (want {PREFIX}<id>/p2p/<id>): {addr!r}"
                )
            peer_id = addr.rsplit("/p2p/", 1)[1]
            if self.network._connect(self._peer_id, peer_id):
                made += 1
            else:
                failed.append(addr)
        await trio.lowlevel.checkpoint()
        if addrs and not made:
            raise TransportError(f"no peer reachable at {', '.join(failed)}")
        return made

    async def join(self, topic: str) -> None:
        self._require_serving("join")
        self._topic = topic
        self.network._announce_links()
        await trio.lowlevel.checkpoint()

    async def leave(self) -> None:
        self._topic = None
        self.network._announce_links()
        await trio.lowlevel.checkpoint()

    async def publish(self, data: bytes) -> None:
        self._require_serving("publish")
        if self._topic is None:
            raise TransportError(f"{self!r} can't publish: not joined to a topic")
        self.network._publish(self, bytes(data))
        await trio.lowlevel.checkpoint()

    def topic_peers(self) -> frozenset[str]:
        return self._neighbours

    def mesh_ready(self) -> bool:
        """As over py-libp2p: a publish reaches the topic only through a
        neighbour on it, and peers that subscribe later never get it (a
        hello published before then was lost, and the peers joining
        together saw each other only after their pulls had failed)."""
        return bool(self._neighbours)

    async def wait_mesh(self, timeout: float) -> bool:
        """Wait until :meth:`mesh_ready` (polled, as py-libp2p's is); False
        when ``timeout`` s pass first or the topic is left meanwhile."""
        self._require_serving("wait for the mesh")
        topic = self._topic
        if topic is None:
            raise TransportError(f"{self!r} has not joined a topic")
        with trio.move_on_after(timeout):
            while self._topic == topic and self._serving:
                if self.mesh_ready():
                    return True
                await trio.sleep(MESH_POLL_INTERVAL)
        return False

    def connection_count(self) -> int:
        net = self.network
        with net._lock:
            return sum(
                1
                for p in net._links.get(self._peer_id, ())
                if net._linked(self._peer_id, p)
            )

    # -- point to point and gating ---------------------------------------------

    def _allows(self, peer_id: str) -> bool:
        allows = self._peer_filter
        return allows is None or bool(allows(peer_id))

    def set_peer_filter(self, allows: PeerFilter | None) -> None:
        self._peer_filter = allows
        self.network._cut_refused(self)

    def serve_requests(self, handler: RequestHandler | None) -> None:
        self._request_handler = handler

    async def request(self, peer_id: str, payload: bytes, timeout: float) -> bytes:
        """A direct request to one peer; it runs in that peer's trio thread."""
        self._require_serving("request")
        if len(payload) > DIRECT_MAX_REQUEST:
            raise ValueError(
                f"a direct request of {len(payload)} bytes is over the "
                f"{DIRECT_MAX_REQUEST}-byte limit"
            )
        net = self.network
        with net._lock:
            target = net._peers.get(peer_id)
        if target is None or not net._reaches(self._peer_id, peer_id):
            raise DirectUnreachable(peer_id, "no such peer reachable on this network")
        token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[DirectError | bytes](1)

        def reply(outcome: DirectError | bytes) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(send.send_nowait, outcome)

        if not target._take_request(self._peer_id, bytes(payload), reply):
            raise DirectUnreachable(peer_id, "the peer is not serving")
        with trio.move_on_after(timeout):
            outcome = await receive.receive()
            if isinstance(outcome, DirectError):
                raise outcome
            return outcome
        raise DirectTimeout(peer_id, f"no reply within {timeout:g} s")

    def _take_request(
        self, sender: str, payload: bytes, reply: Callable[[DirectError | bytes], None]
    ) -> bool:
        token, me = self._token, self._peer_id
        if token is None or not self._serving:
            return False

        def start() -> None:
            # (a callback of run_sync_soon: anything it raised would crash
            # the whole trio run, every topic on it)
            nursery = self._nursery
            if nursery is not None:
                with contextlib.suppress(RuntimeError):  # closed: stopping
                    nursery.start_soon(self._serve_request, sender, payload, reply)
                    return
            reply(DirectClosed(me, "the peer stopped serving"))

        try:
            token.run_sync_soon(start)
        except trio.RunFinishedError:
            return False
        return True

    async def _serve_request(
        self, sender: str, payload: bytes, reply: Callable[[DirectError | bytes], None]
    ) -> None:
        me, handler = self._peer_id, self._request_handler
        if handler is None:
            reply(DirectRefused(me, "this peer serves no direct requests"))
            return
        if not self._allows(sender):
            reply(DirectRefused(me, "not allowed on this network"))
            return
        answered = False
        try:
            with trio.fail_after(DIRECT_HANDLER_TIMEOUT):
                result = await handler(sender, payload)
            if len(result) > DIRECT_MAX_REPLY:
                raise ValueError(f"reply of {len(result)} bytes is over the limit")
            reply(bytes(result))
            answered = True
        except trio.TooSlowError:
            reply(DirectRefused(me, HANDLER_TIMED_OUT))
            answered = True
        except Exception as error:
            reply(DirectRefused(me, str(error) or type(error).__name__))
            answered = True
        finally:
            if not answered:  # cancelled: this peer stopped serving mid-request
                reply(DirectClosed(me, "the peer stopped serving mid-request"))

    def _require_serving(self, what: str) -> None:
        if not self._serving:
            raise TransportError(f"{self!r} can't {what}: not serving")


def _call(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("transport callback %r raised", fn)
