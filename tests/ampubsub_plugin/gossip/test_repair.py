"""Repair: what a peer knows it misses, the requests that fetch it, anti-entropy.

The rules live in ``ampubsub_plugin/_gossip/repair.py``: gossip carries time
sums, the one behind asks (or the one ahead pushes), and requests about
peers learned indirectly wait for a grace and for our own snapshot.
"""

from __future__ import annotations

from ampubsub_plugin.protocol import (
    GossipMsg,
    InfoMsg,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
)

from ..coreutil import (
    STATES,
    Mesh,
    Recorder,
    asked,
    clocks_in,
    hello_of,
    info,
    infos_about,
    introduced,
    make,
    of_type,
    owner_updates,
    remote_of,
    signed,
    wire,
    worker,
)


def test_gossip_with_a_greater_sum_asks_for_updates_once_the_gap_lasted() -> None:
    a, b = make("A"), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    a.receive("C", GossipMsg({"B": {0: 6}}), 1.0)
    assert a.stats()["missing_updates"] == 1
    # the update is most likely on its way: no request while it may come
    settle = a.config.request_grace
    early = [m for s in range(10, int(10 * (1.0 + settle))) for m in a.collect(s / 10)]
    assert asked(early, ReqUpdatesMsg) == set()
    assert asked(a.collect(1.0 + settle), ReqUpdatesMsg) == {"B"}
    # relayed by C, signed by its owner B
    a.receive("C", owner_updates("B", {0: ("b1", [1, 1, 4, 0])}), 4.1)
    assert a.stats()["missing_updates"] == 0
    later = [m for s in range(41, 200) for m in a.collect(s / 10)]
    assert asked(later, ReqUpdatesMsg) == set()
    assert remote_of(a, "b1").time() == [1, 1, 4, 0]


def test_a_gap_closed_by_the_update_within_the_grace_asks_nothing() -> None:
    """Gossip from a peer that already has a change can arrive before the
    change itself (another path, a loaded peer's queue): a request then
    would cost every peer a reception for nothing."""
    a, b = make("A"), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    a.receive("C", GossipMsg({"B": {0: 6}}), 1.0)
    sent = [m for s in range(10, 25) for m in a.collect(s / 10)]
    a.receive("B", owner_updates("B", {0: ("b1", [1, 1, 4, 0])}), 2.5)
    sent += [m for s in range(25, 300) for m in a.collect(s / 10)]
    assert asked(sent, ReqUpdatesMsg) == set()
    assert remote_of(a, "b1").time() == [1, 1, 4, 0]


def test_gossip_with_a_smaller_sum_of_own_machine_makes_the_owner_push() -> None:
    """... once: a gossiper behind on a clock we sent a moment ago has it on
    the way (a loaded peer's queue), and a second copy would cost every
    peer; it gets one only after the grace."""
    a = make("A")
    m = worker("a1")
    a.export(m)
    introduced(a)
    m.add("Bar")
    a.receive("B", GossipMsg({"A": {0: 0}}), 2.0)
    assert clocks_in(a.collect(2.0)) == [{"A": {0: m.time()}}]
    # an equal sum is no reason to push
    a.receive("B", GossipMsg({"A": {0: sum(m.time())}}), 2.5)
    assert of_type(a.collect(2.5), UpdatesMsg) == []
    settle = a.config.request_grace
    a.receive("B", GossipMsg({"A": {0: 0}}), 2.0 + settle / 2)
    assert of_type(a.collect(2.0 + settle / 2), UpdatesMsg) == []
    a.receive("B", GossipMsg({"A": {0: 0}}), 2.0 + settle)
    assert clocks_in(a.collect(2.0 + settle)) == [{"A": {0: m.time()}}]


def test_a_flood_of_stale_gossip_draws_one_push_per_grace() -> None:
    """Gossip showing our clock older than it is (lagging peers, or one that
    lies), 10,000 a second from 1,000 senders: every push would be a
    broadcast, so the owner sends its clock once and again only after the
    grace, however many ask."""
    a = make("A")
    m = worker("a1")
    a.export(m)
    introduced(a)
    m.add("Bar")
    sent: list[UpdatesMsg] = []
    now = 2.0
    a.receive("B", GossipMsg({"A": {0: 0}}), now)
    sent += of_type(a.collect(now), UpdatesMsg)
    for k in range(1000):
        now = 2.0 + k / 10_000
        a.receive(f"S{k}", GossipMsg({"A": {0: 0}}), now)
        sent += of_type(a.collect(now), UpdatesMsg)
    assert len(sent) == 1
    settle = a.config.request_grace
    a.receive("B", GossipMsg({"A": {0: 0}}), 2.0 + settle)
    assert clocks_in(a.collect(2.0 + settle)) == [{"A": {0: m.time()}}]


