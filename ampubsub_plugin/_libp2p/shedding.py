"""Shedding before the expensive work: what one connection can make us do.

Theory of operation. py-libp2p's read loop (``continuously_read_stream``)
parses each RPC and starts one ``push_msg`` task per published message; that
task does the expensive part (seen-cache, Ed25519 signature, our validator
with its msgpack decode and author budget, forwarding to the mesh, and then
our handler). Those tasks are unbounded and served in arrival order, so
under a flood that a peer's CPU can't keep up with, a backlog builds in
front of the validator and an honest owner's update waits behind every
flood message that arrived before it.

:class:`EventPubsub` (``pubsub.py``) therefore hands each received message
to :class:`Admission` instead, and one worker serves what it admitted. The
decisions are keyed by the **connection peer**: the peer the secure channel
(Noise) authenticated, which a sender can't forge, unlike the message's
``from`` field, which is unverified until the signature check this stage
exists to avoid.

Rules:

1. A message already in the seen-cache is dropped at once (py-libp2p would
   drop it too, after the task; counted as ``dup_early``, a normal event);
   it spends no budget, so an honest relay's duplicates cost it nothing.
2. Each connection peer has a token bucket (:attr:`ShedConfig.conn_rate`,
   ``conn_burst``): past it, messages are dropped and counted
   (``drop_conn_budget``). It is a ceiling on what any one connection can
   make us verify, set well above what an honest relay forwards.
3. Each connection peer has a bounded queue (``conn_queue`` messages,
   ``conn_queue_bytes`` of payload). When it is full, the author (``from``)
   with the most messages queued *on that connection* loses its newest one
   (``drop_conn_queue``). The unverified ``from`` is only ever compared with
   other messages of the same connection: a peer spoofing an honest author
   can only shed messages from its own connection, never the honest
   author's messages arriving over honest connections.
4. One worker serves the connections round-robin, and within a connection
   its authors round-robin; one author's messages on one connection stay in
   order. So an honest connection's message waits for at most one message of
   each other busy connection, whatever the flood's rate, and the flood is
   shed in its own queue when the peer can't keep up.
5. Own publishes don't come through here (py-libp2p calls ``push_msg``
   directly for them).
6. After the checks, the router forwards at most what an honest peer may
   send per author (:attr:`ShedConfig.forward_rate`, ``forward_burst``:
   our peers' outbound bucket, ``GossipConfig.rate``/``burst``, doubled in
   burst); past it a message is still delivered here but not forwarded
   (``unforwarded_budget``). The author is signature-checked by then. Every
   honest neighbour forwarding the in-budget part of a flood to every mesh
   peer is what multiplies its cost (each peer reads each message once per
   neighbour, and writes it once per mesh peer); this keeps that part at an
   honest peer's rate.

What a shed message still costs: the read, the decryption, the protobuf
parse and py-libp2p's task start. Stopping reading instead (back-pressure)
would make the sender's own 32-slot queue drop silently, honest messages
included, and would stall the direct-request streams sharing the
connection; so we read and shed here, where we choose what goes.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

#: Connection peers (and authors) whose bucket is kept (the least recently
#: heard go first; a reconnect doesn't refill a kept bucket).
MAX_CONNECTIONS_TRACKED = 4096


@dataclass(frozen=True, slots=True)
class ShedConfig:
    """Budgets of the stage before signature checks (see the module rules).

    The defaults leave honest traffic alone: an honest relay forwards each
    topic message once, and our peers publish at most ``GossipConfig.rate``
    (30/s) each; the author budget after the signature check
    (``GossipConfig.author_rate``, 60/s) still bounds any one author.
    """

    #: messages per second one connection peer may hand us, and its burst
    conn_rate: float = 200.0
    conn_burst: int = 400
    #: messages (and payload bytes) waiting per connection peer
    conn_queue: int = 256
    conn_queue_bytes: int = 8 * 1024 * 1024
    #: messages per second of one (signature-checked) author we forward
    forward_rate: float = 30.0
    forward_burst: int = 60

    def __post_init__(self) -> None:
        if not self.conn_rate > 0 or self.conn_burst < 1:
            raise ValueError("conn_rate must be > 0 and conn_burst >= 1")
        if self.conn_queue < 1 or self.conn_queue_bytes < 1:
            raise ValueError("conn_queue and conn_queue_bytes must be >= 1")
        if not self.forward_rate > 0 or self.forward_burst < 1:
            raise ValueError("forward_rate must be > 0 and forward_burst >= 1")


class _Bucket:
    """A plain token bucket (no debt: a message is taken or not)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Lane:
    """What one connection peer handed us and we haven't served yet."""

    __slots__ = ("authors", "bytes", "count", "order")

    def __init__(self) -> None:
        #: author (raw ``from``) -> its messages, oldest first
        self.authors: dict[bytes, deque[rpc_pb2.Message]] = {}
        #: authors with something queued, in serving order
        self.order: deque[bytes] = deque()
        self.count = 0
        self.bytes = 0


