"""Threads against the queue.

API.md: "A mutation made while a transition runs (from a handler, or from
another thread) is queued and executed after it, in order; never nested."
ARCHITECTURE.md: "A mutation runs the transition in the calling thread when the
machine is idle, or joins the queue when a transition is running ...; the
thread that runs the queue drains it. Handlers run one at a time."

These tests run several threads against one machine and check that nothing is
lost, reordered, nested or run concurrently. They never sleep: threads start
together on a Barrier and the test waits on waiters (with timeouts).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asyncmachine import Machine, Result, State

TIMEOUT = 10


@pytest.fixture(autouse=True)
def _fast_thread_switching() -> Iterator[None]:
    """Switch threads far more often than the default 5 ms, to shake out races."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class OverlapGuard:
    """Detects two handlers running at the same time (from any threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.overlaps: list[str] = []
        self.depth = 0
        self.nested: list[str] = []

    def enter(self, name: str) -> bool:
        if not self.lock.acquire(blocking=False):
            self.overlaps.append(name)
            return False
        # a little work while holding the lock, so a concurrent handler would
        # have a real chance to collide with us
        sum(range(300))
        return True

    def exit(self, acquired: bool) -> None:
        if acquired:
            self.lock.release()


def start_threads(
    n: int, target: Callable[[int], Any], timeout: float = TIMEOUT
) -> Callable[[], list[BaseException]]:
    """Start target(i) in n threads released together; return a joiner that
    returns their exceptions."""
    barrier = threading.Barrier(n, timeout=timeout)
    errors: list[BaseException] = []

    def runner(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=runner, args=(i,), daemon=True) for i in range(n)
    ]
    for t in threads:
        t.start()

    def join() -> list[BaseException]:
        for t in threads:
            t.join(timeout)
        alive = [t.name for t in threads if t.is_alive()]
        assert not alive, f"threads still running after {timeout}s: {alive}"
        return errors

    return join


def run_threads(
    n: int, target: Callable[[int], Any], timeout: float = TIMEOUT
) -> list[BaseException]:
    """Run target(i) in n threads started together; return their exceptions."""
    return start_threads(n, target, timeout)()


class Gate:
    """Counts events across threads; wait_for(n) blocks (with a timeout)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.count = 0

    def hit(self) -> None:
        with self.cond:
            self.count += 1
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = TIMEOUT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= n, timeout)


def settle(m: Machine) -> None:
    assert m.when_queue_end().wait(TIMEOUT), "queue never ended"
    assert m.queue_len == 0


# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_threads", [4, 8])
def test_no_lost_or_reordered_mutations_multi_counter(n_threads: int) -> None:
    # stay below the queue limit (1000, as Go's QueueLimit): a full queue
    # refuses mutations with CANCELED by design
    per_thread = 100
    assert n_threads * per_thread < Machine.queue_limit
    guard = OverlapGuard()
    seen: list[tuple[int, int]] = []
    any_seen: list[tuple[int, int]] = []

    class Handlers:
        def Foo_enter(self, e: Any) -> None:
            ok = guard.enter("Foo_enter")
            guard.exit(ok)

        def Foo_state(self, e: Any) -> None:
            ok = guard.enter("Foo_state")
            try:
                seen.append((e.args["t"], e.args["i"]))
            finally:
                guard.exit(ok)
            if e.args["t"] == -1:
                # hold this first transition until every worker has made its
                # first call: those calls must be queued, not run nor blocked
                joiner.append(start_threads(n_threads, work))
                held["all_called"] = first_calls.wait_for(n_threads)

        def any_state(self, e: Any) -> None:
            ok = guard.enter("any_state")
            try:
                if "t" in e.args:
                    any_seen.append((e.args["t"], e.args["i"]))
            finally:
                guard.exit(ok)

    results: dict[int, list[Result]] = {i: [] for i in range(n_threads)}
    first_calls = Gate()
    joiner: list[Callable[[], list[BaseException]]] = []
    held: dict[str, bool] = {}

    def work(t: int) -> None:
        for i in range(per_thread):
            results[t].append(m.add("Foo", {"t": t, "i": i}))
            if i == 0:
                first_calls.hit()

    m = Machine({"Foo": State(multi=True), "Bar": State()}, id="counter")
    m.bind(Handlers())
    assert m.add("Foo", {"t": -1, "i": 0}) == Result.EXECUTED
    assert held == {"all_called": True}, "a worker's first call did not return"
    errors = joiner[0]()
    assert not errors, errors

    total = n_threads * per_thread
    expected = 1 + 2 * total
    assert m.when_time(["Foo"], [expected]).wait(TIMEOUT), (
        f"Foo tick {m.tick('Foo')} never reached {expected}"
    )
    settle(m)
    assert m.tick("Foo") == expected, "a multi state call was lost or doubled"
    assert not guard.overlaps, f"handlers ran concurrently: {guard.overlaps[:5]}"
    assert len(seen) == total + 1
    assert len(any_seen) == total + 1
    for t in range(n_threads):
        mine = [i for (tt, i) in seen if tt == t]
        assert mine == list(range(per_thread)), (
            f"thread {t} reordered/lost in Foo_state"
        )
        mine_any = [i for (tt, i) in any_seen if tt == t]
        assert mine_any == list(range(per_thread)), f"thread {t} reordered in any_state"
        assert all(r in (Result.EXECUTED, Result.QUEUED) for r in results[t])
        # the first call of each worker was made while a transition ran
        assert results[t][0] == Result.QUEUED


