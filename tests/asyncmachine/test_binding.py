"""Handler binding, tracers and unknown-state errors.

Contract: /work/shared/docs/API.md (Handlers, Tracers, "Unknown state names
raise StateError") and the lead's API notes (bind / unbind, HandlerError at
bind time, tracer methods), with asyncmachine-go for what they leave open.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from asyncmachine import (
    Event,
    HandlerError,
    Machine,
    MutationType,
    Result,
    State,
    StateError,
    Transition,
)

WAIT = 5.0


def foobar() -> Machine:
    return Machine({"Foo": State(), "Bar": State(), "Baz": State()}, id="fb")


class Recorder:
    """Records e.name of every handler kind for Foo and Bar."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.events: list[Event] = []

    def _rec(self, e: Event) -> None:
        self.calls.append(e.name)
        self.events.append(e)

    def Foo_enter(self, e: Event) -> None:
        self._rec(e)

    def Foo_exit(self, e: Event) -> None:
        self._rec(e)

    def Foo_state(self, e: Event) -> None:
        self._rec(e)

    def Foo_end(self, e: Event) -> None:
        self._rec(e)

    def Foo_Foo(self, e: Event) -> None:
        self._rec(e)

    def Foo_Bar(self, e: Event) -> None:
        self._rec(e)

    def any_enter(self, e: Event) -> None:
        self._rec(e)

    def any_state(self, e: Event) -> None:
        self._rec(e)


# ---------------------------------------------------------------------------
# bind: every kind is bound and called


def test_bind_returns_an_id() -> None:
    m = foobar()
    first = m.bind(Recorder())
    second = m.bind(Recorder())
    assert isinstance(first, str) and first
    assert isinstance(second, str) and second
    assert first != second


def test_enter_state_and_any_handlers_on_activation() -> None:
    m = foobar()
    rec = Recorder()
    m.bind(rec)
    assert m.add("Foo") == Result.EXECUTED
    assert rec.calls == ["Foo_enter", "any_enter", "Foo_state", "any_state"]
    for e in rec.events:
        assert e.machine is m
        assert e.transition.called_states == ["Foo"]


def test_exit_and_end_handlers_on_deactivation() -> None:
    m = foobar()
    m.add("Foo")
    rec = Recorder()
    m.bind(rec)
    assert m.remove("Foo") == Result.EXECUTED
    assert rec.calls == ["Foo_exit", "any_enter", "Foo_end", "any_state"]
    assert rec.events[0].transition.mutation_type is MutationType.REMOVE


def test_self_handler_when_called_while_active() -> None:
    m = foobar()
    m.add("Foo")
    rec = Recorder()
    m.bind(rec)
    m.add("Foo")
    assert "Foo_Foo" in rec.calls
    assert "Foo_enter" not in rec.calls
    assert "Foo_state" not in rec.calls
    assert m.tick("Foo") == 1


def test_state_to_state_handler() -> None:
    m = foobar()
    m.add("Foo")
    rec = Recorder()
    m.bind(rec)
    assert m.add("Bar") == Result.EXECUTED
    assert "Foo_Bar" in rec.calls
    e = rec.events[rec.calls.index("Foo_Bar")]
    assert "Foo" in e.transition.states_before
    assert "Bar" in e.transition.target_states
    # Foo_Bar is a negotiation handler: before any_enter, before the finals
    assert rec.calls.index("Foo_Bar") < rec.calls.index("any_enter")
    # Bar -> Foo is a different pair: Foo_Bar not called for it
    m.remove("Foo")
    rec.calls.clear()
    m.add("Foo")
    assert "Foo_Bar" not in rec.calls


def test_negotiation_handler_cancels_by_returning_false() -> None:
    m = foobar()

    class No:
        def Foo_enter(self, e: Event) -> bool:
            return False

    m.bind(No())
    assert m.add("Foo") == Result.CANCELED
    assert m.not_active("Foo")
    assert m.tick("Foo") == 0


def test_helper_methods_and_attributes_are_ignored() -> None:
    calls: list[str] = []

    class Handlers:
        enter_count = 0  # non-callable, not handler-like
        Foo_end = "not callable"  # handler-like name but not callable
        Bar_state = None

        def get_x(self) -> int:
            calls.append("get_x")
            return 1

        def on_enter(self, e: Event) -> None:
            calls.append("on_enter")

        def handle_enter(self, e: Event) -> None:
            calls.append("handle_enter")

        def _private(self, e: Event) -> None:
            calls.append("_private")

        def _Foo_enter(self, e: Event) -> None:
            calls.append("_Foo_enter")

        def __call__(self, e: Event) -> None:
            calls.append("__call__")

        @property
        def size(self) -> int:
            return 3

        @staticmethod
        def helper() -> None:
            calls.append("helper")

        def Foo_state(self, e: Event) -> None:
            calls.append("Foo_state")

    m = foobar()
    m.bind(Handlers())
    m.add("Foo")
    m.add("Bar")
    m.remove(["Foo", "Bar"])
    assert calls == ["Foo_state"]
    assert m.not_active("Exception"), m.err


