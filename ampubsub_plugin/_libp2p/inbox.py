"""The queue between py-libp2p's hooks and the transport's handler.

Rules:

1. The hooks (:meth:`Inbox.on_message`, :meth:`Inbox.on_subscribed`,
   :meth:`Inbox.on_unsubscribed`) run inside py-libp2p's code: they only
   queue, never call the handler, never raise, never block.
2. Entries wait in one lane per peer: a message in its (signature-checked)
   author's lane, a peer event in that peer's lane. The reader serves the
   lanes round-robin, so an honest owner's update waits for at most one
   entry of each other busy author, however far behind a flooding author's
   lane is. (py-libp2p's own 32-slot subscription channel, which drops
   silently, is bypassed.)
3. Shedding, counted in ``shed``; peer events are never shed. An author's
   lane holds at most :data:`INBOX_PER_AUTHOR` messages: past it, the
   author's newest is dropped. Past :data:`INBOX_LIMIT` entries in all, a
   message whose author already has at least its fair share is dropped. A
   warning is logged while the backlog is over :data:`INBOX_WARN_BACKLOG`.
4. One reader task (:meth:`Inbox.dispatch`) hands entries to the handler;
   one peer's entries stay in the order py-libp2p saw them. A handler that
   raises is logged; the next entry is still delivered.
5. Only the followed topic's entries are queued, each stamped with the
   generation, which :meth:`Inbox.follow` bumps on every join and leave:
   entries queued before a leave or re-join are dropped, unseen.
6. A peer is reported as left only if it was reported as joined in the same
   generation, and as joined only once until then.
"""

from __future__ import annotations

from collections import Counter, deque

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from ..transport import TransportHandler
from .logs import log
from .peer_ids import peer_text

#: Inbox backlog (messages + events) above which a warning is logged.
INBOX_WARN_BACKLOG = 10_000
#: Backlog above which messages of the authors with the most queued are shed.
INBOX_LIMIT = 20_000
#: Messages one author may have waiting (a few seconds of its budget,
#: ``GossipConfig.author_rate``); an honest peer sends bursts of at most
#: ``GossipConfig.burst`` (30).
INBOX_PER_AUTHOR = 256

Event = tuple[str, int, str, bytes]  # (kind, generation, peer id, data)


class Inbox:
    """Messages and peer events of the followed topic, on their way, fairly.

    ``own`` is this peer's id: its own messages (which py-libp2p delivers
    too) are not queued.
    """

    __slots__ = (
        "_attached",
        "_backlog_warned",
        "_lanes",
        "_name",
        "_own",
        "_queued",
        "_ready",
        "_reported",
        "_total",
        "_wake",
        "generation",
        "shed",
        "topic",
    )

    def __init__(self, own: ID) -> None:
        self._own = own.to_bytes()
        self._name = own.to_base58()  # for the logs
        #: The topic whose entries are queued (None: none).
        self.topic: str | None = None
        # Bumped by follow: inbox entries of an older one are dropped.
        self.generation = 0
        self._attached = False
        self._backlog_warned = False
        # Peers the handler was told joined (and not yet that they left).
        self._reported: set[str] = set()
        #: peer -> its entries, oldest first; peers with entries, in turn
        self._lanes: dict[str, deque[Event]] = {}
        self._ready: deque[str] = deque()
        self._total = 0
        self._wake = trio.Event()
        #: messages waiting, by author; messages shed
        self._queued: Counter[str] = Counter()
        self.shed = 0

    @property
    def backlog(self) -> int:
        """Entries (messages and peer events) waiting for the handler."""
        return self._total

    def follow(self, topic: str | None) -> None:
        """Queue entries of ``topic`` from now on; drop those already queued."""
        self.topic = topic
        self.generation += 1
        self._clear()

    def attach(self) -> None:
        """Start queueing (until :meth:`detach`)."""
        self._attached = True

    def detach(self) -> None:
        """Stop queueing; the hooks drop what arrives, the queued is dropped."""
        self._attached = False
        self._clear()

    def _clear(self) -> None:
        self._lanes.clear()
        self._ready.clear()
        self._queued.clear()
        self._total = 0

    # -- hooks: run inside py-libp2p; they only queue ----------------------

    def on_message(self, msg: rpc_pb2.Message) -> None:
        if self.topic is None or self.topic not in msg.topicIDs:
            return
        if msg.from_id == self._own:
            return
        try:
            sender = peer_text(msg.from_id)
        except Exception:
            log.debug("%s: message with a bad from_id dropped", self._name)
            return
        if self._attached and self._over_share(sender):
            self.shed += 1
            return
        if self._queue("message", sender, msg.data):
            self._queued[sender] += 1

    def _over_share(self, sender: str) -> bool:
        """Is ``sender``'s lane full, or past INBOX_LIMIT its fair share?"""
        mine = self._queued[sender]
        if mine >= INBOX_PER_AUTHOR:
            return True
        backlog = self._total
        if backlog < INBOX_LIMIT:
            return False
        fair = backlog // max(1, len(self._queued))
        return mine >= fair

    def on_subscribed(self, topic: str, peer: ID) -> None:
        if topic == self.topic:
            self._queue("joined", peer.to_base58())

    def on_unsubscribed(self, topic: str, peer: ID) -> None:
        if topic == self.topic:
            self._queue("left", peer.to_base58())

    def _queue(self, kind: str, peer: str, data: bytes = b"") -> bool:
        if not self._attached:
            return False
        lane = self._lanes.get(peer)
        if lane is None:
            lane = self._lanes[peer] = deque()
            self._ready.append(peer)
            self._wake.set()
        lane.append((kind, self.generation, peer, data))
        self._total += 1
        backlog = self._total
        if backlog > INBOX_WARN_BACKLOG and not self._backlog_warned:
            self._backlog_warned = True
            log.warning(
                "%s: %d messages/events wait for the handler", self._name, backlog
            )
        elif backlog < INBOX_WARN_BACKLOG // 2:
            self._backlog_warned = False
        return True

    # -- the reader task -----------------------------------------------------

    def take_nowait(self) -> Event | None:
        """The next entry, taking the lanes in turn; None when all are empty."""
        ready = self._ready
        if not ready:
            return None
        peer = ready.popleft()
        lane = self._lanes[peer]
        entry = lane.popleft()
        self._total -= 1
        if lane:
            ready.append(peer)
        else:
            del self._lanes[peer]
        if entry[0] == "message":
            self._dequeued(peer)
        return entry

    async def dispatch(self, handler: TransportHandler) -> None:
        """Hand queued messages and peer events to the handler, lanes in turn."""
        generation = -1
        while True:
            entry = self.take_nowait()
            if entry is None:
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            kind, event_generation, peer, data = entry
            if event_generation != self.generation:
                continue  # queued before a leave or re-join
            if event_generation != generation:
                generation = event_generation
                self._reported.clear()
            try:
                if kind == "message":
                    handler.on_message(peer, data)
                elif kind == "joined":
                    if peer not in self._reported:
                        self._reported.add(peer)
                        handler.on_peer_joined(peer)
                elif peer in self._reported:
                    self._reported.discard(peer)
                    handler.on_peer_left(peer)
            except Exception:
                log.exception("%s: the handler's %s callback raised", self._name, kind)
            await trio.lowlevel.checkpoint()

    def _dequeued(self, peer: str) -> None:
        left = self._queued[peer] - 1
        if left > 0:
            self._queued[peer] = left
        else:
            self._queued.pop(peer, None)
