"""The protocol's brain, sans-IO: messages and time in, messages out.

Theory of operation. Each peer keeps a view of every other peer's exported
machines (:class:`RemoteMachine`) and converges it with four mechanisms:

1. **Push.** A change of an own machine marks it dirty; the next ``collect``
   sends its full time vector in an ``updates`` message. The first change
   goes out at once; changes within ``update_interval`` of a send coalesce
   into one message. A dirty machine stays dirty until a message carrying
   its time was handed to the transport, so rate limiting never loses state.
2. **Introductions.** After joining, a peer announces its machines (``info``,
   the hello), repeating it with backoff until another peer's message shows
   it was heard. A hello from a peer we didn't know asks for a snapshot of
   everyone, too; one *sender* answers it, after a short window, with one
   ``info`` covering all it knows, so peers joining together share one
   snapshot. The sender is the peer that joined alone, later whoever
   answered when no sender was left. A joiner without a snapshot after
   ``snapshot_wait`` asks explicitly (``reqinfo`` with no ids), then takes
   its view as complete. Machines exported later are announced the same way.
3. **Anti-entropy.** Now and then a peer gossips time sums of a few peers it
   knows, its own among them. A receiver that is behind asks for those
   clocks (``requpdates``); one that is ahead pushes the fresher clock; one
   that meets an unknown peer asks for an introduction (``reqinfo``), but
   only after ``request_grace`` and once its own snapshot arrived, since a
   hello or a snapshot is usually on the way.
4. **Suppressed answers.** The owner of a machine answers requests about it
   at once; besides it only the peers whose id hashes closest to the
   subject answer, after a random moment, and stay silent if another
   answer arrives first, so one or two peers reply, not all of them.

In one process every message costs each peer CPU, so discovery is built to
send few: a hello per peer, a snapshot per burst of joins, no requests
while answers are on the way.

Clocks only grow, so any message may carry any peer's clock: a vector is
applied when its sum is greater than the one known, whoever relays it.
Departures: ``bye`` marks machines disconnected at once; a peer silent for
``peer_ttl`` is marked disconnected too, and forgotten ``gone_ttl`` later.
Every table is bounded.

Nothing here blocks, sleeps or touches a socket. The topic calls it from its
trio thread (``mark_dirty`` may come from any thread) and asks ``next_due``
when to call ``collect`` again.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from hashlib import blake2b
from typing import Protocol

from asyncmachine import Machine, State

from .protocol import (
    ByeMach,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
    schema_hash,
)
from .remote import RemoteMachine, remote_schema

log = logging.getLogger("ampubsub.gossip")

Peers = dict[str, dict[int, int]]

#: after a bye, messages from that peer are taken as sent before it for this long
BYE_GRACE = 5.0


@dataclass
class GossipConfig:
    """Timing and size knobs, in seconds and counts."""

    #: minimum gap between two ``updates`` pushes of own machines
    update_interval: float = 0.02
    #: how often the topic calls ``heartbeat``
    heartbeat: float = 1.0
    #: about this many gossip messages per ``gossip_interval`` network-wide
    gossip_per_interval: float = 1.0
    gossip_interval: float = 2.0
    #: peers per gossip message (own included)
    gossip_sample: int = 5
    #: a non-owner answers after a random delay in this window (suppression)
    answer_delay: tuple[float, float] = (0.02, 0.25)
    #: minimum gap between two own requests of one kind
    request_interval: float = 0.5
    #: a peer learned of indirectly (gossip, updates, a request) is asked
    #: about only after this long, and once no snapshot came for as long:
    #: its hello or a snapshot is likely on the way, and the request and
    #: its answers would cost every peer
    request_grace: float = 3.0
    #: a snapshot responder collects newcomers this long before answering
    #: them all with one snapshot (the next responder waits three times as
    #: long, and stays silent if a snapshot comes first)
    snapshot_window: float = 0.5
    #: ... and sends at most one snapshot per this long (joins in a burst
    #: batch up instead of costing a snapshot each)
    snapshot_every: float = 1.5
    #: a joiner whose hello was not answered by a snapshot this long asks
    #: for one (``reqinfo`` with no ids); peers exporting nothing ask at once
    snapshot_wait: float = 3.0
    #: the same peer is asked about again only after this long
    rerequest: float = 3.0
    #: hello repeats: first gap, then doubling up to the max
    hello_first: float = 8.0
    hello_max: float = 16.0
    #: send something at least this often, so others know we're alive ...
    keepalive: float = 15.0
    #: ... but no more often, network-wide, than one keepalive per this many
    #: seconds per peer (so a big network isn't flooded by keepalives)
    keepalive_per_peer: float = 1.0
    #: how many peers (besides the owner) answer a request, acknowledge a
    #: hello or send a snapshot: the ones whose id hashes closest to the
    #: subject (suppression; snapshots share one subject so they batch)
    responders: int = 2
    #: a request about a peer introduced this recently is not answered again
    answer_cooldown: float = 1.0
    #: a peer unheard for this long is shown disconnected ...
    peer_ttl: float = 60.0
    #: ... and forgotten this long after that (or after its bye)
    gone_ttl: float = 60.0
    #: outbound token bucket: messages per second, burst size
    rate: float = 30.0
    burst: int = 30
    #: bounds of the tables
    max_peers: int = 4096
    max_pending: int = 1024
    max_schemas: int = 1024
    max_machines_per_peer: int = 1024
    #: machines per info message (bigger snapshots are split)
    infos_per_message: int = 256


def _rank(peer: str, subject: str) -> bytes:
    return blake2b(f"{peer}/{subject}".encode(), digest_size=8).digest()


class GossipListener(Protocol):
    """What the topic wants to hear about remote machines."""

    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        """False refuses (hides) a remote machine."""

    def discovered(self, remote: RemoteMachine) -> None: ...

    def updated(self, remote: RemoteMachine) -> None: ...

    def gone(self, remote: RemoteMachine) -> None: ...


class _Silent:
    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        return True

    def discovered(self, remote: RemoteMachine) -> None:
        pass

    def updated(self, remote: RemoteMachine) -> None:
        pass

    def gone(self, remote: RemoteMachine) -> None:
        pass


class _Export:
    __slots__ = ("hash", "index", "machine", "schema", "states")

    def __init__(self, index: int, machine: Machine) -> None:
        self.index = index
        self.machine = machine
        self.states = machine.state_names
        self.schema = machine.schema
        self.hash = schema_hash(self.schema, self.states)

    def info(self, with_schema: bool) -> Info:
        m = self.machine
        return Info(
            id=m.id,
            schema=self.schema if with_schema else None,
            states=list(self.states),
            time=m.time(),
            tags=m.tags,
            parent=m.parent_id or "",
            schema_hash=self.hash,
        )


class _PeerView:
    __slots__ = ("bye_at", "gone_at", "heard_at", "machines", "refused", "silent")

    def __init__(self, now: float) -> None:
        self.machines: dict[int, RemoteMachine] = {}
        self.heard_at = now
        #: when it said bye or fell silent (forgotten ``gone_ttl`` later)
        self.gone_at: float | None = None
        #: when it said bye (messages it sent before may still arrive)
        self.bye_at: float | None = None
        self.silent = False
        #: machines a plugin refused: index -> time sum (acknowledged, not shown)
        self.refused: dict[int, int] = {}

    @property
    def needs_schema(self) -> bool:
        return any(not m.has_schema for m in self.machines.values())


class _TokenBucket:
    """Messages per second with a burst; a send may overdraw it (debt).

    Overdrawing lets a builder's messages go out together (an info split in
    chunks, say) instead of being cut in the middle; the debt delays what
    comes next, so the average rate holds and nothing is dropped.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp: float | None = None

    def _level(self, at: float) -> float:
        if self.stamp is None or at <= self.stamp:
            return self.tokens
        return min(self.burst, self.tokens + (at - self.stamp) * self.rate)

    def available(self, now: float) -> bool:
        return self._level(now) >= 1

    def spend(self, now: float, count: int) -> None:
        self.tokens = self._level(now) - count
        if self.stamp is None or now > self.stamp:
            self.stamp = now

    def ready_at(self, at: float) -> float:
        """The earliest moment from ``at`` on when a send is allowed."""
        level = self._level(at)
        if level >= 1:
            return at
        return at + (1 - level) / self.rate


