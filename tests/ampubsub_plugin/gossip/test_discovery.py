"""Discovery: hello, snapshots, joins, the snapshot sender and our phase.

The rules live in ``ampubsub_plugin/_gossip/discovery.py``: a joiner says
hello and waits for a snapshot (or asks for one), one sender answers a batch
of newcomers, and of two senders one steps down.
"""

from __future__ import annotations

import random
from dataclasses import replace
from itertools import pairwise

import pytest

from ampubsub_plugin._gossip import Phase
from ampubsub_plugin.protocol import GossipMsg, Info, InfoMsg, Message, ReqInfoMsg

from ..coreutil import (
    HASH,
    STATES,
    CorePeer,
    Mesh,
    hello_of,
    info,
    infos_about,
    introduced,
    make,
    of_type,
    signed,
    wire,
    worker,
)


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
    expected = Info(
        id="a1",
        schema=m.schema,
        states=STATES,
        time=m.time(),
        tags=["kind:w"],
        parent="root",
        schema_hash=HASH,
    )
    # the owner's run and its signature of the clock ride along
    assert got == signed("A", 0, expected, incarnation=1)
    # a machine exported after joining is announced at once, with its new index
    assert a.export(worker("a2")) == 1
    (again,) = infos_about(a.collect(5.0), "A")
    assert set(again.peer_info["A"]) == {0, 1}
    assert again.peer_info["A"][1].id == "a2"
    # no snapshot within snapshot_wait: ask for one explicitly, once, at a
    # moment spread over another snapshot_wait (peers that joined together
    # don't all ask at once)
    asks = [
        (s / 100, m)
        for s in range(500, 1500)
        for m in of_type(a.collect(s / 100), ReqInfoMsg)
    ]
    assert len(asks) == 1 and asks[0][1] == ReqInfoMsg(peer_ids=[])
    assert 7.0 <= asks[0][0] <= 10.0


def test_a_joiner_that_gets_a_snapshot_does_not_ask_for_one() -> None:
    a = make("A", snapshot_wait=2.0)
    a.export(worker("a1"))
    a.joined(0.0)
    a.collect(0.0)
    full = info("b1", [0, 0, 0, 0], schema=worker("b1").schema)
    mine = signed("A", 0, info("a1", [0, 0, 0, 0]))  # A's hello, relayed
    snapshot = InfoMsg({"B": {0: full}, "A": {0: mine}}, {})
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
    others = {p: {0: signed(p, 0, info(f"{p}1", [0, 0, 0, 0]))} for p in "CD"}
    a.receive("B", wire(InfoMsg({"B": {0: full}, **others}, {})), 1.5)
    (again,) = infos_about(a.collect(1.5), "A")  # the sender never got it
    assert list(again.peer_info) == ["A"]
    # a snapshot that includes us: heard, no more hellos
    mine = signed("A", 0, info("a1", [0, 0, 0, 0]))
    with_us = InfoMsg({"B": {0: full}, "A": {0: mine}}, {})
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
    hellos, flags = [], []
    for step in range(400):  # 4 s in 10 ms steps
        now = step / 100
        for hello in infos_about(a.collect(now), "A"):
            hellos.append(now)
            flags.append(hello.again)
    gaps = [round(y - x, 2) for x, y in pairwise(hellos)]
    assert hellos[0] == 0.0
    # each repeat says so: it asks for an acknowledgement, the first doesn't
    assert flags[0] is False and all(flags[1:]) and len(flags) > 3
    assert gaps[:3] == [0.25, 0.5, 1.0]
    assert all(g == 2.0 for g in gaps[3:])  # capped at hello_max
    # another peer's gossip lists our machine: the hello was heard
    a.receive("B", GossipMsg({"A": {0: 0}}), 4.0)
    sent = [m for s in range(400, 6000) for m in a.collect(s / 100)]
    assert infos_about(sent, "A") == []


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