def test_gossip_with_a_smaller_sum_of_a_known_machine_gets_our_view() -> None:
    a, b = make("A", answer_delay=(0.05, 0.1)), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    a.receive("B", owner_updates("B", {0: ("b1", [1, 1, 2, 0])}), 1.0)
    # within the grace the gossiper has them on the way: no push
    a.receive("C", GossipMsg({"B": {0: 2}}), 2.0)
    quiet = [
        m for s in range(200, 600) for m in of_type(a.collect(s / 100), UpdatesMsg)
    ]
    assert quiet == []
    a.receive("C", GossipMsg({"B": {0: 2}}), 6.0)
    assert of_type(a.collect(6.0), UpdatesMsg) == []
    pushed = [
        m for s in range(6000, 6200) for m in of_type(a.collect(s / 1000), UpdatesMsg)
    ]
    assert clocks_in(pushed) == [{"B": {0: [1, 1, 2, 0]}}]
    # forwarded with the owner's signature, so others can check it
    assert pushed[0].proofs["B"].signatures[0]


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
    a.receive("C", owner_updates("Y", {0: ("y1", [1, 0, 0, 0])}), 3.2)
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
    # more snapshots may follow while peers join: ask once they stopped and
    # we are settled
    assert (
        asked([m for s in range(30, 40) for m in a.collect(s / 10)], ReqInfoMsg)
        == set()
    )
    later = [m for s in range(40, 70) for m in a.collect(s / 10)]
    assert asked(later, ReqInfoMsg) == {"C", "X"}


def test_updates_for_an_unknown_peer_wait_for_its_info() -> None:
    rec = Recorder()
    a = make("A", listener=rec, request_grace=0.5)
    a.joined(0.0, alone=True)
    a.collect(0.0)
    # the owner's own clocks wait for its info; a relay's can't be checked
    # without the machine's identity, so they are not kept
    a.receive("C", owner_updates("X", {0: ("x1", [1, 1, 2, 0])}), 0.9)
    assert a.stats()["pending_updates"] == 0
    assert a.counters["drop_unsigned_relay"] == 1
    clocks = {0: ("x1", [1, 1, 2, 0]), 1: ("x2", [0, 0, 1, 0])}
    a.receive("X", owner_updates("X", clocks), 1.0)
    assert a.remotes() == []
    assert a.stats()["pending_updates"] == 2
    assert "X" in asked(a.collect(1.5), ReqInfoMsg)
    # an older buffered clock never replaces a newer one
    a.receive("X", owner_updates("X", {0: ("x1", [1, 1, 0, 0])}), 1.5)
    a.receive(
        "X", InfoMsg({"X": {0: signed("X", 0, info("x1", [0, 0, 0, 0]))}}, {}), 2.0
    )
    remote = remote_of(a, "x1")
    assert remote.time() == [1, 1, 2, 0]
    assert remote.active_states == ["Foo", "Bar"]
    assert a.stats()["pending_updates"] == 1  # index 1 still waits
    assert rec.kinds("discovered") == [("X", 0, "x1")]


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
    assert asked(later, ReqInfoMsg) == set()


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


def test_one_author_names_at_most_missing_per_author_unknown_peers() -> None:
    a = make("A", missing_per_author=8)
    a.joined(0.0, alone=True)
    a.receive("M", GossipMsg({f"X{i}": {0: 1} for i in range(50)}), 1.0)
    assert a.stats()["missing_peers"] == 9  # 8 named by M, and M itself
    assert a.counters["drop_missing_author_cap"] == 42
    # another author still gets heard
    a.receive("N", GossipMsg({"Y": {0: 1}}), 1.0)
    assert a.stats()["missing_peers"] == 11


