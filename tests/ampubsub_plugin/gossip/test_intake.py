"""Intake: what a received info may change about machines we know.

The rules live in ``ampubsub_plugin/_gossip/intake.py``: clocks only grow,
whoever relays them; a relayed info must agree with what we know, and only
the owner may redefine a machine; a schema known by hash fills itself in.
"""

from __future__ import annotations

from ampubsub_plugin.protocol import InfoMsg, ReqInfoMsg

from ..coreutil import (
    Recorder,
    asked,
    info,
    infos_about,
    introduced,
    make,
    remote_of,
    signed,
    wire,
    worker,
)


def test_fresher_clock_inside_a_relayed_info_is_applied() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    remote = remote_of(a, "b1")
    fresher = signed("B", 0, info("b1", [1, 1, 0, 0]))  # B's own, relayed
    a.receive("C", InfoMsg({"B": {0: fresher}}, {}), 1.0)
    assert remote.time() == [1, 1, 0, 0]
    assert rec.kinds("updated") == [("B", 0, "b1")]
    # a stale relay changes nothing
    stale = signed("B", 0, info("b1", [0, 1, 0, 0]))
    a.receive("C", InfoMsg({"B": {0: stale}}, {}), 2.0)
    assert remote.time() == [1, 1, 0, 0]
    assert len(rec.kinds("updated")) == 1
    assert remote_of(a, "b1") is remote


def test_relayed_info_contradicting_a_known_machine_is_dropped() -> None:
    rec = Recorder()
    a, b = make("A", listener=rec), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    remote = remote_of(a, "b1")
    # even signed by B (an old run's, say): only B itself redefines a machine
    evil = signed("B", 0, info("evil", [1, 1, 1, 0]))
    a.receive("C", InfoMsg({"B": {0: evil}}, {}), 1.0)
    assert a.counters["drop_info_contradicts"] == 1
    other = signed("B", 0, info("b1", [3, 3], states=["X", "Y"]))
    a.receive("C", InfoMsg({"B": {0: other}}, {}), 1.0)
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
    redefined = signed("B", 0, info("b2", [1, 0, 0], states=["P", "Q", "Exception"]))
    a.receive("B", InfoMsg({"B": {0: redefined}}, {}), 1.0)
    (new,) = a.remotes()
    assert (new.id, new.index, new.state_names) == ("b2", 0, ["P", "Q", "Exception"])
    assert new.active_states == ["P"]
    assert old.is_disposed and not old.is_connected
    assert rec.kinds("gone") == [("B", 0, "b1")]
    assert rec.kinds("discovered")[-1] == ("B", 0, "b2")
    assert a.counters["drop_info_contradicts"] == 0


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