# -- the phase table (discovery.TRANSITIONS) ---------------------------------------


def test_joining_alone_makes_a_sender_and_joining_others_a_joiner() -> None:
    alone, joiner = make("S"), make("J")
    # never joined: its (empty) view is complete
    assert alone.discovery.phase is Phase.SETTLED
    alone.export(worker("s1"))
    alone.joined(0.0, alone=True)
    joiner.joined(0.0)
    assert alone.discovery.phase is Phase.SENDER and alone.discovery.is_sender
    assert joiner.discovery.phase is Phase.JOINING
    # joining again starts over from the join row, whatever the phase
    alone.left()
    alone.joined(10.0)
    assert alone.discovery.phase is Phase.JOINING
    joiner.left()
    joiner.joined(10.0, alone=True)
    assert joiner.discovery.phase is Phase.SENDER


def test_a_snapshot_settles_a_joiner_and_a_hello_does_not() -> None:
    a = make("A")
    a.export(worker("a1"))
    a.joined(0.0)
    a.collect(0.0)
    a.receive("B", wire(InfoMsg({"B": {0: info("b1", [0, 0, 0, 0])}}, {})), 0.5)
    assert a.discovery.phase is Phase.JOINING  # B's hello names only B
    full = info("c1", [0, 0, 0, 0], schema=worker("c1").schema)
    mine = signed("A", 0, info("a1", [0, 0, 0, 0]))
    a.receive("C", wire(InfoMsg({"C": {0: full}, "A": {0: mine}}, {})), 1.0)
    assert a.discovery.phase is Phase.SETTLED


def test_a_joiner_that_waited_past_its_settle_time_is_settled() -> None:
    a = make("A", snapshot_wait=3.0)
    a.export(worker("a1"))
    a.joined(0.0)
    phases, asks = {}, []
    for step in range(100):
        now = step / 10
        asks += [now for m in of_type(a.collect(now), ReqInfoMsg) if not m.peer_ids]
        phases[now] = a.discovery.phase
    # no snapshot: it asked between 3.0 and 6.0 and waited 3.0 more
    assert len(asks) == 1 and 3.0 <= asks[0] <= 6.0
    assert {p for t, p in phases.items() if t < asks[0] + 3.0} == {Phase.JOINING}
    settled = [t for t, p in phases.items() if p is Phase.SETTLED]
    assert settled and asks[0] + 3.0 <= settled[0] <= asks[0] + 3.5
    assert all(phases[t] is Phase.SETTLED for t in phases if t >= settled[0])


def test_a_sender_steps_down_only_for_a_snapshot_that_knows_more() -> None:
    s = make("S")
    s.export(worker("s1"))
    s.joined(0.0, alone=True)
    s.collect(0.0)
    for peer in "TU":
        hello = InfoMsg({peer: {0: info(f"{peer.lower()}1", [0, 0, 0, 0])}}, {})
        s.receive(peer, wire(hello), 0.5)
    # T's snapshot lacks U and teaches nothing new: S stays the sender
    relayed_s = {0: signed("S", 0, info("s1", [0, 0, 0, 0]))}
    partial = InfoMsg({"T": {0: info("t1", [0, 0, 0, 0])}, "S": relayed_s}, {})
    s.receive("T", wire(partial), 1.0)
    assert s.discovery.phase is Phase.SENDER
    # T's next snapshot names V, whom S never heard of: T knows more
    fuller = InfoMsg(
        {
            "T": {0: info("t1", [0, 0, 0, 0])},
            "S": relayed_s,
            "V": {0: signed("V", 0, info("v1", [0, 0, 0, 0]))},
        },
        {},
    )
    s.receive("T", wire(fuller), 2.0)
    assert s.discovery.phase is Phase.SETTLED and not s.discovery.is_sender