def test_what_we_miss_drains_after_missing_ttl_and_requests_stop() -> None:
    a = make("A", missing_ttl=10.0, request_grace=0.5)
    a.joined(0.0, alone=True)
    a.collect(0.0)
    b = make("B")
    b.export(worker("b1"))
    introduced(b, a)
    names = {f"X{i}": {0: 1} for i in range(20)}
    a.receive("M", GossipMsg({**names, "B": {0: 9}}), 1.0)  # B "ahead" too
    a.receive("Z", UpdatesMsg({"Z": {3: [1, 0, 0, 0]}}), 1.0)  # Z never says more
    early = [m for s in range(10, 60) for m in a.collect(s / 10)]
    assert asked(early, ReqInfoMsg) and asked(early, ReqUpdatesMsg) == {"B"}
    stats = a.stats()
    assert stats["missing_peers"] and stats["missing_updates"]
    assert stats["pending_updates"] == 1
    a.heartbeat(12.0)
    stats = a.stats()
    assert (stats["missing_peers"], stats["missing_updates"]) == (0, 0)
    assert stats["pending_updates"] == 0
    assert a.counters["missing_expired"] and a.counters["pending_expired"] == 1
    later = [m for s in range(120, 600) for m in a.collect(s / 10)]
    assert asked(later, ReqInfoMsg) == asked(later, ReqUpdatesMsg) == set()


def test_a_peer_everyone_misses_is_asked_about_by_the_first_ranked_only() -> None:
    """Each request costs every peer a reception: ten peers that all miss X
    don't send ten requests; the two ranked first for X do, and the rest
    stand by (and ask later only if X is still missing)."""
    cores = [make(f"P{i}", request_grace=1.0) for i in range(10)]
    for core in cores:
        for other in cores:  # everyone knows everyone (their hellos came)
            if other is not core:
                other_hello = InfoMsg({other.peer_id: {}}, {})
                core.receive(other.peer_id, wire(other_hello), 0.0)
        core.joined(0.0, alone=True)
        core.collect(0.0)
        core.receive("P0", GossipMsg({"X": {0: 3}}), 0.5)
    askers = {
        core.peer_id
        for core in cores
        for s in range(6, 35)
        for m in of_type(core.collect(s / 10), ReqInfoMsg)
        if "X" in m.peer_ids
    }
    assert 1 <= len(askers) <= 2, askers
    # still missing after the stand-by: the others ask too
    later = {
        core.peer_id
        for core in cores
        for s in range(35, 80)
        for m in of_type(core.collect(s / 10), ReqInfoMsg)
        if "X" in m.peer_ids
    }
    assert len(later - askers) >= 5


def test_with_direct_pulls_a_missing_peer_is_pulled_first_then_asked_about() -> None:
    a = make("A", request_grace=2.0, request_interval=0.5, rerequest=3.0)
    a.pull_snapshots(True)
    a.export(worker("a1"))
    a.joined(0.0, alone=True)
    a.collect(0.0)
    a.receive("C", GossipMsg({"X": {0: 3}}), 1.0)
    early = [m for s in range(10, 30) for m in a.collect(s / 10)]
    assert a.peers_to_pull() is None and asked(early, ReqInfoMsg) == set()
    # after the grace: one pull from a neighbour, named by whoever told us
    # about X, and no request to everyone
    first = a.collect(3.0)
    assert a.peers_to_pull() == (["C", "X"], "C")
    assert a.peers_to_pull() is None  # taken once
    more = [m for s in range(31, 60) for m in a.collect(s / 10)]
    assert asked(first + more, ReqInfoMsg) == set()
    # still missing after ``rerequest``: everyone is asked, no second pull
    later = [m for s in range(60, 95) for m in a.collect(s / 10)]
    assert asked(later, ReqInfoMsg) == {"C", "X"}
    assert a.peers_to_pull() is None


def test_a_pulled_introduction_settles_the_missing_peer() -> None:
    a = make("A", request_grace=2.0, request_interval=0.5, rerequest=3.0)
    b = make("B")
    b.export(worker("b1"))
    b.joined(0.0, alone=True)
    b_hello = wire(hello_of(b, 0.0))
    a.pull_snapshots(True)
    a.joined(0.0, alone=True)
    a.collect(0.0)
    a.receive("C", owner_updates("B", {0: ("b1", [1, 0, 0, 0])}), 1.0)
    a.collect(3.0)
    ids, _ = a.peers_to_pull()
    assert ids == ["B", "C"]  # B's machine, and C which relayed its clock
    # C, a neighbour, knows B: its reply (relayed, signed by B) introduces B
    c = make("C")
    c.joined(0.0, alone=True)
    c.receive("B", b_hello, 0.2)
    reply = c.pulled_infos(ids)
    assert c.counters["out_pulled_infos"] == 1
    for msg in reply:
        a.receive("C", wire(msg), 3.5)
    assert [r.id for r in a.remotes()] == ["b1"]
    assert a.stats()["missing_peers"] == 0  # C introduced itself too
    later = [m for s in range(36, 95) for m in a.collect(s / 10)]
    assert asked(later, ReqInfoMsg) == set()
