"""The queue between py-libp2p's hooks and the transport's handler.

Rules:

1. The hooks (:meth:`Inbox.on_message`, :meth:`Inbox.on_subscribed`,
   :meth:`Inbox.on_unsubscribed`) run inside py-libp2p's code: they only
   queue, never call the handler, never raise, never block.
2. The queue bypasses py-libp2p's own 32-slot subscription channel (which
   drops silently) and holds up to :data:`INBOX_LIMIT` entries with nothing
   dropped; a warning is logged while the backlog is over
   :data:`INBOX_WARN_BACKLOG`. Past the limit it sheds per author: a message
   whose author already has at least its fair share of the queue is dropped
   (counted in ``shed``), so one flooding peer can't crowd out the others;
   peer events are never shed.
3. One reader task (:meth:`Inbox.dispatch`) hands messages and peer events
   to the handler in the order py-libp2p saw them. A handler that raises is
   logged; the next entry is still delivered.
4. Only the followed topic's entries are queued, each stamped with the
   generation, which :meth:`Inbox.follow` bumps on every join and leave:
   entries queued before a leave or re-join are dropped, unseen.
5. A peer is reported as left only if it was reported as joined in the same
   generation, and as joined only once until then.
"""

from __future__ import annotations

from collections import Counter

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from ..transport import TransportHandler
from .logs import log

#: Inbox backlog (messages + events) above which a warning is logged.
INBOX_WARN_BACKLOG = 10_000
#: Backlog above which messages of the authors with the most queued are shed.
INBOX_LIMIT = 20_000

Event = tuple[str, int, str, bytes]  # (kind, generation, peer id, data)


class Inbox:
    """Messages and peer events of the followed topic, on their way in order.

    ``own`` is this peer's id: its own messages (which py-libp2p delivers
    too) are not queued.
    """

    __slots__ = (
        "_backlog_warned",
        "_name",
        "_own",
        "_queued",
        "_reported",
        "_send",
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
        self._send: trio.MemorySendChannel[Event] | None = None
        self._backlog_warned = False
        # Peers the handler was told joined (and not yet that they left).
        self._reported: set[str] = set()
        #: messages waiting, by author; messages shed past INBOX_LIMIT
        self._queued: Counter[str] = Counter()
        self.shed = 0

    def follow(self, topic: str | None) -> None:
        """Queue entries of ``topic`` from now on; drop those already queued."""
        self.topic = topic
        self.generation += 1

    def attach(self, send: trio.MemorySendChannel[Event]) -> None:
        """Start queueing into ``send`` (until :meth:`detach`)."""
        self._send = send

    def detach(self) -> None:
        """Stop queueing; the hooks drop what arrives."""
        self._send = None

    # -- hooks: run inside py-libp2p; they only queue ----------------------

    def on_message(self, msg: rpc_pb2.Message) -> None:
        if self.topic is None or self.topic not in msg.topicIDs:
            return
        if msg.from_id == self._own:
            return
        try:
            sender = ID(msg.from_id).to_base58()
        except Exception:
            log.debug("%s: message with a bad from_id dropped", self._name)
            return
        if self._over_share(sender):
            self.shed += 1
            return
        if self._queue("message", sender, msg.data):
            self._queued[sender] += 1

    def _over_share(self, sender: str) -> bool:
        """Past INBOX_LIMIT: has ``sender`` at least its fair share queued?"""
        send = self._send
        if send is None:
            return False
        backlog = send.statistics().current_buffer_used
        if backlog < INBOX_LIMIT:
            return False
        fair = backlog // max(1, len(self._queued))
        return self._queued[sender] >= fair

    def on_subscribed(self, topic: str, peer: ID) -> None:
        if topic == self.topic:
            self._queue("joined", peer.to_base58())

    def on_unsubscribed(self, topic: str, peer: ID) -> None:
        if topic == self.topic:
            self._queue("left", peer.to_base58())

    def _queue(self, kind: str, peer: str, data: bytes = b"") -> bool:
        send = self._send
        if send is None:
            return False
        try:
            send.send_nowait((kind, self.generation, peer, data))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        backlog = send.statistics().current_buffer_used
        if backlog > INBOX_WARN_BACKLOG and not self._backlog_warned:
            self._backlog_warned = True
            log.warning(
                "%s: %d messages/events wait for the handler", self._name, backlog
            )
        elif backlog < INBOX_WARN_BACKLOG // 2:
            self._backlog_warned = False
        return True

    # -- the reader task -----------------------------------------------------

    async def dispatch(
        self, receive: trio.MemoryReceiveChannel[Event], handler: TransportHandler
    ) -> None:
        """Hand queued messages and peer events to the handler, in order."""
        generation = -1
        async for kind, event_generation, peer, data in receive:
            if event_generation != self.generation:
                if kind == "message":
                    self._dequeued(peer)
                continue  # queued before a leave or re-join
            if event_generation != generation:
                generation = event_generation
                self._reported.clear()
            try:
                if kind == "message":
                    self._dequeued(peer)
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

    def _dequeued(self, peer: str) -> None:
        left = self._queued[peer] - 1
        if left > 0:
            self._queued[peer] = left
        else:
            self._queued.pop(peer, None)
