"""CorePeer without any transport: messages and explicit times in, messages out.

Cores get plain peer ids, seeded ``random.Random`` instances and explicit
``now`` floats; a :class:`Mesh` wires a few of them together by hand, every
message passing through the wire codec on the way (as the topic does).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

import pytest

from ampubsub_plugin.gossip import GossipConfig, GossipCore
from ampubsub_plugin.protocol import (
    MAX_MACHINES_PER_PEER,
    ByeMach,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
    decode,
    encode,
    schema_hash,
)
from ampubsub_plugin.remote import RemoteMachine
from asyncmachine import Machine, State

from .coreutil import CorePeer

WORKER = {"Foo": State(require=["Bar"]), "Bar": State(), "Baz": State()}
#: WORKER's state order once Exception is appended
STATES = ["Foo", "Bar", "Baz", "Exception"]
HASH = schema_hash(Machine(WORKER).schema, STATES)


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

    def kinds(self, kind: str) -> list[tuple[str, int, str]]:
        return [(p, i, m) for k, p, i, m in self.events if k == kind]


def make(
    peer: str, seed: int = 0, listener: Recorder | None = None, **cfg: Any
) -> CorePeer:
    core = GossipCore(
        peer, config=GossipConfig(**cfg), rng=random.Random(f"{peer}-{seed}")
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
    """

    def __init__(self, *cores: CorePeer, seed: int = 0) -> None:
        self.cores = list(cores)
        self.now = 0.0
        self.next_heartbeat = 0.0
        self.loss = 0.0
        self.lag = 0.0
        self._late: list[tuple[float, int, CorePeer, str, Message]] = []
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
            if self.lag:
                at = self.now + self.lag * (0.5 + self.rng.random())
                entry = (at, len(self.sent) * 1000 + len(self._late), core)
                heapq.heappush(self._late, (*entry, sender, received))
                continue
            core.receive(sender, received, self.now)

    def _deliver_late(self) -> None:
        while self._late and self._late[0][0] <= self.now:
            _, _, core, sender, msg = heapq.heappop(self._late)
            core.receive(sender, msg, self.now)

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


# -- introductions -------------------------------------------------------------


def test_nothing_is_sent_before_joining() -> None:
    a = make("A")
    a.export(worker("a1"))
    assert a.next_due(0.0) is None
    assert a.collect(0.0) == []


def test_joined_sends_hello_then_asks_for_a_snapshot_only_if_none_comes() -> None:
    a = make("A", snapshot_wait=2.0)
    m = worker("a1", tags=["kind:w"], parent="root")
    m.add("Bar")
    assert a.export(m) == 0
    a.joined(5.0)
    assert a.next_due(5.0) == 5.0
    out = a.collect(5.0)
    (hello,) = out  # the hello asks for a snapshot, too
    assert list(hello.peer_info) == ["A"]
    got = hello.peer_info["A"][0]
    assert got == Info(
        id="a1",
        schema=m.schema,
        states=STATES,
        time=m.time(),
        tags=["kind:w"],
        parent="root",
        schema_hash=HASH,
    )
    # a machine exported after joining is announced at once, with its new index
    assert a.export(worker("a2")) == 1
    (again,) = infos_about(a.collect(5.0), "A")
    assert set(again.peer_info["A"]) == {0, 1}
    assert again.peer_info["A"][1].id == "a2"
    # no snapshot within snapshot_wait: ask for one explicitly, once
    asks = [
        (s / 100, m)
        for s in range(500, 1200)
        for m in of_type(a.collect(s / 100), ReqInfoMsg)
    ]
    assert asks == [(7.0, ReqInfoMsg(peer_ids=[]))]


def test_a_joiner_that_gets_a_snapshot_does_not_ask_for_one() -> None:
    a = make("A", snapshot_wait=2.0)
    a.export(worker("a1"))
    a.joined(0.0)
    a.collect(0.0)
    full = info("b1", [0, 0, 0, 0], schema=worker("b1").schema)
    snapshot = InfoMsg({"B": {0: full}, "A": {}}, {})
    a.receive("B", wire(snapshot), 0.6)
    sent = [m for s in range(1, 1000) for m in a.collect(s / 100)]
    assert of_type(sent, ReqInfoMsg) == []
    assert [r.id for r in a.remotes()] == ["b1"]


def test_a_joiner_repeats_its_hello_when_a_snapshot_lacks_it_not_before() -> None:
    a = make("A", snapshot_wait=2.0, hello_first=1.0)
    a.export(worker("a1"))
    a.joined(0.0)
    assert infos_about(a.collect(0.0), "A")
    # waiting for the snapshot: no timed repeats (it shows if we were heard)
    early = [m for s in range(1, 150) for m in a.collect(s / 100)]
    assert infos_about(early, "A") == []
    full = info("b1", [0, 0, 0, 0], schema=worker("b1").schema)
    others = {p: {0: info(f"{p}1", [0, 0, 0, 0])} for p in "CD"}
    a.receive("B", wire(InfoMsg({"B": {0: full}, **others}, {})), 1.5)
    (again,) = infos_about(a.collect(1.5), "A")  # the sender never got it
    assert list(again.peer_info) == ["A"]
    # a snapshot that includes us: heard, no more hellos
    with_us = InfoMsg({"B": {0: full}, "A": {0: info("a1", [0, 0, 0, 0])}}, {})
    a.receive("B", wire(with_us), 2.0)
    later = [m for s in range(200, 3000) for m in a.collect(s / 100)]
    assert infos_about(later, "A") == []


