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
5. After a wave of joins, the peers then ranked first for the empty
   subject name the wave's newcomers in one gossip (a *roll call*), once no
   first hello came for a quiet window (``ROLL_QUIET`` snapshot waits, plus
   the lag) or at most ``ROLL_MAX`` windows after the first. Every settled
   peer notes the first hellos it hears; who ranks first changes with the
   joins, so whoever does when the call is due makes it, naming every live
   peer if it joined during the wave (its snapshot, not hellos, told it of
   the wave's start). A hello lost on its way to some peers, or one that
   crossed a newcomer's pulled snapshot (the snapshot built before the
   hello reached its server, the hello sent before the newcomer was on the
   topic), otherwise reaches them only by keepalive gossip, which at N
   peers names a given peer about every N s and starts half a keepalive
   gap after joining: at 100 peers over 5 processes a peer lacked the last
   joiner for 58 s that way. Who lacks a named peer pulls its info
   (``repair``). The second ranked waits half a window longer and leaves
   out what others named once the wave went quiet (names gossiped during
   the wave missed those who joined after).
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from hashlib import blake2b

from ..protocol import GossipMsg, Message, Proof, UpdatesMsg
from .config import Shared, Sums
from .roster import Roster

#: owners acknowledged per gossip (a message names at most MAX_PEERS_PER_MSG)
ACKS_PER_MSG = 512
#: a roll call goes this many ``snapshot_wait``s after the last first hello
#: (stretched by the lag: a busy peer hears a wave's hellos late) ...
ROLL_QUIET = 2.0
#: ... or this many such windows after the first one, if joins go on
ROLL_MAX = 3


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
    sends snapshots, acknowledgements and roll calls), counted up to
    ``limit``.

    In a wave of joins the live peers change with every hello, so a cached
    full count (a hash per peer) was made again for every hello by every
    peer: N^3 hashes in all, twice the CPU of a 1,000-peer simulation. Here
    the ranks are remembered per peer and the count stops at ``limit``.
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
        #: rule 5: newcomers to name in our next roll call, and when it goes
        self.roll: dict[str, float] = {}
        self.roll_due: float | None = None
        self._roll_since = float("-inf")
        #: the second responder waited once for the first one's call
        self._roll_waited = False
        #: peers others named (non-owners, with our sums) once the wave went
        #: quiet (names in gossip during the wave missed later joiners)
        self._roll_called: set[str] = set()
        self._roll_last = float("-inf")
        #: when we joined: a responder that joined during the wave learned
        #: its start from a snapshot, not from hellos, and names everyone
        self._joined_at = float("-inf")

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

    def joined(self, now: float) -> None:
        self._joined_at = now
        self._end_roll()

    def clear(self) -> None:
        self.info.clear()
        self.updates.clear()
        self.acks.clear()
        self._end_roll()

    def dues(self) -> list[float]:
        roll = [] if self.roll_due is None else [self.roll_due]
        return [*self.info.values(), *self.updates.values(), *self.acks.values(), *roll]

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

    def newcomer_heard(self, peer: str, now: float) -> None:
        """A peer's first hello reached us: name it in the roll call (rule 5).

        Every peer notes the wave (a dict entry per newcomer); when the call
        is due, those ranked first by then make it: in a wave, who ranks
        first changes with the joins, and the call must name all of it.
        """
        config = self._shared.config
        if peer not in self.roll and len(self.roll) >= config.max_peers:
            return
        quiet = self._shared.stretch(ROLL_QUIET * config.snapshot_wait)
        if self.roll_due is None:
            self._roll_since = now
            self._roll_waited = False
            self._roll_called.clear()
        self.roll[peer] = now
        self._roll_last = now
        self.roll_due = min(self._roll_since + ROLL_MAX * quiet, now + quiet)

    def _roll_quiet(self) -> float:
        """From when gossip naming the wave's peers counts as a roll call."""
        quiet = self._shared.stretch(ROLL_QUIET * self._shared.config.snapshot_wait)
        return min(self._roll_last + quiet / 2, self._roll_since + ROLL_MAX * quiet)

    def gossiped(
        self, peer: str, sums: dict[int, int], *, owner: bool, behind: bool, now: float
    ) -> None:
        """Someone gossiped sums of ``peer``: drop or plan our answers."""
        view = self._roster.get(peer)
        if view is not None and (
            peer in self.acks or peer in self.roll or self.roll_due is not None
        ):
            known = view.sums()
            # (an owner's sums of itself, which its hello carries too, say
            # nothing of who heard it)
            if not owner and all(sums.get(i) == t for i, t in known.items()):
                self.acks.pop(peer, None)  # someone already told the owner
                if self.roll_due is not None and now >= self._roll_quiet():
                    self.roll.pop(peer, None)  # another's roll call named it
                    self._roll_called.add(peer)
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
        for peer in due:
            del self.acks[peer]
        return self._naming(due, "gossip_ack")

    def collect_roll(self, now: float) -> list[Message]:
        """Our roll call, when due and ranked first (rule 5); the second
        ranked waits half a quiet window more, for the first one's call."""
        if self.roll_due is None or self.roll_due > now:
            return []
        config = self._shared.config
        place = place_for_all(self._shared.peer_id, self._roster, config.responders)
        if place >= config.responders:  # the call is others' to make
            self._end_roll()
            return []
        quiet = self._shared.stretch(ROLL_QUIET * config.snapshot_wait)
        if place and not self._roll_waited:
            self._roll_waited = True
            self.roll_due = now + place * quiet / 2
            return []
        if self._joined_at >= self._roll_since - ROLL_MAX * quiet:
            called = self._roll_called
            named = [v.peer for v in self._roster.live() if v.peer not in called]
        else:
            named = list(self.roll)
        self._end_roll()
        return self._naming(named, "gossip_roll_call")

    def _end_roll(self) -> None:
        self.roll.clear()
        self._roll_called.clear()
        self.roll_due = None

    def _naming(self, peers: list[str], counter: str) -> list[Message]:
        """Gossip of the sums we hold for ``peers`` (those we still know)."""
        sums: Sums = {}
        for peer in peers:
            view = self._roster.get(peer)
            if view is not None and (view.machines or view.refused):
                sums[peer] = view.sums()
        if not sums:
            return []
        named = list(sums)
        self._shared.counters[counter] += 1
        return [
            GossipMsg(
                peer_gossips={p: sums[p] for p in named[start : start + ACKS_PER_MSG]},
                incarnation=self._shared.incarnation,
            )
            for start in range(0, len(named), ACKS_PER_MSG)
        ]
