"""What comes in to a topic: the transport's callbacks and own machines' changes.

Rules:

1. Everything that arrives becomes a mutation of the topic machine (a
   ``Msg*`` state with the sender and the decoded message, ``PeerJoined``,
   ``PeerLeft``), so the protocol runs inside the machine's handlers.
2. ``accept`` is the transport's validator (gossipsub doesn't forward what
   it refuses): a payload must decode, and its author must be within its
   budget (``author_rate``/``author_burst``), so a flooding peer costs the
   others little and its flood stops at the first hop. The decoded message
   is kept for ``on_message`` (at most ``DECODED_KEPT``, while queued).
3. Peers the topic's allow-list refuses (``allows``) are not heard: what
   they author is dropped before decoding (``drop_not_allowed``; the
   validator keeps it from being forwarded too) and their joins ignored.
4. A change of an exported machine only marks it dirty (any thread); the
   first change since the last send wakes the send loop.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable

from asyncmachine import Machine, Transition

from ._gossip import GossipConfig
from ._gossip.pacing import TokenBucket
from .protocol import Message, ProtocolError, decode
from .states import MSG_STATES

log = logging.getLogger("ampubsub.topic")

#: decoded messages kept between the validator and the handler
DECODED_KEPT = 1024


class Inbound:
    """Transport callbacks, on the runtime thread: everything becomes a state."""

    def __init__(
        self,
        mach: Machine,
        config: GossipConfig,
        counters: Counter[str],
        clock: Callable[[], float],
        allows: Callable[[str], bool] = lambda peer: True,
    ) -> None:
        self._mach = mach
        self._allows = allows
        self._config = config
        self._counters = counters
        self._clock = clock
        #: neighbours reported before Joined (replayed once joined)
        self.early: set[str] = set()
        self._budgets: OrderedDict[str, TokenBucket] = OrderedDict()
        #: validated payloads and when they arrived, until handed on
        self._decoded: OrderedDict[bytes, tuple[Message, float]] = OrderedDict()

    def accept(self, sender: str, data: bytes) -> bool:
        cfg, counters = self._config, self._counters
        if not self._allows(sender):
            counters["drop_not_allowed"] += 1
            return False
        budget = self._budgets.get(sender)
        if budget is None:
            budget = self._budgets[sender] = TokenBucket(
                cfg.author_rate, cfg.author_burst
            )
            while len(self._budgets) > cfg.max_peers:
                self._budgets.popitem(last=False)
        now = self._clock()
        if not budget.available(now):
            counters["drop_author_budget"] += 1
            return False
        budget.spend(now, 1)
        try:
            msg = decode(data, strict_relations=False)
        except ProtocolError as err:
            counters[f"drop_{err.reason}"] += 1
            log.debug("%s: refused a message from %s: %s", self._mach.id, sender, err)
            return False
        self._decoded[data] = (msg, now)  # (py-libp2p hands on_message a copy)
        while len(self._decoded) > DECODED_KEPT:
            self._decoded.popitem(last=False)
        return True

    def on_message(self, sender: str, data: bytes) -> None:
        validated = self._decoded.pop(data, None)
        if validated is not None:
            msg, arrived = validated
        elif not self._allows(sender):
            self._counters["drop_not_allowed"] += 1
            return
        else:  # a transport that doesn't validate first
            arrived = self._clock()
            try:
                msg = decode(data, strict_relations=False)
            except ProtocolError as err:
                self._counters[f"drop_{err.reason}"] += 1
                log.debug(
                    "%s: dropped a message from %s: %s", self._mach.id, sender, err
                )
                return
        state = MSG_STATES[msg.TYPE]
        args = {"peer_id": sender, "msg": msg, "arrived": arrived}
        if self._mach.add(state, args) == 1:
            self._counters["drop_not_joined"] += 1

    def on_peer_joined(self, peer_id: str) -> None:
        if not self._allows(peer_id):
            return  # the transport closes its connection
        if not self._mach.is_active("Joined"):
            self.early.add(peer_id)  # PeerJoined requires Joined
            return
        self._mach.add("PeerJoined", {"peer_id": peer_id})

    def on_peer_left(self, peer_id: str) -> None:
        self.early.discard(peer_id)
        self._mach.add("PeerLeft", {"peer_id": peer_id})

    def replay_early(self) -> None:
        early, self.early = self.early, set()
        for peer_id in sorted(early):
            self._mach.add("PeerJoined", {"peer_id": peer_id})


class ExportTracer:
    """Attached to each exported machine: a changed clock marks it dirty."""

    def __init__(
        self,
        index: int,
        mark_dirty: Callable[[int], bool],
        wake: Callable[[], None],
        unexport: Callable[[Machine], object],
    ) -> None:
        self.index = index
        self._mark_dirty = mark_dirty
        self._wake = wake
        self._unexport = unexport

    def transition_end(self, tx: Transition) -> None:
        changed = tx.time_after is not tx.time_before and not tx.is_check
        if changed and self._mark_dirty(self.index):
            self._wake()  # the first change since the last send

    def machine_dispose(self, machine: Machine) -> None:
        self._unexport(machine)