def test_a_joiner_without_exports_asks_at_once_and_alone_never_asks() -> None:
    quiet = make("Q")
    quiet.joined(0.0)
    assert quiet.collect(0.0) == [ReqInfoMsg(peer_ids=[])]
    first = make("F")
    first.export(worker("f1"))
    first.joined(0.0, alone=True)
    sent = [m for s in range(1000) for m in first.collect(s / 100)]
    assert of_type(sent, ReqInfoMsg) == []


def test_hello_repeats_with_backoff_until_gossip_shows_it_was_heard() -> None:
    a = make("A", hello_first=0.25, hello_max=2.0)
    a.export(worker("a1"))
    a.joined(0.0, alone=True)
    hellos = []
    for step in range(400):  # 4 s in 10 ms steps
        now = step / 100
        if infos_about(a.collect(now), "A"):
            hellos.append(now)
    gaps = [round(y - x, 2) for x, y in pairwise(hellos)]
    assert hellos[0] == 0.0
    assert gaps[:3] == [0.25, 0.5, 1.0]
    assert all(g == 2.0 for g in gaps[3:])  # capped at hello_max
    # another peer's gossip lists our machine: the hello was heard
    a.receive("B", GossipMsg({"A": {0: 0}}), 4.0)
    sent = [m for s in range(400, 6000) for m in a.collect(s / 100)]
    assert infos_about(sent, "A") == []


# -- suppressed answers ------------------------------------------------------------


def test_owner_answers_reqinfo_about_itself_at_once_with_schema() -> None:
    a = make("A")
    m = worker("a1")
    a.export(m)
    introduced(a)
    a.collect(0.3)  # a repeated hello goes out without the schema
    a.receive("B", GossipMsg({"A": {0: 0}}), 0.5)  # heard: no more hellos
    a.receive("C", ReqInfoMsg(["A"]), 7.0)
    (answer,) = infos_about(a.collect(7.0), "A")
    assert answer.peer_info["A"][0].id == "a1"
    assert answer.peer_info["A"][0].schema == m.schema


@pytest.mark.parametrize("seed", range(6))
def test_non_owner_answers_reqinfo_after_a_random_delay(seed: int) -> None:
    low, high = 0.05, 0.2
    a = make("A")
    b = make("B", seed, answer_delay=(low, high))
    a.export(worker("a1"))
    introduced(a, b)
    b.receive("C", ReqInfoMsg(["A"]), 10.0)
    assert infos_about(b.collect(10.0), "A") == []
    due = b.next_due(10.0)
    assert due is not None and 10.0 + low <= due <= 10.0 + high
    answered = [
        t / 1000 for t in range(10_000, 10_300) if infos_about(b.collect(t / 1000), "A")
    ]
    assert len(answered) == 1
    assert 10.0 + low <= answered[0] <= 10.0 + high + 0.001


def test_non_owner_delays_differ_between_peers() -> None:
    delays = set()
    for seed in range(8):
        a, b = make("A"), make("B", seed)
        a.export(worker("a1"))
        introduced(a, b)
        b.collect(10.0)
        b.receive("C", ReqInfoMsg(["A"]), 10.0)
        assert b.collect(10.0) == []
        due = b.next_due(10.0)
        assert due is not None
        delays.add(round(due - 10.0, 6))
    assert len(delays) > 1


def _race(
    answerers: list[CorePeer], start: float, check: Any, end: float
) -> list[tuple[str, Message]]:
    """Step in 1 ms; each answer matching ``check`` reaches the other answerers."""
    answers = []
    for step in range(round(start * 1000), round(end * 1000)):
        now = step / 1000
        for core in answerers:
            for msg in core.collect(now):
                if check(msg):
                    answers.append((core.peer_id, msg))
                    for other in answerers:
                        if other is not core:
                            other.receive(core.peer_id, wire(msg), now)
    return answers


def test_non_owner_stays_silent_when_another_answer_comes_first() -> None:
    a, b, d = make("A"), make("B", 1), make("D", 2)
    a.export(worker("a1"))
    introduced(a, b, d)
    a.receive("B", GossipMsg({"A": {0: 0}}), 0.1)  # heard: no more hellos
    for core in (b, d):
        core.receive("C", ReqInfoMsg(["A"]), 10.0)
    answers = _race(
        [b, d], 10.0, lambda m: isinstance(m, InfoMsg) and "A" in m.peer_info, 11.0
    )
    assert len(answers) == 1, answers
    # the owner's own (immediate) answer silences everyone else too
    for core in (b, d):
        core.receive("C", ReqInfoMsg(["A"]), 20.0)
    a.receive("C", ReqInfoMsg(["A"]), 20.0)
    (own,) = infos_about(a.collect(20.0), "A")
    for core in (b, d):
        core.receive("A", wire(own), 20.0)
    late = [
        m
        for core in (b, d)
        for s in range(20_000, 21_000)
        for m in core.collect(s / 1000)
    ]
    assert infos_about(late, "A") == []


