"""Trust: a peer shows the owner's state or nothing, never a forgery.

The rules live in ``ampubsub_plugin/_gossip/intake.py`` (rules 1 and 2):
only the owner moves its clock, directly or through a relay that forwards
the owner's signature unchanged; a greater incarnation (a restart) replaces
what we knew, a smaller one is stale. The attacks here are the ones measured
against the old core: forged high and equal-sum relayed clocks, unsigned
introductions of peers nobody has heard, and a restart with a lower clock.
"""

from __future__ import annotations

from dataclasses import replace

from ampubsub_plugin.protocol import (
    ByeMach,
    ByeMsg,
    GossipMsg,
    InfoMsg,
    Proof,
    ReqInfoMsg,
    UpdatesMsg,
)

from ..coreutil import (
    Recorder,
    asked,
    clocks_in,
    info,
    introduced,
    make,
    owner_updates,
    remote_of,
    signed,
    wire,
    worker,
)

FORGED = 2**40 + 1


def _watched_owner(**cfg: object) -> tuple[object, object, object, Recorder]:
    rec = Recorder()
    a, b = make("A", listener=rec, **cfg), make("B")
    m = worker("b1")
    b.export(m)
    introduced(b, a)
    return a, b, m, rec


def test_a_forged_high_clock_relayed_by_another_peer_changes_nothing() -> None:
    a, b, m, rec = _watched_owner()
    remote = remote_of(a, "b1")
    forged = UpdatesMsg({"B": {0: [FORGED] * 4}})
    a.receive("C", wire(forged), 1.0)
    # with a signature that isn't B's over this clock: the same
    stolen = owner_updates("B", {0: ("b1", [1, 1, 0, 0])}).proofs
    a.receive("C", wire(UpdatesMsg({"B": {0: [FORGED] * 4}}, stolen)), 1.0)
    assert remote.time() == [0, 0, 0, 0] and remote.active_states == []
    assert a.counters["drop_unsigned_relay"] == 2
    assert rec.kinds("updated") == []
    # the owner's next real change is shown
    m.add("Baz")
    b.mark_dirty(0)
    a.receive("B", wire(b.collect(1.0)[0]), 1.1)
    assert remote.time() == m.time() and remote.active_states == ["Baz"]


def test_an_equal_or_sum_plus_one_forgery_is_not_shown_nor_hides_the_next_change() -> (
    None
):
    a, b, m, _ = _watched_owner()
    remote = remote_of(a, "b1")
    m.add("Bar")
    b.mark_dirty(0)
    a.receive("B", wire(b.collect(1.0)[0]), 1.0)
    assert remote.time() == [0, 1, 0, 0]
    # sum + 1 with a state the owner never set, relayed without B's signature
    a.receive("C", wire(UpdatesMsg({"B": {0: [1, 1, 0, 0]}})), 2.0)
    relayed = InfoMsg({"B": {0: info("b1", [0, 1, 1, 0])}, "C": {}}, {})
    a.receive("C", wire(relayed), 2.0)
    assert remote.time() == [0, 1, 0, 0] and remote.active_states == ["Bar"]
    # the owner's next change (sum 2 as well) is shown, not hidden by the forgery
    m.add("Foo")
    b.mark_dirty(0)
    a.receive("B", wire(b.collect(2.0)[0]), 2.1)
    assert remote.time() == m.time() == [1, 1, 0, 0]


def test_a_relay_forwarding_the_owners_signature_is_believed() -> None:
    rec = Recorder()
    a, b, c = make("A", listener=rec), make("B"), make("C")
    m = worker("b1")
    b.export(m)
    introduced(b, a, c)
    m.add("Baz")
    b.mark_dirty(0)
    update = wire(b.collect(1.0)[0])
    c.receive("B", update, 1.0)
    # C relays B's clock (as an answer would), signature unchanged
    a.receive("C", update, 1.2)
    assert remote_of(a, "b1").time() == m.time()
    # a tampered signature is not
    m.add("Bar")
    b.mark_dirty(0)
    (fresh,) = b.collect(2.0)
    assert isinstance(fresh, UpdatesMsg)
    sig = fresh.proofs["B"].signatures[0]
    bad = Proof(fresh.proofs["B"].incarnation, {0: bytes([sig[0] ^ 1]) + sig[1:]})
    a.receive("C", wire(replace(fresh, proofs={"B": bad})), 2.1)
    assert remote_of(a, "b1").time() == [0, 0, 1, 0]
    assert a.counters["drop_unsigned_relay"] == 1


def test_an_unsigned_introduction_of_an_unknown_peer_stays_hidden_and_is_asked_about() -> (  # noqa: E501
    None
):
    a = make("A", request_grace=0.5)
    a.joined(0.0, alone=True)
    a.collect(0.0)
    fake = InfoMsg({"X": {0: info("ghost", [FORGED, 1, 1, 0])}, "C": {}}, {})
    a.receive("C", wire(fake), 1.0)
    assert a.remotes() == [] and "X" not in a.peers()
    assert a.counters["drop_unsigned_relay"] == 1
    later = [msg for s in range(10, 60) for msg in a.collect(s / 10)]
    assert "X" in asked(later, ReqInfoMsg)
    # signed by X (X's own info, relayed), it is shown
    real = InfoMsg({"X": {0: signed("X", 0, info("x1", [1, 0, 0, 0]))}, "C": {}}, {})
    a.receive("C", wire(real), 6.0)
    assert [r.id for r in a.remotes()] == ["x1"]


