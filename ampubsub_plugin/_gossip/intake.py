"""Intake: what others say, applied to the rooms; returns what changed.

Rules of this room:

1. Clocks only grow, so any message may carry any peer's clock: a vector is
   taken when its sum is greater than the one known, whoever relays it. An
   info must agree with what we know of a machine unless its owner sends it
   (then the owner redefined the machine).
2. A message from a peer shown disconnected revives it, except within
   ``BYE_GRACE`` of its bye (it was sent before the bye).
3. An owner's gossip lists all its machines: those missing were un-exported
   (their bye may have been lost) and are forgotten with a tombstone.
4. Nothing here calls out: changes come back as events, in order.
"""

from __future__ import annotations

import logging

from ..protocol import (
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
from ..remote import remote_schema
from .answers import Answers
from .config import BYE_GRACE, Shared
from .discovery import Discovery
from .events import Advanced, Discovered, Event, SchemaKnown
from .exports import ExportTable
from .pacing import Pacing
from .repair import Repair
from .roster import MachineRecord, PeerRecord, Roster

log = logging.getLogger("ampubsub.gossip")

Sums = dict[str, dict[int, int]]


class Intake:
    """Applies one decoded message from an authenticated sender."""

    def __init__(
        self,
        shared: Shared,
        roster: Roster,
        exports: ExportTable,
        discovery: Discovery,
        answers: Answers,
        repair: Repair,
        pacing: Pacing,
    ) -> None:
        self._shared = shared
        self._roster = roster
        self._exports = exports
        self._discovery = discovery
        self._answers = answers
        self._repair = repair
        self._pacing = pacing

    def receive(self, sender: str, msg: Message, now: float) -> list[Event]:
        if sender == self._shared.peer_id:
            return []
        events: list[Event] = []
        self._shared.counters[f"in_{msg.TYPE}"] += 1
        view = self._roster.get(sender)
        newcomer = view is None or view.silent
        if view is not None:
            view.heard_at = now
            if view.silent and not isinstance(msg, ByeMsg):
                if view.bye_at is not None and now - view.bye_at < BYE_GRACE:
                    self._shared.counters["drop_after_bye"] += 1  # sent before it
                    return events
                events.extend(self._roster.revive(view))
        elif not isinstance(msg, ByeMsg):
            introduced = isinstance(msg, InfoMsg) and sender in msg.peer_info
            if not introduced:
                self._repair.missing(sender, now)
        if isinstance(msg, InfoMsg):
            self._on_info(sender, msg, now, newcomer, events)
        elif isinstance(msg, UpdatesMsg):
            self._on_updates(msg.peer_clocks, now, events)
        elif isinstance(msg, GossipMsg):
            self._on_gossip(sender, msg.peer_gossips, now, events)
        elif isinstance(msg, ReqInfoMsg):
            self._on_reqinfo(msg.peer_ids, now)
        elif isinstance(msg, ReqUpdatesMsg):
            self._on_requpdates(msg.peer_ids, now)
        elif isinstance(msg, ByeMsg):
            self._on_bye(sender, msg, now, events)
        self._repair.bound()
        return events

    def _on_info(
        self, sender: str, msg: InfoMsg, now: float, newcomer: bool, events: list[Event]
    ) -> None:
        me = self._shared.peer_id
        relayed = set(msg.peer_info) - {sender}
        if sender in msg.peer_info and (me in relayed or len(relayed) > 1):
            self._discovery.snapshot_seen(
                sender, set(msg.peer_info), now, exporting=len(self._exports) > 0
            )
        elif newcomer and msg.peer_info.get(sender):
            self._discovery.snapshot_wanted(now)  # a newcomer's hello asks for one
        for peer, infos in msg.peer_info.items():
            if peer == me:
                self._discovery.heard = True
                continue
            # an introduction arrived: our own pending answer is redundant
            self._answers.info.pop(peer, None)
            self._answers.introduced(peer, now)
            view = self._roster.get(peer)
            if view is None:
                view = self._roster.add(peer, now)
                if view is None:
                    continue
                log.debug("%s: learned of %s from %s", me, peer, sender)
                if peer != sender:
                    view.heard_at = now - self._pacing.peer_ttl(len(self._roster)) / 2
            self._repair.found(peer)
            for index, info in infos.items():
                owner = sender == peer
                events.extend(
                    self._on_machine_info(view, index, info, owner, newcomer, now)
                )
        if msg.peer_gossips:
            self._on_gossip(sender, msg.peer_gossips, now, events)

    def _on_machine_info(
        self,
        view: PeerRecord,
        index: int,
        info: Info,
        owner: bool,
        newcomer: bool,
        now: float,
    ) -> list[Event]:
        counters, peer = self._shared.counters, view.peer
        if info.states is None:
            counters["drop_info_no_states"] += 1
            return []
        if info.schema is not None:
            # keep it as we show it (relations to absent states dropped), so
            # relaying it can never produce a message others would reject
            key = info.schema_hash or schema_hash(info.schema, info.states)
            self._roster.remember_schema(key, remote_schema(info.states, info.schema))
        if not owner and (peer, index) in self._roster.tombstones:
            counters["drop_info_unexported"] += 1
            return []
        events: list[Event] = []
        existing = view.machines.get(index)
        if existing is not None:
            if existing.id != info.id or existing.states != info.states:
                if not owner:
                    # a relayed info must agree with what we know
                    counters["drop_info_contradicts"] += 1
                    return []
                events.extend(self._roster.forget(peer, index))  # redefined
            else:
                return self._refresh(view, index, existing, info)
        if index in view.refused:
            view.refused[index] = sum(info.time)
            return events
        if len(view.machines) >= self._shared.config.max_machines_per_peer:
            counters["drop_machines_full"] += 1
            return events
        schema = self._roster.schema_for(info)
        if schema is None:
            self._repair.incomplete(peer, now)
        try:
            record = MachineRecord(info, schema, info.time)
        except ValueError as err:
            counters["drop_info_invalid"] += 1
            log.debug("dropped an info of %s#%d: %s", peer, index, err)
            return events
        if owner and not newcomer:
            # tell the owner it was heard (one or two of us will);
            # a newcomer hears it from the snapshot that includes it
            self._answers.owner_spoke(peer, now)
        pending = self._repair.take_pending(peer, index)
        if pending is not None:
            record.advance(pending)
        view.machines[index] = record
        events.append(Discovered(peer, index, info, record.time, schema))
        return events

    def _refresh(
        self, view: PeerRecord, index: int, record: MachineRecord, info: Info
    ) -> list[Event]:
        """An info about a machine we know: a schema we lacked, a newer clock."""
        events: list[Event] = []
        if record.schema is None:
            schema = self._roster.schema_for(info)
            if schema is not None:
                record.schema = schema
                record.schema_hash = info.schema_hash or record.schema_hash
                known = SchemaKnown(view.peer, index, schema, record.schema_hash)
                events.append(known)
        if record.advance(info.time):
            events.append(Advanced(view.peer, index, record.time))
        return events

    def _on_updates(
        self, clocks: dict[str, dict[int, list[int]]], now: float, events: list[Event]
    ) -> None:
        for peer, machines in clocks.items():
            if peer == self._shared.peer_id:
                reported = {i: sum(t) for i, t in machines.items()}
                self._exports.push_where_behind(reported)
                continue
            view = self._roster.get(peer)
            for index, time in machines.items():
                if (peer, index) in self._roster.tombstones or (
                    view is not None and index in view.refused
                ):
                    continue
                record = view.machines.get(index) if view else None
                if record is None:
                    self._repair.buffer(peer, index, time)
                    if view is None:
                        self._repair.missing(peer, now)
                    else:
                        self._repair.incomplete(peer, now)
                    continue
                if len(time) != len(record.states):
                    self._shared.counters["drop_vector_length"] += 1
                    continue
                if record.advance(time):
                    events.append(Advanced(peer, index, record.time))
                self._repair.caught_up(peer, index, record.time_sum)
            self._answers.clocks_heard(peer, set(machines))

    def _on_gossip(
        self, sender: str, gossips: Sums, now: float, events: list[Event]
    ) -> None:
        for peer, sums in gossips.items():
            if peer == self._shared.peer_id:
                if self._exports.indexes() <= set(sums):
                    self._discovery.heard_by_gossip()
                self._exports.push_where_behind(sums)
                continue
            view = self._roster.get(peer)
            if view is None:
                self._repair.missing(peer, now)
                continue
            owner = sender == peer
            if owner:
                # the owner lists all its machines: those missing were
                # un-exported (their bye may have been lost)
                for index in [i for i in view.machines if i not in sums]:
                    events.extend(self._roster.forget(peer, index, tombstone=now))
            behind = False
            for index, gossiped in sums.items():
                record = view.machines.get(index)
                if record is None:
                    if index not in view.refused and (
                        (peer, index) not in self._roster.tombstones
                    ):
                        self._repair.incomplete(peer, now)
                    continue
                if gossiped > record.time_sum:
                    self._repair.behind(peer, index, gossiped)
                elif gossiped < record.time_sum:
                    behind = True
            self._answers.gossiped(peer, sums, owner=owner, behind=behind, now=now)

    def _on_reqinfo(self, peer_ids: list[str], now: float) -> None:
        if not peer_ids:
            self._discovery.snapshot_wanted(now)
            return
        self._repair.others_asked_info(peer_ids, now)
        self._answers.asked_info(peer_ids, now)

    def _on_requpdates(self, peer_ids: list[str], now: float) -> None:
        for peer in peer_ids:
            self._repair.others_asked_updates(peer, now)
            if peer == self._shared.peer_id:
                self._exports.touch(self._exports.indexes())
            else:
                self._answers.asked_updates(peer, now)

    def _on_bye(
        self, sender: str, msg: ByeMsg, now: float, events: list[Event]
    ) -> None:
        view = self._roster.get(sender)
        if view is None:
            return
        whole = any(b.peer_bye for b in msg.machs.values())
        for index, bye in msg.machs.items():
            record = view.machines.get(index)
            if record is None:
                continue
            if bye.time and record.advance(bye.time):
                events.append(Advanced(sender, index, record.time))
            if not whole:
                events.extend(self._roster.forget(sender, index, tombstone=now))
        if whole:
            view.bye_at = now
            events.extend(self._roster.silence(view, now))