def test_owner_answers_requpdates_with_its_live_clock() -> None:
    a = make("A")
    m = worker("a1")
    a.export(m)
    introduced(a)
    m.add(["Bar", "Baz"])  # no tracer here: nobody called mark_dirty
    a.receive("C", ReqUpdatesMsg(["A"]), 3.0)
    assert of_type(a.collect(3.0), UpdatesMsg) == [UpdatesMsg({"A": {0: m.time()}})]


def test_non_owner_answers_requpdates_with_its_view_suppressed() -> None:
    a, b, d = make("A"), make("B", 1), make("D", 2)
    m = worker("a1")
    a.export(m)
    introduced(a, b, d)
    m.add(["Bar", "Foo"])
    update = UpdatesMsg({"A": {0: m.time()}})
    for core in (b, d):
        core.receive("A", wire(update), 1.0)
        assert remote_of(core, "a1").time() == m.time()
        core.receive("C", ReqUpdatesMsg(["A"]), 10.0)
    assert of_type(b.collect(10.0) + d.collect(10.0), UpdatesMsg) == []
    answers = _race(
        [b, d], 10.0, lambda x: isinstance(x, UpdatesMsg) and "A" in x.peer_clocks, 11
    )
    assert len(answers) == 1, answers
    ((_, answer),) = answers
    assert answer.peer_clocks == {"A": {0: m.time()}}


def snapshots_in(mesh: Mesh, since: float) -> list[tuple[str, InfoMsg]]:
    return [
        (p, m)
        for t, p, m in mesh.sent
        if t >= since and isinstance(m, InfoMsg) and len(m.peer_info) > 1
    ]


def test_snapshot_request_is_answered_by_one_peer_and_others_cancel() -> None:
    # nobody joined alone: the peers settle after waiting, then the two
    # ranked first answer in turn and the second sees the first's snapshot
    cores = [make(p) for p in "ABCDE"]
    for i, core in enumerate(cores):
        core.export(worker(f"m{i}"))
        core.joined(0.0)
    mesh = Mesh(*cores)
    mesh.run(30.0)
    assert all(len(c.remotes()) == 4 for c in cores)
    newcomer = make("N")
    mesh.add(newcomer)
    newcomer.joined(30.0)
    mesh.run(35.0)
    ((sender, snapshot),) = snapshots_in(mesh, 30.0)
    assert {p: sorted(i) for p, i in snapshot.peer_info.items()} == {
        p: [0] for p in "ABCDE"
    }
    assert sorted(r.id for r in newcomer.remotes()) == [f"m{i}" for i in range(5)]
    # the next newcomer is served by the same sender, which the others know
    late = make("L")
    late.export(worker("l0"))
    mesh.add(late)
    late.joined(40.0)
    mesh.run(45.0)
    assert [p for p, _ in snapshots_in(mesh, 40.0)] == [sender]
    assert len(late.remotes()) == 5


def test_newcomers_joining_together_share_one_snapshot() -> None:
    first = make("A")
    first.export(worker("a0"))
    first.joined(0.0, alone=True)
    mesh = Mesh(first)
    for i in range(6):
        core = make(f"N{i}")
        core.export(worker(f"n{i}"))
        mesh.add(core)
        core.joined(0.0)
    mesh.run(20.0)
    assert [p for p, _ in snapshots_in(mesh, 0.0)] == ["A"]
    for core in mesh.cores:
        assert len(core.remotes()) == 6, core.peer_id
    # no one asked for anything: the hellos and the one snapshot were enough
    assert [m for _, _, m in mesh.sent if isinstance(m, ReqInfoMsg)] == []


def join_burst(peers: int, seed: int, lag: float) -> tuple[Mesh, float | None]:
    """``peers`` join within 2 s (the first alone), each message ``lag`` late."""
    first = make("P00", seed)
    first.export(worker("m00"))
    first.joined(0.0, alone=True)
    mesh = Mesh(first, seed=seed)
    mesh.lag = lag
    rng = random.Random(seed)
    for i, at in enumerate(sorted(rng.uniform(0, 2.0) for _ in range(peers - 1)), 1):
        mesh.run(at)
        core = make(f"P{i:02d}", seed)
        core.export(worker(f"m{i:02d}"))
        mesh.add(core)
        core.joined(at)
    for tenth in range(1, 600):
        mesh.run(tenth / 10)
        if all(len(c.remotes()) == peers - 1 for c in mesh.cores):
            return mesh, tenth / 10
    return mesh, None


@pytest.mark.parametrize("seed", range(3))
def test_a_burst_of_joins_costs_about_a_message_per_peer(seed: int) -> None:
    # the 30-peer benchmark's situation: one busy process delays every
    # message by up to a second or two; discovery once cost 50+ per peer
    mesh, done = join_burst(20, seed, lag=1.0)
    assert done is not None and done < 8.0
    sent = [m for t, _, m in mesh.sent if t <= done]
    assert len(sent) <= 30, [type(m).__name__ for m in sent]
    snapshots = [m for _, m in snapshots_in(mesh, 0.0)]
    assert all(p == "P00" for p, _ in snapshots_in(mesh, 0.0))
    assert 1 <= len(snapshots) <= 5


