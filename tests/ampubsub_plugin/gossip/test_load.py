"""Back-pressure: the lag a core measures, and the windows it stretches."""

from __future__ import annotations

import random

import pytest

from ampubsub_plugin._gossip import GossipConfig
from ampubsub_plugin._gossip.config import Shared
from ampubsub_plugin._gossip.load import MAX_LAG, Load
from ampubsub_plugin.protocol import GossipMsg, ReqInfoMsg, decode, encode

from ..coreutil import Mesh, asked, make, worker
from .test_discovery import start_together, synced_at


def load() -> tuple[Load, Shared]:
    shared = Shared("me", GossipConfig(), random.Random(0))
    return Load(shared), shared


def test_time_waited_in_our_queue_is_lag_and_fades() -> None:
    room, shared = load()
    room.waited(4.0, now=10.0)
    assert shared.lag == 4.0
    room.waited(0.1, now=10.5)  # a short wait doesn't hide the long one at once
    assert 3.0 < shared.lag < 4.0
    room.update(now=30.0)  # 20 s later: halved four times
    assert shared.lag == pytest.approx(4.0 * 0.5**4, rel=0.01)


def test_stamps_show_a_queue_that_grows_whatever_the_clock_offset() -> None:
    room, _ = load()
    offset = 123_456.0  # the senders' clocks are far from ours
    for i, sender in enumerate("ABCDE"):
        room.observe(sender, int((100.0 + i - offset) * 1000), 100.0 + i)
    assert room.update(105.0) == 0.0  # baselines only
    # now every message arrives 3 s after it was sent
    for i, sender in enumerate("ABCDE"):
        room.observe(sender, int((106.0 - offset) * 1000), 109.0 + i / 100)
    assert room.update(109.1) == pytest.approx(3.0, abs=0.05)


def test_one_sender_lying_in_its_stamps_moves_nothing() -> None:
    room, _ = load()
    for t in range(10):
        for sender in "ABCD":
            room.observe(sender, t * 1000, float(t))
        room.observe("liar", 0 if t else 9_000_000, float(t))  # claims 2.5 h
    assert room.update(9.0) == 0.0


def test_a_sender_whose_clock_jumps_starts_a_new_baseline() -> None:
    room, _ = load()
    room.observe("A", 1000, 1.0)
    room.observe("A", 1000 * (2 - 10_000), 2.0)  # restarted: its clock moved
    room.observe("A", 1000 * (3 - 10_000), 3.0)
    assert room.update(3.0) == 0.0
    room.observe("A", 1000 * (4 - 10_000), 9.0)  # 5 s late: that is lag
    assert room.update(9.0) == pytest.approx(5.0)


def test_lag_is_capped() -> None:
    room, shared = load()
    room.waited(500.0, now=1.0)
    assert shared.lag == MAX_LAG


def test_unstamped_messages_say_nothing() -> None:
    room, _ = load()
    room.observe("go-peer", 0, 50.0)
    assert room.update(50.0) == 0.0


def test_the_stamp_travels_and_a_bad_one_is_refused() -> None:
    msg = decode(encode(ReqInfoMsg(peer_ids=[], sent_at=1234)))
    assert msg.sent_at == 1234
    assert decode(encode(ReqInfoMsg(peer_ids=[]))).sent_at == 0
    raw = encode(GossipMsg({}, sent_at=5))
    bad = raw.replace(b"\xa2At\x05", b"\xa2At\xff")  # -1
    with pytest.raises(Exception, match="At"):
        decode(bad)


def test_a_core_stamps_what_it_sends_and_measures_what_it_receives() -> None:
    a, b = make("A"), make("B")
    a.export(worker("a1"))
    a.joined(10.0, alone=True)
    (hello,) = a.collect(10.0)
    assert hello.sent_at == 10_000
    b.joined(10.0)
    b.receive("A", hello, 10.5, arrived=10.0)
    assert b.core.lag == pytest.approx(0.5)


def test_a_lagging_peer_puts_off_its_requests() -> None:
    """A peer that runs 5 s behind doesn't ask after the usual grace."""
    fresh, busy = make("F", request_grace=1.0), make("S", request_grace=1.0)
    for core in (fresh, busy):
        core.joined(0.0, alone=True)
        core.collect(0.0)
        core.receive("C", GossipMsg({"X": {0: 3}}), 0.5, arrived=0.5)
    busy.receive("C", GossipMsg({"Y": {0: 3}}), 0.6, arrived=-4.4)  # waited 5 s
    early = {
        c.peer_id: [m for s in range(6, 40) for m in c.collect(s / 10)]
        for c in (fresh, busy)
    }
    assert asked(early["F"], ReqInfoMsg) >= {"X"}
    assert asked(early["S"], ReqInfoMsg) == set()


@pytest.mark.parametrize("seed", range(2))
def test_peers_starting_together_on_a_saturated_network_send_few_messages(
    seed: int,
) -> None:
    """Every reception costs its receiver 200 ms: 30 hellos take 6 s to
    work through, longer than the ask and answer windows. Without
    back-pressure each peer asks and answers in the dark."""
    peers = 30
    mesh = start_together(peers, cost=0.2, seed=seed)
    done = synced_at(mesh, 60.0)
    assert done is not None
    sent = [m for t, _, m in mesh.sent if t <= done]
    assert len(sent) / peers <= 1.5, len(sent) / peers
    mesh.run(40.0)
    assert len(mesh.sent) / peers <= 4.0, len(mesh.sent) / peers


def test_without_back_pressure_the_same_start_costs_more() -> None:
    """The comparison that shows the test above can fail."""

    def run(back_pressure: float) -> float:
        mesh = Mesh(seed=0)
        mesh.cost = 0.2
        for i in range(30):
            core = make(f"P{i:02d}", 0, back_pressure=back_pressure)
            core.export(worker(f"m{i:02d}"))
            mesh.add(core)
        for core in mesh.cores:
            core.joined(0.0)
        mesh.run(40.0)
        return len(mesh.sent) / 30

    assert run(0.0) > 1.5 * run(2.0)
