"""Answers: who replies to a request or a hello, and when, so few do.

Rules of this room:

1. The owner of a machine answers requests about it at once.
2. Besides the owner, only the ``responders`` peers whose id hashes rank
   closest to the subject answer, each after a random moment
   (``answer_delay``), and a responder drops its answer when another answer
   arrives first. All peers rank alike, so answers don't multiply with the
   network's size even when processing lags behind the random delays. A
   gossiper shown behind on clocks that went by within ``Shared.in_flight``
   gets no push: they are on their way to it.
3. A request about a peer introduced within ``answer_cooldown`` is not
   answered again: everyone just heard it.
4. A hello from a known peer (a new machine, or a repeat: the owner doesn't
   know it was heard) is acknowledged with a gossip of the sums we hold for
   it, by the responders for the empty subject (the same few peers for every
   owner, so acknowledgements batch), unless someone else already told it.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from hashlib import blake2b

from ..protocol import GossipMsg, Message, Proof, UpdatesMsg
from .config import Shared
from .roster import Roster

#: owners acknowledged per gossip (a message names at most MAX_PEERS_PER_MSG)
ACKS_PER_MSG = 512


def rank(peer: str, subject: str) -> bytes:
    """A peer's place for answering about ``subject``: lower answers first."""
    return blake2b(f"{peer}/{subject}".encode(), digest_size=8).digest()


def ranked_before(me: str, subject: str, roster: Roster) -> int:
    """How many live peers we know (``subject`` aside) rank before ``me``.

    (Cached until the live peers change: answering about every hello of N
    peers would otherwise hash N ids each time.)
    """

    def count() -> int:
        mine = rank(me, subject)
        return sum(
            1
            for view in roster.live()
            if view.peer != subject and rank(view.peer, subject) < mine
        )

    return roster.cached_rank((me, subject), count)


@lru_cache(maxsize=8192)
def _rank_for_all(peer: str) -> bytes:
    return rank(peer, "")


def place_for_all(me: str, roster: Roster, limit: int) -> int:
    """How many live peers rank before ``me`` for the empty subject (who
    sends snapshots and acknowledgements), counted up to ``limit``.

    The full count is cached per roster version, which every join changes:
    in a wave each peer made it again (a hash per peer) whenever it asked.
    Here each peer's rank is remembered and the count stops at ``limit``.
    (Asked for every hello, by a rule since reverted, the full count took a
    staggered 1,000-peer simulation from 227 to 451 CPU-s; this one, 209.)
    """
    mine = _rank_for_all(me)
    found = 0
    for view in roster.live():
        if _rank_for_all(view.peer) < mine:
            found += 1
            if found >= limit:
                break
    return found


