"""Machine._show_time: showing a clock the machine did not compute.

Contract (the method's docstring): for subclasses that show another
machine's clock, such as a read-only network copy. Under the lock the ticks
become ``list(time)`` and the active states are recomputed (odd tick =
active, in state order); a given schema replaces the schema and the
resolver, keeping the state names. Then, as after a transition, contexts of
the changed states expire and waiters filed under them wake. It returns the
names whose ticks changed; a disposed machine returns [] and changes
nothing. No relations are resolved and no handlers run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from asyncmachine import EXCEPTION, Event, Machine, Relation, State, Transition, Waiter

TIMEOUT = 5


def abc() -> Machine:
    """Clock order: A, B, C, then Exception (which every schema gets)."""
    return Machine(
        {"A": State(require=["B"]), "B": State(), "C": State(multi=True)}, id="abc"
    )


class ClockCopy(Machine):
    """A machine that shows clocks it is sent, as a network copy would."""

    def receive(self, time: list[int]) -> list[str]:
        return self._show_time(time)


# -- the clock -----------------------------------------------------------------


def test_show_time_replaces_the_ticks_and_returns_the_changed_states() -> None:
    m = abc()

    assert m._show_time([1, 0, 2, 0]) == ["A", "C"]

    assert m.time() == [1, 0, 2, 0]
    assert m.clock() == {"A": 1, "B": 0, "C": 2, EXCEPTION: 0}


def test_active_states_are_the_odd_ticks_in_state_order() -> None:
    m = abc()

    m._show_time([0, 5, 3, 0])

    assert m.active_states == ["B", "C"]
    assert m.is_active(["B", "C"]) and not m.is_active("A")
    assert str(m) == "(B:5 C:3)"


def test_the_given_time_list_is_copied() -> None:
    m = abc()
    time = [1, 1, 0, 0]

    m._show_time(time)
    time[2] = 7

    assert m.time() == [1, 1, 0, 0]


def test_showing_the_same_clock_again_changes_nothing() -> None:
    m = abc()
    m._show_time([1, 1, 0, 0])
    ctx = m.new_state_ctx("A")

    assert m._show_time([1, 1, 0, 0]) == []
    assert not ctx.expired


def test_relations_are_not_resolved_and_handlers_do_not_run() -> None:
    calls: list[str] = []

    class Handlers:
        def A_enter(self, e: Event) -> None:
            calls.append("A_enter")

        def A_state(self, e: Event) -> None:
            calls.append("A_state")

    class Tracer:
        def transition_end(self, tx: Transition) -> None:
            calls.append("transition_end")

    m = abc()
    m.bind(Handlers())
    m.bind_tracer(Tracer())

    m._show_time([1, 0, 0, 0])  # A requires B, which stays inactive

    assert m.active_states == ["A"]
    assert calls == []


# -- waiters -------------------------------------------------------------------

# (clock shown first, so the waiter is pending; the waiter; the clock that meets it)
WAITERS: dict[str, tuple[list[int], Callable[[Machine], Waiter], list[int]]] = {
    "when": ([0, 0, 0, 0], lambda m: m.when(["A", "B"]), [1, 1, 0, 0]),
    "when_not": ([1, 1, 0, 0], lambda m: m.when_not(["A", "B"]), [2, 2, 0, 0]),
    "when_ticks": ([1, 0, 0, 0], lambda m: m.when_ticks("A", 2), [3, 0, 0, 0]),
    "when_time": (
        [1, 0, 0, 0],
        lambda m: m.when_time(["A", "C"], [2, 4]),
        [2, 0, 4, 0],
    ),
    "when_query": (
        [0, 0, 0, 0],
        lambda m: m.when_query(lambda c: c["C"] > 1),
        [0, 0, 2, 0],
    ),
}


@pytest.mark.parametrize("kind", WAITERS)
def test_waiters_wake_after_show_time(kind: str) -> None:
    before, make, after = WAITERS[kind]
    m = abc()
    m._show_time(before)
    waiter = make(m)
    assert not waiter.done

    m._show_time(after)

    assert waiter.wait(0) is True


@pytest.mark.parametrize("kind", [k for k in WAITERS if k != "when_query"])
def test_waiters_stay_pending_while_the_shown_clock_does_not_meet_them(
    kind: str,
) -> None:
    before, make, _after = WAITERS[kind]
    m = abc()
    m._show_time(before)
    waiter = make(m)

    m._show_time([before[0], before[1], before[2] + 2, 0])  # only C changes

    assert not waiter.done


def test_a_thread_waiting_on_a_copy_wakes_when_a_clock_arrives() -> None:
    m = ClockCopy({"A": State(), "B": State()}, id="copy")
    waiter = m.when("B")
    woke: list[bool] = []
    thread = threading.Thread(target=lambda: woke.append(waiter.wait(TIMEOUT)))
    thread.start()

    assert m.receive([0, 1, 0]) == ["B"]
    thread.join(TIMEOUT)

    assert woke == [True]


def test_an_asyncio_task_waiting_on_a_copy_wakes_when_a_clock_arrives() -> None:
    m = ClockCopy({"A": State(), "B": State()}, id="copy")

    async def main() -> Any:
        m.receive([1, 0, 0])
        waiter = m.when_not("A")
        asyncio.get_running_loop().call_soon(m.receive, [2, 0, 0])
        return await asyncio.wait_for(waiter, TIMEOUT)

    assert asyncio.run(main()) is True


# -- state contexts ------------------------------------------------------------


def test_contexts_of_changed_states_expire_and_the_others_do_not() -> None:
    m = abc()
    m._show_time([1, 1, 0, 0])
    ctx_a, ctx_b, ctx_c = (m.new_state_ctx(s) for s in "ABC")
    expired: list[str] = []
    for ctx in (ctx_a, ctx_b, ctx_c):
        ctx.on_expire(partial(expired.append, ctx.state))

    m._show_time([2, 1, 2, 0])

    assert ctx_a.expired and ctx_c.expired
    assert not ctx_b.expired
    assert sorted(expired) == ["A", "C"]


# -- the schema ----------------------------------------------------------------


def test_a_given_schema_replaces_the_relations() -> None:
    m = abc()
    assert m.relations_of("A") == [Relation.REQUIRE]

    new = {"A": State(add=["B"], remove=["C"]), "B": State(), "C": State()}
    new[EXCEPTION] = State(multi=True)
    m._show_time([0, 0, 0, 0], new)

    assert m.relations_of("A") == [Relation.ADD, Relation.REMOVE]
    assert m.relations_between("A", "C") == [Relation.REMOVE]
    assert m.schema == new
    assert m.state_names == ["A", "B", "C", EXCEPTION]


def test_a_given_schema_replaces_the_resolver() -> None:
    m = abc()
    new = {**m.schema, "A": State(add=["B"])}
    m._show_time([0, 0, 0, 0], new)

    m.add("A")  # "A" no longer requires "B"; it adds it

    assert m.active_states == ["A", "B"]


def test_a_schema_with_other_state_names_is_refused_and_nothing_changes() -> None:
    m = abc()
    m._show_time([1, 1, 0, 0])

    with pytest.raises(ValueError, match="must keep the states"):
        m._show_time([3, 3, 3, 0], {"B": State(), "A": State(), "C": State()})

    assert m.time() == [1, 1, 0, 0]
    assert m.relations_of("A") == [Relation.REQUIRE]


def test_without_a_schema_the_relations_stay() -> None:
    m = abc()

    m._show_time([1, 1, 0, 0])

    assert m.relations_of("A") == [Relation.REQUIRE]


# -- disposal ------------------------------------------------------------------


def test_a_disposed_machine_shows_nothing_and_changes_nothing() -> None:
    m = abc()
    m._show_time([1, 1, 0, 0])
    schema = m.schema
    m.dispose()

    assert m._show_time([3, 3, 2, 0], {**schema, "A": State()}) == []

    assert m.time() == [1, 1, 0, 0]
    assert m.schema == schema
    assert m.relations_of("A") == [Relation.REQUIRE]
    assert m.active_states == []  # as for any disposed machine