def test_add_remove_pairs_per_thread_state() -> None:
    """Each thread alternates add/remove of its own state: tick == 2 * calls/2."""
    n_threads, pairs = 6, 100
    names = [f"T{i}" for i in range(n_threads)]
    guard = OverlapGuard()
    log: dict[str, list[tuple[str, int]]] = {n: [] for n in names}

    handlers: dict[str, Any] = {}
    for name in names:

        def _state(self: Any, e: Any, name: str = name) -> None:
            ok = guard.enter(f"{name}_state")
            try:
                log[name].append(("+", e.args["n"]))
            finally:
                guard.exit(ok)

        def _end(self: Any, e: Any, name: str = name) -> None:
            ok = guard.enter(f"{name}_end")
            try:
                log[name].append(("-", e.args["n"]))
            finally:
                guard.exit(ok)

        handlers[f"{name}_state"] = _state
        handlers[f"{name}_end"] = _end

    schema = {n: State() for n in names}
    m = Machine(schema, id="pairs")
    m.bind(type("PairHandlers", (), handlers)())

    def work(t: int) -> None:
        name = names[t]
        for n in range(pairs):
            # args make every call distinct (no duplicate folding in the queue)
            r1 = m.add(name, {"n": n})
            r2 = m.remove(name, {"n": n})
            assert r1 in (Result.EXECUTED, Result.QUEUED), r1
            assert r2 in (Result.EXECUTED, Result.QUEUED), r2

    errors = run_threads(n_threads, work)
    assert not errors, errors
    assert m.when_time(names, [2 * pairs] * n_threads).wait(TIMEOUT), m.time()
    settle(m)
    assert m.time() == [2 * pairs] * n_threads + [0]
    assert m.active_states == []
    assert not guard.overlaps, guard.overlaps[:5]
    for name in names:
        expected = [x for n in range(pairs) for x in (("+", n), ("-", n))]
        assert log[name] == expected, f"{name}: lost or reordered mutations"


def test_mutation_from_handler_is_queued_not_nested() -> None:
    log: list[Any] = []

    class Handlers:
        def A_state(self, e: Any) -> None:
            log.append("A_state:begin")
            r = e.machine.add("B")
            log.append(("add B", r))
            log.append(("B active inside A_state", e.machine.is_active("B")))
            log.append(("will_be B", e.machine.will_be("B")))
            log.append(("queue_len", e.machine.queue_len))
            r = e.machine.add("C", {"x": 1})
            log.append(("add C", r))
            log.append("A_state:end")

        def B_enter(self, e: Any) -> None:
            log.append("B_enter")

        def B_state(self, e: Any) -> None:
            log.append("B_state")

        def C_state(self, e: Any) -> None:
            log.append(("C_state", e.args))

    class Tracer:
        def transition_start(self, tx: Any) -> None:
            log.append(("start", list(tx.called_states)))

        def transition_end(self, tx: Any) -> None:
            log.append(("end", list(tx.called_states)))

    m = Machine({"A": State(), "B": State(), "C": State()}, id="nested")
    m.bind(Handlers())
    m.bind_tracer(Tracer())
    assert m.add("A") == Result.EXECUTED
    assert m.active_states == ["A", "B", "C"]
    assert log == [
        ("start", ["A"]),
        "A_state:begin",
        ("add B", Result.QUEUED),
        ("B active inside A_state", False),
        ("will_be B", True),
        ("queue_len", 1),
        ("add C", Result.QUEUED),
        "A_state:end",
        ("end", ["A"]),
        ("start", ["B"]),
        "B_enter",
        "B_state",
        ("end", ["B"]),
        ("start", ["C"]),
        ("C_state", {"x": 1}),
        ("end", ["C"]),
    ]
    assert m.queue_len == 0