class Admission:
    """Per-connection budgets and fair queues in front of ``push_msg``.

    :meth:`offer` is called from py-libp2p's per-message task and never
    blocks; :meth:`take` is awaited by the one worker. ``seen`` tells whether
    py-libp2p's seen-cache already has a message.
    """

    __slots__ = (
        "_buckets",
        "_config",
        "_forward",
        "_lanes",
        "_ready",
        "_wake",
        "counters",
    )

    def __init__(self, config: ShedConfig | None = None) -> None:
        self._config = config or ShedConfig()
        self._buckets: OrderedDict[ID, _Bucket] = OrderedDict()
        #: forwarding budgets by author (raw ``from``)
        self._forward: OrderedDict[bytes, _Bucket] = OrderedDict()
        self._lanes: dict[ID, _Lane] = {}
        #: connections with something queued, round-robin
        self._ready: deque[ID] = deque()
        self._wake = trio.Event()
        #: dup_early, drop_conn_budget, drop_conn_queue, unforwarded_budget
        self.counters: Counter[str] = Counter()

    @property
    def queued(self) -> int:
        """Messages waiting for the worker, over all connections."""
        return sum(lane.count for lane in self._lanes.values())

    def offer(self, conn: ID, msg: rpc_pb2.Message, seen: bool) -> bool:
        """Queue ``msg`` received over ``conn``'s connection, or shed it."""
        if seen:
            self.counters["dup_early"] += 1
            return False
        cfg = self._config
        now = trio.current_time()
        bucket = self._buckets.get(conn)
        if bucket is None:
            bucket = self._buckets[conn] = _Bucket(cfg.conn_rate, cfg.conn_burst, now)
            if len(self._buckets) > MAX_CONNECTIONS_TRACKED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(conn)
        if not bucket.take(now):
            self.counters["drop_conn_budget"] += 1
            return False
        lane = self._lanes.get(conn)
        if lane is None:
            lane = self._lanes[conn] = _Lane()
        author, size = msg.from_id, len(msg.data)
        idle = lane.count == 0  # not in the round-robin yet
        mine = lane.authors.get(author)
        while lane.count and (
            lane.count >= cfg.conn_queue or lane.bytes + size > cfg.conn_queue_bytes
        ):
            top = max(lane.authors, key=lambda a: len(lane.authors[a]))
            if mine is not None and len(mine) >= len(lane.authors[top]):
                self.counters["drop_conn_queue"] += 1
                return False  # the arrival's author is the biggest here
            self._shed_newest(lane, top)
            self.counters["drop_conn_queue"] += 1
        if mine is None:
            mine = lane.authors[author] = deque()
            lane.order.append(author)
        mine.append(msg)
        lane.count += 1
        lane.bytes += size
        if idle:
            self._ready.append(conn)
            self._wake.set()
        return True

    @staticmethod
    def _shed_newest(lane: _Lane, author: bytes) -> None:
        queue = lane.authors[author]
        dropped = queue.pop()
        lane.count -= 1
        lane.bytes -= len(dropped.data)
        if not queue:
            del lane.authors[author]
            lane.order.remove(author)

    def take_nowait(self) -> tuple[ID, rpc_pb2.Message] | None:
        """The next message to serve (round-robin), or None."""
        ready = self._ready
        if not ready:
            return None
        conn = ready.popleft()
        lane = self._lanes[conn]
        author = lane.order.popleft()
        queue = lane.authors[author]
        msg = queue.popleft()
        lane.count -= 1
        lane.bytes -= len(msg.data)
        if queue:
            lane.order.append(author)
        else:
            del lane.authors[author]
        if lane.count:
            ready.append(conn)
        else:
            del self._lanes[conn]
        return conn, msg

    async def take(self) -> tuple[ID, rpc_pb2.Message]:
        """Wait for the next message to serve."""
        while True:
            got = self.take_nowait()
            if got is not None:
                return got
            self._wake = trio.Event()
            await self._wake.wait()

    def drop_queued(self) -> None:
        """Forget what waits (a new stack starts; budgets and counts stay)."""
        self._lanes.clear()
        self._ready.clear()

    def forwards(self, author: bytes) -> bool:
        """May a checked message of ``author`` be forwarded (rule 6)?"""
        cfg, buckets = self._config, self._forward
        now = trio.current_time()
        bucket = buckets.get(author)
        if bucket is None:
            bucket = buckets[author] = _Bucket(cfg.forward_rate, cfg.forward_burst, now)
            if len(buckets) > MAX_CONNECTIONS_TRACKED:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(author)
        if bucket.take(now):
            return True
        self.counters["unforwarded_budget"] += 1
        return False