class Answers:
    """Answers we owe: introductions, clocks and acknowledgements, by when."""

    def __init__(self, shared: Shared, roster: Roster) -> None:
        self._shared = shared
        self._roster = roster
        self.info: dict[str, float] = {}
        self.updates: dict[str, float] = {}
        self.acks: dict[str, float] = {}
        #: when an info about each peer was last sent or seen (answers within
        #: ``answer_cooldown`` of it would repeat what everyone just heard)
        self._introduced_at: OrderedDict[str, float] = OrderedDict()
        #: when clocks of each peer last went by (a gossiper behind on them
        #: within ``Shared.in_flight`` has them on the way)
        self._clocks_at: OrderedDict[str, float] = OrderedDict()

    def responder(self, subject: str) -> bool:
        """Is this peer one of the few chosen to answer about ``subject``?"""
        closer = ranked_before(self._shared.peer_id, subject, self._roster)
        return closer < self._shared.config.responders

    def introduced(self, peer: str, now: float) -> None:
        self._stamp(self._introduced_at, peer, now)

    def _stamp(self, table: OrderedDict[str, float], peer: str, now: float) -> None:
        table[peer] = now
        table.move_to_end(peer)
        while len(table) > self._shared.config.max_peers:
            table.popitem(last=False)

    def clear(self) -> None:
        self.info.clear()
        self.updates.clear()
        self.acks.clear()

    def dues(self) -> list[float]:
        return [*self.info.values(), *self.updates.values(), *self.acks.values()]

    # -- what others say -----------------------------------------------------------

    def asked_info(self, peers: list[str], now: float) -> None:
        me = self._shared.peer_id
        for peer in peers:
            recent = self._introduced_at.get(peer)
            cooldown = self._shared.stretch(self._shared.config.answer_cooldown)
            if recent is not None and now - recent < cooldown:
                continue  # everyone just heard it; the asker will hear the next
            if peer == me:
                self.info[peer] = now  # even with nothing to export
            elif peer in self._roster and self.responder(peer):
                self.info.setdefault(peer, now + self._shared.answer_gap())

    def asked_updates(self, peer: str, now: float) -> None:
        view = self._roster.get(peer)
        if view is not None and view.machines and self.responder(peer):
            self.updates.setdefault(peer, now + self._shared.answer_gap())

    def owner_spoke(self, peer: str, now: float) -> None:
        """The owner introduced a machine: one or two of us acknowledge it.

        The same few peers acknowledge every owner (all rank alike for the
        empty subject), and join the acknowledgement already planned: hellos
        arriving together get one message, however many there are.
        """
        responders = self._shared.config.responders
        if self.acks.get(peer) or (
            place_for_all(self._shared.peer_id, self._roster, responders) >= responders
        ):
            return
        planned = min(self.acks.values(), default=None)
        if planned is None:
            planned = now + self._shared.answer_gap()
        self.acks[peer] = planned

    def gossiped(
        self, peer: str, sums: dict[int, int], *, owner: bool, behind: bool, now: float
    ) -> None:
        """Someone gossiped sums of ``peer``: drop or plan our answers."""
        view = self._roster.get(peer)
        if peer in self.acks and not owner and view is not None:
            known = view.sums()
            if all(sums.get(i) == t for i, t in known.items()):
                del self.acks[peer]  # someone already told the owner
        if behind and peer not in self.updates and self.responder(peer):
            heard = self._clocks_at.get(peer, float("-inf"))
            if now - heard < self._shared.in_flight():
                return  # what it lacks went by just now: on its way to it
            # the gossiper is behind: push what we know, unless beaten
            self.updates[peer] = now + self._shared.answer_gap()

    def clocks_heard(self, peer: str, indexes: set[int], now: float) -> None:
        """Clocks of ``peer`` went by: our pending push of them is redundant."""
        self._stamp(self._clocks_at, peer, now)
        view = self._roster.get(peer)
        if (
            peer in self.updates
            and view is not None
            and all(i in indexes for i in view.machines)
        ):
            del self.updates[peer]  # someone else answered

    # -- what we send ----------------------------------------------------------------

    def due_info(self, now: float) -> list[str]:
        due = [p for p, t in self.info.items() if t <= now]
        for peer in due:
            del self.info[peer]
        return due

    def collect_updates(self, now: float) -> list[Message]:
        due = [p for p, t in self.updates.items() if t <= now]
        clocks: dict[str, dict[int, list[int]]] = {}
        proofs: dict[str, Proof] = {}
        for peer in due:
            del self.updates[peer]
            view = self._roster.get(peer)
            if view is not None and view.machines:
                machines = view.machines.items()
                clocks[peer] = {i: m.time for i, m in machines}
                # the owner's signatures, forwarded unchanged
                signed = {i: m.signature for i, m in machines if m.signature}
                if signed or view.incarnation:
                    proofs[peer] = Proof(view.incarnation, signed)
        return [UpdatesMsg(peer_clocks=clocks, proofs=proofs)] if clocks else []

    def collect_acks(self, now: float) -> list[Message]:
        due = [p for p, t in self.acks.items() if t <= now]
        sums: dict[str, dict[int, int]] = {}
        for peer in due:
            del self.acks[peer]
            view = self._roster.get(peer)
            if view is not None and (view.machines or view.refused):
                sums[peer] = view.sums()
        if not sums:
            return []
        peers = list(sums)
        self._shared.counters["gossip_ack"] += 1
        return [
            GossipMsg(
                peer_gossips={p: sums[p] for p in peers[start : start + ACKS_PER_MSG]},
                incarnation=self._shared.incarnation,
            )
            for start in range(0, len(peers), ACKS_PER_MSG)
        ]
