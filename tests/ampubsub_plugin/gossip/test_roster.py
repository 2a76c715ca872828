"""The roster: departures (bye, silence), revival, forgetting, bounds.

The rules live in ``ampubsub_plugin/_gossip/roster.py``: a peer shown
disconnected keeps its records until ``gone_ttl``, an un-exported machine
leaves a tombstone, and every table is bounded.
"""

from __future__ import annotations

from ampubsub_plugin.protocol import (
    MAX_MACHINES_PER_PEER,
    ByeMach,
    ByeMsg,
    GossipMsg,
    InfoMsg,
    UpdatesMsg,
)
from asyncmachine import State

from ..coreutil import (
    Mesh,
    Recorder,
    info,
    introduced,
    make,
    of_type,
    remote_of,
    wire,
    worker,
)


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
    assert bye == ByeMsg({0: ByeMach(peer_bye=True, id="", time=[])}, incarnation=1)
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


def test_tables_are_bounded_and_drops_counted() -> None:
    a = make("A", max_peers=8, max_pending=8, max_schemas=4)
    a.joined(0.0)
    for i in range(50):
        a.receive(f"G{i}", GossipMsg({f"X{i}": {0: 1}}), 1.0)
    assert a.stats()["missing_peers"] == 8
    assert a.counters["drop_missing_full"] > 0
    for i in range(50):
        a.receive(f"Y{i}", UpdatesMsg({f"Y{i}": {0: [1, 0, 0, 0]}}), 2.0)
        a.receive("Z", UpdatesMsg({"Z": {i: [1, 0, 0, 0]}}), 2.0)
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


def test_one_member_pins_at_most_max_states_per_peer_states() -> None:
    a = make("A", max_states_per_peer=10)
    a.joined(0.0, alone=True)
    machines = {i: info(f"m{i}", [0, 0, 0, 0]) for i in range(5)}  # 4 states each
    a.receive("B", wire(InfoMsg({"B": machines}, {})), 1.0)
    assert len(a.remotes()) == 2  # 8 states; a third would make 12
    assert a.counters["drop_states_full"] == 3