def test_mutation_from_other_thread_during_transition_is_queued() -> None:
    """Another thread's mutation returns QUEUED at once (no blocking on the
    running transition) and the thread running the queue executes it."""
    out: dict[str, Any] = {}
    ran_on: dict[str, int] = {}

    def other_thread() -> None:
        out["res"] = out["m"].add("B", {"from": "thread"})
        out["B active right after"] = out["m"].is_active("B")

    class Handlers:
        def A_state(self, e: Any) -> None:
            ran_on["A_state"] = threading.get_ident()
            t = threading.Thread(target=other_thread, daemon=True)
            t.start()
            # the other thread must not wait for this transition to finish
            t.join(TIMEOUT)
            out["joined"] = not t.is_alive()
            out["B active inside A_state"] = e.machine.is_active("B")

        def B_state(self, e: Any) -> None:
            ran_on["B_state"] = threading.get_ident()
            out["B args"] = dict(e.args)

    m = Machine({"A": State(), "B": State()}, id="xthread")
    out["m"] = m
    m.bind(Handlers())
    assert m.add("A") == Result.EXECUTED
    assert out.get("joined") is True, "a mutation from another thread blocked"
    assert out["res"] == Result.QUEUED
    assert out["B active right after"] is False
    assert out["B active inside A_state"] is False
    # the caller of add("A") drains the queue before returning
    assert m.is_active("B")
    assert out["B args"] == {"from": "thread"}
    me = threading.get_ident()
    assert ran_on == {"A_state": me, "B_state": me}


def test_handler_raising_in_one_thread_does_not_break_others() -> None:
    n_good, per_thread, n_bad = 4, 100, 40
    guard = OverlapGuard()
    seen: list[tuple[int, int]] = []
    raised: list[BaseException] = []
    delivered: list[Any] = []

    class Handlers:
        def Foo_enter(self, e: Any) -> None:
            ok = guard.enter("Foo_enter")
            try:
                if e.args.get("boom"):
                    exc = RuntimeError(f"boom {e.args['i']}")
                    raised.append(exc)
                    raise exc
            finally:
                guard.exit(ok)

        def Foo_state(self, e: Any) -> None:
            ok = guard.enter("Foo_state")
            try:
                assert not e.args.get("boom")
                seen.append((e.args["t"], e.args["i"]))
            finally:
                guard.exit(ok)

        def Exception_state(self, e: Any) -> None:
            ok = guard.enter("Exception_state")
            try:
                delivered.append(e.args.get("err"))
            finally:
                guard.exit(ok)

    m = Machine({"Foo": State(multi=True)}, id="boom")
    m.bind(Handlers())
    assert m.add("Foo", {"t": -1, "i": 0}) == Result.EXECUTED

    bad_results: list[Result] = []

    def work(t: int) -> None:
        if t == n_good:  # the bad thread
            for i in range(n_bad):
                bad_results.append(m.add("Foo", {"boom": True, "i": i}))
            return
        for i in range(per_thread):
            r = m.add("Foo", {"t": t, "i": i})
            assert r in (Result.EXECUTED, Result.QUEUED), r

    errors = run_threads(n_good + 1, work)
    assert not errors, f"an exception escaped a mutation: {errors[:3]}"
    expected_foo = 1 + 2 * n_good * per_thread
    expected_exc = 2 * n_bad - 1  # multi Exception, never removed
    assert m.when_time(["Foo", "Exception"], [expected_foo, expected_exc]).wait(
        TIMEOUT
    ), m.clock()
    settle(m)
    assert m.tick("Foo") == expected_foo
    assert m.tick("Exception") == expected_exc
    assert not guard.overlaps, guard.overlaps[:5]
    for t in range(n_good):
        assert [i for (tt, i) in seen if tt == t] == list(range(per_thread))
    assert len(raised) == n_bad
    assert len(delivered) == n_bad
    assert all(any(d is r for d in delivered) for r in raised)
    assert all(r in (Result.CANCELED, Result.QUEUED) for r in bad_results)
    assert isinstance(m.err, RuntimeError)


