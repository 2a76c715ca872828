"""Outbox: the messages due now, most important first, within the rate limit.

Rules of this room:

1. Order of importance: byes, own updates, answers (introductions, snapshots,
   clocks), acknowledgements, the hello, requests, gossip. When the bucket
   runs dry the rest waits for the next ``collect``; nothing is dropped.
2. A dirty own machine stays dirty until a message carrying its clock was
   handed to the transport; a message the transport refused puts its intent
   back (``put_back``).
3. A schema travels once; afterwards its hash refers to it. A message names
   each schema at most once, and big introductions are split: by count
   (``infos_per_message``) and by encoded size, so that every message fits
   MAX_PAYLOAD; a machine whose introduction alone doesn't fit is left out
   and counted, never blocking the others.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace

from ..protocol import (
    MAX_MACHINES_PER_PEER,
    MAX_PAYLOAD,
    MAX_PEERS_PER_MSG,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    Proof,
    ProtocolError,
    ReqInfoMsg,
    UpdatesMsg,
    encode,
)
from .config import Sums
from .rooms import Flow, Rooms

log = logging.getLogger("ampubsub.gossip")


class Outbox(Flow):
    """Builds what is due; the facade's ``collect`` and ``publish_failed``."""

    def __init__(self, rooms: Rooms) -> None:
        super().__init__(rooms)
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
                    if isinstance(msg, ReqInfoMsg) and not msg.peer_ids:
                        counters["out_reqinfo_snapshot"] += 1  # of them, asks
                out.extend(messages)
        if out:
            self._pacing.last_sent = now
            stamp = int(now * 1000)
            if stamp > 0:  # receivers measure their lag by it (``load``)
                out = [replace(msg, sent_at=stamp) for msg in out]
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
        machs = {max(i, 0): b for i, b in byes.items()}
        return [ByeMsg(machs=machs, incarnation=self._shared.incarnation)]

    def _updates(self, now: float) -> list[Message]:
        if not self._exports.has_dirty or now < self._pacing.updates_due():
            return []
        dirty = self._exports.take_dirty()
        self._pacing.last_update_sent = now
        if not dirty:
            return []
        shared = self._shared
        clocks: dict[int, list[int]] = {}
        signatures: dict[int, bytes] = {}
        for export in dirty:
            time = clocks[export.index] = export.machine.time()
            export.sent_at, export.sent_sum = now, sum(time)
            signature = shared.prove(export.index, time, export.identity)
            if signature is not None:
                signatures[export.index] = signature
        me = shared.peer_id
        proofs = {me: Proof(shared.incarnation, signatures)}
        if not signatures and not shared.incarnation:
            proofs = {}  # nothing to prove (a Go-like peer): stay lean
        return [UpdatesMsg(peer_clocks={me: clocks}, proofs=proofs)]

    def _introductions(self, now: float) -> list[Message]:
        """Infos we owe (answers, or a snapshot of everyone), then clocks we owe."""
        me = self._shared.peer_id
        out: list[Message] = []
        due = self._answers.due_info(now)
        kind = "info_answer"
        if self._discovery.snapshot_now(now):
            # departed peers stay out: relayed, they'd look alive to newcomers
            due = [me, *(v.peer for v in self._roster.live())]
            kind = "info_snapshot"
            log.debug("%s: snapshot of %d peers", me, len(due))
        if due:
            infos = self.info_messages(due, with_schema=True)
            self._shared.counters[kind] += len(infos)
            out.extend(infos)
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
        hello = self.info_messages([me], with_schema=False, gossip=False)
        repeat = self._discovery.hello_repeated
        self._shared.counters["info_hello_repeat" if repeat else "info_hello"] += 1
        # ``again`` asks for an acknowledgement; ``pull``: we fetch our
        # snapshot ourselves
        pull = self._discovery.direct
        if not (repeat or pull):
            return hello
        return [
            replace(m, pull=pull, again=repeat) if isinstance(m, InfoMsg) else m
            for m in hello
        ]

    def pulled_snapshot(self, now: float) -> list[Message] | None:
        """Everything we know, for one newcomer that asked us directly.

        None while we are joining ourselves: our view may be partial, and
        the newcomer falls back to asking everyone.
        """
        if not self._discovery.is_settled(now):
            return None
        me = self._shared.peer_id
        peers = [me, *(v.peer for v in self._roster.live())]
        self._shared.counters["out_pulled_snapshot"] += 1
        return self.info_messages(peers, with_schema=True, gossip=False)

    def pulled_infos(self, peers: list[str]) -> list[Message]:
        """What we know of these peers, with schemas, for one that asked us."""
        me, roster = self._shared.peer_id, self._roster
        known = [p for p in dict.fromkeys(peers) if p == me or p in roster]
        self._shared.counters["out_pulled_infos"] += 1
        if not known:
            return []
        return self.info_messages(known, with_schema=True, gossip=False)

    def _requests(self, now: float) -> list[Message]:
        out: list[Message] = []
        discovery = self._discovery
        if discovery.ask_now(now):
            self._repair.asked_explicitly(now)
            out.append(ReqInfoMsg(peer_ids=[]))
        out.extend(self._liveness.collect(now))
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
        if not self._discovery.is_settled(now) and now < self._pacing.keepalive_due(
            len(self._roster)
        ):
            # our view is still coming: sums of it would only make others
            # ask about what is on its way (the next gossip is planned)
            return []
        sums = self.gossip_sample()
        if not sums:
            self._pacing.last_sent = now  # nothing to say; don't ask again at once
            return []
        return [GossipMsg(peer_gossips=sums, incarnation=self._shared.incarnation)]

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
        """Infos of these peers (own: live), split so that every message is sendable.

        At most ``infos_per_message`` machines per message, and each message
        encodes within MAX_PAYLOAD: when the split by count doesn't, the
        infos are packed by their encoded size (:func:`pack_infos`). A
        machine whose info alone can't be sent is left out and counted
        (``drop_out_oversize_info``), never blocking the others.
        """
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
                    info = export.info(full, self._shared)
                    entries.append((peer, export.index, info))
                continue
            view = self._roster.get(peer)
            if view is None:
                continue
            if not view.machines and not view.silent:
                empty.append(peer)
            for index, record in view.machines.items():
                entries.append((peer, index, record.relay_info(view.incarnation)))
        if not entries and not empty:
            return []
        gossips = self.gossip_sample() if gossip else {}
        size = self._shared.config.infos_per_message
        out: list[Message] = [
            info_message(
                entries[start : start + size],
                empty if start == 0 else [],
                gossips if start == 0 else {},
            )
            for start in range(0, max(len(entries), 1), size)
        ]
        if all(sendable(msg) for msg in out):  # the common case: one encode each
            return out
        return pack_infos(entries, empty, gossips, size, self._shared.counters)