class GossipCore:
    """One peer's protocol state for one topic."""

    def __init__(
        self,
        peer_id: str,
        *,
        config: GossipConfig | None = None,
        listener: GossipListener | None = None,
        rng: random.Random | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.config = config or GossipConfig()
        self.listener: GossipListener = listener or _Silent()
        self.rng = rng or random.Random()
        self._wake = wake or (lambda: None)
        self._lock = threading.RLock()
        self.counters: Counter[str] = Counter()

        self._exports: dict[int, _Export] = {}
        self._next_index = 0
        self._dirty: set[int] = set()
        self._woken = False
        self._last_update_sent = float("-inf")
        self._byes: dict[int, ByeMach] = {}
        self._schemas_sent: set[str] = set()

        self._peers: dict[str, _PeerView] = {}
        #: un-exported machines: (peer, index) -> when; relays can't revive them
        self._tombstones: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._schemas: OrderedDict[str, dict[str, State]] = OrderedDict()
        self._pending: OrderedDict[tuple[str, int], list[int]] = OrderedDict()
        self._missing_peers: dict[str, float] = {}
        self._missing_updates: dict[str, dict[int, int]] = {}
        self._asked_info: dict[str, float] = {}
        self._asked_updates: dict[str, float] = {}
        self._last_reqinfo = float("-inf")
        self._last_requpdates = float("-inf")
        self._next_request_check = float("-inf")

        self._answer_info: dict[str, float] = {}
        self._answer_updates: dict[str, float] = {}
        self._acks: dict[str, float] = {}
        #: when our snapshot answer goes out, and when its batch began
        self._snapshot_due: float | None = None
        self._snapshot_since = float("-inf")
        self._snapshot_sent = float("-inf")
        #: peers seen sending snapshots; while one is alive, it answers alone
        self._senders: set[str] = set()
        self._is_sender = False
        self._last_snapshot_seen = float("-inf")
        #: when an info about each peer was last sent or seen (answers within
        #: ``answer_cooldown`` of it would repeat what everyone just heard)
        self._introduced_at: OrderedDict[str, float] = OrderedDict()
        #: when to ask for a snapshot ourselves (None: not needed)
        self._snapshot_ask_due: float | None = None
        #: our view is complete: we were alone, or a snapshot arrived, or we
        #: waited for one long enough (from ``_settle_at``); only a settled
        #: peer sends snapshots, and indirect requests wait until then
        self._settled = True
        self._settle_at = float("-inf")
        self._hello_due: float | None = None
        self._hello_gap = self.config.hello_first
        self._hello_sent = False
        self._last_hello = float("-inf")
        #: the next hello has news (a new export), it isn't a mere repeat
        self._news = False
        self._heard = False
        self._gossip_due: float | None = None
        self._gossip_planned = float("-inf")
        self._last_sent = float("-inf")
        self._bucket = _TokenBucket(self.config.rate, self.config.burst)
        self._joined = False

    # -- own machines ------------------------------------------------------

    def export(self, machine: Machine) -> int:
        """Announce a local machine; returns its stable index on the wire."""
        with self._lock:
            for export in self._exports.values():
                if export.machine is machine:
                    return export.index
            index = self._next_index
            self._next_index += 1
            self._exports[index] = _Export(index, machine)
            self._byes.pop(index, None)
            self._announce()
        self._wake()
        return index

    def unexport(self, machine: Machine) -> int | None:
        """Stop sharing a machine; a ``bye`` for it goes out."""
        with self._lock:
            for index, export in list(self._exports.items()):
                if export.machine is machine:
                    del self._exports[index]
                    self._dirty.discard(index)
                    self._byes[index] = ByeMach(
                        peer_bye=False, id=machine.id, time=machine.time()
                    )
                    break
            else:
                return None
        self._wake()
        return index

    def exports(self) -> list[Machine]:
        with self._lock:
            return [e.machine for e in self._exports.values()]

    def index_of(self, machine: Machine) -> int | None:
        with self._lock:
            for export in self._exports.values():
                if export.machine is machine:
                    return export.index
        return None

    def mark_dirty(self, index: int) -> None:
        """An own machine changed (from any thread)."""
        with self._lock:
            if index not in self._exports:
                return
            self._dirty.add(index)
            if self._woken:
                return
            self._woken = True
        self._wake()

    def bye_all(self) -> None:
        """The whole peer leaves: the next collect sends one ``bye``."""
        with self._lock:
            for index, export in self._exports.items():
                m = export.machine
                self._byes[index] = ByeMach(peer_bye=True, id=m.id, time=m.time())
            if not self._byes:
                self._byes[-1] = ByeMach(peer_bye=True, id="", time=[])
            self._dirty.clear()
        self._wake()

    def _announce(self) -> None:
        self._news = True
        self._heard = False
        self._hello_gap = self.config.hello_first
        if self._joined:
            self._hello_due = -1.0  # as soon as possible

    # -- lifecycle -----------------------------------------------------------

    def joined(self, now: float, *, alone: bool = False) -> None:
        """The topic joined: hello, and get a snapshot of everyone.

        ``alone``: no other peer is on the topic yet, so there is nobody to
        learn from; our view is complete as it is.
        """
        with self._lock:
            cfg = self.config
            self._joined = True
            self._hello_due = now if self._exports else None
            self._hello_gap = cfg.hello_first
            self._hello_sent = False
            self._heard = False
            self._settled = alone
            self._is_sender = alone  # the first peer serves the ones after it
            log.debug("%s: joined (alone: %s)", self.peer_id, alone)
            # the hello asks for a snapshot too; without one, ask explicitly
            wait = cfg.snapshot_wait if self._exports else 0.0
            self._snapshot_ask_due = None if alone else now + wait
            self._settle_at = now + wait + cfg.snapshot_wait
            self._plan_gossip(now, at_least=2 * self.config.snapshot_wait)
            self._last_sent = now  # the hello or the request says we're alive
        self._wake()

    def left(self) -> None:
        with self._lock:
            self._joined = False
            self._hello_due = None
            self._snapshot_ask_due = None
            self._answer_info.clear()
            self._answer_updates.clear()
            self._acks.clear()
            self._snapshot_due = None

    def peer_joined(self, peer: str, now: float) -> None:
        """A direct neighbour subscribed: greet it if it's new to us."""
        with self._lock:
            if peer == self.peer_id:
                return
            # nothing to do: its hello (if it exports anything) introduces
            # it, and our hello or the snapshot we get introduces us
            self.counters["peer_joined"] += 1

    def peer_left(self, peer: str, now: float) -> None:
        """A direct neighbour left; liveness is judged by ``peer_ttl``."""
        self.counters["peer_left"] += 1

    # -- inbound -------------------------------------------------------------

    def receive(self, sender: str, msg: Message, now: float) -> None:
        """Apply one decoded message authored by ``sender``."""
        if sender == self.peer_id:
            return
        with self._lock:
            self.counters[f"in_{msg.TYPE}"] += 1
            view = self._peers.get(sender)
            newcomer = view is None or view.silent
            if view is not None:
                view.heard_at = now
                if view.silent and not isinstance(msg, ByeMsg):
                    if view.bye_at is not None and now - view.bye_at < BYE_GRACE:
                        self.counters["drop_after_bye"] += 1  # sent before it
                        return
                    self._revive(view)
            elif not isinstance(msg, ByeMsg):
                introduced = isinstance(msg, InfoMsg) and sender in msg.peer_info
                if not introduced:
                    self._missing(sender, now)
            if isinstance(msg, InfoMsg):
                self._on_info(sender, msg, now, newcomer=newcomer)
            elif isinstance(msg, UpdatesMsg):
                self._on_updates(sender, msg.peer_clocks, now)
            elif isinstance(msg, GossipMsg):
                self._on_gossip(sender, msg.peer_gossips, now)
            elif isinstance(msg, ReqInfoMsg):
                self._on_reqinfo(sender, msg.peer_ids, now)
            elif isinstance(msg, ReqUpdatesMsg):
                self._on_requpdates(msg.peer_ids, now)
            elif isinstance(msg, ByeMsg):
                self._on_bye(sender, msg, now)
            self._bound_requests()
        self._wake()

    def _missing(self, peer: str, now: float) -> None:
        if peer == self.peer_id or peer in self._peers:
            return
        if len(self._missing_peers) >= self.config.max_peers:
            self.counters["drop_missing_full"] += 1
            return
        self._missing_peers.setdefault(peer, now)

    def _on_info(
        self, sender: str, msg: InfoMsg, now: float, *, newcomer: bool
    ) -> None:
        relayed = set(msg.peer_info) - {sender}
        if sender in msg.peer_info and (self.peer_id in relayed or len(relayed) > 1):
            self._snapshot_seen(sender, set(msg.peer_info), now)
        elif newcomer and msg.peer_info.get(sender):
            self._snapshot_wanted(now)  # a newcomer's hello asks for one
        for peer, infos in msg.peer_info.items():
            if peer == self.peer_id:
                self._heard = True
                continue
            # an introduction arrived: our own pending answer is redundant
            self._answer_info.pop(peer, None)
            self._introduced(peer, now)
            view = self._peers.get(peer)
            if view is None:
                if len(self._peers) >= self.config.max_peers:
                    self.counters["drop_peers_full"] += 1
                    continue
                view = self._peers[peer] = _PeerView(now)
                log.debug("%s: learned of %s from %s", self.peer_id, peer, sender)
                if peer != sender:
                    view.heard_at = now - self._peer_ttl() / 2
            self._missing_peers.pop(peer, None)
            for index, info in infos.items():
                self._on_machine_info(
                    peer, view, index, info, sender, now, newcomer=newcomer
                )
        if msg.peer_gossips:
            self._on_gossip(sender, msg.peer_gossips, now)

    def _on_machine_info(
        self,
        peer: str,
        view: _PeerView,
        index: int,
        info: Info,
        sender: str,
        now: float,
        *,
        newcomer: bool = False,
    ) -> None:
        if info.states is None:
            self.counters["drop_info_no_states"] += 1
            return
        if info.schema is not None:
            # keep it as we show it (relations to absent states dropped), so
            # relaying it can never produce a message others would reject
            key = info.schema_hash or schema_hash(info.schema, info.states)
            self._remember_schema(key, remote_schema(info.states, info.schema))
        if sender != peer and (peer, index) in self._tombstones:
            self.counters["drop_info_unexported"] += 1
            return
        owner = sender == peer
        existing = view.machines.get(index)
        if existing is not None:
            if existing.id != info.id or existing.state_names != info.states:
                if not owner:
                    # a relayed info must agree with what we know
                    self.counters["drop_info_contradicts"] += 1
                    return
                self._forget(peer, index)  # the owner redefined the machine
                existing = None
            else:
                if not existing.has_schema:
                    schema = self._schema_for(info)
                    if schema is not None:
                        existing._set_schema(schema, info.schema_hash)
                if existing._apply_time(info.time):
                    self.listener.updated(existing)
                return
        if index in view.refused:
            view.refused[index] = sum(info.time)
            return
        if len(view.machines) >= self.config.max_machines_per_peer:
            self.counters["drop_machines_full"] += 1
            return
        schema = self._schema_for(info)
        if schema is None:
            self._missing_peers.setdefault(peer, now)
        if not self.listener.accept_remote(peer, index, info):
            self.counters["refused_remote"] += 1
            view.refused[index] = sum(info.time)
            return
        try:
            remote = RemoteMachine(
                peer_id=peer,
                index=index,
                id=info.id,
                states=info.states,
                schema=schema,
                time=info.time,
                tags=info.tags,
                parent_id=info.parent,
                schema_hash=info.schema_hash,
            )
        except ValueError as err:
            self.counters["drop_info_invalid"] += 1
            log.debug("dropped an info of %s#%d: %s", peer, index, err)
            return
        if (
            owner
            and not newcomer
            and not self._acks.get(peer)
            and self._responder(peer)
        ):
            # tell the owner it was heard (one or two of us will: _on_gossip);
            # a newcomer hears it from the snapshot that includes it
            self._acks[peer] = now + self._answer_gap()
        pending = self._pending.pop((peer, index), None)
        if pending is not None:
            remote._apply_time(pending)
        view.machines[index] = remote
        self.listener.discovered(remote)

    def _schema_for(self, info: Info) -> dict[str, State] | None:
        if info.schema is not None and info.states is not None:
            return remote_schema(info.states, info.schema)
        if info.schema_hash is not None:
            return self._schemas.get(info.schema_hash)
        return None

    def _remember_schema(self, key: str, schema: dict[str, State]) -> None:
        self._schemas[key] = schema
        self._schemas.move_to_end(key)
        while len(self._schemas) > self.config.max_schemas:
            self._schemas.popitem(last=False)

    def _on_updates(
        self, sender: str, clocks: dict[str, dict[int, list[int]]], now: float
    ) -> None:
        for peer, machines in clocks.items():
            if peer == self.peer_id:
                self._check_own({i: sum(t) for i, t in machines.items()}, now)
                continue
            view = self._peers.get(peer)
            for index, time in machines.items():
                remote = view.machines.get(index) if view else None
                if (peer, index) in self._tombstones or (
                    view is not None and index in view.refused
                ):
                    continue
                if remote is None:
                    self._buffer(peer, index, time)
                    if view is None:
                        self._missing(peer, now)
                    else:
                        self._missing_peers.setdefault(peer, now)
                    continue
                if len(time) != len(remote.state_names):
                    self.counters["drop_vector_length"] += 1
                    continue
                if remote._apply_time(time):
                    self.listener.updated(remote)
                gap = self._missing_updates.get(peer)
                if gap is not None and gap.get(index, 0) <= remote.time_sum:
                    gap.pop(index, None)
                    if not gap:
                        del self._missing_updates[peer]
            due = self._answer_updates.get(peer)
            if (
                due is not None
                and view is not None
                and all(i in machines for i in view.machines)
            ):
                del self._answer_updates[peer]  # someone else answered

    def _check_own(self, reported: dict[int, int], now: float) -> None:
        """Others report sums of our machines: push ours where they're behind."""
        for index, theirs in reported.items():
            export = self._exports.get(index)
            if export is not None and theirs < sum(export.machine.time()):
                self._dirty.add(index)

    def _buffer(self, peer: str, index: int, time: list[int]) -> None:
        key = (peer, index)
        old = self._pending.get(key)
        if old is None or sum(time) > sum(old):
            self._pending[key] = time
            self._pending.move_to_end(key)
        while len(self._pending) > self.config.max_pending:
            self._pending.popitem(last=False)
            self.counters["drop_pending_full"] += 1

    def _on_gossip(self, sender: str, gossips: Peers, now: float) -> None:
        for peer, sums in gossips.items():
            if peer == self.peer_id:
                if set(self._exports) <= set(sums):
                    self._heard = True
                    self._hello_due = None
                self._check_own(sums, now)
                continue
            view = self._peers.get(peer)
            if view is None:
                self._missing(peer, now)
                continue
            owner = sender == peer
            if owner:
                # the owner lists all its machines: those missing were
                # un-exported (their bye may have been lost)
                for index in [i for i in view.machines if i not in sums]:
                    self._forget(peer, index, tombstone=now)
            known = {i: m.time_sum for i, m in view.machines.items()}
            known.update(view.refused)
            if (
                peer in self._acks
                and not owner
                and all(sums.get(i) == t for i, t in known.items())
            ):
                del self._acks[peer]  # someone already told the owner
            for index, gossiped in sums.items():
                remote = view.machines.get(index)
                if remote is None:
                    if index not in view.refused and (peer, index) not in (
                        self._tombstones
                    ):
                        self._missing_peers.setdefault(peer, now)
                    continue
                local = remote.time_sum
                if gossiped > local:
                    gaps = self._missing_updates.setdefault(peer, {})
                    gaps[index] = max(gaps.get(index, 0), gossiped)
                elif (
                    gossiped < local
                    and peer not in self._answer_updates
                    and self._responder(peer)
                ):
                    # the gossiper is behind: push what we know, unless beaten
                    self._answer_updates[peer] = now + self._answer_gap()

    def _on_reqinfo(self, sender: str, peer_ids: list[str], now: float) -> None:
        if not peer_ids:
            self._snapshot_wanted(now)
            return
        for peer in peer_ids:
            if peer in self._peers or peer in self._missing_peers:
                self._asked_info[peer] = now
            recent = self._introduced_at.get(peer)
            if recent is not None and now - recent < self.config.answer_cooldown:
                continue  # everyone just heard it; the asker will hear the next
            if peer == self.peer_id:
                self._answer_info[peer] = now  # even with nothing to export
            elif peer in self._peers and self._responder(peer):
                self._answer_info.setdefault(peer, now + self._answer_gap())

    def _snapshot_wanted(self, now: float) -> None:
        """A newcomer needs everything we know: the chosen few batch an answer."""
        if self._snapshot_due is not None:
            return  # joins the batch already waiting
        position = self._snapshot_position(now)
        if position is None:
            return
        self._snapshot_since = now
        cfg = self.config
        due = now + cfg.snapshot_window * (1 + 2 * position) + self._answer_gap()
        self._snapshot_due = max(due, self._snapshot_sent + cfg.snapshot_every)

    def _snapshot_seen(self, sender: str, covered: set[str], now: float) -> None:
        """A snapshot arrived (its sender relays others, or us): ours to use or skip.

        Only settled peers send snapshots, so it completes our view. If it
        lacks us, its sender never got our hello: say hello again now. If we
        had one planned, another responder answered the batch first. Of two
        senders, one that learns peers from the other's snapshot steps down
        (its view was partial), and of two that know the same, the one
        ranked lower.
        """
        log.debug(
            "%s: snapshot from %s of %d peers (settled: %s, us in it: %s)",
            self.peer_id,
            sender,
            len(covered),
            self._settled,
            self.peer_id in covered,
        )
        self._snapshot_ask_due = None
        self._settled = True
        self._last_snapshot_seen = now
        self._senders.add(sender)
        if self.peer_id not in covered and self._exports and not self._heard:
            # at most one repeat per first gap, however many snapshots lack us
            soon = self._last_hello + self.config.hello_first
            if self._hello_due is not None:
                soon = min(soon, self._hello_due)
            self._hello_due = max(now, soon)
        if self._is_sender:
            news = any(p not in self._peers for p in covered - {self.peer_id})
            knows_all = covered >= self._peers.keys()
            if news or (knows_all and _rank(sender, "") < _rank(self.peer_id, "")):
                log.debug("%s: %s sends the snapshots now", self.peer_id, sender)
                self._is_sender = False
        if self._snapshot_due is not None and now > self._snapshot_since:
            self._snapshot_due = None

    def _snapshot_position(self, now: float) -> int | None:
        """Our place among the snapshot responders, or None if we aren't one.

        One peer sends the snapshots, so joins close together share one: the
        peer that joined alone, or later whoever answered when no sender
        was left (the ``responders`` ranked first by id hash, in turn). Only
        settled peers answer; if none does, the newcomer asks again.
        """
        if not self._is_settled(now):
            return None
        if self._is_sender:
            return 0
        if any(p in self._peers and not self._peers[p].silent for p in self._senders):
            return None
        closer = self._ranked_before("")  # no peer's id is "": all take part
        return closer if closer < self.config.responders else None

    def _is_settled(self, now: float) -> bool:
        if not self._settled and now >= self._settle_at:
            # nobody answered: what we know is all there is
            log.debug("%s: no snapshot came; settled by waiting", self.peer_id)
            self._settled = True
        return self._settled

    def _on_requpdates(self, peer_ids: list[str], now: float) -> None:
        for peer in peer_ids:
            if peer in self._peers:
                self._asked_updates[peer] = now
            if peer == self.peer_id:
                self._dirty.update(self._exports)
            elif (
                peer in self._peers
                and self._peers[peer].machines
                and self._responder(peer)
            ):
                self._answer_updates.setdefault(peer, now + self._answer_gap())

    def _on_bye(self, sender: str, msg: ByeMsg, now: float) -> None:
        view = self._peers.get(sender)
        if view is None:
            return
        whole = any(b.peer_bye for b in msg.machs.values())
        for index, bye in msg.machs.items():
            remote = view.machines.get(index)
            if remote is None:
                continue
            if bye.time:
                remote._apply_time(bye.time)
            if not whole:
                self._forget(sender, index, tombstone=now)
        if whole:
            view.bye_at = now
            self._silence(view, now)

    def _silence(self, view: _PeerView, now: float) -> None:
        if view.gone_at is None:
            view.gone_at = now
        if view.silent:
            return
        view.silent = True
        for remote in view.machines.values():
            remote._set_connected(False)
            self.listener.gone(remote)

    def _revive(self, view: _PeerView) -> None:
        view.silent = False
        view.gone_at = None
        view.bye_at = None
        for remote in view.machines.values():
            remote._set_connected(True)
            self.listener.updated(remote)

    def _forget(self, peer: str, index: int, *, tombstone: float | None = None) -> None:
        view = self._peers.get(peer)
        if view is None:
            return
        if tombstone is not None:
            self._tombstones[(peer, index)] = tombstone
            while len(self._tombstones) > self.config.max_pending:
                self._tombstones.popitem(last=False)
        remote = view.machines.pop(index, None)
        if remote is not None:
            if remote.is_connected:
                remote._set_connected(False)
                self.listener.gone(remote)
            remote.dispose()

    def _bound_requests(self) -> None:
        """Ids named in others' requests are bookkeeping: keep it bounded."""
        limit = self.config.max_peers
        for table in (self._asked_info, self._asked_updates):
            while len(table) > limit:
                del table[next(iter(table))]

    # -- time ----------------------------------------------------------------

    def heartbeat(self, now: float) -> None:
        """Periodic work: expiry, requests, gossip scheduling, pruning."""
        cfg = self.config
        with self._lock:
            for peer, view in list(self._peers.items()):
                if not view.silent and now - view.heard_at > self._peer_ttl():
                    self.counters["peer_silent"] += 1
                    self._silence(view, now)
                if view.gone_at is not None and now - view.gone_at > cfg.gone_ttl:
                    for index in list(view.machines):
                        self._forget(peer, index)
                    del self._peers[peer]
            self._senders &= self._peers.keys()
            while self._tombstones:
                oldest, at = next(iter(self._tombstones.items()))
                if now - at <= cfg.gone_ttl:
                    break
                del self._tombstones[oldest]
            horizon = now - 4 * cfg.rerequest
            for table in (self._asked_info, self._asked_updates, self._missing_peers):
                for key in [k for k, t in table.items() if t < horizon]:
                    if table is self._missing_peers:
                        continue  # still missing: keep asking
                    del table[key]
            if self._joined and self._gossip_due is None:
                self._plan_gossip(now)
        self._wake()

    def _plan_gossip(self, now: float, *, at_least: float = 0.0) -> None:
        self._gossip_planned = now
        self._gossip_due = now + max(at_least, self._gossip_gap())

    def _gossip_gap(self) -> float:
        """Random gap so that all peers together gossip at the configured rate."""
        mean = self._gossip_mean()
        return self.rng.uniform(0.5 * mean, 1.5 * mean)

    def _gossip_mean(self) -> float:
        cfg = self.config
        peers = max(1, len(self._peers))
        mean = cfg.gossip_interval * peers / max(cfg.gossip_per_interval, 1e-9)
        return min(mean, self._keepalive())

    def _introduced(self, peer: str, now: float) -> None:
        self._introduced_at[peer] = now
        self._introduced_at.move_to_end(peer)
        while len(self._introduced_at) > self.config.max_peers:
            self._introduced_at.popitem(last=False)

    def _responder(self, subject: str) -> bool:
        """Is this peer one of the few chosen to answer about ``subject``?

        Every peer ranks the peers it knows by a hash of (peer, subject) and
        only the first ``responders`` answer; all rank alike (their views of
        who is known differ a little), so answers don't multiply with the
        network's size even when processing lags behind the random delays.
        """
        return self._ranked_before(subject) < self.config.responders

    def _ranked_before(self, subject: str) -> int:
        """How many live peers we know (``subject`` aside) rank before us."""
        mine = _rank(self.peer_id, subject)
        return sum(
            1
            for p, view in self._peers.items()
            if p != subject and not view.silent and _rank(p, subject) < mine
        )

    def _keepalive(self) -> float:
        cfg = self.config
        return max(cfg.keepalive, len(self._peers) * cfg.keepalive_per_peer)

    def _peer_ttl(self) -> float:
        """``peer_ttl``, stretched as much as the keepalive was."""
        cfg = self.config
        return cfg.peer_ttl * max(1.0, self._keepalive() / max(cfg.keepalive, 1e-9))

    def _answer_gap(self) -> float:
        low, high = self.config.answer_delay
        return self.rng.uniform(low, high)

    def next_due(self, now: float) -> float | None:
        """When ``collect`` has something to send (None: nothing planned)."""
        with self._lock:
            self._woken = False
            dues: list[float] = []
            if self._byes:
                dues.append(now)
            if self._dirty:
                dues.append(self._last_update_sent + self.config.update_interval)
            if self._joined:
                dues.extend(self._answer_info.values())
                dues.extend(self._answer_updates.values())
                dues.extend(self._acks.values())
                hello = self._hello_due if self._exports else None
                if hello is not None and self._repeat_waits():
                    # the snapshot we wait for shows whether we were heard
                    hello = max(hello, self._settle_at)
                for due in (self._snapshot_due, hello, self._gossip_due):
                    if due is not None:
                        dues.append(due)
                if self._snapshot_ask_due is not None:
                    dues.append(self._snapshot_ask_due)
                if self._wants_requests():
                    dues.append(self._next_request_check)
                dues.append(self._last_sent + self._keepalive())
            if not dues:
                return None
            return self._bucket.ready_at(max(now, min(dues))) if dues else None

    def _repeat_waits(self) -> bool:
        """A repeated hello waits while our snapshot is on the way."""
        return self._hello_sent and not self._news and not self._settled

    def _wants_requests(self) -> bool:
        return bool(self._missing_peers or self._missing_updates or self._pending)

    # -- outbound ------------------------------------------------------------

    def collect(self, now: float) -> list[Message]:
        """Messages to publish now, most important first, within the rate limit."""
        out: list[Message] = []
        with self._lock:
            builders: list[Callable[[float], list[Message]]] = [
                self._collect_byes,
                self._collect_updates,
                self._collect_answers,
                self._collect_acks,
                self._collect_hello,
                self._collect_requests,
                self._collect_gossip,
            ]
            for build in builders:
                if not self._bucket.available(now):
                    self.counters["rate_limited"] += 1
                    break
                messages = build(now)
                if messages:
                    self._bucket.spend(now, len(messages))
                    for msg in messages:
                        self.counters[f"out_{msg.TYPE}"] += 1
                    out.extend(messages)
            if out:
                self._last_sent = now
        return out

    def _put_back(self, msg: Message) -> None:
        """A message the rate limiter held back: keep its intent pending."""
        if isinstance(msg, UpdatesMsg) and self.peer_id in msg.peer_clocks:
            self._dirty.update(msg.peer_clocks[self.peer_id])
        elif isinstance(msg, ByeMsg):
            self._byes.update(msg.machs)
        elif isinstance(msg, ReqInfoMsg) and not msg.peer_ids:
            self._snapshot_ask_due = float("-inf")

    def publish_failed(self, msg: Message) -> None:
        """The transport refused a collected message: keep its intent pending."""
        with self._lock:
            self.counters["publish_failed"] += 1
            self._put_back(msg)

    def _collect_byes(self, now: float) -> list[Message]:
        if not self._byes:
            return []
        byes, self._byes = self._byes, {}
        return [ByeMsg(machs={max(i, 0): b for i, b in byes.items()})]

    def _collect_updates(self, now: float) -> list[Message]:
        if not self._dirty:
            return []
        if now < self._last_update_sent + self.config.update_interval:
            return []
        clocks = {
            i: self._exports[i].machine.time()
            for i in sorted(self._dirty)
            if i in self._exports
        }
        self._dirty.clear()
        self._last_update_sent = now
        if not clocks:
            return []
        return [UpdatesMsg(peer_clocks={self.peer_id: clocks})]

    def _collect_answers(self, now: float) -> list[Message]:
        out: list[Message] = []
        due_info = [p for p, t in self._answer_info.items() if t <= now]
        for peer in due_info:
            del self._answer_info[peer]
        snapshot = self._snapshot_due is not None and self._snapshot_due <= now
        if snapshot:
            self._snapshot_due = None
            self._snapshot_sent = now
            self._is_sender = True
            # departed peers stay out: relayed, they'd look alive to newcomers
            alive = [p for p, v in self._peers.items() if not v.silent]
            due_info = [self.peer_id, *alive]
            log.debug("%s: snapshot of %d peers", self.peer_id, len(due_info))
        if due_info:
            out.extend(self._info_messages(due_info, with_schema=True))
            for peer in due_info:
                self._introduced(peer, now)
            if self.peer_id in due_info and self._hello_due is not None:
                self._hello_due = now + self._hello_gap  # that was a hello, too
        due_updates = [p for p, t in self._answer_updates.items() if t <= now]
        if due_updates:
            clocks: dict[str, dict[int, list[int]]] = {}
            for peer in due_updates:
                del self._answer_updates[peer]
                view = self._peers.get(peer)
                if view is not None and view.machines:
                    clocks[peer] = {i: m.time() for i, m in view.machines.items()}
            if clocks:
                out.append(UpdatesMsg(peer_clocks=clocks))
        return out

    def _collect_acks(self, now: float) -> list[Message]:
        due = [p for p, t in self._acks.items() if t <= now]
        if not due:
            return []
        sums: Peers = {}
        for peer in due:
            del self._acks[peer]
            view = self._peers.get(peer)
            if view is not None and (view.machines or view.refused):
                sums[peer] = self._sums_of(view)
        return [GossipMsg(peer_gossips=sums)] if sums else []

    def _collect_hello(self, now: float) -> list[Message]:
        if self._hello_due is None or self._hello_due > now or not self._exports:
            return []
        if self._repeat_waits() and not self._is_settled(now):
            return []  # the snapshot we wait for shows whether we were heard
        self._news = False
        if self._heard and self._hello_sent:
            self._hello_due = None
            return []
        log.debug("%s: hello (repeat: %s)", self.peer_id, self._hello_sent)
        self._hello_sent = True
        self._last_hello = now
        self._hello_due = now + self._hello_gap
        self._hello_gap = min(self._hello_gap * 2, self.config.hello_max)
        # no gossip sample: peers we name but others don't know yet would
        # only make them ask about peers whose hellos are on the way
        return self._info_messages([self.peer_id], with_schema=False, gossip=False)

    def _collect_requests(self, now: float) -> list[Message]:
        out: list[Message] = []
        cfg = self.config
        if self._snapshot_ask_due is not None and self._snapshot_ask_due <= now:
            self._snapshot_ask_due = None
            self._settle_at = min(self._settle_at, now + cfg.snapshot_wait)
            self._last_reqinfo = now
            log.debug("%s: no snapshot yet; asking for one", self.peer_id)
            out.append(ReqInfoMsg(peer_ids=[]))
        if now < self._next_request_check:
            return out
        self._next_request_check = now + cfg.request_interval
        if now >= self._last_reqinfo + cfg.request_interval:
            wanted = {p for p, v in self._peers.items() if v.needs_schema}
            quiet = now - self._last_snapshot_seen >= cfg.request_grace
            if self._is_settled(now) and quiet:
                # still missing after the grace, and no snapshots coming in
                # that might bring it: nothing is on the way
                horizon = now - cfg.request_grace
                missing = self._missing_peers
                wanted.update(p for p, t in missing.items() if t <= horizon)
                # updates for unknown machines of peers we know otherwise
                wanted.update(p for p, _ in self._pending if p not in missing)
            ids = self._pick(wanted, self._asked_info, now)
            if ids:
                log.debug("%s: asking about %s", self.peer_id, ids)
                self._last_reqinfo = now
                out.append(ReqInfoMsg(peer_ids=ids))
        if now >= self._last_requpdates + cfg.request_interval:
            ids = self._pick(set(self._missing_updates), self._asked_updates, now)
            if ids:
                self._last_requpdates = now
                out.append(ReqUpdatesMsg(peer_ids=ids))
        return out

    def _pick(self, wanted: set[str], asked: dict[str, float], now: float) -> list[str]:
        fresh = [
            p
            for p in wanted
            if p != self.peer_id
            and now - asked.get(p, float("-inf")) >= self.config.rerequest
        ]
        self.rng.shuffle(fresh)
        chosen = sorted(fresh[:16])
        for peer in chosen:
            asked[peer] = now
        return chosen

    def _collect_gossip(self, now: float) -> list[Message]:
        keepalive = now >= self._last_sent + self._keepalive() and self._joined
        due = self._gossip_due is not None and self._gossip_due <= now
        if not (due or keepalive):
            return []
        if not keepalive and now - self._gossip_planned < 0.5 * self._gossip_mean():
            # planned when we knew fewer peers: the network gossips enough
            self._gossip_due = self._gossip_planned + self._gossip_gap()
            return []
        self._plan_gossip(now)
        sums = self._gossip_sample()
        if not sums:
            self._last_sent = now  # nothing to say; don't ask again at once
            return []
        return [GossipMsg(peer_gossips=sums)]

    def _gossip_sample(self) -> Peers:
        sums: Peers = {}
        if self._exports:
            sums[self.peer_id] = {
                i: sum(e.machine.time()) for i, e in self._exports.items()
            }
        known = [p for p, v in self._peers.items() if v.machines and not v.silent]
        sample = self.rng.sample(known, min(len(known), self.config.gossip_sample - 1))
        for peer in sample:
            sums[peer] = self._sums_of(self._peers[peer])
        return sums

    def _sums_of(self, view: _PeerView) -> dict[int, int]:
        sums = dict(view.refused)
        sums.update((i, m.time_sum) for i, m in view.machines.items())
        return sums

    def _info_messages(
        self, peers: Iterable[str], *, with_schema: bool, gossip: bool = True
    ) -> list[Message]:
        """Infos of these peers (own: live), split to keep messages small."""
        entries: list[tuple[str, int, Info]] = []
        empty: list[str] = []  # known peers exporting nothing: introduce them too
        for peer in peers:
            if peer == self.peer_id and not self._exports:
                empty.append(peer)
                continue
            if peer == self.peer_id:
                for index, export in self._exports.items():
                    # a schema travels once; afterwards its hash refers to it
                    full = with_schema or export.hash not in self._schemas_sent
                    self._schemas_sent.add(export.hash)
                    entries.append((peer, index, export.info(full)))
                continue
            view = self._peers.get(peer)
            if view is None:
                continue
            if not view.machines and not view.silent:
                empty.append(peer)
            for index, remote in view.machines.items():
                entries.append((peer, index, self._relay_info(remote)))
        out: list[Message] = []
        size = self.config.infos_per_message
        for start in range(0, max(len(entries), 1 if empty else 0), size):
            chunk: dict[str, dict[int, Info]] = {}
            if start == 0:
                chunk.update({peer: {} for peer in empty})
            carried: set[str] = set()  # each schema once per message
            for peer, index, info in entries[start : start + size]:
                key = info.schema_hash
                if info.schema is not None and key is not None:
                    if key in carried:
                        info = replace(info, schema=None)
                    carried.add(key)
                chunk.setdefault(peer, {})[index] = info
            gossips = self._gossip_sample() if start == 0 and gossip else {}
            out.append(InfoMsg(peer_info=chunk, peer_gossips=gossips))
        return out

    def _relay_info(self, remote: RemoteMachine) -> Info:
        names = remote.state_names
        schema = remote.schema if remote.has_schema else None
        return Info(
            id=remote.id,
            schema=schema,
            states=names,
            time=remote.time(),
            tags=remote.tags,
            parent=remote.parent_id or "",
            # the hash of what we relay (relations to absent states dropped)
            schema_hash=schema_hash(schema, names) if schema else remote.schema_hash,
        )

    def intents(self) -> set[str]:
        """Topic states naming the kinds of messages waiting to be sent."""
        with self._lock:
            pending: set[str] = set()
            if self._dirty or self._answer_updates:
                pending.add("SendUpdates")
            if self._answer_info or self._snapshot_due is not None:
                pending.add("SendInfo")
            if self._hello_due is not None and self._exports:
                pending.add("DoSendInfo")
            if self._missing_peers or self._pending:
                pending.add("ReqMissingPeers")
            if self._missing_updates:
                pending.add("ReqMissingUpdates")
            return pending

    # -- views -----------------------------------------------------------------

    def remotes(self) -> list[RemoteMachine]:
        with self._lock:
            return [
                m
                for view in self._peers.values()
                for _, m in sorted(view.machines.items())
            ]

    def peers(self) -> list[str]:
        with self._lock:
            return list(self._peers)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "peers": len(self._peers),
                "remote_machines": sum(len(v.machines) for v in self._peers.values()),
                "missing_peers": len(self._missing_peers),
                "missing_updates": sum(len(v) for v in self._missing_updates.values()),
                "pending_updates": len(self._pending),
                "schemas": len(self._schemas),
                "exports": len(self._exports),
                "dirty": len(self._dirty),
            }

    def dispose(self) -> None:
        """Forget own exports (silently) and every remote machine."""
        with self._lock:
            self._exports.clear()
            self._dirty.clear()
            for peer in list(self._peers):
                view = self._peers[peer]
                for index in list(view.machines):
                    self._forget(peer, index)
            self._peers.clear()