def test_an_unsigned_snapshot_neither_settles_a_joiner_nor_unseats_a_sender() -> None:
    """A poisoner's "snapshot" of peers nobody signed is no snapshot."""
    fake = {p: {0: info(f"{p}1", [5, 5, 5, 5])} for p in "XYZ"}
    a = make("A", snapshot_wait=2.0)
    a.export(worker("a1"))
    a.joined(0.0)
    a.collect(0.0)
    poison = InfoMsg({"P": {}, "A": {0: info("a1", [9, 0, 0, 0])}, **fake}, {})
    a.receive("P", wire(poison), 0.5)
    assert a.discovery.phase is Phase.JOINING and not a.discovery.heard
    asks = [m for s in range(50, 500) for m in of_type(a.collect(s / 100), ReqInfoMsg)]
    assert ReqInfoMsg([]) in asks  # it still asks for a real snapshot
    s = make("S")
    s.export(worker("s1"))
    s.joined(0.0, alone=True)
    s.collect(0.0)
    s.receive("P", wire(InfoMsg({"P": {}, **fake}, {})), 1.0)
    assert s.discovery.is_sender


# -- peers that start together (a cluster restart, a test fixture) -------------------


def start_together(peers: int, *, cost: float = 0.0, seed: int = 0) -> Mesh:
    """``peers`` exporting peers join at the same moment; none is alone."""
    mesh = Mesh(seed=seed)
    mesh.cost = cost
    for i in range(peers):
        core = make(f"P{i:02d}", seed)
        core.export(worker(f"m{i:02d}"))
        mesh.add(core)
    for core in mesh.cores:
        core.joined(0.0)
    return mesh


def synced_at(mesh: Mesh, until: float) -> float | None:
    want = len(mesh.cores) - 1
    for tenth in range(1, int(until * 10)):
        mesh.run(tenth / 10)
        if all(len(c.remotes()) == want for c in mesh.cores):
            return tenth / 10
    return None


@pytest.mark.parametrize("seed", range(2))
def test_peers_starting_together_settle_with_one_snapshot_and_go_quiet(
    seed: int,
) -> None:
    peers = 30
    mesh = start_together(peers, seed=seed)
    done = synced_at(mesh, 30.0)
    assert done is not None
    # settled by waiting, the first-ranked peers owe the snapshot nobody
    # could send: a few asks and snapshots, not one per peer
    asks = [m for _, _, m in mesh.sent if isinstance(m, ReqInfoMsg) and not m.peer_ids]
    assert len(asks) <= 3, len(asks)
    mesh.run(40.0)
    assert len(snapshots_in(mesh, 0.0)) <= 3
    # repeated hellos are acknowledged, so they stop; 15 s after the start
    # the network gossips as much as one whose peers joined one by one
    late = [m for t, _, m in mesh.sent if t >= 15.0]
    assert all(isinstance(m, GossipMsg) for m in late), late[:5]
    staggered, _ = join_burst(peers, seed, lag=0.0)
    staggered.run(40.0)
    idle = [m for t, _, m in staggered.sent if t >= 15.0]
    assert len(late) <= 1.5 * len(idle), (len(late), len(idle))


def repeated_hello(owner: CorePeer, since: float) -> tuple[float, InfoMsg]:
    """The next hello ``owner`` (heard by nobody) says again, and when."""
    for step in range(int(since * 10), 600):
        for hello in infos_about(owner.collect(step / 10), owner.peer_id):
            return step / 10, hello
    raise AssertionError(f"{owner.peer_id} never said hello again")


def test_a_repeated_hello_from_a_known_peer_is_acknowledged() -> None:
    a, b = make("A", snapshot_wait=2.0), make("B")
    a.export(worker("a1"))
    b.export(worker("b1"))
    b.joined(0.0, alone=True)
    b.collect(0.0)
    introduced(a, b)  # B knew nothing of A: a snapshot answers it
    for step in range(1, 100):
        b.collect(step / 10)  # (what B owes A now lost)
    assert b.counters["gossip_ack"] == 0  # a first hello asks for nothing
    # A never heard of it and says hello again: B acknowledges the repeat
    now, again = repeated_hello(a, 0.1)
    assert again.again
    b.receive("A", wire(again), max(now, 10.0))
    acks = [m for s in range(100, 120) for m in of_type(b.collect(s / 10), GossipMsg)]
    assert b.counters["gossip_ack"] == 1
    (ack,) = [m for m in acks if list(m.peer_gossips) == ["A"]]
    a.receive("B", wire(ack), 12.0)
    assert a.discovery.heard
    assert a.discovery.hello_due is None


