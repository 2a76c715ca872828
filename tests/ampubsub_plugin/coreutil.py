"""Helpers for tests of the gossip core alone (tests/ampubsub_plugin/gossip/).

The core returns events; the topic applies them to ``RemoteMachine`` objects
and calls the plugins. ``CorePeer`` does the same with the topic's own
``RemoteViews``, so core tests can look at remote machines and hook calls
while driving the core by hand with explicit times.

Cores get plain peer ids, seeded ``random.Random`` instances and explicit
``now`` floats (``make``); a :class:`Mesh` wires a few of them together by
hand, every message passing through the wire codec on the way (``wire``, as
the topic does). The rest are small readers of what a core sends.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import random
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ampubsub_plugin._gossip import Event, GossipConfig, GossipCore
from ampubsub_plugin._views import RemoteViews, ViewHooks
from ampubsub_plugin.protocol import (
    Info,
    InfoMsg,
    Message,
    Proof,
    UpdatesMsg,
    clock_proof_payload,
    decode,
    encode,
    identity_digest,
    info_identity,
    schema_hash,
)
from ampubsub_plugin.remote import RemoteMachine
from asyncmachine import Machine, State

WORKER = {"Foo": State(require=["Bar"]), "Bar": State(), "Baz": State()}
#: WORKER's state order once Exception is appended
STATES = ["Foo", "Bar", "Baz", "Exception"]
HASH = schema_hash(Machine(WORKER).schema, STATES)


class AcceptAll:
    """Hooks that show every machine and say nothing."""

    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        return True

    def machine_discovered(self, remote: RemoteMachine) -> None:
        pass

    def machine_updated(self, remote: RemoteMachine) -> None:
        pass

    def machine_gone(self, remote: RemoteMachine) -> None:
        pass

    def wants_remotes(self) -> bool:
        return False  # views are built when a test looks


class CorePeer:
    """Drive it like a GossipCore; it keeps the RemoteMachines and the events."""

    def __init__(self, core: GossipCore, hooks: ViewHooks | None = None) -> None:
        self.core = core
        self.hooks: ViewHooks = hooks or AcceptAll()
        self.views = RemoteViews(core)
        self.events: list[Event] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)

    def _apply(self, events: list[Event]) -> list[Event]:
        self.events.extend(events)
        self.views.apply(events, self.hooks)
        return events

    def receive(
        self, sender: str, msg: Message, now: float, arrived: float | None = None
    ) -> list[Event]:
        return self._apply(self.core.receive(sender, msg, now, arrived=arrived))

    def heartbeat(self, now: float) -> list[Event]:
        return self._apply(self.core.heartbeat(now))

    def dispose(self) -> list[Event]:
        return self._apply(self.core.dispose())

    def remotes(self) -> list[RemoteMachine]:
        return self.views.all()


class Recorder:
    """Hooks (as the topic calls them) that record calls and refuse chosen ids."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int, str]] = []
        self.refuse: set[str] = set()

    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        return info.id not in self.refuse

    def machine_discovered(self, remote: RemoteMachine) -> None:
        self.events.append(("discovered", remote.peer_id, remote.index, remote.id))

    def machine_updated(self, remote: RemoteMachine) -> None:
        self.events.append(("updated", remote.peer_id, remote.index, remote.id))

    def machine_gone(self, remote: RemoteMachine) -> None:
        self.events.append(("gone", remote.peer_id, remote.index, remote.id))

    def wants_remotes(self) -> bool:
        return True  # it records every hook call

    def kinds(self, kind: str) -> list[tuple[str, int, str]]:
        return [(p, i, m) for k, p, i, m in self.events if k == kind]


