"""Repair: what we know we miss, and the requests that fetch it.

Rules of this room:

1. A peer named somewhere (as an author, in gossip, in updates) but never
   introduced is *missing*; so is a known peer whose machines we lack or
   whose schema we only know by hash. Clocks for machines we don't know yet
   are kept (the freshest per machine) until the machine is introduced.
2. Gossip carries time sums. A receiver that is behind notes the gap and,
   if it lasts ``Shared.in_flight`` (the update is usually on its way,
   queued behind a loaded peer's backlog), asks for the clocks
   (``requpdates``); the rooms that answer decide who pushes when the
   gossiper is behind.
3. Requests wait: about a peer learned indirectly only after
   ``request_grace``, once our own snapshot arrived and no snapshot came
   for as long (a hello or a snapshot is usually on the way). At most one
   request of a kind per ``request_interval``, and the same peer is asked
   about again only after ``rerequest``, counting others' requests too.
4. When the transport reaches neighbours directly (``direct``), the first
   request for a peer's info is a pull from one neighbour (``take_pull``),
   made by whoever misses it once the grace is over: it costs two messages
   on one stream, where a ``reqinfo`` costs every peer a reception for the
   request and each answer. A peer still missing ``rerequest`` later is
   asked about by ``reqinfo``, as above.
5. Every table is bounded by ``max_peers`` / ``max_pending``, one author
   may name at most ``missing_per_author`` unknown peers, and what we miss
   is forgotten ``missing_ttl`` after it was noted: names of peers that
   don't exist cost a few requests, then nothing.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable

from ..protocol import Message, ReqInfoMsg, ReqUpdatesMsg
from .answers import ranked_before
from .config import Shared
from .roster import Roster

log = logging.getLogger("ampubsub.gossip")

#: peers not ranked first ask about a missing peer after this many graces
STAND_BY = 4

#: a buffered clock: vector, the owner's signature, its incarnation, when
Pending = tuple[list[int], bytes | None, int, float]


class Repair:
    """Missing peers and clocks, buffered clocks, and our requests."""

    def __init__(self, shared: Shared, roster: Roster) -> None:
        self._shared = shared
        self._roster = roster
        self.missing_peers: dict[str, float] = {}
        self.missing_updates: dict[str, dict[int, int]] = {}
        #: when each peer's gap was first noted
        self._gaps_since: dict[str, float] = {}
        #: who named each missing peer, and how many each author named
        self._named_by: dict[str, str] = {}
        self._per_author: Counter[str] = Counter()
        #: owners' clocks for machines not introduced yet: (peer, index) ->
        #: the freshest (vector, signature, incarnation)
        self.pending: OrderedDict[tuple[str, int], Pending] = OrderedDict()
        self._asked_info: dict[str, float] = {}
        self._asked_updates: dict[str, float] = {}
        self._last_reqinfo = float("-inf")
        self._last_requpdates = float("-inf")
        self._last_pull = float("-inf")
        self.next_check = float("-inf")
        #: rule 4: pulls allowed; peers whose info we pulled, and when; the
        #: pull to make next (ids, and a neighbour that named one of them)
        self.direct = False
        self._pulled: dict[str, float] = {}
        self._to_pull: tuple[list[str], str | None] | None = None

    # -- what we miss ----------------------------------------------------------------

    def missing(self, peer: str, now: float, author: str) -> None:
        """``author`` named a peer we never heard introduced: ask about it later."""
        if peer == self._shared.peer_id or peer in self._roster:
            return
        if not self._shared.accepts_peer(peer):
            return  # outside the allow-list: nothing to ask about
        if peer in self.missing_peers:
            return
        cfg, counters = self._shared.config, self._shared.counters
        if len(self.missing_peers) >= cfg.max_peers:
            counters["drop_missing_full"] += 1
            return
        if author != peer:
            if self._per_author[author] >= cfg.missing_per_author:
                counters["drop_missing_author_cap"] += 1
                return
            self._per_author[author] += 1
            self._named_by[peer] = author
        self.missing_peers[peer] = now

    def incomplete(self, peer: str, now: float) -> None:
        """A known peer has machines we lack (or lack the schema of)."""
        self.missing_peers.setdefault(peer, now)

    def found(self, peer: str) -> None:
        self._pulled.pop(peer, None)
        if self.missing_peers.pop(peer, None) is None:
            return
        author = self._named_by.pop(peer, None)
        if author is not None:
            self._per_author[author] -= 1
            if self._per_author[author] <= 0:
                del self._per_author[author]

    def buffer(
        self,
        peer: str,
        index: int,
        time: list[int],
        signature: bytes | None,
        incarnation: int,
        now: float,
    ) -> None:
        """Keep an owner's clock for a machine it hasn't introduced to us yet."""
        key = (peer, index)
        old = self.pending.get(key)
        if old is None or old[2] < incarnation or sum(time) > sum(old[0]):
            self.pending[key] = (time, signature, incarnation, now)
            self.pending.move_to_end(key)
        while len(self.pending) > self._shared.config.max_pending:
            self.pending.popitem(last=False)
            self._shared.counters["drop_pending_full"] += 1

    def take_pending(self, peer: str, index: int) -> Pending | None:
        return self.pending.pop((peer, index), None)

    def forget_pending(self, peer: str) -> None:
        """A peer restarted: clocks buffered from its last run are void."""
        for key in [k for k in self.pending if k[0] == peer]:
            del self.pending[key]

    def behind(self, peer: str, index: int, gossiped: int, now: float) -> None:
        self._gaps_since.setdefault(peer, now)
        gaps = self.missing_updates.setdefault(peer, {})
        gaps[index] = max(gaps.get(index, 0), gossiped)

    def caught_up(self, peer: str, index: int, time_sum: int) -> None:
        gap = self.missing_updates.get(peer)
        if gap is not None and gap.get(index, 0) <= time_sum:
            gap.pop(index, None)
            if not gap:
                del self.missing_updates[peer]
                self._gaps_since.pop(peer, None)

    def others_asked_info(self, peers: list[str], now: float) -> None:
        """Someone asked about these: their answers reach us too."""
        for peer in peers:
            if peer in self._roster or peer in self.missing_peers:
                self._asked_info[peer] = now

    def others_asked_updates(self, peer: str, now: float) -> None:
        if peer in self._roster:
            self._asked_updates[peer] = now

    @property
    def wants(self) -> bool:
        return bool(self.missing_peers or self.missing_updates or self.pending)

    # -- our requests ----------------------------------------------------------------

    def collect(
        self, now: float, *, is_settled: Callable[[float], bool], last_snapshot: float
    ) -> list[Message]:
        shared = self._shared
        interval = shared.stretch(shared.config.request_interval)
        grace = shared.stretch(shared.config.request_grace, 2)
        out: list[Message] = []
        if now < self.next_check:
            return out
        self.next_check = now + interval
        pull_due = self.direct and now >= self._last_pull + interval
        ask_due = now >= self._last_reqinfo + interval
        unschemed: set[str] = set()
        quiet = False
        if pull_due or ask_due:  # one look at every peer's schemas, for both
            unschemed = {v.peer for v in self._roster.peers.values() if v.needs_schema}
            quiet = is_settled(now) and now - last_snapshot >= grace
        if pull_due:
            to_pull = self._wanted_infos(
                unschemed, quiet, lambda _p, t: now - t >= grace
            )
            self._plan_pull(now, to_pull)
        if ask_due:
            wanted = self._wanted_infos(
                unschemed, quiet, lambda p, t: self._ours(p, t, now)
            )
            if self.direct:  # pulled first (rule 4)
                wanted = {p for p in wanted if p in self._pulled}
            ids = self._pick(wanted, self._asked_info, now)
            if ids:
                log.debug("%s: asking about %s", self._shared.peer_id, ids)
                self._last_reqinfo = now
                out.append(ReqInfoMsg(peer_ids=ids))
        if now >= self._last_requpdates + interval:
            settle = shared.in_flight()
            gaps = {
                p
                for p in self.missing_updates
                if now - self._gaps_since.get(p, now) >= settle
            }
            ids = self._pick(gaps, self._asked_updates, now)
            if ids:
                self._last_requpdates = now
                out.append(ReqUpdatesMsg(peer_ids=ids))
        return out

    def _wanted_infos(
        self, unschemed: set[str], quiet: bool, due: Callable[[str, float], bool]
    ) -> set[str]:
        """Peers whose info we lack: ``unschemed`` (schemas known only by
        hash); and, when ``quiet`` (settled, no snapshot coming that might
        bring them), the missing peers ``due(peer, noted)`` and the owners of
        buffered clocks."""
        wanted = set(unschemed)
        if quiet:
            missing = self.missing_peers
            wanted.update(p for p, t in missing.items() if due(p, t))
            # updates for unknown machines of peers we know otherwise
            wanted.update(p for p, _ in self.pending if p not in missing)
        return wanted

    def _plan_pull(self, now: float, wanted: set[str]) -> None:
        """Rule 4: the peers to pull from a neighbour, if any are due."""
        ids = self._pick(wanted - self._pulled.keys(), self._asked_info, now)
        if not ids:
            return
        self._last_pull = now
        for peer in ids:
            self._pulled[peer] = now
        hint = next((self._named_by[p] for p in ids if p in self._named_by), None)
        self._to_pull = (ids, hint)

    def take_pull(self) -> tuple[list[str], str | None] | None:
        """The pull planned by ``collect`` (once): ids, and who named one."""
        pull, self._to_pull = self._to_pull, None
        return pull

    def _ours(self, peer: str, noted: float, now: float) -> bool:
        """Is it our turn to ask about a missing peer?

        Everyone who misses a peer would ask at the same moment, and each
        request costs every peer a reception: only the ``responders`` ranked
        first for it ask after the grace (its answer reaches all); the rest
        ask only if it is still missing after ``STAND_BY`` graces.
        """
        grace = self._shared.stretch(self._shared.config.request_grace, 2)
        if now - noted < grace:
            return False
        if now - noted >= STAND_BY * grace:
            return True
        closer = ranked_before(self._shared.peer_id, peer, self._roster)
        return closer < self._shared.config.responders

    def asked_explicitly(self, now: float) -> None:
        """We sent a ``reqinfo`` for a snapshot: it counts as our request."""
        self._last_reqinfo = now

    def _pick(self, wanted: set[str], asked: dict[str, float], now: float) -> list[str]:
        if not wanted:
            return []
        rerequest = self._shared.stretch(self._shared.config.rerequest, 2)
        fresh = [
            p
            for p in wanted
            if p != self._shared.peer_id
            and now - asked.get(p, float("-inf")) >= rerequest
        ]
        self._shared.rng.shuffle(fresh)
        chosen = sorted(fresh[:16])
        for peer in chosen:
            asked[peer] = now
        return chosen

    # -- housekeeping ----------------------------------------------------------------

    def bound(self) -> None:
        """Ids named in others' requests are bookkeeping: keep it bounded."""
        limit = self._shared.config.max_peers
        for table in (self._asked_info, self._asked_updates, self._pulled):
            while len(table) > limit:
                del table[next(iter(table))]

    def expire(self, now: float) -> None:
        cfg, counters = self._shared.config, self._shared.counters
        horizon = now - 4 * cfg.rerequest
        for table in (self._asked_info, self._asked_updates):
            for key in [k for k, t in table.items() if t < horizon]:
                del table[key]
        old = now - cfg.missing_ttl
        for peer in [p for p, t in self._pulled.items() if t < old]:
            del self._pulled[peer]
        for peer in [p for p, t in self.missing_peers.items() if t < old]:
            self.found(peer)
            counters["missing_expired"] += 1
        for peer in [p for p, t in self._gaps_since.items() if t < old]:
            del self._gaps_since[peer]
            self.missing_updates.pop(peer, None)
            counters["missing_expired"] += 1
        for stale in [k for k, v in self.pending.items() if v[3] < old]:
            del self.pending[stale]
            counters["pending_expired"] += 1

    def stats(self) -> dict[str, int]:
        return {
            "missing_peers": len(self.missing_peers),
            "missing_updates": sum(len(v) for v in list(self.missing_updates.values())),
            "pending_updates": len(self.pending),
        }