def test_a_first_hello_that_comes_after_a_relay_of_it_draws_no_ack() -> None:
    # gossipsub is slower than a pulled snapshot: B may know A from C's
    # relay before A's own hello reaches it. A isn't waiting to be told it
    # was heard (its snapshot tells it), so nobody acknowledges the hello
    a, b, c = make("A"), make("B"), make("C")
    for core in (a, b, c):
        core.export(worker(f"{core.peer_id.lower()}1"))
    b.joined(0.0, alone=True)
    b.collect(0.0)
    hello = introduced(a, c)
    mine = a.collect(0.0)  # (nothing more: A waits for its snapshot)
    assert not infos_about(mine, "A")
    relayed = InfoMsg(
        {
            "C": {0: signed("C", 0, info("c1", [0, 0, 0, 0]))},
            "A": hello.peer_info["A"],
        },
        {},
    )
    b.receive("C", wire(relayed), 0.5)
    assert "A" in b.roster
    b.receive("A", wire(hello), 1.0)  # A's first hello, late
    sent = [m for s in range(10, 100) for m in b.collect(s / 10)]
    assert b.counters["gossip_ack"] == 0
    assert not [m for m in of_type(sent, GossipMsg) if list(m.peer_gossips) == ["A"]]
    # the same hello said again asks, and is answered
    b.receive("A", wire(replace(hello, again=True)), 10.0)
    for step in range(100, 130):
        b.collect(step / 10)
    assert b.counters["gossip_ack"] == 1


def test_again_relayed_by_another_peer_draws_no_ack() -> None:
    # only the owner can say its hello was unheard: C relaying A's info
    # with Again set (a lie, or a confused relay) asks nobody for anything
    a, b = make("A"), make("B")
    a.export(worker("a1"))
    b.export(worker("b1"))
    b.joined(0.0, alone=True)
    b.collect(0.0)
    hello = introduced(a, b)
    for step in range(1, 100):
        b.collect(step / 10)
    relayed = InfoMsg(
        {"C": {0: signed("C", 0, info("c1", [0, 0, 0, 0]))}, "A": hello.peer_info["A"]},
        {},
        again=True,
    )
    b.receive("C", wire(relayed), 10.0)
    for step in range(100, 130):
        b.collect(step / 10)
    assert b.counters["gossip_ack"] == 0


def test_acknowledgements_of_many_hellos_share_one_message() -> None:
    b = make("B")
    b.export(worker("b1"))
    b.joined(0.0, alone=True)
    b.collect(0.0)
    owners = [make(f"O{i}") for i in range(8)]
    hellos = {}
    for owner in owners:
        owner.export(worker(f"{owner.peer_id.lower()}1"))
        owner.joined(0.0)
        hellos[owner.peer_id] = wire(hello_of(owner, 0.0))
        b.receive(owner.peer_id, hellos[owner.peer_id], 0.5)
    for step in range(6, 100):
        b.collect(step / 10)  # the snapshot for the newcomers
    for owner in owners:  # ... lost: every owner repeats its hello
        _, again = repeated_hello(owner, 0.1)
        b.receive(owner.peer_id, wire(again), 10.0)
    acks = [m for s in range(100, 130) for m in of_type(b.collect(s / 10), GossipMsg)]
    assert len(acks) == 1
    assert {o.peer_id for o in owners} <= set(acks[0].peer_gossips)