class PeerSigner:
    """Signs as one peer; checks anyone's. Keys derive from peer ids.

    A stand-in for key pairs in core tests: the cores sign and check as the
    topic's transport would. (Anyone could derive a key here; tests of
    forgery send wrong or missing signatures instead.)
    """

    def __init__(self, peer: str) -> None:
        self.peer = peer

    @staticmethod
    def _key(peer: str) -> bytes:
        return hashlib.sha256(f"test-key/{peer}".encode()).digest()

    def sign(self, data: bytes) -> bytes | None:
        return hmac.digest(self._key(self.peer), data, "sha256")

    def verify(self, peer_id: str, data: bytes, signature: bytes) -> bool:
        expected = hmac.digest(self._key(peer_id), data, "sha256")
        return hmac.compare_digest(expected, signature)


def make(
    peer: str,
    seed: int = 0,
    listener: Recorder | None = None,
    *,
    incarnation: int = 1,
    **cfg: Any,
) -> CorePeer:
    """A core that signs its clocks (as over a real transport), run 1."""
    core = GossipCore(
        peer,
        config=GossipConfig(**cfg),
        rng=random.Random(f"{peer}-{seed}"),
        signer=PeerSigner(peer),
        incarnation=incarnation,
    )
    return CorePeer(core, listener)


def worker(name: str, **kwargs: Any) -> Machine:
    return Machine(WORKER, id=name, **kwargs)


def wire(msg: Message) -> Message:
    """What a peer receives: the message after the codec, both ways."""
    return decode(encode(msg), strict_relations=False)


def info(
    id: str, time: list[int], *, states: list[str] | None = None, **kw: Any
) -> Info:
    """An info of a WORKER-like machine, schema referred to by hash only."""
    fields: dict[str, Any] = {"schema": None, "tags": [], "parent": ""}
    fields.update(kw)
    if states is None:
        states = STATES
        fields.setdefault("schema_hash", HASH)
    return Info(id=id, states=states, time=time, **fields)


def of_type(msgs: Iterable[Message], kind: type[Any]) -> list[Any]:
    return [m for m in msgs if isinstance(m, kind)]


def infos_about(msgs: Iterable[Message], peer: str) -> list[InfoMsg]:
    return [m for m in of_type(msgs, InfoMsg) if peer in m.peer_info]


def asked(msgs: Iterable[Message], kind: type[Any]) -> set[str]:
    return {p for m in of_type(msgs, kind) for p in m.peer_ids}


def hello_of(core: CorePeer, now: float) -> InfoMsg:
    (hello,) = infos_about(core.collect(now), core.peer_id)
    return hello


def introduced(owner: CorePeer, *others: CorePeer, now: float = 0.0) -> InfoMsg:
    """``owner`` joins and its hello reaches ``others`` (each joined, drained)."""
    owner.joined(now)
    hello = hello_of(owner, now)
    for other in others:
        other.joined(now)
        other.collect(now)
        other.receive(owner.peer_id, wire(hello), now)
    return hello