def test_a_restart_with_the_same_identity_and_a_lower_clock_replaces_the_copy() -> None:
    a, b, m, rec = _watched_owner()
    m.add(["Foo", "Bar", "Baz"])
    b.mark_dirty(0)
    a.receive("B", wire(b.collect(1.0)[0]), 1.0)
    old = remote_of(a, "b1")
    assert old.time_sum == 3
    # B crashes and starts again: same peer id, a later run, a fresh machine
    b2 = make("B", incarnation=2)
    m2 = worker("b1")
    b2.export(m2)
    b2.joined(5.0)
    a.receive("B", wire(b2.collect(5.0)[0]), 5.0)
    new = remote_of(a, "b1")
    assert new is not old and old.is_disposed
    assert new.time() == [0, 0, 0, 0] and new.is_connected
    assert a.counters["peer_restarted"] == 1
    assert rec.kinds("gone") == [("B", 0, "b1")]
    assert rec.kinds("discovered")[-1] == ("B", 0, "b1")
    # what the old run said, arriving late, is stale
    late = owner_updates("B", {0: ("b1", [1, 1, 1, 2])}, incarnation=1)
    a.receive("B", wire(late), 5.1)
    assert remote_of(a, "b1").time() == [0, 0, 0, 0]
    assert a.counters["drop_old_incarnation"] == 1
    stale_bye = ByeMsg({0: ByeMach(peer_bye=True, id="b1", time=[])}, incarnation=1)
    a.receive("B", wire(stale_bye), 5.2)
    assert remote_of(a, "b1").is_connected
    # the new run's changes are shown
    m2.add("Bar")
    b2.mark_dirty(0)
    a.receive("B", wire(b2.collect(6.0)[0]), 6.0)
    assert remote_of(a, "b1").time() == [0, 1, 0, 0]


def test_a_restart_right_after_a_bye_is_shown_at_once() -> None:
    a, b, _, _ = _watched_owner()
    b.bye_all()
    a.receive("B", wire(b.collect(1.0)[0]), 1.0)
    assert not remote_of(a, "b1").is_connected
    b2 = make("B", incarnation=2)
    b2.export(worker("b1"))
    b2.joined(1.5)
    # within BYE_GRACE, but from a new run: not a message sent before the bye
    a.receive("B", wire(b2.collect(1.5)[0]), 1.5)
    assert remote_of(a, "b1").is_connected


def test_an_owners_gossip_from_a_new_run_makes_us_ask_for_its_info() -> None:
    a, _, _, _ = _watched_owner(request_grace=0.5)
    a.receive("B", wire(GossipMsg({"B": {0: 0}}, incarnation=2)), 1.0)
    later = [msg for s in range(10, 80) for msg in a.collect(s / 10)]
    assert "B" in asked(later, ReqInfoMsg)
    assert clocks_in(later) == []  # its sums were not taken as ours to correct


def test_a_lower_incarnation_wins_once_the_current_one_is_silent() -> None:
    """The owner's wall clock went back between two runs."""
    a, _, _, _ = _watched_owner(peer_ttl=20.0)
    early = make("B", incarnation=0)
    early.export(worker("b1"))
    early.joined(1.0)
    hello = wire(early.collect(1.0)[0])
    a.receive("B", hello, 1.0)  # the current run spoke at 0: too soon
    assert a.counters["drop_old_incarnation"] == 1
    a.receive("B", hello, 6.0)  # 6 s >= peer_ttl / 4 of silence: it's the run now
    assert a.counters["incarnation_went_back"] == 1
    assert remote_of(a, "b1").is_connected


class CountingSigner:
    """Checks 'signatures' that are the payload reversed, and counts the checks."""

    def __init__(self) -> None:
        self.checks = 0

    def sign(self, data: bytes) -> bytes:
        return data[::-1]

    def verify(self, peer_id: str, data: bytes, signature: bytes) -> bool:
        self.checks += 1
        return signature == data[::-1]


def test_a_signature_verified_once_is_not_verified_again_for_the_same_clock() -> None:
    import random

    from ampubsub_plugin._gossip import GossipConfig
    from ampubsub_plugin._gossip.config import Shared
    from ampubsub_plugin.protocol import clock_proof_payload

    signer = CountingSigner()
    shared = Shared("me", GossipConfig(), random.Random(0), signer=signer)
    good = clock_proof_payload("P", 0, 1, [1, 2], b"id")[::-1]
    assert shared.proven("P", 0, 1, [1, 2], b"id", good)
    assert shared.proven("P", 0, 1, [1, 2], b"id", good)  # a relay repeats it
    assert signer.checks == 1
    # the same signature over another clock is checked, and refused
    assert not shared.proven("P", 0, 1, [1, 3], b"id", good)
    assert not shared.proven("P", 0, 2, [1, 2], b"id", good)
    assert not shared.proven("Q", 0, 1, [1, 2], b"id", good)
    assert signer.checks == 4
    # a refused signature is checked every time (nothing cached for forgers)
    assert not shared.proven("P", 0, 1, [1, 2], b"id", b"forged")
    assert not shared.proven("P", 0, 1, [1, 2], b"id", b"forged")
    assert signer.checks == 6