def test_concurrent_relations_keep_invariants() -> None:
    """Threads toggling related states: the end state is always consistent."""
    schema = {
        "Water": State(add=["Wet"], remove=["Dry"]),
        "Wet": State(require=["Water"]),
        "Dry": State(remove=["Water"]),
        "Tick": State(multi=True),
        "Ready": State(auto=True, require=["Water"]),
    }
    guard = OverlapGuard()
    snapshots: list[tuple[list[str], dict[str, int]]] = []

    class Handlers:
        def any_state(self, e: Any) -> None:
            ok = guard.enter("any_state")
            try:
                snapshots.append((list(e.machine.active_states), e.machine.clock()))
            finally:
                guard.exit(ok)

    m = Machine(schema, id="rels")
    m.bind(Handlers())
    ops = [
        lambda i: m.add("Water", {"i": i}),
        lambda i: m.add("Dry", {"i": i}),
        lambda i: m.toggle("Wet", {"i": i}),
        lambda i: m.set(["Tick", "Water"], {"i": i}),
        lambda i: m.remove("Water", {"i": i}),
        lambda i: m.add("Tick", {"i": i}),
    ]

    def work(t: int) -> None:
        for i in range(120):
            r = ops[(t + i) % len(ops)](i)
            assert r in (Result.EXECUTED, Result.QUEUED, Result.CANCELED), r

    errors = run_threads(6, work)
    assert not errors, errors
    settle(m)
    assert not guard.overlaps, guard.overlaps[:5]
    assert snapshots
    for active, clock in [*snapshots, (m.active_states, m.clock())]:
        for s, t in clock.items():
            assert (t % 2 == 1) == (s in active), (s, t, active)
        if "Wet" in active or "Ready" in active:
            assert "Water" in active, active
        assert not ("Dry" in active and "Water" in active), active
    assert not m.is_active("Exception"), m.err


def test_a_runner_hands_the_queue_to_threads_that_keep_it_full() -> None:
    """A thread that refills a full queue as fast as the runner drains it
    used to keep the runner (maybe a shared event loop) forever; after
    ``queue_limit`` mutations the producer takes the queue over, in order."""
    m = Machine({"A": State(multi=True), "B": State(multi=True)})
    m.queue_limit = 20
    order: list[int] = []
    filled, stop = threading.Event(), threading.Event()

    class Handlers:
        def A_state(self, e: Any) -> None:
            filled.wait(10)  # the producer filled the queue meanwhile

        def B_state(self, e: Any) -> None:
            order.append(e.args["i"])
            time.sleep(0.001)  # slower than the producer refills the queue

    m.bind(Handlers())
    results: list[Result] = []

    def producer() -> None:
        i = 0
        while not stop.is_set():
            if len(m._queue) >= m.queue_limit:
                filled.set()
            results.append(m.add("B", {"i": i}))
            i += 1

    runner = threading.Thread(target=lambda: results.append(m.add("A")))
    runner.start()
    feeder = threading.Thread(target=producer)
    feeder.start()
    assert filled.wait(10)
    runner.join(10)
    returned = not runner.is_alive()
    stop.set()
    feeder.join(10)
    assert returned, "the runner never returned while the producer kept the queue full"
    assert not feeder.is_alive()
    # nothing lost or reordered: every B ran, in the order it was added
    assert m.tick("B") == 2 * len(order) - 1  # a multi state: +1, then +2 each
    assert order == sorted(order) and order == list(range(len(order)))
