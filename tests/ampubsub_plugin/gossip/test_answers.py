"""Answers: the owner replies at once, a few responders after a random delay.

The rules live in ``ampubsub_plugin/_gossip/answers.py``: the first answer
suppresses the others, so a request costs about one reply.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ampubsub_plugin._gossip.answers import place_for_all, rank, ranked_before
from ampubsub_plugin.protocol import (
    GossipMsg,
    InfoMsg,
    Message,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
)

from ..coreutil import (
    CorePeer,
    clocks_in,
    infos_about,
    introduced,
    make,
    of_type,
    owner_updates,
    remote_of,
    wire,
    worker,
)


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
        # (they joined with A: what they owe it once settled goes first)
        for step in range(100):
            core.collect(step / 10)
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
    assert clocks_in(a.collect(3.0)) == [{"A": {0: m.time()}}]


def test_non_owner_answers_requpdates_with_its_view_suppressed() -> None:
    a, b, d = make("A"), make("B", 1), make("D", 2)
    m = worker("a1")
    a.export(m)
    introduced(a, b, d)
    m.add(["Bar", "Foo"])
    update = owner_updates("A", {0: ("a1", m.time())})
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


def test_ranks_follow_the_live_peers() -> None:
    """Ranks are cached, but a peer falling silent or arriving counts at once."""
    a = make("A", peer_ttl=5.0)
    a.joined(0.0, alone=True)
    for peer in "BCDEFG":
        a.receive(peer, wire(InfoMsg({peer: {}}, {})), 0.0)
    roster = a.core.roster
    before = {p for p in "BCDEFG" if rank(p, "s") < rank("A", "s")}
    assert ranked_before("A", "s", roster) == len(before)
    a.heartbeat(10.0)  # all silent now
    assert ranked_before("A", "s", roster) == 0
    a.receive("B", wire(InfoMsg({"B": {}}, {})), 11.0)  # B is back
    assert ranked_before("A", "s", roster) == int("B" in before)


@given(
    names=st.lists(st.text("abcdefgh", min_size=1, max_size=4), max_size=30),
    limit=st.integers(1, 5),
)
@settings(max_examples=60, deadline=None)
def test_the_place_for_everyone_is_the_full_count_capped(
    names: list[str], limit: int
) -> None:
    """The capped count (snapshots, acknowledgements) agrees with
    the full one below its cap; silent peers don't count in either."""
    a = make("A", peer_ttl=5.0)
    a.joined(0.0, alone=True)
    for peer in dict.fromkeys(names):
        if peer != "A":
            a.receive(peer, wire(InfoMsg({peer: {}}, {})), 0.0)
    roster = a.core.roster
    full = ranked_before("A", "", roster)
    assert place_for_all("A", roster, limit) == min(full, limit)
    a.heartbeat(10.0)  # all silent now
    assert place_for_all("A", roster, limit) == 0