@pytest.mark.parametrize("seed", range(2))
def test_a_burst_of_joins_under_heavy_lag_degrades_without_a_storm(seed: int) -> None:
    mesh, done = join_burst(20, seed, lag=4.0)
    assert done is not None and done < 20.0
    sent = [m for t, _, m in mesh.sent if t <= done]
    assert len(sent) <= 6 * 20
    # and then the network goes quiet: gossip only
    mesh.run(done + 30.0)
    after = [m for t, _, m in mesh.sent if t > done + 10.0]
    assert all(isinstance(m, GossipMsg) for m in after)
    assert len(after) <= 30  # about one per second network-wide


def test_a_partial_sender_steps_down_for_one_that_knows_more() -> None:
    # both believed they were first (py-libp2p reports a neighbour's topics late)
    s1, s2 = make("S1"), make("S2")
    for core in (s1, s2):
        core.export(worker(f"{core.peer_id}-m"))
        core.joined(0.0, alone=True)
    for core in (s1, s2):
        core.collect(0.0)  # their own hellos
    for name in "AB":
        joiner = make(name)
        joiner.export(worker(f"{name.lower()}1"))
        joiner.joined(0.0)
        s1.receive(name, wire(hello_of(joiner, 0.0)), 0.1)  # S2 never got them
    (snapshot,) = [m for s in range(1, 30) for m in s1.collect(s / 10)]
    s2.receive("S1", wire(snapshot), 3.0)
    assert not s2.discovery.is_sender and s1.discovery.is_sender
    # a newcomer's hello: only S1 answers
    n = make("N")
    n.export(worker("n1"))
    n.joined(5.0)
    hello = hello_of(n, 5.0)
    for core in (s1, s2):
        core.receive("N", wire(hello), 5.1)
    assert snapshots_of(s2, 5.1, 9.0) == set()
    assert "N" in snapshots_of(s1, 5.1, 9.0)


def test_of_two_senders_that_know_the_same_the_one_ranked_lower_steps_down() -> None:
    s1, s2 = make("S1"), make("S2")
    for core in (s1, s2):
        core.export(worker(f"{core.peer_id}-m"))
        core.joined(0.0, alone=True)
    for core, other in ((s1, s2), (s2, s1)):
        other.receive(core.peer_id, wire(hello_of(core, 0.0)), 0.1)
    sent = {
        c.peer_id: [m for s in range(1, 30) for m in c.collect(s / 10)]
        for c in (s1, s2)
    }
    for core, other in ((s1, s2), (s2, s1)):
        for msg in sent[core.peer_id]:
            other.receive(core.peer_id, wire(msg), 3.0)
    assert [s1.discovery.is_sender, s2.discovery.is_sender].count(True) == 1


def test_when_the_sender_falls_silent_the_first_ranked_peer_takes_over() -> None:
    cfg = {
        "peer_ttl": 5.0,
        "gone_ttl": 60.0,
        "keepalive": 2.0,
        "keepalive_per_peer": 0.1,
    }
    first = make("A", **cfg)
    first.export(worker("a0"))
    first.joined(0.0, alone=True)
    mesh = Mesh(first)
    for name in "BCDE":
        core = make(name, **cfg)
        core.export(worker(f"{name.lower()}0"))
        mesh.add(core)
        core.joined(0.1)
    mesh.run(10.0)
    assert [c.peer_id for c in mesh.cores if c.discovery.is_sender] == ["A"]
    mesh.cores.remove(first)  # vanishes without a bye
    mesh.run(30.0)
    n = make("N")
    n.export(worker("n0"))
    mesh.add(n)
    n.joined(30.0)
    mesh.run(40.0)
    assert sorted(r.id for r in n.remotes() if r.is_connected) == [
        "b0",
        "c0",
        "d0",
        "e0",
    ]
    senders = {p for p, _ in snapshots_in(mesh, 30.0)}
    assert len(senders) == 1 and "A" not in senders


def snapshots_of(core: CorePeer, start: float, end: float) -> set[str]:
    """Peers covered by the snapshots ``core`` sends between the two times."""
    out: set[str] = set()
    for step in range(round(start * 10), round(end * 10)):
        for msg in core.collect(step / 10):
            if isinstance(msg, InfoMsg) and len(msg.peer_info) > 1:
                out |= set(msg.peer_info)
    return out


def test_a_newcomer_exporting_nothing_is_introduced_after_the_grace() -> None:
    first = make("A", request_grace=2.0)
    first.export(worker("a0"))
    first.joined(0.0, alone=True)
    mesh = Mesh(first)
    mesh.run(10.0)
    quiet = make("Q")
    mesh.add(quiet)
    quiet.joined(10.0)
    mesh.run(11.0)
    assert [r.id for r in quiet.remotes()] == ["a0"]
    assert "Q" not in first.peers()  # its request alone doesn't introduce it
    mesh.run(16.0)
    assert "Q" in first.peers()
    asks = [
        (t, m.peer_ids)
        for t, p, m in mesh.sent
        if p == "A" and isinstance(m, ReqInfoMsg)
    ]
    assert asks and asks[0][0] >= 12.0 and asks[0][1] == ["Q"]


# -- anti-entropy ------------------------------------------------------------------


def test_gossip_with_a_greater_sum_asks_for_updates_until_they_arrive() -> None:
    a, b = make("A"), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    a.receive("C", GossipMsg({"B": {0: 6}}), 1.0)
    assert asked(a.collect(1.0), ReqUpdatesMsg) == {"B"}
    assert a.stats()["missing_updates"] == 1
    a.receive("C", UpdatesMsg({"B": {0: [1, 1, 4, 0]}}), 1.1)
    assert a.stats()["missing_updates"] == 0
    later = [m for s in range(11, 200) for m in a.collect(s / 10)]
    assert asked(later, ReqUpdatesMsg) == set()
    assert remote_of(a, "b1").time() == [1, 1, 4, 0]


