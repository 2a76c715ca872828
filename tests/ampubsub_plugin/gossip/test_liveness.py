"""Liveness: a closed connection is probed; a peer that stays silent is shown gone.

The rules live in ``ampubsub_plugin/_gossip/liveness.py``.
"""

from __future__ import annotations

from ampubsub_plugin._gossip import Gone, Revived
from ampubsub_plugin.protocol import GossipMsg, ReqUpdatesMsg, UpdatesMsg

from ..coreutil import clocks_in, introduced, make, of_type, remote_of, wire, worker


def _pair(**cfg: object) -> tuple[object, object]:
    a, b = make("A", probe_grace=5.0, **cfg), make("B")
    b.export(worker("b1"))
    introduced(b, a)
    return a, b


def test_a_neighbour_whose_connection_closed_is_probed_then_shown_gone() -> None:
    a, _ = _pair()
    a.peer_left("B", 10.0)
    (probe,) = of_type(a.collect(10.0), ReqUpdatesMsg)
    assert probe == ReqUpdatesMsg(["B"], probe=True)
    assert a.heartbeat(14.0) == []  # still within the grace
    assert a.heartbeat(15.0) == [Gone("B", 0, forgotten=False)]
    assert not remote_of(a, "b1").is_connected
    assert a.counters["peer_unreachable"] == 1


def test_a_probed_peer_that_answers_stays_connected() -> None:
    a, b = _pair()
    a.peer_left("B", 10.0)
    probe = of_type(a.collect(10.0), ReqUpdatesMsg)[0]
    b.receive("A", wire(probe), 10.1)
    # owners answer requests about themselves at once
    (answer,) = of_type(b.collect(10.1), UpdatesMsg)
    a.receive("B", wire(answer), 10.2)
    assert clocks_in([answer]) == [{"B": {0: [0, 0, 0, 0]}}]
    assert a.heartbeat(20.0) == []
    assert remote_of(a, "b1").is_connected


def test_a_probe_from_another_peer_is_judged_the_same_way() -> None:
    a, _ = _pair()
    a.receive("C", wire(ReqUpdatesMsg(["B", "A", "nobody"], probe=True)), 3.0)
    # any message B authors is an answer
    a.receive("B", wire(GossipMsg({"B": {0: 0}}, incarnation=1)), 4.0)
    assert a.heartbeat(9.0) == []
    a.receive("C", wire(ReqUpdatesMsg(["B"], probe=True)), 10.0)
    assert a.heartbeat(15.0) == [Gone("B", 0, forgotten=False)]
    # an ordinary request (a repair) is no probe
    c, _ = _pair()
    c.receive("D", wire(ReqUpdatesMsg(["B"])), 1.0)
    assert c.heartbeat(30.0) == []


def test_after_a_reunion_the_peers_shown_gone_are_asked_after_and_come_back() -> None:
    a, b = _pair()
    a.peer_left("B", 1.0)
    a.collect(1.0)
    assert a.heartbeat(7.0) == [Gone("B", 0, forgotten=False)]
    # the partition heals: B connects again; its owner answers at once
    a.peer_joined("B", 20.0)
    (ask,) = of_type(a.collect(20.0), ReqUpdatesMsg)
    assert ask == ReqUpdatesMsg(["B"])
    b.receive("A", wire(ask), 20.1)
    (answer,) = of_type(b.collect(20.1), UpdatesMsg)
    assert a.receive("B", wire(answer), 20.2) == [Revived("B", 0)]
    assert remote_of(a, "b1").is_connected


def test_a_newcomer_arriving_is_no_reason_to_ask_after_departed_peers() -> None:
    a, _ = _pair()
    a.peer_left("B", 1.0)
    a.collect(1.0)
    assert a.heartbeat(7.0) == [Gone("B", 0, forgotten=False)]
    a.peer_joined("N", 8.0)  # someone new, not B coming back
    assert of_type(a.collect(8.0), ReqUpdatesMsg) == []