# -- packing introductions by size -------------------------------------------------

#: one introduction: (peer, machine index, info)
Entry = tuple[str, int, Info]

#: bytes kept free in a message of several infos, measured one at a time:
#: map headers grow by a few bytes with the number of entries
PACK_SLACK = 1024


def info_message(entries: list[Entry], empty: list[str], gossips: Sums) -> InfoMsg:
    """An ``info`` of these entries and peers exporting nothing; each schema once."""
    chunk: dict[str, dict[int, Info]] = {peer: {} for peer in empty}
    carried: set[str] = set()  # each schema once per message
    for peer, index, info in entries:
        key = info.schema_hash
        if info.schema is not None and key is not None:
            if key in carried:
                info = replace(info, schema=None)
            carried.add(key)
        chunk.setdefault(peer, {})[index] = info
    return InfoMsg(peer_info=chunk, peer_gossips=gossips)


def sendable(msg: Message) -> bool:
    """Does ``msg`` encode (what the topic does before publishing)?"""
    try:
        encode(msg)
    except ProtocolError:
        return False
    return True


class _Bin:
    """One message being packed: what it carries and its encoded size so far."""

    __slots__ = ("carried", "empty", "entries", "gossip", "per_peer", "size")

    def __init__(self, size: int, gossip: bool) -> None:
        self.size = size
        self.gossip = gossip
        self.entries: list[Entry] = []
        self.empty: list[str] = []
        self.carried: set[str] = set()
        self.per_peer: Counter[str] = Counter()

    def cost(self, size: int, schema: str | None, extra: int) -> int:
        return (
            size + extra if schema is not None and schema not in self.carried else size
        )

    def fits(
        self, peer: str, size: int, schema: str | None, extra: int, per_message: int
    ) -> bool:
        if len(self.entries) >= per_message:
            return False
        if peer not in self.per_peer and len(self.per_peer) >= MAX_PEERS_PER_MSG:
            return False
        if self.per_peer[peer] >= MAX_MACHINES_PER_PEER:
            return False
        # one entry alone is measured exactly; several need some slack
        limit = MAX_PAYLOAD - PACK_SLACK if self.per_peer else MAX_PAYLOAD
        return self.size + self.cost(size, schema, extra) <= limit

    def add(self, entry: Entry, size: int, schema: str | None, extra: int) -> None:
        self.size += self.cost(size, schema, extra)
        if schema is not None:
            self.carried.add(schema)
        self.per_peer[entry[0]] += 1
        self.entries.append(entry)

    def add_empty(self, peer: str, size: int) -> None:
        self.size += size
        self.per_peer[peer] += 0  # named, with no machine
        self.empty.append(peer)