def test_gossip_with_a_smaller_sum_of_own_machine_makes_the_owner_push() -> None:
    a = make("A")
    m = worker("a1")
    a.export(m)
    introduced(a)
    m.add("Bar")
    a.receive("B", GossipMsg({"A": {0: 0}}), 2.0)
    assert of_type(a.collect(2.0), UpdatesMsg) == [UpdatesMsg({"A": {0: m.time()}})]
    # an equal sum is no reason to push
    a.receive("B", GossipMsg({"A": {0: sum(m.time())}}), 3.0)
    assert of_type(a.collect(3.0), UpdatesMsg) == []


def test_gossip_with_a_smaller_sum_of_a_known_machine_gets_our_view() -> None:
    a, b = make("A", answer_delay=(0.05, 0.1)), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    a.receive("B", UpdatesMsg({"B": {0: [1, 1, 2, 0]}}), 1.0)
    a.receive("C", GossipMsg({"B": {0: 2}}), 2.0)
    assert of_type(a.collect(2.0), UpdatesMsg) == []
    pushed = [
        m for s in range(2000, 2200) for m in of_type(a.collect(s / 1000), UpdatesMsg)
    ]
    assert pushed == [UpdatesMsg({"B": {0: [1, 1, 2, 0]}})]


def test_unknown_peers_in_gossip_and_updates_are_asked_for_after_a_grace() -> None:
    a = make("A", request_grace=2.0, request_interval=0.5, rerequest=3.0)
    a.export(worker("a1"))
    a.joined(0.0, alone=True)
    a.collect(0.0)
    a.receive("C", GossipMsg({"X": {0: 3}, "A": {7: 1}}), 1.0)
    # their hellos or a snapshot are likely on the way: wait before asking
    assert asked(a.collect(1.0), ReqInfoMsg) == set()
    assert (
        asked([m for s in range(11, 30) for m in a.collect(s / 10)], ReqInfoMsg)
        == set()
    )
    assert asked(a.collect(3.0), ReqInfoMsg) == {"C", "X"}  # never itself
    a.receive("C", UpdatesMsg({"Y": {0: [1, 0, 0, 0]}}), 3.2)
    later = [m for s in range(31, 56) for m in a.collect(s / 10)]
    assert asked(later, ReqInfoMsg) == {"Y"}  # X, C: asked recently
    assert a.stats()["missing_peers"] == 3
    # asked again after ``rerequest``, while still missing
    again = [m for s in range(56, 95) for m in a.collect(s / 10)]
    assert asked(again, ReqInfoMsg) == {"C", "X", "Y"}


def test_a_joiner_waits_for_its_snapshot_before_asking_about_peers() -> None:
    a = make("A", request_grace=1.0, snapshot_wait=2.0)
    a.export(worker("a1"))
    a.joined(0.0)
    a.collect(0.0)
    a.receive("C", GossipMsg({"X": {0: 3}}), 0.5)
    early = [m for s in range(1, 30) for m in a.collect(s / 10)]
    assert asked(early, ReqInfoMsg) == set()  # the snapshot will bring them
    full = info("b1", [0, 0, 0, 0], schema=worker("b1").schema)
    a.receive("B", wire(InfoMsg({"B": {0: full}, "A": {}}, {})), 3.0)
    # more snapshots may follow while peers join: ask once they stopped
    assert (
        asked([m for s in range(30, 40) for m in a.collect(s / 10)], ReqInfoMsg)
        == set()
    )
    assert asked(a.collect(4.0), ReqInfoMsg) == {"C", "X"}


def test_updates_for_an_unknown_peer_wait_for_its_info() -> None:
    rec = Recorder()
    a = make("A", listener=rec, request_grace=0.5)
    a.joined(0.0, alone=True)
    a.collect(0.0)
    a.receive("C", UpdatesMsg({"X": {0: [1, 1, 2, 0], 1: [0, 0, 1, 0]}}), 1.0)
    assert a.remotes() == []
    assert a.stats()["pending_updates"] == 2
    assert "X" in asked(a.collect(1.5), ReqInfoMsg)
    # an older buffered clock never replaces a newer one
    a.receive("C", UpdatesMsg({"X": {0: [1, 1, 0, 0]}}), 1.5)
    a.receive("C", InfoMsg({"X": {0: info("x1", [0, 0, 0, 0])}}, {}), 2.0)
    remote = remote_of(a, "x1")
    assert remote.time() == [1, 1, 2, 0]
    assert remote.active_states == ["Foo", "Bar"]
    assert a.stats()["pending_updates"] == 1  # index 1 still waits
    assert rec.kinds("discovered") == [("X", 0, "x1")]


def test_fresher_clock_inside_a_relayed_info_is_applied() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    remote = remote_of(a, "b1")
    a.receive("C", InfoMsg({"B": {0: info("b1", [1, 1, 0, 0])}}, {}), 1.0)
    assert remote.time() == [1, 1, 0, 0]
    assert rec.kinds("updated") == [("B", 0, "b1")]
    # a stale relay changes nothing
    a.receive("C", InfoMsg({"B": {0: info("b1", [0, 1, 0, 0])}}, {}), 2.0)
    assert remote.time() == [1, 1, 0, 0]
    assert len(rec.kinds("updated")) == 1
    assert remote_of(a, "b1") is remote


