"""GossipCore: one peer's protocol for one topic, sans-IO.

Messages and time go in, messages and events come out; nothing here blocks,
sleeps, touches a socket, calls a plugin or builds a ``Machine``. The owner
(the topic) drives it:

- ``receive(sender, msg, now)`` and ``heartbeat(now)`` return events (what
  changed in the roster), which the owner applies to what users see;
- ``collect(now)`` returns the messages to publish now, ``next_due(now)``
  when to call it again;
- ``joined``/``left``/``dispose`` follow the topic's lifecycle.

Threads: the owner calls these one at a time (the topic does so inside its
machine's handlers). The export verbs (``export``, ``unexport``,
``mark_dirty``, ``bye_all``, ``exported``) are safe from any thread: they
only touch the export table, which the core reads when it runs next.

The rules live in the rooms: ``discovery`` (hello, snapshots, our phase),
``answers`` (who replies), ``repair`` (what we miss, requests), ``pacing``
(rate, keepalive, gossip timing), ``roster`` (what we know of others),
``intake`` (applying messages), ``outbox`` (building them), ``load`` (how
far behind we run, which widens every window: back-pressure).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable

from asyncmachine import Machine

from ..protocol import Message
from .answers import Answers
from .config import GossipConfig, Shared, Signer
from .discovery import Discovery
from .events import Event, Refused
from .exports import ExportTable
from .intake import Intake
from .liveness import Liveness
from .load import Load
from .outbox import Outbox
from .pacing import Pacing
from .repair import Repair
from .rooms import Rooms
from .roster import MachineRecord, Roster

log = logging.getLogger("ampubsub.gossip")

#: topic states naming the kinds of messages waiting to be sent
INTENT_STATES = (
    "SendUpdates",
    "SendInfo",
    "DoSendInfo",
    "ReqMissingPeers",
    "ReqMissingUpdates",
)


class GossipCore:
    """One peer's protocol state for one topic."""

    def __init__(
        self,
        peer_id: str,
        *,
        config: GossipConfig | None = None,
        rng: random.Random | None = None,
        signer: Signer | None = None,
        incarnation: int = 0,
    ) -> None:
        self._shared = shared = Shared(
            peer_id,
            config or GossipConfig(),
            rng or random.Random(),
            signer,
            incarnation,
        )
        self.roster = Roster(shared)
        self.exports = ExportTable()
        self.pacing = Pacing(shared)
        self.discovery = Discovery(shared, self.roster)
        self.answers = Answers(shared, self.roster)
        self.repair = Repair(shared, self.roster)
        self.liveness = Liveness(shared, self.roster)
        self.load = Load(shared)
        rooms = Rooms(
            shared,
            self.roster,
            self.exports,
            self.discovery,
            self.answers,
            self.repair,
            self.pacing,
            self.liveness,
        )
        self._intake = Intake(rooms)
        self._outbox = Outbox(rooms)

    @property
    def peer_id(self) -> str:
        return self._shared.peer_id

    @peer_id.setter
    def peer_id(self, peer_id: str) -> None:
        self._shared.peer_id = peer_id

    @property
    def incarnation(self) -> int:
        return self._shared.incarnation

    @property
    def config(self) -> GossipConfig:
        return self._shared.config

    @property
    def lag(self) -> float:
        """How far behind this peer runs, in seconds (see ``load``)."""
        return self._shared.lag

    @property
    def counters(self) -> Counter[str]:
        """Messages in/out and drops by reason (a live Counter)."""
        return self._shared.counters

    # -- own machines (any thread) -----------------------------------------------

    def export(self, machine: Machine) -> int:
        """Announce a local machine; returns its stable index on the wire."""
        return self.exports.export(machine)

    def unexport(self, machine: Machine) -> int | None:
        """Stop sharing a machine; a ``bye`` for it goes out."""
        return self.exports.unexport(machine)

    def mark_dirty(self, index: int) -> bool:
        """An own machine changed; True when the owner should wake the sender."""
        return self.exports.mark_dirty(index)

    def bye_all(self) -> None:
        """The whole peer leaves: the next collect sends one ``bye``."""
        self.exports.bye_all()

    def exported(self) -> list[Machine]:
        return self.exports.machines()

    def _sync_exports(self) -> None:
        if self.exports.take_news():
            self.discovery.announce()

    # -- lifecycle -------------------------------------------------------------------

    def joined(self, now: float, *, alone: bool = False) -> None:
        """The topic joined: hello, and get a snapshot of everyone.

        ``alone``: no other peer is on the topic yet, so there is nobody to
        learn from; our view is complete as it is.
        """
        self._sync_exports()
        self.discovery.join(now, alone=alone, exporting=len(self.exports) > 0)
        wait = 2 * self.config.snapshot_wait
        self.pacing.plan_gossip(now, len(self.roster), at_least=wait)
        self.pacing.last_sent = now  # the hello or the request says we're alive

    def pull_snapshots(self, enabled: bool) -> None:
        """The transport can reach one neighbour directly: newcomers fetch
        their snapshot from one (``pull_now``, ``pulled_snapshot``) instead
        of having it broadcast to every peer; and a peer missing others'
        infos pulls them from one (``peers_to_pull``, ``pulled_infos``)
        before asking everyone."""
        self.discovery.direct = enabled
        self.repair.direct = enabled

    def pull_now(self, now: float) -> bool:
        """Time to fetch our snapshot from a neighbour? (The topic does it
        and hands each message of the reply to ``receive``.)"""
        return self.discovery.pull_now(now)

    def pull_failed(self, now: float, *, no_neighbour: bool = False) -> None:
        """Our snapshot pull failed (or found no neighbour to ask): the
        topic says so; we retry or ask everyone."""
        self.discovery.pull_failed(
            now, no_neighbour=no_neighbour, exporting=len(self.exports) > 0
        )

    def pulled(self, peer: str, now: float) -> None:
        """Our snapshot pull from ``peer`` succeeded: the topic says so after
        handing each message of the reply to ``receive``."""
        self.discovery.pulled(peer, now, exporting=len(self.exports) > 0)

    def pulled_snapshot(self, now: float) -> list[Message] | None:
        """Our snapshot for a newcomer that asked us directly (None: not yet)."""
        return self._outbox.pulled_snapshot(now)

    def peers_to_pull(self) -> tuple[list[str], str | None] | None:
        """Infos to fetch from a neighbour now (planned by ``collect``): the
        ids, and a neighbour that named one of them, to ask first. The topic
        hands each message of the reply to ``receive``."""
        return self.repair.take_pull()

    def pulled_infos(self, peers: list[str]) -> list[Message]:
        """The infos we know of these peers, for a neighbour that asked us."""
        return self._outbox.pulled_infos(peers)

    def accept_peers(self, predicate: Callable[[str], bool]) -> None:
        """Only peers ``predicate`` accepts are learned of (the allow-list)."""
        self._shared.accepts_peer = predicate

    def start(self, peer_id: str, signer: Signer | None, incarnation: int) -> None:
        """The transport runs: who we are now, how we sign, which run this is."""
        self._shared.peer_id = peer_id
        self._shared.signer = signer
        self._shared.incarnation = incarnation

    def left(self) -> None:
        self.discovery.leave()
        self.answers.clear()

    def peer_joined(self, peer: str, now: float) -> None:
        """A direct neighbour subscribed (its hello, or ours, introduces it);
        if it was shown gone, ask after the peers shown gone (``liveness``)."""
        if peer != self.peer_id:
            self.counters["peer_joined"] += 1
            self.liveness.arrived(peer)
            self.discovery.neighbour_joined(now)

    def peer_left(self, peer: str, now: float) -> None:
        """A direct neighbour left: probe it (``liveness``)."""
        self.counters["peer_left"] += 1
        self.liveness.departed(peer, now)

    def dispose(self) -> list[Event]:
        """Forget own exports (silently) and every remote machine."""
        self.exports.clear()
        return self.roster.clear()

    # -- inbound ---------------------------------------------------------------------

    def receive(
        self, sender: str, msg: Message, now: float, *, arrived: float | None = None
    ) -> list[Event]:
        """Apply one decoded message authored by ``sender``.

        ``arrived``: when the transport handed it over; how long it waited
        since is part of the lag (``load``).

        Never raises: what a peer sends must not stop the topic. A message
        whose handling fails is dropped, counted (``drop_error`` and
        ``drop_error_<exception type>``) and logged at debug level; what it
        changed before failing stays, and is reported.
        """
        events: list[Event] = []
        try:
            self._sync_exports()
            if sender != self._shared.peer_id:
                self.load.observe(sender, msg.sent_at, now)
                if arrived is not None:
                    self.load.waited(now - arrived, now)
            self._intake.receive(sender, msg, now, events)
        except Exception as exc:
            counters = self._shared.counters
            counters["drop_error"] += 1
            counters[f"drop_error_{type(exc).__name__}"] += 1
            kind = getattr(msg, "TYPE", type(msg).__name__)
            log.debug(
                "%s: dropped %s from %s: %r",
                self.peer_id,
                kind,
                sender,
                exc,
                exc_info=True,
            )
        return events

    def refuse(self, peer: str, index: int) -> list[Event]:
        """Hide a discovered machine (a plugin refused it); it stays acknowledged."""
        view = self.roster.get(peer)
        record = view.machines.pop(index, None) if view is not None else None
        if view is None or record is None:
            return []
        self.counters["refused_remote"] += 1
        view.refused[index] = record.time_sum
        return [Refused(peer, index)]

    def heartbeat(self, now: float) -> list[Event]:
        """Periodic work: expiry, pruning, gossip planning.

        Never raises, like ``receive``: a failure is counted
        (``heartbeat_error`` and ``heartbeat_error_<exception type>``) and
        logged at debug level; the events of the steps done before it are
        returned.
        """
        events: list[Event] = []
        try:
            self._sync_exports()
            self.load.update(now)
            self.discovery.is_settled(now)  # settling by waiting may owe a snapshot
            roster = self.roster
            events = roster.expire(now, self.pacing.peer_ttl(len(roster)))
            events.extend(self.liveness.expire(now))
            self.discovery.forget_departed_senders()
            self.repair.expire(now)
            if self.discovery.joined and self.pacing.gossip_due is None:
                self.pacing.plan_gossip(now, len(roster))
        except Exception as exc:
            counters = self._shared.counters
            counters["heartbeat_error"] += 1
            counters[f"heartbeat_error_{type(exc).__name__}"] += 1
            log.debug("%s: heartbeat failed: %r", self.peer_id, exc, exc_info=True)
        return events

    # -- outbound --------------------------------------------------------------------

    def collect(self, now: float) -> list[Message]:
        """Messages to publish now, most important first, within the rate limit."""
        self._sync_exports()
        return self._outbox.collect(now)

    def publish_failed(self, msg: Message) -> None:
        """The transport refused a collected message: keep its intent pending."""
        self.counters["publish_failed"] += 1
        self._outbox.put_back(msg)

    def next_due(self, now: float) -> float | None:
        """When ``collect`` has something to send (None: nothing planned)."""
        self._sync_exports()
        dues: list[float] = []
        if self.exports.has_byes:
            dues.append(now)
        if self.exports.has_dirty:
            dues.append(self.pacing.updates_due())
        discovery = self.discovery
        if discovery.joined:
            dues.extend(self.answers.dues())
            exporting = len(self.exports) > 0
            hello = discovery.hello_due_at(exporting=exporting)
            for due in (discovery.snapshot_due, hello, self.pacing.gossip_due):
                if due is not None:
                    dues.append(due)
            for due in (discovery.ask_at(), discovery.pull_at()):
                if due is not None:
                    dues.append(due)
            if self.repair.wants:
                dues.append(self.repair.next_check)
            if self.liveness.wants:
                dues.append(self.liveness.next_ask)
            pacing = self.pacing
            dues.append(pacing.keepalive_due(len(self.roster)))
        if not dues:
            return None
        return self.pacing.bucket.ready_at(max(now, min(dues)))

    def intents(self) -> set[str]:
        """Topic states naming the kinds of messages waiting to be sent."""
        self._sync_exports()
        pending: set[str] = set()
        if self.exports.has_dirty or self.answers.updates:
            pending.add("SendUpdates")
        if self.answers.info or self.discovery.snapshot_due is not None:
            pending.add("SendInfo")
        if self.discovery.hello_due is not None and len(self.exports):
            pending.add("DoSendInfo")
        if self.repair.missing_peers or self.repair.pending:
            pending.add("ReqMissingPeers")
        if self.repair.missing_updates:
            pending.add("ReqMissingUpdates")
        return pending

    # -- views -----------------------------------------------------------------------

    def records(self) -> list[tuple[str, int, MachineRecord]]:
        """Every remote machine record: (peer, index, record)."""
        return list(self.roster.machines())

    def peers(self) -> list[str]:
        return list(self.roster.peers)

    def stats(self) -> dict[str, int]:
        """Table sizes; safe to read from any thread (copies before counting)."""
        views = list(self.roster.peers.values())
        return {
            "peers": len(views),
            "remote_machines": sum(len(v.machines) for v in views),
            **self.repair.stats(),
            "schemas": self.roster.schema_count,
            "exports": len(self.exports),
            "dirty": self.exports.dirty_count,
        }