def pack_infos(
    entries: list[Entry],
    empty: list[str],
    gossips: Sums,
    per_message: int,
    counters: Counter[str],
) -> list[Message]:
    """Pack introductions into messages that each encode within MAX_PAYLOAD.

    Each entry's size is measured with ``encode``, alone in a message, its
    schema's share once per message (a message carries each schema once).
    Entries go, in order, into the first message with room (first fit), so
    small introductions stay together while big ones get messages of their
    own; the gossip sample rides in the first message. An entry that fits
    in no message even alone is left out and counted
    (``drop_out_oversize_info``, or ``drop_out_invalid_info`` when it can't
    be encoded at all). Every message returned was encoded to check it.
    """
    base = len(encode(InfoMsg({}, {})))

    def measure(peer: str, machines: dict[int, Info]) -> int | ProtocolError:
        try:
            return len(encode(InfoMsg({peer: machines}, {}))) - base
        except ProtocolError as err:
            return err

    gossip_size = len(encode(InfoMsg({}, gossips))) - base if gossips else 0
    bins = [_Bin(base + gossip_size, gossip=bool(gossips))]

    def place(peer: str, size: int, schema: str | None, extra: int) -> _Bin | None:
        for target in bins:
            if target.fits(peer, size, schema, extra, per_message):
                return target
        target = _Bin(base, gossip=False)
        if not target.fits(peer, size, schema, extra, per_message):
            return None
        bins.append(target)
        return target

    for peer in empty:  # peers exporting nothing: a few bytes each
        size = measure(peer, {})
        if isinstance(size, int) and (target := place(peer, size, None, 0)):
            target.add_empty(peer, size)
    # a schema's share of an entry's size, by hash (or why it can't be sent)
    extras: dict[str, int | ProtocolError] = {}
    for entry in entries:
        peer, index, info = entry
        schema = info.schema_hash if info.schema is not None else None
        bare = replace(info, schema=None) if schema is not None else info
        size = measure(peer, {index: bare})
        extra: int | ProtocolError = 0
        if schema is not None and isinstance(size, int):
            if schema not in extras:
                full = measure(peer, {index: info})
                extras[schema] = full - size if isinstance(full, int) else full
            extra = extras[schema]
        err = size if isinstance(size, ProtocolError) else extra
        if isinstance(err, ProtocolError):
            reason = "oversize" if err.reason == "too_large" else "invalid"
            _left_out(counters, f"drop_out_{reason}_info", entry, err)
            continue
        assert isinstance(size, int) and isinstance(extra, int)
        target = place(peer, size, schema, extra)
        if target is None:
            _left_out(counters, "drop_out_oversize_info", entry, "too large")
            continue
        target.add(entry, size, schema, extra)

    out: list[Message] = []
    for target in bins:
        if not target.entries and not target.empty:
            continue  # nothing left to introduce: no message for the sample alone
        gossip = gossips if target.gossip else {}
        msg = info_message(target.entries, target.empty, gossip)
        if sendable(msg):
            out.append(msg)
            continue
        # the estimate was wrong (it never should be): one message per entry
        counters["out_info_repacked"] += 1
        for entry in target.entries:
            single = info_message([entry], [], {})
            if sendable(single):
                out.append(single)
            else:
                _left_out(counters, "drop_out_oversize_info", entry, "too large")
        if target.empty:
            out.append(info_message([], target.empty, {}))
    return out


def _left_out(counters: Counter[str], reason: str, entry: Entry, err: object) -> None:
    counters[reason] += 1
    peer, index, info = entry
    log.debug("left %s#%d (%r) out of an info message: %s", peer, index, info.id, err)