class Mesh:
    """Cores wired by hand; a run is driven by their own ``next_due``.

    ``lag``: each delivery is processed after a random 0.5-1.5 times this
    many seconds (as when one busy process hosts every peer); 0: at once.
    ``cost``: each reception keeps its receiver busy this long, receptions
    queue behind each other (as when processing is the bottleneck).
    """

    def __init__(self, *cores: CorePeer, seed: int = 0) -> None:
        self.cores = list(cores)
        self.now = 0.0
        self.next_heartbeat = 0.0
        self.loss = 0.0
        self.lag = 0.0
        self.cost = 0.0
        self._busy: dict[str, float] = {}
        self._late: list[tuple[float, int, CorePeer, str, Message, float]] = []
        self.rng = random.Random(seed)
        self.sent: list[tuple[float, str, Message]] = []
        self.wakeups = 0
        self.empty_collects = 0

    def add(self, core: CorePeer) -> None:
        self.cores.append(core)

    def deliver(self, sender: str, msg: Message) -> None:
        received = wire(msg)
        for core in self.cores:
            if core.peer_id == sender:
                continue
            if self.loss and self.rng.random() < self.loss:
                continue
            if self.lag or self.cost:
                at = self.now + self.lag * (0.5 + self.rng.random())
                if self.cost:
                    start = max(at, self._busy.get(core.peer_id, 0.0))
                    at = self._busy[core.peer_id] = start + self.cost
                entry = (at, len(self.sent) * 1000 + len(self._late), core)
                heapq.heappush(self._late, (*entry, sender, received, self.now))
                continue
            core.receive(sender, received, self.now)

    def _deliver_late(self) -> None:
        while self._late and self._late[0][0] <= self.now:
            _, _, core, sender, msg, sent = heapq.heappop(self._late)
            core.receive(sender, msg, self.now, arrived=sent)

    def collect(self, core: CorePeer) -> list[Message]:
        msgs = core.collect(self.now)
        for msg in msgs:
            self.sent.append((self.now, core.peer_id, msg))
            self.deliver(core.peer_id, msg)
        return msgs

    def run(self, until: float, *, max_steps: int = 100_000) -> None:
        """Advance to ``until``, collecting from each core exactly when it's due.

        Checks the no-busy-loop rule on the way: ``next_due`` is never in the
        past, and after a ``collect`` that sent nothing it moves into the future.
        """
        for _ in range(max_steps):
            dues = []
            for core in self.cores:
                due = core.next_due(self.now)
                assert due is None or due >= self.now, (core.peer_id, due, self.now)
                if due is not None:
                    dues.append(due)
            late = [self._late[0][0]] if self._late else []
            step = min([*dues, *late, self.next_heartbeat])
            if step > until:
                self.now = until
                return
            self.now = max(self.now, step)
            self._deliver_late()
            if self.now >= self.next_heartbeat:
                for core in self.cores:
                    core.heartbeat(self.now)
                self.next_heartbeat = self.now + 1.0
            for core in self.cores:
                due = core.next_due(self.now)
                if due is None or due > self.now:
                    continue
                self.wakeups += 1
                if not self.collect(core):
                    self.empty_collects += 1
                    after = core.next_due(self.now)
                    assert after is None or after > self.now, (
                        f"{core.peer_id}: busy loop at {self.now}: due {after}"
                    )
        raise AssertionError(f"no quiet moment in {max_steps} steps (at {self.now})")

    def sent_by(
        self, peer: str, kind: type[Any], since: float = float("-inf")
    ) -> list[Any]:
        return [
            m
            for t, p, m in self.sent
            if p == peer and isinstance(m, kind) and t >= since
        ]


def remote_of(core: CorePeer, machine_id: str) -> RemoteMachine:
    (remote,) = [r for r in core.remotes() if r.id == machine_id]
    return remote


# -- what an owner signs ---------------------------------------------------------


def signed(peer: str, index: int, got: Info, *, incarnation: int = 1) -> Info:
    """``got`` as its owner ``peer`` sends it: incarnation and signature set."""
    identity = info_identity(got)
    payload = clock_proof_payload(peer, index, incarnation, got.time, identity)
    signature = PeerSigner(peer).sign(payload)
    return replace(got, incarnation=incarnation, signature=signature)


def owner_updates(
    peer: str, clocks: dict[int, tuple[str, list[int]]], *, incarnation: int = 1
) -> UpdatesMsg:
    """An ``updates`` of WORKER-like machines (index -> (id, time)), signed by
    their owner ``peer`` as it sends them (relays forward it unchanged)."""
    signatures: dict[int, bytes] = {}
    for index, (machine_id, time) in clocks.items():
        identity = identity_digest(machine_id, STATES, [], "", HASH)
        payload = clock_proof_payload(peer, index, incarnation, time, identity)
        signature = PeerSigner(peer).sign(payload)
        assert signature is not None
        signatures[index] = signature
    return UpdatesMsg(
        {peer: {i: t for i, (_, t) in clocks.items()}},
        {peer: Proof(incarnation, signatures)},
    )


def clocks_in(msgs: Iterable[Message]) -> list[dict[str, dict[int, list[int]]]]:
    """The clocks of each ``updates`` among ``msgs`` (proofs left out)."""
    return [m.peer_clocks for m in msgs if isinstance(m, UpdatesMsg)]
