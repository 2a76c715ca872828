"""Intake: what others say, applied to the rooms; returns what changed.

Rules of this room:

1. **Only the owner moves its clock.** A clock (or an introduction) of peer
   P's machine is taken when P itself authored the message (gossipsub signs
   and checks the author), or when it carries P's signature over exactly
   (P, index, incarnation, vector, the machine's identity), which relays
   forward unchanged. Anything else is dropped and counted
   (``drop_unsigned_relay``); a peer named only by others is asked about
   instead, so it introduces itself.
2. **Incarnations.** Every start of a peer has a greater incarnation. What
   the owner says under a greater one replaces all we knew of it (its
   indexes start over), even with lower clocks; anything under a smaller one
   is stale (``drop_old_incarnation``).
3. Within an incarnation clocks only grow: a vector is taken when its sum
   is greater than the one known. A relayed info must agree with what we
   know of a machine (only its owner redefines one).
4. A message from a peer shown disconnected revives it, except within
   ``BYE_GRACE`` of its bye (it was sent before the bye) unless it comes
   from a new incarnation.
5. An owner's gossip lists all its machines: those missing were un-exported
   (their bye may have been lost) and are forgotten with a tombstone.
6. Nothing here calls out: changes come back as events, in order.
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
from .config import BYE_GRACE, Sums
from .events import Advanced, Discovered, Event, SchemaKnown
from .rooms import Flow
from .roster import MachineRecord, PeerRecord

log = logging.getLogger("ampubsub.gossip")


class Intake(Flow):
    """Applies one decoded message from an authenticated sender."""

    def receive(
        self, sender: str, msg: Message, now: float, events: list[Event]
    ) -> None:
        """Apply ``msg``; what changed is appended to ``events`` as it happens
        (so a failure half-way still reports what was already changed)."""
        if sender == self._shared.peer_id:
            return
        self._shared.counters[f"in_{msg.TYPE}"] += 1
        view = self._roster.get(sender)
        newcomer = view is None or view.silent
        if view is not None:
            view.heard_at = now
            self._liveness.heard(sender)
            incarnation = _incarnation_of(sender, msg)
            restarted = incarnation is not None and incarnation > view.incarnation
            if view.silent and not isinstance(msg, ByeMsg):
                grace = view.bye_at is not None and now - view.bye_at < BYE_GRACE
                if grace and not restarted:
                    self._shared.counters["drop_after_bye"] += 1  # sent before it
                    return
                events.extend(self._roster.revive(view))
        elif not isinstance(msg, ByeMsg):
            introduced = isinstance(msg, InfoMsg) and sender in msg.peer_info
            if not introduced:
                self._repair.missing(sender, now, sender)
        if isinstance(msg, InfoMsg):
            self._on_info(sender, msg, now, newcomer, events)
        elif isinstance(msg, UpdatesMsg):
            self._on_updates(sender, msg, now, events)
        elif isinstance(msg, GossipMsg):
            self._on_gossip(sender, msg.peer_gossips, now, events, msg.incarnation)
        elif isinstance(msg, ReqInfoMsg):
            self._on_reqinfo(msg.peer_ids, now)
        elif isinstance(msg, ReqUpdatesMsg):
            if msg.probe:
                self._liveness.probed(msg.peer_ids, now)
            self._on_requpdates(msg.peer_ids, now)
        elif isinstance(msg, ByeMsg):
            self._on_bye(sender, msg, now, events)
        self._repair.bound()

    def _on_info(
        self, sender: str, msg: InfoMsg, now: float, newcomer: bool, events: list[Event]
    ) -> None:
        me = self._shared.peer_id
        # what counts is what its owners signed: a relay can't make a
        # snapshot (or silence our hello) out of peers nobody proved
        proven: dict[str, dict[int, Info]] = {}
        for peer, infos in msg.peer_info.items():
            if peer == sender:
                proven[peer] = infos
            elif peer != me and self._shared.accepts_peer(peer):
                got = self._proven_infos(sender, peer, infos, now)
                if got:
                    proven[peer] = got
        mine = msg.peer_info.get(me)
        stale_self = self._stale_self(mine)
        # a copy of our own introduction, relayed: did it come from this run?
        me_shown = mine is not None and not stale_self and self._proven_mine(mine)
        relayed = (set(proven) - {sender}) | ({me} if me_shown else set())
        if sender in msg.peer_info and (me in relayed or len(relayed) > 1):
            self._discovery.snapshot_seen(
                sender, relayed | {sender}, now, exporting=len(self._exports) > 0
            )
        elif newcomer and msg.peer_info.get(sender) and not msg.pull:
            self._discovery.snapshot_wanted(now)  # a newcomer's hello asks for one
        if stale_self:
            self._discovery.announce()  # they show an old run of ours
        elif me_shown:
            self._discovery.heard = True
        for peer, infos in proven.items():
            owner = sender == peer
            # a repeated hello: its owner doesn't know it was heard, so one or
            # two of the peers that knew the owner tell it (when peers it was
            # news to answered too, the first answer came too late to hold
            # back the others: more gossip, measured in the simulator). Any
            # other introduction by its owner (a first hello come after a
            # relay of it, an answer, a pulled snapshot) asks for nothing: at
            # 100 peers over 5 processes a third of the first hellos arrived
            # after a relay, and the acknowledgements they drew were all the
            # gossip sent until synced
            asks_ack = owner and msg.again and not newcomer
            # an introduction arrived: our own pending answer is redundant
            self._answers.info.pop(peer, None)
            self._answers.introduced(peer, now)
            view = self._roster.get(peer)
            if view is None:
                view = self._roster.add(peer, now)
                if view is None:
                    continue
                log.debug("%s: learned of %s from %s", me, peer, sender)
                if not owner:
                    view.heard_at = now - self._pacing.peer_ttl(len(self._roster)) / 2
            incarnation = max((i.incarnation for i in infos.values()), default=0)
            if not self._admit(view, incarnation, events, now):
                continue
            self._repair.found(peer)
            for index, info in infos.items():
                if info.incarnation != view.incarnation:
                    self._shared.counters["drop_old_incarnation"] += 1
                    continue
                events.extend(
                    self._on_machine_info(view, index, info, owner, asks_ack, now)
                )
        if msg.peer_gossips:
            said = _incarnation_of(sender, msg)
            view = self._roster.get(sender)
            known = view.incarnation if view is not None else 0
            incarnation = known if said is None else said
            self._on_gossip(sender, msg.peer_gossips, now, events, incarnation)

    def _on_machine_info(
        self,
        view: PeerRecord,
        index: int,
        info: Info,
        owner: bool,
        asks_ack: bool,
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
                if asks_ack:
                    self._answers.owner_spoke(peer, now)
                return self._refresh(view, index, existing, info)
        if index in view.refused:
            view.refused[index] = sum(info.time)
            return events
        cfg = self._shared.config
        if len(view.machines) >= cfg.max_machines_per_peer:
            counters["drop_machines_full"] += 1
            return events
        held = sum(len(m.states) for m in view.machines.values())
        if held + len(info.states) > cfg.max_states_per_peer:
            counters["drop_states_full"] += 1  # what one member may pin here
            return events
        schema = self._roster.schema_for(info)
        if schema is None:
            self._repair.incomplete(peer, now)
        try:
            record = MachineRecord(info, schema)
        except ValueError as err:
            counters["drop_info_invalid"] += 1
            log.debug("dropped an info of %s#%d: %s", peer, index, err)
            return events
        if asks_ack:
            self._answers.owner_spoke(peer, now)
        pending = self._repair.take_pending(peer, index)
        if pending is not None and pending[2] == view.incarnation:
            record.advance(pending[0], pending[1])
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
        if record.advance(info.time, info.signature):
            events.append(Advanced(view.peer, index, record.time))
        return events

    def _on_updates(
        self, sender: str, msg: UpdatesMsg, now: float, events: list[Event]
    ) -> None:
        counters = self._shared.counters
        for peer, machines in msg.peer_clocks.items():
            if peer == self._shared.peer_id:
                reported = {i: sum(t) for i, t in machines.items()}
                self._exports.push_where_behind(reported, now, self._shared.in_flight())
                continue
            owner = sender == peer
            proof = msg.proofs.get(peer)
            incarnation = proof.incarnation if proof is not None else 0
            view = self._roster.get(peer)
            if view is not None:
                if owner and not self._admit(view, incarnation, events, now):
                    continue
                if not owner and incarnation != view.incarnation:
                    stale = "drop_old_incarnation" if proof else "drop_unsigned_relay"
                    counters[stale] += len(machines)
                    continue
            for index, time in machines.items():
                if (peer, index) in self._roster.tombstones or (
                    view is not None and index in view.refused
                ):
                    continue
                record = view.machines.get(index) if view else None
                signature = proof.signatures.get(index) if proof else None
                if record is None:
                    if owner:  # ours to keep until the machine is introduced
                        self._repair.buffer(
                            peer, index, time, signature, incarnation, now
                        )
                    else:  # unprovable without its identity: ask its owner
                        counters["drop_unsigned_relay"] += 1
                    if view is None:
                        self._repair.missing(peer, now, sender)
                    else:
                        self._repair.incomplete(peer, now)
                    continue
                if len(time) != len(record.states):
                    counters["drop_vector_length"] += 1
                    continue
                if not owner and not self._shared.proven(
                    peer, index, incarnation, time, record.identity, signature
                ):
                    counters["drop_unsigned_relay"] += 1
                    continue
                if record.advance(time, signature):
                    events.append(Advanced(peer, index, record.time))
                self._repair.caught_up(peer, index, record.time_sum)
            self._answers.clocks_heard(peer, set(machines), now)

    def _on_gossip(
        self,
        sender: str,
        gossips: Sums,
        now: float,
        events: list[Event],
        incarnation: int = 0,
    ) -> None:
        for peer, sums in gossips.items():
            if peer == self._shared.peer_id:
                if self._exports.ahead_of_us(sums):
                    self._discovery.announce()  # they show an old run of ours
                elif self._exports.indexes() <= set(sums):
                    self._discovery.heard_by_gossip()
                self._exports.push_where_behind(sums, now, self._shared.in_flight())
                continue
            view = self._roster.get(peer)
            if view is None:
                self._repair.missing(peer, now, sender)
                continue
            owner = sender == peer
            if owner and incarnation != view.incarnation:
                # a run of the owner we don't know (or an old one): its
                # sums say nothing about our records; ask for its info
                if incarnation > view.incarnation:
                    self._repair.incomplete(peer, now)
                continue
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
                    self._repair.behind(peer, index, gossiped, now)
                elif gossiped < record.time_sum:
                    behind = True
            self._answers.gossiped(peer, sums, owner=owner, behind=behind, now=now)

    def _on_reqinfo(self, peer_ids: list[str], now: float) -> None:
        if not peer_ids:
            self._discovery.snapshot_wanted(now)
            self._discovery.others_asked(now)  # their snapshot reaches us too
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
        if view is None or not self._admit(view, msg.incarnation, events, now):
            return
        whole = any(b.peer_bye for b in msg.machs.values())
        for index, bye in msg.machs.items():
            record = view.machines.get(index)
            if record is None:
                continue
            if bye.time and record.advance(bye.time, None):
                events.append(Advanced(sender, index, record.time))
            if not whole:
                events.extend(self._roster.forget(sender, index, tombstone=now))
        if whole:
            view.bye_at = now
            events.extend(self._roster.silence(view, now))

    # -- trust -----------------------------------------------------------------

    def _proven_mine(self, infos: dict[int, Info]) -> bool:
        """Is any of these infos about us signed by us (our hello, relayed)?

        An empty introduction (we export nothing) proves nothing.
        """
        me = self._shared.peer_id
        return any(self._shared.proven_info(me, i, info) for i, info in infos.items())

    def _stale_self(self, infos: dict[int, Info] | None) -> bool:
        """Do these infos about us come from a previous run of ours?

        (An incarnation of 0 says nothing: Go peers relay without one.)
        """
        if not infos:
            return False
        mine = self._shared.incarnation
        return any(i.incarnation not in (0, mine) for i in infos.values())

    def _admit(
        self, view: PeerRecord, incarnation: int, events: list[Event], now: float
    ) -> bool:
        """The owner speaks under ``incarnation``: stale, current, or a restart.

        A smaller incarnation is stale, unless the current one has been
        silent for ``peer_ttl`` / 4 while the smaller keeps speaking: then the
        owner's wall clock went back between two runs, and the run that
        speaks is the one to show.
        """
        if incarnation < view.incarnation:
            silent_for = now - view.current_at
            if silent_for < self._pacing.peer_ttl(len(self._roster)) / 4:
                self._shared.counters["drop_old_incarnation"] += 1
                return False
            self._shared.counters["incarnation_went_back"] += 1
        if incarnation != view.incarnation:
            if view.incarnation or view.machines:
                log.debug("%s: %s restarted", self._shared.peer_id, view.peer)
                events.extend(self._roster.restart(view, incarnation))
                self._repair.forget_pending(view.peer)
            view.incarnation = incarnation
        view.current_at = now
        return True

    def _proven_infos(
        self, sender: str, peer: str, infos: dict[int, Info], now: float
    ) -> dict[int, Info]:
        """The relayed introductions of ``peer`` that carry its signature."""
        proven: dict[int, Info] = {}
        for index, info in infos.items():
            if self._shared.proven_info(peer, index, info):
                proven[index] = info
            else:
                self._shared.counters["drop_unsigned_relay"] += 1
        if len(proven) < len(infos) or not infos:
            # the owner introduces itself when asked
            self._repair.missing(peer, now, sender)
            if peer in self._roster:
                self._repair.incomplete(peer, now)
        return proven


def _incarnation_of(sender: str, msg: Message) -> int | None:
    """The sender's incarnation, as its own message says (None: doesn't say)."""
    if isinstance(msg, InfoMsg):
        own = msg.peer_info.get(sender)
        if own:
            return max(i.incarnation for i in own.values())
        return None
    if isinstance(msg, UpdatesMsg):
        proof = msg.proofs.get(sender)
        return proof.incarnation if proof is not None else None
    if isinstance(msg, GossipMsg | ByeMsg):
        return msg.incarnation
    return None