def test_relayed_info_contradicting_a_known_machine_is_dropped() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    remote = remote_of(a, "b1")
    a.receive("C", InfoMsg({"B": {0: info("evil", [1, 1, 1, 0])}}, {}), 1.0)
    assert a.counters["drop_info_contradicts"] == 1
    a.receive("C", InfoMsg({"B": {0: info("b1", [3, 3], states=["X", "Y"])}}, {}), 1.0)
    assert a.counters["drop_info_contradicts"] == 2
    assert a.remotes() == [remote]
    assert remote.time() == [0, 0, 0, 0] and remote.is_connected
    assert rec.kinds("gone") == []


def test_owner_redefining_a_machine_replaces_it() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    old = remote_of(a, "b1")
    redefined = info("b2", [1, 0, 0], states=["P", "Q", "Exception"])
    a.receive("B", InfoMsg({"B": {0: redefined}}, {}), 1.0)
    (new,) = a.remotes()
    assert (new.id, new.index, new.state_names) == ("b2", 0, ["P", "Q", "Exception"])
    assert new.active_states == ["P"]
    assert old.is_disposed and not old.is_connected
    assert rec.kinds("gone") == [("B", 0, "b1")]
    assert rec.kinds("discovered")[-1] == ("B", 0, "b2")
    assert a.counters["drop_info_contradicts"] == 0


# -- departures ----------------------------------------------------------------


def test_lost_bye_of_one_machine_is_repaired() -> None:
    cores = [make(p) for p in "ABC"]
    keep, drop = worker("keep"), worker("drop")
    cores[0].export(keep)
    cores[0].export(drop)
    for core in cores:
        core.joined(0.0)
    mesh = Mesh(*cores)
    mesh.run(20.0)
    assert all(len(c.remotes()) == 2 for c in cores[1:])
    cores[0].unexport(drop)
    (bye,) = of_type(cores[0].collect(20.0), ByeMsg)
    cores[1].receive("A", wire(bye), 20.0)  # C misses it
    assert [r.id for r in cores[1].remotes()] == ["keep"]
    mesh.run(200.0)
    for core in cores[1:]:
        assert [r.id for r in core.remotes() if r.is_connected] == ["keep"]


def test_whole_peer_bye_disconnects_then_forgets_after_gone_ttl() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec, gone_ttl=30.0), make("B")
    b.export(worker("b1"))
    b.export(worker("b2"))
    introduced(b, a)
    remotes = a.remotes()
    assert len(remotes) == 2
    b.bye_all()
    (bye,) = of_type(b.collect(5.0), ByeMsg)
    assert set(bye.machs) == {0, 1} and all(x.peer_bye for x in bye.machs.values())
    a.receive("B", wire(bye), 5.0)
    assert not any(r.is_connected for r in remotes)
    assert sorted(rec.kinds("gone")) == [("B", 0, "b1"), ("B", 1, "b2")]
    a.heartbeat(34.0)
    assert a.remotes() == remotes  # shown disconnected until gone_ttl passes
    a.heartbeat(35.5)
    assert a.remotes() == [] and "B" not in a.peers()
    assert all(r.is_disposed for r in remotes)


def test_gone_is_reported_once_per_remote() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec, gone_ttl=30.0), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    b.bye_all()
    a.receive("B", wire(b.collect(1.0)[0]), 1.0)
    assert rec.kinds("gone") == [("B", 0, "b1")]
    a.heartbeat(40.0)
    assert a.remotes() == []
    assert rec.kinds("gone") == [("B", 0, "b1")]


def test_bye_of_one_machine_forgets_only_that_one() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec), make("B")
    keep, drop = worker("keep"), worker("drop")
    b.export(keep)
    b.export(drop)
    introduced(b, a)
    drop.add("Baz")
    assert b.unexport(drop) == 1
    (bye,) = of_type(b.collect(1.0), ByeMsg)
    assert bye.machs == {1: ByeMach(peer_bye=False, id="drop", time=drop.time())}
    a.receive("B", wire(bye), 1.0)
    assert [r.id for r in a.remotes()] == ["keep"]
    assert remote_of(a, "keep").is_connected
    assert rec.kinds("gone") == [("B", 1, "drop")]


def test_bye_from_a_peer_without_exports_is_harmless() -> None:
    a, b = make("A"), make("B")
    b.bye_all()
    (bye,) = b.collect(0.0)
    assert bye == ByeMsg({0: ByeMach(peer_bye=True, id="", time=[])})
    a.receive("B", wire(bye), 0.0)
    a.receive("B", ByeMsg({5: ByeMach(peer_bye=False, id="x", time=[1])}), 0.0)
    assert a.remotes() == [] and a.peers() == []


