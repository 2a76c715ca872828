"""Remote views are built when someone looks, and then kept up to date."""

from __future__ import annotations

from ampubsub_plugin.protocol import InfoMsg, UpdatesMsg

from .coreutil import Recorder, info, make


def discover(peer: object, machines: int) -> None:
    infos = {i: info(f"b{i}", [1, 0, 0, 0]) for i in range(machines)}
    peer.receive("B", InfoMsg({"B": infos}, {}), 1.0)  # type: ignore[attr-defined]


def test_a_discovered_machine_is_a_record_until_someone_asks() -> None:
    peer = make("A")
    peer.joined(0.0, alone=True)
    discover(peer, 50)
    assert len(peer.core.records()) == 50
    assert peer.views.built == 0
    b7 = peer.views.get("B", 7)
    assert b7 is not None and b7.id == "b7" and b7.time() == [1, 0, 0, 0]
    assert peer.views.built == 1
    # built views follow the clocks from now on; the rest stay records
    peer.receive("B", UpdatesMsg({"B": {7: [3, 0, 0, 0], 8: [5, 0, 0, 0]}}), 2.0)
    assert b7.time() == [3, 0, 0, 0]
    assert peer.views.built == 1
    # ... and show the latest clock when built later
    assert peer.views.get("B", 8).time() == [5, 0, 0, 0]  # type: ignore[union-attr]
    assert len(peer.remotes()) == 50
    assert peer.views.built == 50


def test_a_filtered_listing_builds_only_the_machines_it_returns() -> None:
    peer = make("A")
    peer.joined(0.0, alone=True)
    discover(peer, 50)
    found = peer.views.find(id_partial="b4")  # b4, b40..b49
    assert sorted(r.id for r in found) == ["b4", *(f"b4{i}" for i in range(10))]
    assert peer.views.built == 11
    assert peer.views.find(peer_id="C") == []
    assert peer.views.built == 11


def test_plugins_that_look_at_remotes_get_them_built_at_once() -> None:
    rec = Recorder()
    peer = make("A", listener=rec)
    peer.joined(0.0, alone=True)
    discover(peer, 3)
    assert peer.views.built == 3
    assert len(rec.kinds("discovered")) == 3


def test_a_machine_forgotten_before_anyone_looked_leaves_nothing_behind() -> None:
    peer = make("A")
    peer.joined(0.0, alone=True)
    discover(peer, 3)
    peer.dispose()
    assert peer.views.get("B", 0) is None
    assert peer.remotes() == []


def test_a_disconnected_owner_shows_in_a_view_built_later() -> None:
    peer = make("A", peer_ttl=5.0, gone_ttl=100.0)
    peer.joined(0.0, alone=True)
    discover(peer, 1)
    peer.heartbeat(20.0)  # B unheard for 19 s: shown disconnected
    (remote,) = peer.remotes()
    assert not remote.is_connected