def pulling_newcomer(**config: float) -> tuple[CorePeer, list[Message]]:
    """A exporting one machine, joined at 0 with direct pulls, and its hello."""
    a = make("A", **config)
    a.pull_snapshots(True)
    a.export(worker("a1"))
    a.joined(0.0)
    return a, a.collect(0.0)


def test_a_newcomer_that_can_pull_asks_everyone_only_after_its_pulls_failed() -> None:
    from ampubsub_plugin._gossip.discovery import MAX_PULLS
    from ampubsub_plugin.protocol import ReqInfoMsg

    a, _ = pulling_newcomer(snapshot_wait=3.0)
    assert a.pull_now(0.2)
    # the pull is slow: no broadcast ask, long after the old ask was due
    quiet = [m for s in range(3, 300) for m in a.collect(s / 10)]
    assert not [m for m in quiet if isinstance(m, ReqInfoMsg) and not m.peer_ids]
    now = 30.0
    for _ in range(MAX_PULLS - 1):
        a.pull_failed(now)  # refused or timed out: another neighbour later
        assert not a.pull_now(now)
        now += 1.5
        assert a.pull_now(now)
    a.pull_failed(now)  # the last one: ask everyone
    asks = [m for m in a.collect(now) if isinstance(m, ReqInfoMsg)]
    assert asks and not asks[0].peer_ids


def test_a_pull_with_no_neighbour_yet_waits_without_using_up_a_pull() -> None:
    from ampubsub_plugin._gossip.discovery import MAX_PULL_WAITS, MAX_PULLS
    from ampubsub_plugin.protocol import ReqInfoMsg

    a, _ = pulling_newcomer()
    now = 0.2
    for _ in range(MAX_PULL_WAITS + MAX_PULLS - 1):
        assert a.pull_now(now)
        a.pull_failed(now, no_neighbour=True)  # subscriptions not in yet
        now += 1.5
        assert not [m for m in a.collect(now) if isinstance(m, ReqInfoMsg)]
    assert a.pull_now(now)
    a.pull_failed(now, no_neighbour=True)  # the waits and pulls are used up
    asks = [m for m in a.collect(now) if isinstance(m, ReqInfoMsg)]
    assert asks and not asks[0].peer_ids


def test_no_repeat_and_no_settling_while_a_pull_may_succeed() -> None:
    a, hello = pulling_newcomer(snapshot_wait=1.0, hello_first=1.0)
    assert infos_about(hello, "A")
    assert a.pull_now(0.2)
    # a slow pull: long past the hello's first gap and the settle time
    quiet = [m for s in range(3, 200) for m in a.collect(s / 10)]
    assert infos_about(quiet, "A") == []
    assert a.discovery.phase is Phase.JOINING
    assert a.next_due(20.0) is None or a.next_due(20.0) > 20.0  # nothing to spin on
    # the pull's reply, a neighbour's view that includes our hello: heard
    full = info("b1", [0, 0, 0, 0], schema=worker("b1").schema)
    mine = signed("A", 0, info("a1", [0, 0, 0, 0]))
    a.receive("B", wire(InfoMsg({"B": {0: full}, "A": {0: mine}}, {})), 20.0)
    a.pulled("B", 20.0)
    assert a.discovery.phase is Phase.SETTLED
    later = [m for s in range(200, 600) for m in a.collect(s / 10)]
    assert infos_about(later, "A") == []


def test_a_pulled_view_without_our_hello_settles_us_and_brings_the_repeat() -> None:
    a, _ = pulling_newcomer(snapshot_wait=1.0, hello_first=1.0)
    assert a.pull_now(0.2)
    assert infos_about([m for s in range(3, 50) for m in a.collect(s / 10)], "A") == []
    # the neighbour knew nobody else, and not us yet
    full = info("b1", [0, 0, 0, 0], schema=worker("b1").schema)
    a.receive("B", wire(InfoMsg({"B": {0: full}}, {})), 5.0)
    assert a.discovery.phase is Phase.JOINING  # one peer's info is no snapshot ...
    a.pulled("B", 5.0)
    assert a.discovery.phase is Phase.SETTLED  # ... but a pulled view is
    (again,) = infos_about(a.collect(5.0), "A")
    assert list(again.peer_info) == ["A"]