# ---------------------------------------------------------------------------
# typos: HandlerError at bind time


def typo_class(method: str) -> type:
    def handler(self: Any, e: Event) -> None:
        raise AssertionError("must never run")

    def fine(self: Any, e: Event) -> None:
        raise AssertionError("a rejected object must not be partly bound")

    return type("TypoHandlers", (), {method: handler, "Foo_state": fine})


@pytest.mark.parametrize(
    ("method", "missing", "hint"),
    [
        ("Fooo_enter", "Fooo", "Foo"),
        ("Fooo_exit", "Fooo", "Foo"),
        ("Fooo_state", "Fooo", "Foo"),
        ("Fooo_end", "Fooo", "Foo"),
        ("Foo_Barr", "Barr", "Bar"),
        ("Barr_Foo", "Barr", "Bar"),
        ("any_exit", None, "any_"),
        ("any_end", None, "any_"),
        ("Foo_enterr", None, "Foo_enter"),
        ("Foo_stat", None, "Foo_state"),
    ],
)
def test_typo_raises_handler_error(method: str, missing: str | None, hint: str) -> None:
    m = foobar()
    with pytest.raises(HandlerError) as info:
        m.bind(typo_class(method)())
    msg = str(info.value)
    assert "TypoHandlers" in msg
    assert method in msg
    if missing is not None:
        assert repr(missing) in msg or f'"{missing}"' in msg, msg
    assert re.search(r"did you mean", msg, re.I), f"no 'did you mean' hint: {msg}"
    # the hint names the closest valid handler or state (any_enter / any_state
    # for the any_* typos)
    assert hint in msg.split("did you mean", 1)[-1], msg
    # nothing of the rejected object was bound
    m.add("Foo")
    assert m.not_active("Exception"), m.err


def test_handler_error_is_a_value_error() -> None:
    m = foobar()
    with pytest.raises(ValueError):
        m.bind(typo_class("Fooo_enter")())


def test_state_names_with_underscores() -> None:
    calls: list[str] = []
    m = Machine({"Err_Net": State(), "Conn_Ok": State(), "Foo": State()})

    class Handlers:
        def Err_Net_enter(self, e: Event) -> None:
            calls.append(e.name)

        def Err_Net_state(self, e: Event) -> None:
            calls.append(e.name)

        def Err_Net_exit(self, e: Event) -> None:
            calls.append(e.name)

        def Err_Net_end(self, e: Event) -> None:
            calls.append(e.name)

        def Err_Net_Err_Net(self, e: Event) -> None:
            calls.append(e.name)

        def Err_Net_Conn_Ok(self, e: Event) -> None:
            calls.append(e.name)

        def Foo_Err_Net(self, e: Event) -> None:
            calls.append(e.name)

    m.bind(Handlers())
    m.add("Err_Net")
    assert calls == ["Err_Net_enter", "Err_Net_state"]
    calls.clear()
    m.add("Err_Net")
    assert calls == ["Err_Net_Err_Net"]
    calls.clear()
    m.add("Conn_Ok")
    assert "Err_Net_Conn_Ok" in calls
    calls.clear()
    m.set("Foo")
    assert calls[:1] == ["Err_Net_exit"]
    assert "Err_Net_end" in calls
    calls.clear()
    m.add("Err_Net")
    assert calls[:2] == ["Err_Net_enter", "Foo_Err_Net"]
    assert m.not_active("Exception"), m.err


def test_underscore_state_typo_still_detected() -> None:
    m = Machine({"Err_Net": State()})
    cls = type("TypoHandlers", (), {"Err_Nett_enter": lambda self, e: None})
    with pytest.raises(HandlerError, match="Err_Nett"):
        m.bind(cls())


# ---------------------------------------------------------------------------
# several bindings, unbind


def test_two_bindings_both_run_in_bind_order() -> None:
    m = foobar()
    calls: list[str] = []

    def make(tag: str) -> object:
        class Handlers:
            def Foo_enter(self, e: Event) -> None:
                calls.append(f"{tag}:enter")

            def Foo_state(self, e: Event) -> None:
                calls.append(f"{tag}:state")

        return Handlers()

    m.bind(make("first"))
    m.bind(make("second"))
    m.add("Foo")
    assert calls == ["first:enter", "second:enter", "first:state", "second:state"]


def test_second_binding_can_cancel_and_first_still_ran() -> None:
    m = foobar()
    calls: list[str] = []

    class Yes:
        def Foo_enter(self, e: Event) -> None:
            calls.append("yes")

    class No:
        def Foo_enter(self, e: Event) -> bool:
            calls.append("no")
            return False

    m.bind(Yes())
    m.bind(No())
    assert m.add("Foo") == Result.CANCELED
    assert calls == ["yes", "no"]


