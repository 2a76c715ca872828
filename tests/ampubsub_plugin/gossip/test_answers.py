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
    hello_of,
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
    """The capped count (snapshots, acknowledgements, roll calls) agrees with
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


# -- roll calls after a wave of joins (rule 5) -------------------------------------


def ranked_names(count: int, after: str = "") -> list[str]:
    """``count`` peer names, all ranking after ``after`` for the empty subject
    (so ``after`` is the first responder among them)."""
    floor = rank(after, "") if after else b""
    names = (f"N{i}" for i in range(1000))
    return [n for n in names if rank(n, "") > floor][:count]


def wave(receivers: list[CorePeer], times: list[float], after: str) -> list[str]:
    """Newcomers whose first hellos reach ``receivers`` at ``times``."""
    names = ranked_names(len(times), after)
    for name, at in zip(names, times, strict=True):
        owner = make(name)
        owner.export(worker(f"{name}-m"))
        owner.joined(at)
        (hello,) = infos_about(owner.collect(at), name)
        for core in receivers:
            core.receive(name, wire(hello), at)
    return names


def settled(name: str, **config: Any) -> CorePeer:
    """A peer that joined alone at 0 (its hello, sent then, in ``hello``)."""
    core = make(name, **config)
    core.export(worker(f"{name}-m"))
    core.joined(0.0, alone=True)
    core.hello = hello_of(core, 0.0)  # type: ignore[attr-defined]
    return core


def roll_calls(core: CorePeer, start: float, end: float) -> list[GossipMsg]:
    calls: list[GossipMsg] = []
    for step in range(int(start * 10), int(end * 10)):
        before = core.counters["gossip_roll_call"]
        out = of_type(core.collect(step / 10), GossipMsg)
        if core.counters["gossip_roll_call"] > before:
            calls.extend(out)
    return calls


def test_after_a_wave_of_joins_a_responder_names_the_newcomers_once() -> None:
    # snapshot_wait 1 s: the roll call waits 2 s after the last first hello
    b = settled("B", snapshot_wait=1.0)
    names = wave([b], [1.0, 1.5, 2.0], after="B")
    assert roll_calls(b, 0.1, 3.9) == []  # the wave may go on
    (call,) = roll_calls(b, 3.9, 4.3)
    assert set(names) <= set(call.peer_gossips)
    assert roll_calls(b, 4.3, 20.0) == []  # once per wave


def test_joins_that_go_on_are_named_every_few_quiet_windows() -> None:
    b = settled("B", snapshot_wait=1.0)
    names = wave([b], [1.0 + i for i in range(12)], after="B")
    # a hello every second never leaves 2 s of quiet: at most 5 windows
    (call,) = roll_calls(b, 0.1, 11.2)
    assert set(names[:10]) <= set(call.peer_gossips)


def test_a_peer_that_missed_a_hello_pulls_the_newcomer_the_roll_call_names() -> None:
    b = settled("B", snapshot_wait=1.0)
    d = settled("D", snapshot_wait=1.0)
    d.pull_snapshots(True)
    (lost,) = wave([b], [1.0], after="B")  # D missed its hello
    (call,) = roll_calls(b, 0.1, 3.5)
    d.receive("B", wire(call), 3.5)
    wanted = None
    for step in range(35, 100):
        d.collect(step / 10)
        wanted = wanted or d.peers_to_pull()
    assert wanted is not None and lost in wanted[0]


def test_the_second_responder_drops_the_names_the_first_one_called() -> None:
    b, c = settled("B", snapshot_wait=1.0), settled("C", snapshot_wait=1.0)
    b.receive("C", wire(c.hello), 0.5)  # type: ignore[attr-defined]
    c.receive("B", wire(b.hello), 0.5)  # type: ignore[attr-defined]
    first, second = sorted([b, c], key=lambda core: rank(core.peer_id, ""))
    names = wave([first, second], [1.0, 1.5], after=second.peer_id)
    # the second waits half a quiet window longer ...
    assert roll_calls(second, 0.6, 4.1) == []
    (call,) = roll_calls(first, 0.6, 4.1)
    assert set(names) <= set(call.peer_gossips)
    # ... and drops what the first one's call named (all but the first
    # responder itself, which a call doesn't name)
    second.receive(first.peer_id, wire(call), 4.1)
    later = roll_calls(second, 4.1, 20.0)
    assert {p for m in later for p in m.peer_gossips} <= {first.peer_id}