def test_a_newcomer_whose_pulls_all_failed_settles_by_waiting_again() -> None:
    from ampubsub_plugin._gossip.discovery import MAX_PULLS

    a, _ = pulling_newcomer(snapshot_wait=1.0, hello_first=1.0)
    now = 0.2
    for _ in range(MAX_PULLS):
        now += 1.5
        assert a.pull_now(now)
        a.pull_failed(now)
    asks = [m for m in a.collect(now) if isinstance(m, ReqInfoMsg)]
    assert asks and not asks[0].peer_ids  # everyone is asked ...
    assert a.discovery.phase is Phase.JOINING  # ... and the answer waited for
    assert (
        infos_about([m for s in range(5) for m in a.collect(now + s / 10)], "A") == []
    )
    # nobody answers: settled by waiting, and the hello is repeated
    later = [m for s in range(int(now * 10), 300) for m in a.collect(s / 10)]
    assert a.discovery.phase is Phase.SETTLED
    assert infos_about(later, "A")


def test_a_pull_waiting_for_a_neighbour_goes_when_one_subscribes() -> None:
    a, _ = pulling_newcomer()
    assert a.pull_now(0.2)
    a.pull_failed(0.2, no_neighbour=True)  # nobody on the topic yet
    assert not a.pull_now(0.5)
    a.peer_joined("B", 0.5)  # B's subscription arrived
    assert a.pull_now(0.5)


def relays(*owners: str) -> dict[str, dict[int, Info]]:
    """Introductions of ``owners``' first machines, signed by each owner."""
    return {o: {0: signed(o, 0, info(f"{o.lower()}1", [0, 0, 0, 0]))} for o in owners}


def test_a_pulled_snapshot_counts_once_all_of_it_is_in() -> None:
    # the reply is handed over one message at a time: settled on its first,
    # A served that part as its whole view to the next newcomer, and the
    # peers in the rest reached that newcomer only by gossip (1,000 peers)
    a, _ = pulling_newcomer(snapshot_wait=1.0, hello_first=1.0)
    assert a.pull_now(0.2)
    first = {"B": {0: info("b1", [0, 0, 0, 0], schema=worker("b1").schema)}}
    a.receive("B", wire(InfoMsg({**first, **relays("C", "E")}, {})), 1.0)
    assert a.discovery.phase is Phase.JOINING
    assert a.pulled_snapshot(1.0) is None  # a neighbour asking now waits
    a.receive("B", wire(InfoMsg(relays("D"), {})), 1.1)
    a.pulled("B", 1.1)
    assert a.discovery.phase is Phase.SETTLED
    served = a.pulled_snapshot(1.1)
    assert served is not None
    assert {"A", "B", "C", "D", "E"} <= {p for m in served for p in m.peer_info}


def test_a_snapshot_seen_while_our_pull_failed_settles_us_then() -> None:
    a, _ = pulling_newcomer(snapshot_wait=1.0, hello_first=1.0)
    assert a.pull_now(0.2)
    # another peer's broadcast snapshot arrives while the pull is out ...
    view = {"B": {0: info("b1", [0, 0, 0, 0], schema=worker("b1").schema)}}
    a.receive("B", wire(InfoMsg({**view, **relays("C", "D")}, {})), 1.0)
    assert a.discovery.phase is Phase.JOINING
    a.pull_failed(2.0)  # ... and the pull fails: that one is the snapshot
    assert a.discovery.phase is Phase.SETTLED
    assert not a.pull_now(5.0)
    assert not [m for m in a.collect(5.0) if isinstance(m, ReqInfoMsg)]
