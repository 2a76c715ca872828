"""The rest of Go's machine: eval, queue ticks, set_schema, groups, tracers.

Tests named after a Go test of pkg/machine/machine_test.go follow it in
behaviour (the Python is our own); the others pin down what Go leaves
implicit. No test sleeps to synchronise: threads meet on events.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from asyncmachine import EXCEPTION, Machine, Result, State, StateError

LONG = 10.0


def abcd(**kw: Any) -> Machine:
    return Machine({s: State() for s in "ABCD"}, **kw)


# -- eval ---------------------------------------------------------------------


def test_eval() -> None:
    """Go: TestEval."""
    m = abcd()
    seen: list[int] = []
    assert m.eval(lambda: seen.append(1)) is True
    assert seen == [1]


def test_eval_nested() -> None:
    """Go: TestEvalNested: an eval inside an eval fails, without an error."""
    m = abcd()
    count = [0]
    nested: list[bool] = []

    def outer() -> None:
        count[0] += 1
        nested.append(m.eval(lambda: count.__setitem__(0, count[0] + 1)))

    assert m.eval(outer) is True
    assert nested == [False]
    assert count == [1]
    assert not m.is_active(EXCEPTION)


def test_eval_from_a_handler_is_refused() -> None:
    m = abcd()
    got: list[bool] = []

    class H:
        def A_state(self, e: Any) -> None:
            got.append(e.machine.eval(lambda: None))

    m.bind(H())
    m.add("A")
    assert got == [False]


def test_eval_waits_for_the_queue_in_another_thread() -> None:
    """Queued behind a running transition, eval runs after it, in order."""
    m = abcd()
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    class H:
        def A_state(self, e: Any) -> None:
            inside.set()
            release.wait(LONG)
            order.append("A_state")

    queued = threading.Event()

    class Tracer:
        def mutation_queued(self, machine: Machine, mutation: Any) -> None:
            if mutation.queue_tick == 2:
                queued.set()

    m.bind(H())
    m.bind_tracer(Tracer())
    runner = threading.Thread(target=m.add, args=("A",))
    runner.start()
    assert inside.wait(LONG)
    results: list[bool] = []
    evaluator = threading.Thread(
        target=lambda: results.append(m.eval(lambda: order.append("eval")))
    )
    evaluator.start()
    assert queued.wait(LONG)  # the eval is queued before the handler ends
    assert m.queue_len == 1
    release.set()
    runner.join(LONG)
    evaluator.join(LONG)
    assert results == [True]
    assert order == ["A_state", "eval"]


def test_eval_times_out_and_never_runs_late() -> None:
    m = abcd()
    inside, release = threading.Event(), threading.Event()

    class H:
        def A_state(self, e: Any) -> None:
            inside.set()
            release.wait(LONG)

    m.bind(H())
    runner = threading.Thread(target=m.add, args=("A",))
    runner.start()
    assert inside.wait(LONG)
    ran: list[int] = []
    assert m.eval(lambda: ran.append(1), timeout=0.01) is False
    release.set()
    runner.join(LONG)
    assert ran == []
    assert m.is_active("A")


def test_eval_raising_goes_to_exception() -> None:
    m = abcd()

    def boom() -> None:
        raise KeyError("x")

    assert m.eval(boom) is False
    assert m.is_active(EXCEPTION)
    assert isinstance(m.err, KeyError)


def test_eval_on_a_disposed_machine() -> None:
    m = abcd()
    m.dispose()
    assert m.eval(lambda: None) is False
    with pytest.raises(TypeError, match="callable"):
        m.eval(42)  # type: ignore[arg-type]


# -- queue ticks --------------------------------------------------------------


def test_when_queue() -> None:
    """Go: TestWhenQueue: a handler queues B, C, D; waiting on D's queue tick
    sees all four active."""
    m = abcd()
    seen: list[list[str]] = []
    done = threading.Event()

    class H:
        def A_state(self, e: Any) -> None:
            mach = e.machine
            mach.add("B")
            mach.add("C")
            assert mach.add("D") == Result.QUEUED
            waiter = mach.when_queue(mach.last_queue_tick)
            assert not waiter.done

            def wait() -> None:
                assert waiter.wait(LONG)
                seen.append(mach.active_states)
                done.set()

            threading.Thread(target=wait).start()

    m.bind(H())
    m.add("A")
    assert done.wait(LONG)
    assert seen == [["A", "B", "C", "D"]]


def test_every_mutation_has_a_queue_tick() -> None:
    m = abcd()
    queued: list[int] = []

    class Tracer:
        def mutation_queued(self, machine: Machine, mutation: Any) -> None:
            queued.append(mutation.queue_tick)

    m.bind_tracer(Tracer())
    assert m.queue_tick == 0
    m.add("A")
    m.remove("A")
    m.eval(lambda: None)
    assert queued == [1, 2, 3]
    assert m.queue_tick == 3
    assert m.when_queue(3).done and m.when_queue(1).result
    assert not m.when_queue(4).done
    m.can_add("B")  # a dry run takes no tick
    assert m.queue_tick == 3


def test_when_queue_is_released_on_dispose() -> None:
    m = abcd()
    waiter = m.when_queue(100)
    m.dispose()
    assert waiter.done and not waiter.result
    with pytest.raises(TypeError):
        m.when_queue("1")  # type: ignore[arg-type]


# -- set_schema ---------------------------------------------------------------


def test_set_states() -> None:
    """Go: TestSetStates: relations change and a state is appended."""
    m = abcd()
    m.add(["A", "C"])
    schema = m.schema
    schema["A"] = State(multi=True)
    schema["B"] = State(remove=["C"])
    schema["D"] = State(add=["E"])
    schema["E"] = State()
    m.set_schema(schema)
    assert m.state_names == ["A", "B", "C", "D", EXCEPTION, "E"]
    assert m.tick("E") == 0
    m.set(["A", "B", "D"])
    assert sorted(m.active_states) == ["A", "B", "D", "E"]


def test_set_schema_keeps_every_state_and_tells_tracers() -> None:
    m = abcd()
    m.add("A")
    changes: list[list[str]] = []

    class Tracer:
        def schema_change(self, machine: Machine, old: dict[str, State]) -> None:
            changes.append(list(old))

        def verify_states(self, machine: Machine) -> None:
            changes.append(machine.state_names)

    m.bind_tracer(Tracer())
    with pytest.raises(StateError, match="missing"):
        m.set_schema({"A": State()})
    assert m.state_names == ["A", "B", "C", "D", EXCEPTION]
    m.set_schema({**{s: State() for s in "ABCD"}, "F": State(require=["A"])})
    assert changes == [
        ["A", "B", "C", "D", EXCEPTION],
        ["A", "B", "C", "D", EXCEPTION, "F"],
    ]
    assert m.is_active("A") and m.add("F") == Result.EXECUTED
    with pytest.raises(StateError):
        m.add("G")


def test_set_schema_from_a_handler_raises() -> None:
    m = abcd()
    errors: list[BaseException] = []

    class H:
        def A_state(self, e: Any) -> None:
            try:
                e.machine.set_schema(e.machine.schema)
            except RuntimeError as err:
                errors.append(err)

    m.bind(H())
    m.add("A")
    assert len(errors) == 1


# -- groups ---------------------------------------------------------------------


def test_groups() -> None:
    """Go: TestGroups, as named lists of states (no Go struct embedding)."""
    m = abcd(groups={"Group0": ["C", "D"], "Bar": ["B", "C"]})
    assert m.groups == {"Group0": ["C", "D"], "Bar": ["B", "C"]}
    assert list(m.groups) == ["Group0", "Bar"]
    assert m.group("Bar") == ["B", "C"]
    with pytest.raises(KeyError, match="Nope"):
        m.group("Nope")
    with pytest.raises(StateError, match="Cc"):
        m.set_groups({"G": ["Cc"]})
    with pytest.raises(ValueError, match="group name"):
        m.set_groups({"": ["A"]})
    assert m.groups == {"Group0": ["C", "D"], "Bar": ["B", "C"]}


# -- tracers -------------------------------------------------------------------


class Recorder:
    def __init__(self, inherit: bool = False) -> None:
        self.calls: list[str] = []
        self._inherit = inherit

    def inheritable(self) -> bool:
        return self._inherit

    def new_submachine(self, parent: Machine, machine: Machine) -> None:
        self.calls.append(f"new_submachine {parent.id}>{machine.id}")

    def machine_init(self, machine: Machine) -> None:
        self.calls.append(f"machine_init {machine.id}")

    def transition_start(self, tx: Any) -> None:
        self.calls.append(f"start {tx.machine.id}")

    def transition_finals(self, tx: Any) -> None:
        active = tx.machine.is_active(tx.called_states)
        self.calls.append(f"finals {tx.machine.id} active={active}")

    def handler_start(self, tx: Any, emitter: str, handler: str) -> None:
        self.calls.append(f"handler_start {handler}")

    def handler_end(self, tx: Any, emitter: str, handler: str) -> None:
        self.calls.append(f"handler_end {handler}")

    def transition_end(self, tx: Any) -> None:
        self.calls.append(f"end {tx.machine.id}")


def test_tracer_sees_finals_and_each_handler_in_order() -> None:
    rec = Recorder()
    m = abcd(id="m", tracers=[rec])

    class H:
        def A_enter(self, e: Any) -> None:
            pass

        def A_state(self, e: Any) -> None:
            pass

    binding = m.bind(H())
    emitters: list[str] = []
    rec.handler_start = lambda tx, emitter, handler: emitters.append(emitter)  # type: ignore[method-assign]
    m.bind_tracer(rec)  # rebuilt with the patched method
    m.add("A")
    assert emitters == [binding, binding]
    assert rec.calls == [
        "machine_init m",
        "start m",
        "handler_end A_enter",
        "finals m active=True",
        "handler_end A_state",
        "end m",
    ]


def test_submachines_and_inheritable_tracers() -> None:
    kept, inherited = Recorder(), Recorder(inherit=True)
    parent = abcd(id="p", tracers=[kept, inherited])
    child = abcd(id="c", parent=parent)
    child.add("A")
    assert "new_submachine p>c" in kept.calls
    assert "new_submachine p>c" in inherited.calls
    assert "start c" in inherited.calls and "machine_init c" in inherited.calls
    assert not any(c.endswith(" c") for c in kept.calls if "submachine" not in c)
    assert child.parent_id == "p"