def test_unbind_stops_calls() -> None:
    m = foobar()
    first, second = Recorder(), Recorder()
    first_id = m.bind(first)
    m.bind(second)
    m.add("Foo")
    assert first.calls and second.calls
    first.calls.clear()
    second.calls.clear()
    m.unbind(first_id)
    m.remove("Foo")
    assert first.calls == []
    assert second.calls == ["Foo_exit", "any_enter", "Foo_end", "any_state"]


def test_unbind_the_same_object_bound_twice() -> None:
    m = foobar()
    rec = Recorder()
    a = m.bind(rec)
    b = m.bind(rec)
    m.add("Foo")
    assert rec.calls.count("Foo_enter") == 2
    m.unbind(a)
    rec.calls.clear()
    m.remove("Foo")
    assert rec.calls.count("Foo_exit") == 1
    m.unbind(b)
    rec.calls.clear()
    m.add("Foo")
    assert rec.calls == []


def test_unbind_unknown_id_is_key_error() -> None:
    m = foobar()
    with pytest.raises(KeyError):
        m.unbind("no-such-binding")
    binding = m.bind(Recorder())
    m.unbind(binding)
    with pytest.raises(KeyError):
        m.unbind(binding)


# ---------------------------------------------------------------------------
# tracers


class FullTracer:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def transition_init(self, tx: Transition) -> None:
        m = tx.machine
        self.calls.append(("init", tx.called_states, m.is_active(tx.called_states)))

    def transition_start(self, tx: Transition) -> None:
        m = tx.machine
        self.calls.append(("start", tx.called_states, m.is_active(tx.called_states)))

    def transition_end(self, tx: Transition) -> None:
        m = tx.machine
        self.calls.append(
            (
                "end",
                tx.called_states,
                m.is_active(tx.called_states),
                tx.is_accepted,
                tx.is_completed,
            )
        )

    def mutation_queued(self, machine: Machine, mutation: Any) -> None:
        self.calls.append(
            ("queued", machine.id, mutation.type, list(mutation.called), mutation.args)
        )

    def queue_end(self, machine: Machine) -> None:
        self.calls.append(("queue_end", machine.id))

    def machine_dispose(self, machine: Machine) -> None:
        self.calls.append(("dispose", machine.id, machine.is_disposed))


def test_tracer_methods_called_with_args_in_order() -> None:
    m = foobar()
    tracer = FullTracer()
    m.bind_tracer(tracer)
    assert m.add("Foo", {"x": 1}) == Result.EXECUTED
    assert tracer.calls == [
        ("queued", "fb", MutationType.ADD, ["Foo"], {"x": 1}),
        ("init", ["Foo"], False),
        ("start", ["Foo"], False),
        ("end", ["Foo"], True, True, True),
        ("queue_end", "fb"),
    ]
    tracer.calls.clear()
    m.dispose()
    assert tracer.calls == [("dispose", "fb", True)]


def test_tracer_sees_canceled_transition() -> None:
    m = Machine({"A": State(require="B"), "B": State()}, id="rq")
    tracer = FullTracer()
    m.bind_tracer(tracer)
    assert m.add("A") == Result.CANCELED
    assert tracer.calls[-2] == ("end", ["A"], False, False, True)
    assert tracer.calls[-1] == ("queue_end", "rq")


def test_tracer_order_with_mutation_queued_from_a_handler() -> None:
    m = foobar()
    tracer = FullTracer()

    class Handlers:
        def Foo_state(self, e: Event) -> None:
            assert e.machine.add("Bar") == Result.QUEUED

    m.bind(Handlers())
    m.bind_tracer(tracer)
    m.add("Foo")
    kinds = [(c[0], c[1] if c[0] != "queued" else c[3]) for c in tracer.calls]
    assert kinds == [
        ("queued", ["Foo"]),
        ("init", ["Foo"]),
        ("start", ["Foo"]),
        ("queued", ["Bar"]),
        ("end", ["Foo"]),
        ("init", ["Bar"]),
        ("start", ["Bar"]),
        ("end", ["Bar"]),
        ("queue_end", "fb"),
    ]
    assert m.active_states == ["Foo", "Bar"]


def test_tracer_with_some_methods_only() -> None:
    m = foobar()
    ended: list[list[str]] = []

    class EndOnly:
        def transition_end(self, tx: Transition) -> None:
            ended.append(tx.called_states)

    m.bind_tracer(EndOnly())
    m.add("Foo")
    m.remove("Foo")
    m.dispose()
    assert ended == [["Foo"], ["Foo"]]