def test_silent_peer_is_disconnected_after_peer_ttl_then_forgotten() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec, peer_ttl=20.0, gone_ttl=10.0), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    remote = remote_of(a, "b1")
    a.receive("B", GossipMsg({"B": {0: 0}}), 5.0)  # heard at 5
    a.heartbeat(24.0)
    assert remote.is_connected
    a.heartbeat(25.5)
    assert not remote.is_connected
    assert a.counters["peer_silent"] == 1
    assert rec.kinds("gone") == [("B", 0, "b1")]
    a.heartbeat(34.0)
    assert a.remotes() == [remote]
    a.heartbeat(36.0)
    assert a.remotes() == [] and remote.is_disposed


def test_silent_peer_is_revived_by_its_next_message() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec, peer_ttl=20.0), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    remote = remote_of(a, "b1")
    a.heartbeat(21.0)
    assert not remote.is_connected
    a.receive("B", GossipMsg({"B": {0: 0}}), 22.0)
    assert remote.is_connected
    assert rec.kinds("updated") == [("B", 0, "b1")]


# -- push ----------------------------------------------------------------------


def test_mark_dirty_coalesces_changes_into_one_updates_message() -> None:
    a = make("A", update_interval=0.02)
    m1, m2 = worker("m1"), worker("m2")
    a.export(m1)
    a.export(m2)
    introduced(a)
    # the first change goes out at once
    m1.toggle("Baz")
    a.mark_dirty(0)
    assert of_type(a.collect(1.0), UpdatesMsg) == [UpdatesMsg({"A": {0: m1.time()}})]
    # a burst right after coalesces into one message; only the first change
    # asks the owner to wake its sender
    wakes = []
    for _ in range(100):
        m1.toggle("Baz")
        wakes.append(a.mark_dirty(0))
        m2.toggle("Bar")
        wakes.append(a.mark_dirty(1))
    assert wakes.count(True) == 1 and wakes[0]
    assert a.mark_dirty(99) is False  # not exported: ignored
    assert of_type(a.collect(1.01), UpdatesMsg) == []
    assert a.next_due(1.01) == pytest.approx(1.02)
    assert of_type(a.collect(1.02), UpdatesMsg) == [
        UpdatesMsg({"A": {0: m1.time(), 1: m2.time()}})
    ]
    assert of_type(a.collect(2.0), UpdatesMsg) == []
    assert a.stats()["dirty"] == 0


def test_rate_limited_updates_stay_dirty_until_sent() -> None:
    a = make("A", rate=2.0, burst=1, update_interval=0.02)
    m = worker("m")
    a.export(m)
    m.add("Bar")
    a.mark_dirty(0)
    assert of_type(a.collect(0.0), UpdatesMsg) == [UpdatesMsg({"A": {0: m.time()}})]
    m.add("Baz")
    a.mark_dirty(0)
    limited = a.counters["rate_limited"]
    assert a.collect(0.1) == []
    assert a.counters["rate_limited"] > limited
    assert a.stats()["dirty"] == 1
    assert a.next_due(0.1) == pytest.approx(0.5)
    m.add("Foo")  # a later change rides along
    assert a.collect(0.5) == [UpdatesMsg({"A": {0: m.time()}})]
    assert a.stats()["dirty"] == 0


def test_publish_failed_keeps_the_message_intent() -> None:
    a = make("A", update_interval=0.02)
    m = worker("m")
    a.export(m)
    m.add("Bar")
    a.mark_dirty(0)
    (update,) = a.collect(0.0)
    a.publish_failed(update)
    assert a.counters["publish_failed"] == 1
    assert a.stats()["dirty"] == 1
    assert a.collect(0.01) == []
    m.add("Baz")
    assert a.collect(0.02) == [UpdatesMsg({"A": {0: m.time()}})]
    # a bye that failed goes out again too
    a.unexport(m)
    (bye,) = a.collect(1.0)
    assert isinstance(bye, ByeMsg)
    a.publish_failed(bye)
    assert a.collect(1.0) == [bye]


def test_held_back_snapshot_request_is_sent_later() -> None:
    a = make("A", rate=1.0, burst=1)
    a.export(worker("a1"))
    a.joined(0.0)
    sent = [m for s in range(600) for m in a.collect(s / 10)]  # 60 s
    assert a.counters["rate_limited"] > 0
    assert ReqInfoMsg([]) in sent


# -- schemas ---------------------------------------------------------------------


def test_schema_travels_once_then_by_hash() -> None:
    b = make("B")
    m = worker("b1")
    b.export(m)
    b.joined(0.0, alone=True)
    first = hello_of(b, 0.0).peer_info["B"][0]
    assert first.schema == m.schema and first.schema_hash == HASH
    second = hello_of(b, b.config.hello_first).peer_info["B"][0]
    assert second.schema is None and second.schema_hash == HASH
    assert (second.id, second.states, second.time) == (first.id, STATES, m.time())


def test_receiver_lacking_the_schema_hash_asks_for_the_info() -> None:
    b, c = make("B"), make("C")
    b.export(worker("b1"))
    b.joined(0.0, alone=True)
    b.collect(0.0)  # the first hello (with the schema) is lost
    second = hello_of(b, b.config.hello_first)
    c.joined(0.0)
    c.collect(0.0)
    c.receive("B", wire(second), 1.0)
    assert remote_of(c, "b1").state_names == STATES  # shown already
    assert c.stats()["missing_peers"] == 1
    assert "B" in asked(c.collect(1.0), ReqInfoMsg)


