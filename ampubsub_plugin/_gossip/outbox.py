"""Outbox: the messages due now, most important first, within the rate limit.

Rules of this room:

1. Order of importance: byes, own updates, answers (introductions, snapshots,
   clocks), acknowledgements, the hello, requests, gossip. When the bucket
   runs dry the rest waits for the next ``collect``; nothing is dropped.
2. A dirty own machine stays dirty until a message carrying its clock was
   handed to the transport; a message the transport refused puts its intent
   back (``put_back``).
3. A schema travels once; afterwards its hash refers to it. A message names
   each schema at most once, and big introductions are split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..protocol import ByeMsg, GossipMsg, Info, InfoMsg, Message, ReqInfoMsg, UpdatesMsg
from .answers import Answers
from .config import Shared
from .discovery import Discovery
from .exports import ExportTable
from .pacing import Pacing
from .repair import Repair
from .roster import Roster

log = logging.getLogger("ampubsub.gossip")

Sums = dict[str, dict[int, int]]


class Outbox:
    """Builds what is due; the facade's ``collect`` and ``publish_failed``."""

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
        self._schemas_sent: set[str] = set()
        self._builders: list[Callable[[float], list[Message]]] = [
            self._byes,
            self._updates,
            self._introductions,
            self._answers.collect_acks,
            self._hello,
            self._requests,
            self._gossip,
        ]

    def collect(self, now: float) -> list[Message]:
        out: list[Message] = []
        bucket, counters = self._pacing.bucket, self._shared.counters
        for build in self._builders:
            if not bucket.available(now):
                counters["rate_limited"] += 1
                break
            messages = build(now)
            if messages:
                bucket.spend(now, len(messages))
                for msg in messages:
                    counters[f"out_{msg.TYPE}"] += 1
                out.extend(messages)
        if out:
            self._pacing.last_sent = now
        return out

    def put_back(self, msg: Message) -> None:
        """A message that never left: keep its intent pending."""
        me = self._shared.peer_id
        if isinstance(msg, UpdatesMsg) and me in msg.peer_clocks:
            self._exports.touch(list(msg.peer_clocks[me]))
        elif isinstance(msg, ByeMsg):
            self._exports.put_back_byes(msg.machs)
        elif isinstance(msg, ReqInfoMsg) and not msg.peer_ids:
            self._discovery.ask_again()

    # -- builders, most important first ----------------------------------------------

    def _byes(self, now: float) -> list[Message]:
        byes = self._exports.take_byes()
        if not byes:
            return []
        return [ByeMsg(machs={max(i, 0): b for i, b in byes.items()})]

    def _updates(self, now: float) -> list[Message]:
        if not self._exports.has_dirty or now < self._pacing.updates_due():
            return []
        clocks = self._exports.take_clocks()
        self._pacing.last_update_sent = now
        if not clocks:
            return []
        return [UpdatesMsg(peer_clocks={self._shared.peer_id: clocks})]

    def _introductions(self, now: float) -> list[Message]:
        """Infos we owe (answers, or a snapshot of everyone), then clocks we owe."""
        me = self._shared.peer_id
        out: list[Message] = []
        due = self._answers.due_info(now)
        if self._discovery.snapshot_now(now):
            # departed peers stay out: relayed, they'd look alive to newcomers
            due = [me, *(v.peer for v in self._roster.live())]
            log.debug("%s: snapshot of %d peers", me, len(due))
        if due:
            out.extend(self.info_messages(due, with_schema=True))
            for peer in due:
                self._answers.introduced(peer, now)
            if me in due:
                self._discovery.introduced_ourselves(now)
        out.extend(self._answers.collect_updates(now))
        return out

    def _hello(self, now: float) -> list[Message]:
        if not self._discovery.hello_now(now, exporting=len(self._exports) > 0):
            return []
        # no gossip sample: peers we name but others don't know yet would
        # only make them ask about peers whose hellos are on the way
        me = self._shared.peer_id
        return self.info_messages([me], with_schema=False, gossip=False)

    def _requests(self, now: float) -> list[Message]:
        out: list[Message] = []
        discovery = self._discovery
        if discovery.ask_now(now):
            self._repair.asked_explicitly(now)
            out.append(ReqInfoMsg(peer_ids=[]))
        out.extend(
            self._repair.collect(
                now,
                is_settled=discovery.is_settled,
                last_snapshot=discovery.last_snapshot_seen,
            )
        )
        return out

    def _gossip(self, now: float) -> list[Message]:
        joined = self._discovery.joined
        if not self._pacing.gossip_now(now, len(self._roster), joined=joined):
            return []
        sums = self.gossip_sample()
        if not sums:
            self._pacing.last_sent = now  # nothing to say; don't ask again at once
            return []
        return [GossipMsg(peer_gossips=sums)]

    # -- message bodies --------------------------------------------------------------

    def gossip_sample(self) -> Sums:
        """Sums of our machines and of a few live peers' (anti-entropy)."""
        sums: Sums = {}
        entries = self._exports.entries()
        if entries:
            sums[self._shared.peer_id] = {
                e.index: sum(e.machine.time()) for e in entries
            }
        known = [v for v in self._roster.live() if v.machines]
        size = min(len(known), self._shared.config.gossip_sample - 1)
        for view in self._shared.rng.sample(known, size):
            sums[view.peer] = view.sums()
        return sums

    def info_messages(
        self, peers: Iterable[str], *, with_schema: bool, gossip: bool = True
    ) -> list[Message]:
        """Infos of these peers (own: live), split to keep messages small."""
        me = self._shared.peer_id
        entries: list[tuple[str, int, Info]] = []
        empty: list[str] = []  # known peers exporting nothing: introduce them too
        for peer in peers:
            if peer == me:
                own = self._exports.entries()
                if not own:
                    empty.append(peer)
                for export in own:
                    # a schema travels once; afterwards its hash refers to it
                    full = with_schema or export.hash not in self._schemas_sent
                    self._schemas_sent.add(export.hash)
                    entries.append((peer, export.index, export.info(full)))
                continue
            view = self._roster.get(peer)
            if view is None:
                continue
            if not view.machines and not view.silent:
                empty.append(peer)
            for index, record in view.machines.items():
                entries.append((peer, index, record.relay_info()))
        out: list[Message] = []
        size = self._shared.config.infos_per_message
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
            gossips = self.gossip_sample() if start == 0 and gossip else {}
            out.append(InfoMsg(peer_info=chunk, peer_gossips=gossips))
        return out