def test_two_tracers_and_unbind_tracer() -> None:
    m = foobar()
    a, b = FullTracer(), FullTracer()
    m.bind_tracer(a)
    m.bind_tracer(b)
    m.add("Foo")
    assert a.calls == b.calls
    assert len(a.calls) == 5
    m.unbind_tracer(a)
    m.add("Bar")
    assert len(a.calls) == 5
    assert len(b.calls) == 10
    m.dispose()
    assert len(a.calls) == 5
    assert b.calls[-1][0] == "dispose"


def test_unbind_tracer_unknown_is_key_error() -> None:
    m = foobar()
    with pytest.raises(KeyError):
        m.unbind_tracer(FullTracer())


# ---------------------------------------------------------------------------
# unknown state names: StateError everywhere, with a hint


def fb_active() -> Machine:
    m = foobar()
    m.add("Foo")
    return m


UNKNOWN_CALLS: dict[str, Callable[[Machine], Any]] = {
    # mutations
    "add": lambda m: m.add("Fooo"),
    "add_list": lambda m: m.add(["Bar", "Fooo"]),
    "remove": lambda m: m.remove("Fooo"),
    "set": lambda m: m.set(["Fooo"]),
    "toggle": lambda m: m.toggle("Fooo"),
    "add_err_state": lambda m: m.add_err_state("Fooo", RuntimeError("x")),
    "can_add": lambda m: m.can_add("Fooo"),
    "can_remove": lambda m: m.can_remove(["Fooo"]),
    # checking
    "is_active": lambda m: m.is_active("Fooo"),
    "is_active_list": lambda m: m.is_active(["Foo", "Fooo"]),
    "not_active": lambda m: m.not_active("Fooo"),
    "any_active": lambda m: m.any_active("Bar", ["Foo", "Fooo"]),
    "count_active": lambda m: m.count_active(["Fooo"]),
    "switch": lambda m: m.switch(["Bar", "Fooo"]),
    "tick": lambda m: m.tick("Fooo"),
    "time": lambda m: m.time(["Fooo"]),
    "clock": lambda m: m.clock("Fooo"),
    "is_clock": lambda m: m.is_clock({"Fooo": 1}),
    "is_time": lambda m: m.is_time([1], ["Fooo"]),
    "will_be": lambda m: m.will_be("Fooo"),
    "will_be_removed": lambda m: m.will_be_removed("Fooo"),
    "relations_of": lambda m: m.relations_of("Fooo"),
    "relations_between_src": lambda m: m.relations_between("Fooo", "Bar"),
    "relations_between_dst": lambda m: m.relations_between("Bar", "Fooo"),
    "inspect": lambda m: m.inspect(["Fooo"]),
    # waiting
    "when": lambda m: m.when("Fooo"),
    "when_not": lambda m: m.when_not(["Fooo"]),
    "when_time": lambda m: m.when_time(["Fooo"], [1]),
    "when_ticks": lambda m: m.when_ticks("Fooo", 1),
    "when_args": lambda m: m.when_args("Fooo", {"a": 1}),
    "new_state_ctx": lambda m: m.new_state_ctx("Fooo"),
}


@pytest.mark.parametrize("call", list(UNKNOWN_CALLS))
def test_unknown_state_is_state_error_with_hint(call: str) -> None:
    m = fb_active()
    before = (m.time(), m.active_states)
    with pytest.raises(StateError) as info:
        UNKNOWN_CALLS[call](m)
    err = info.value
    assert isinstance(err, ValueError)
    msg = str(err)
    assert "'Fooo'" in msg, msg
    assert re.search(r"did you mean 'Foo'", msg), msg
    assert (m.time(), m.active_states) == before
    assert m.not_active("Exception")


@pytest.mark.parametrize("kind", ["add", "remove", "set", "toggle"])
def test_failed_mutation_leaves_time_unchanged_and_runs_no_handler(kind: str) -> None:
    m = fb_active()
    rec = Recorder()
    tracer = FullTracer()
    m.bind(rec)
    m.bind_tracer(tracer)
    time_before = m.time()
    with pytest.raises(StateError, match="Nope"):
        getattr(m, kind)(["Bar", "Foo", "Nope"], {"a": 1})
    assert m.time() == time_before
    assert m.active_states == ["Foo"]
    assert rec.calls == []
    assert tracer.calls == []
    # the machine still works afterwards
    assert m.add("Bar") == Result.EXECUTED
    assert m.time() != time_before


def test_unknown_state_error_inside_a_handler_becomes_exception() -> None:
    m = foobar()

    class Handlers:
        def Foo_state(self, e: Event) -> None:
            e.machine.add("Nope")

    m.bind(Handlers())
    assert m.add("Foo") == Result.CANCELED
    assert m.is_active("Exception")
    assert isinstance(m.err, StateError)
    assert "Nope" in str(m.err)