def test_known_schema_hash_fills_in_the_schema() -> None:
    b, d = make("B"), make("D")
    b.export(worker("b1"))
    introduced(b, d)  # with the schema
    b.export(worker("b2"))
    (hello,) = infos_about(b.collect(0.1), "B")
    assert hello.peer_info["B"][1].schema is None
    d.receive("B", wire(hello), 0.1)
    assert remote_of(d, "b2").schema["Foo"].require == ("Bar",)
    assert "B" not in asked(d.collect(1.0), ReqInfoMsg)
    assert d.stats()["missing_peers"] == 0


def test_schema_arriving_later_completes_the_remote_and_stops_requests() -> None:
    b, c = make("B"), make("C")
    b.export(worker("b1"))
    b.joined(0.0, alone=True)
    b.collect(0.0)
    c.joined(0.0)
    c.collect(0.0)
    c.receive("B", wire(hello_of(b, b.config.hello_first)), 1.0)
    assert "B" in asked(c.collect(1.0), ReqInfoMsg)
    b.receive("C", ReqInfoMsg(["B"]), 1.0)
    (answer,) = [
        m for m in infos_about(b.collect(1.0), "B") if m.peer_info["B"][0].schema
    ]
    c.receive("B", wire(answer), 1.0)
    assert remote_of(c, "b1").schema["Foo"].require == ("Bar",)
    later = [m for s in range(11, 300) for m in c.collect(s / 10)]
    assert "B" not in asked(later, ReqInfoMsg)


# -- bounds ----------------------------------------------------------------------


def test_tables_are_bounded_and_drops_counted() -> None:
    a = make("A", max_peers=8, max_pending=8, max_schemas=4)
    a.joined(0.0)
    for i in range(50):
        a.receive(f"G{i}", GossipMsg({f"X{i}": {0: 1}}), 1.0)
    assert a.stats()["missing_peers"] == 8
    assert a.counters["drop_missing_full"] > 0
    for i in range(50):
        a.receive("U", UpdatesMsg({f"Y{i}": {0: [1, 0, 0, 0]}}), 2.0)
        a.receive("U", UpdatesMsg({"Z": {i: [1, 0, 0, 0]}}), 2.0)
    assert a.stats()["pending_updates"] == 8
    assert a.counters["drop_pending_full"] == 92
    for i in range(50):
        states = [f"S{i}", "Exception"]
        schema = {f"S{i}": State(), "Exception": State(multi=True)}
        msg = InfoMsg(
            {f"P{i}": {0: info(f"p{i}", [0, 0], states=states, schema=schema)}}, {}
        )
        a.receive(f"P{i}", msg, 3.0)
    assert a.stats()["peers"] == 8
    assert a.counters["drop_peers_full"] > 0
    assert a.stats()["schemas"] == 4
    assert a.stats()["remote_machines"] == 8


def test_machines_of_one_peer_are_bounded() -> None:
    a = make("A", max_peers=8)
    a.joined(0.0)
    for k in range(4):
        infos = {k * 1000 + i: info(f"m{k}-{i}", [0, 0, 0, 0]) for i in range(1000)}
        a.receive("X", InfoMsg({"X": infos}, {}), 1.0)
    assert a.stats()["remote_machines"] <= MAX_MACHINES_PER_PEER


def test_request_bookkeeping_is_bounded() -> None:
    a = make("A", max_peers=8)
    a.joined(0.0)
    for k in range(20):
        ids = [f"P{k}-{i}" for i in range(1000)]
        a.receive("X", ReqInfoMsg(ids), 1.0)
        a.receive("X", ReqUpdatesMsg(ids), 1.0)
    # private tables: they have no public size, but must obey max_peers too
    assert len(a.repair._asked_info) <= a.config.max_peers
    assert len(a.repair._asked_updates) <= a.config.max_peers


# -- a long random run -------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_long_random_simulation_never_busy_loops_and_converges(seed: int) -> None:
    rng = random.Random(seed)
    cfg = {"peer_ttl": 40.0, "gone_ttl": 40.0, "keepalive": 10.0}
    cores = [make(f"P{i}", seed, **cfg) for i in range(4)]
    machines: dict[str, list[Machine]] = {}
    for core in cores:
        machines[core.peer_id] = [worker(f"{core.peer_id}-m{j}") for j in range(2)]
        for m in machines[core.peer_id]:
            core.export(m)
        core.joined(0.0)
    mesh = Mesh(*cores, seed=seed)
    mesh.loss = 0.2
    for second in range(300):
        for _ in range(rng.randrange(4)):
            core = rng.choice(cores)
            index = rng.randrange(2)
            machines[core.peer_id][index].toggle(rng.choice(["Bar", "Baz"]))
            core.mark_dirty(index)
        mesh.run(second + rng.random())
    mesh.loss = 0.0
    mesh.run(400.0)
    for core in cores:
        seen = {(r.peer_id, r.id): r for r in core.remotes()}
        assert len(seen) == 6, (core.peer_id, sorted(seen))
        for owner, ms in machines.items():
            if owner == core.peer_id:
                continue
            for m in ms:
                remote = seen[(owner, m.id)]
                assert remote.time() == m.time() and remote.is_connected
    # quiet when nothing changes: at most a keepalive per peer and 10 s
    before = len(mesh.sent)
    mesh.run(500.0)
    assert len(mesh.sent) - before <= 4 * 100 / 10 * 2
    assert mesh.empty_collects <= mesh.wakeups / 2
