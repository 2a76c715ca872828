"""The roster: every other peer we know of and its machines, as plain records.

Rules of this room:

1. A machine record changes only forwards: a clock is taken when its time
   sum is greater than the one held (clocks only grow, so applying is
   idempotent and independent of order). Which clocks may reach a record at
   all is the intake's rule: only the owner's. Clock lists are replaced,
   never changed in place, so events may hold them.
2. A record keeps the owner's signature of its clock, so relaying it lets
   others check it; a peer record keeps the owner's incarnation.
3. Every change a user could see is returned as an event (see ``events``);
   the roster never calls out.
4. A peer shown disconnected (bye or silence) keeps its records until
   ``gone_ttl`` has passed, then it is forgotten. A machine un-exported by its
   owner leaves a tombstone for as long, so relays can't bring it back.
5. Every table is bounded by the config.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator

from asyncmachine import State

from ..protocol import Info, info_identity, schema_hash
from ..remote import remote_schema
from .config import Shared
from .events import Event, Gone, Revived

log = logging.getLogger("ampubsub.gossip")


class MachineRecord:
    """What we know of one remote machine: identity, schema, clock."""

    __slots__ = (
        "id",
        "identity",
        "parent",
        "schema",
        "schema_hash",
        "signature",
        "states",
        "tags",
        "time",
        "time_sum",
    )

    def __init__(self, info: Info, schema: dict[str, State] | None) -> None:
        states = info.states or []
        time = info.time
        if not info.id:
            raise ValueError("a remote machine needs a non-empty id")
        if len(time) != len(states):
            raise ValueError(
                f"remote machine {info.id!r}: {len(states)} states "
                f"but {len(time)} ticks"
            )
        self.id = info.id
        self.states = list(states)
        self.schema = schema
        self.schema_hash = info.schema_hash
        self.tags = list(dict.fromkeys(info.tags))
        self.parent = info.parent or ""
        self.time = list(time)
        self.time_sum = sum(self.time)
        #: what the owner's signatures of this machine's clocks cover
        self.identity = info_identity(info)
        #: the owner's signature of ``time`` (None: unsigned, as from Go peers)
        self.signature = info.signature

    @property
    def has_schema(self) -> bool:
        return self.schema is not None

    def advance(self, time: list[int], signature: bytes | None) -> bool:
        """Take ``time`` if its sum is greater; False (nothing changes) otherwise."""
        if len(time) != len(self.states):
            return False
        total = sum(time)
        if total <= self.time_sum:
            return False
        self.time = list(time)
        self.time_sum = total
        self.signature = signature
        return True

    def relay_info(self, incarnation: int) -> Info:
        """The info a relay sends about this machine (schema as we show it)."""
        schema = self.schema
        return Info(
            id=self.id,
            schema=schema,
            states=list(self.states),
            time=self.time,
            tags=list(self.tags),
            parent=self.parent,
            # the hash of what we relay (relations to absent states dropped)
            schema_hash=(
                schema_hash(schema, self.states) if schema else self.schema_hash
            ),
            incarnation=incarnation,
            signature=self.signature,
        )


class PeerRecord:
    """One other peer: its machines, and when we last heard from it."""

    __slots__ = (
        "bye_at",
        "current_at",
        "gone_at",
        "heard_at",
        "incarnation",
        "machines",
        "peer",
        "refused",
        "silent",
    )

    def __init__(self, peer: str, now: float) -> None:
        self.peer = peer
        self.machines: dict[int, MachineRecord] = {}
        self.heard_at = now
        #: when it said bye or fell silent (forgotten ``gone_ttl`` later)
        self.gone_at: float | None = None
        #: when it said bye (messages it sent before may still arrive)
        self.bye_at: float | None = None
        self.silent = False
        #: machines the topic refused: index -> time sum (acknowledged, not shown)
        self.refused: dict[int, int] = {}
        #: the owner's incarnation as last heard (0: unknown or a Go peer),
        #: and when the owner last spoke under it
        self.incarnation = 0
        self.current_at = now

    @property
    def needs_schema(self) -> bool:
        return any(m.schema is None for m in self.machines.values())

    def sums(self) -> dict[int, int]:
        """Time sums of every machine we acknowledge, refused ones included."""
        sums = dict(self.refused)
        sums.update((i, m.time_sum) for i, m in self.machines.items())
        return sums


class Roster:
    """Peers, their machine records, tombstones and the schema cache."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self.peers: dict[str, PeerRecord] = {}
        #: un-exported machines: (peer, index) -> when; relays can't revive them
        self.tombstones: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._schemas: OrderedDict[str, dict[str, State]] = OrderedDict()
        #: grows whenever the set of live peers may have changed (ranks
        #: computed over it are cached until then)
        self.version = 0
        self._ranks: dict[tuple[str, str], int] = {}
        self._ranks_version = -1

    def __contains__(self, peer: object) -> bool:
        return peer in self.peers

    def __len__(self) -> int:
        return len(self.peers)

    def get(self, peer: str) -> PeerRecord | None:
        return self.peers.get(peer)

    def add(self, peer: str, now: float) -> PeerRecord | None:
        """A new peer record, or None when the table is full (counted)."""
        if len(self.peers) >= self._shared.config.max_peers:
            self._shared.counters["drop_peers_full"] += 1
            return None
        view = self.peers[peer] = PeerRecord(peer, now)
        self.version += 1
        return view

    def cached_rank(self, key: tuple[str, str], compute: Callable[[], int]) -> int:
        """``compute()``, remembered while the live peers stay the same."""
        if self._ranks_version != self.version:
            self._ranks.clear()
            self._ranks_version = self.version
        found = self._ranks.get(key)
        if found is None:
            if len(self._ranks) >= 4 * self._shared.config.max_peers:
                self._ranks.clear()
            found = self._ranks[key] = compute()
        return found

    def live(self) -> Iterator[PeerRecord]:
        return (v for v in self.peers.values() if not v.silent)

    def machines(self) -> Iterator[tuple[str, int, MachineRecord]]:
        """Every record, peers in the order we learned of them, indexes sorted."""
        for peer, view in self.peers.items():
            for index, record in sorted(view.machines.items()):
                yield peer, index, record

    # -- schemas ---------------------------------------------------------------

    def remember_schema(self, key: str, schema: dict[str, State]) -> None:
        self._schemas[key] = schema
        self._schemas.move_to_end(key)
        while len(self._schemas) > self._shared.config.max_schemas:
            self._schemas.popitem(last=False)

    def schema_for(self, info: Info) -> dict[str, State] | None:
        if info.schema is not None and info.states is not None:
            return remote_schema(info.states, info.schema)
        if info.schema_hash is not None:
            return self._schemas.get(info.schema_hash)
        return None

    @property
    def schema_count(self) -> int:
        return len(self._schemas)

    # -- departures --------------------------------------------------------------

    def forget(
        self, peer: str, index: int, *, tombstone: float | None = None
    ) -> list[Event]:
        view = self.peers.get(peer)
        if view is None:
            return []
        if tombstone is not None:
            self.tombstones[(peer, index)] = tombstone
            while len(self.tombstones) > self._shared.config.max_pending:
                self.tombstones.popitem(last=False)
        if view.machines.pop(index, None) is None:
            return []
        return [Gone(peer, index, forgotten=True)]

    def restart(self, view: PeerRecord, incarnation: int) -> list[Event]:
        """The peer started again: what we knew of its last run is void.

        Its machine indexes start over in a new run, so every record of the
        old run is forgotten (users see those copies go, then the new ones
        come), its refusals and tombstones too.
        """
        self._shared.counters["peer_restarted"] += 1
        events: list[Event] = []
        for index in list(view.machines):
            events.extend(self.forget(view.peer, index))
        view.refused.clear()
        for key in [k for k in self.tombstones if k[0] == view.peer]:
            del self.tombstones[key]
        view.incarnation = incarnation
        return events

    def silence(self, view: PeerRecord, now: float) -> list[Event]:
        """Show a peer's machines disconnected (bye, or unheard for too long)."""
        if view.gone_at is None:
            view.gone_at = now
        if view.silent:
            return []
        view.silent = True
        self.version += 1
        return [Gone(view.peer, i, forgotten=False) for i in view.machines]

    def revive(self, view: PeerRecord) -> list[Event]:
        view.silent = False
        self.version += 1
        view.gone_at = None
        view.bye_at = None
        return [Revived(view.peer, i) for i in view.machines]

    def expire(self, now: float, peer_ttl: float) -> list[Event]:
        """Silence peers unheard for ``peer_ttl``; forget the long gone."""
        cfg = self._shared.config
        events: list[Event] = []
        for peer, view in list(self.peers.items()):
            if not view.silent and now - view.heard_at > peer_ttl:
                self._shared.counters["peer_silent"] += 1
                events.extend(self.silence(view, now))
            if view.gone_at is not None and now - view.gone_at > cfg.gone_ttl:
                for index in list(view.machines):
                    events.extend(self.forget(peer, index))
                del self.peers[peer]
                self.version += 1
        while self.tombstones:
            oldest, at = next(iter(self.tombstones.items()))
            if now - at <= cfg.gone_ttl:
                break
            del self.tombstones[oldest]
        return events

    def clear(self) -> list[Event]:
        """Forget everyone (the topic is disposed)."""
        events: list[Event] = []
        for peer in list(self.peers):
            for index in list(self.peers[peer].machines):
                events.extend(self.forget(peer, index))
        self.peers.clear()
        self.version += 1
        return events
