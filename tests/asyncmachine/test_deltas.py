"""Transitions by deltas and indexed waiters agree with the simple definitions.

A transition whose called states reach no further than their own relations
is resolved from what changes (``Resolver.simple_add``,
``Resolver.simple_remove_exits``) instead of from every active state, and
waiters sit in per-state heaps keyed by the tick they need. Both are checked
here against the plain versions they replace, on random schemas, handlers and
mutations (hypothesis): a machine whose resolver never takes a short cut, and
waiter conditions evaluated naively after every transition.

The second half covers sizes that used to be quadratic or recursive: 10,000
states active, a 10,000-long require chain removed by its root, and 10,000
waiters on states a transition doesn't touch.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncmachine import Machine, Result, State
from asyncmachine._resolver import ActiveView, Resolver

from .test_properties import Harness, SchemaSpec, scenarios


class FullResolver(Resolver):
    """The reference: every mutation goes through the full resolution."""

    __slots__ = ()

    def simple_add(self, called: Any, ticks: Any, index: Any) -> bool:
        return False

    def simple_remove_exits(self, called: Any, ticks: Any, index: Any) -> None:
        return None


#: each random-scenario check: 100 examples, however slow or large
SCENARIOS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def run(h: Harness, op: tuple[Any, ...]) -> Any:
    kind, names, k = op
    if kind == "unknown":
        return None
    args = None if k is None else {"k": k}
    return getattr(h.m, kind)(names, args)


@SCENARIOS
@given(scenarios())
def test_deltas_match_the_full_resolution(
    scenario: tuple[SchemaSpec, dict[str, Any], list[Any]],
) -> None:
    spec, behaviours, ops = scenario
    fast, full = Harness(spec, behaviours), Harness(spec, behaviours)
    full.m._resolver = FullResolver(full.m._schema)
    for i, op in enumerate(ops):
        results = run(fast, op), run(full, op)
        ctx = f"op#{i} {op!r}"
        assert results[0] == results[1], ctx
        assert fast.m.time() == full.m.time(), ctx
        assert fast.m.active_states == full.m.active_states, ctx
        assert fast.handler_calls == full.handler_calls, ctx
        for a, b in zip(fast.txs, full.txs, strict=True):
            assert a.clock_after == b.clock_after, ctx
            assert a.accepted == b.accepted, ctx


@SCENARIOS
@given(scenarios())
def test_remembered_auto_states_match_those_found_anew(
    scenario: tuple[SchemaSpec, dict[str, Any], list[Any]],
) -> None:
    """The auto states to try are found again only when the active states
    changed; a machine that finds them after every transition agrees."""
    spec, behaviours, ops = scenario
    fast, anew = Harness(spec, behaviours), Harness(spec, behaviours)
    m = anew.m
    m._auto_after = lambda tx: m._resolver.auto_candidates(  # type: ignore[method-assign]
        ActiveView(m._ticks, m._index)
    )
    for i, op in enumerate(ops):
        results = run(fast, op), run(anew, op)
        ctx = f"op#{i} {op!r}"
        assert results[0] == results[1], ctx
        assert fast.m.time() == anew.m.time(), ctx
        assert fast.handler_calls == anew.handler_calls, ctx


def test_a_refused_auto_state_is_tried_after_every_event() -> None:
    """An event (a multi state re-entered) changes no active state, so the
    auto states are the remembered ones, and still tried each time: here
    until the enter handler lets ``Ready`` in."""
    m = Machine({"Ready": State(auto=True), "Msg": State(multi=True)})
    tries: list[int] = []

    class Handlers:
        def Ready_enter(self, e: Any) -> bool:
            tries.append(1)
            return len(tries) >= 4

    m.bind(Handlers())
    for _ in range(5):
        m.add("Msg")
    assert len(tries) == 4
    assert m.active_states == ["Ready", "Msg"]


class Seen:
    """Tracer: the naive waiter check, after every transition."""

    def __init__(self, m: Machine, conditions: dict[int, Any]) -> None:
        self.m = m
        self.conditions = conditions
        self.met: set[int] = set()

    def look(self, tx: Any = None) -> None:
        clock = self.m.clock()
        for key, holds in self.conditions.items():
            if holds(clock, tx):
                self.met.add(key)

    def transition_end(self, tx: Any) -> None:
        if tx.time_after is not tx.time_before:
            self.look(tx)


def naive(kind: str, names: list[str], ticks: list[int]) -> Any:
    if kind == "when":
        return lambda clock, tx: all(clock[n] & 1 for n in names)
    if kind == "when_not":
        return lambda clock, tx: not any(clock[n] & 1 for n in names)
    if kind == "when_time":
        pairs = list(zip(names, ticks, strict=True))
        return lambda clock, tx: all(clock[n] >= t for n, t in pairs)
    name = names[0]  # when_args(name, {"k": 1}): the transition changed name

    def args_met(clock: dict[str, int], tx: Any) -> bool:
        return (
            tx is not None
            and clock[name] & 1
            and tx.time_after[tx.machine._index[name]]
            != tx.time_before[tx.machine._index[name]]
            and tx.args.get("k") == 1
        )

    return args_met


@SCENARIOS
@given(scenarios(), st.data())
def test_indexed_waiters_match_naive_conditions(
    scenario: tuple[SchemaSpec, dict[str, Any], list[Any]], data: st.DataObject
) -> None:
    spec, behaviours, ops = scenario
    h = Harness(spec, behaviours)
    m = h.m
    conditions: dict[int, Any] = {}
    seen = Seen(m, conditions)
    m.bind_tracer(seen)
    waiters: dict[int, Any] = {}
    names_st = st.lists(
        st.sampled_from(spec.names), min_size=1, max_size=3, unique=True
    )
    kinds = st.sampled_from(["when", "when_not", "when_time", "when_args"])
    for i, op in enumerate(ops):
        for _ in range(data.draw(st.integers(0, 3), label="new waiters")):
            kind = data.draw(kinds, label="kind")
            names = data.draw(names_st, label="names")
            ticks = [m.tick(n) + data.draw(st.integers(-1, 4)) for n in names]
            key = len(waiters)
            if kind == "when_time":
                waiters[key] = m.when_time(names, ticks)
            elif kind == "when_args":
                names = names[:1]
                waiters[key] = m.when_args(names[0], {"k": 1})
            else:
                waiters[key] = getattr(m, kind)(names)
            holds = naive(kind, names, ticks)
            conditions[key] = holds
            if holds(m.clock(), None):
                seen.met.add(key)
        run(h, op)
        done = {k for k, w in waiters.items() if w.done}
        assert done == seen.met, f"op#{i} {op!r}: {sorted(done)} != {sorted(seen.met)}"
        assert all(w.result for w in waiters.values() if w.done)


# -- sizes that used to cost what is active, or recurse -----------------------

N = 10_000


def flat(n: int) -> dict[str, State]:
    return {f"S{i}": State() for i in range(n)}


def test_toggle_with_many_active_changes_one_tick() -> None:
    m = Machine(flat(N))
    m.add([f"S{i}" for i in range(1, N)])
    before = m.time()
    assert m.toggle("S0") == Result.EXECUTED
    after = m.time()
    assert [i for i, (a, b) in enumerate(zip(before, after)) if a != b] == [0]
    assert len(m.active_states) == N
    assert m.toggle("S0") == Result.EXECUTED
    assert len(m.active_states) == N - 1


def test_removing_the_root_of_a_long_chain_by_deltas() -> None:
    schema = {"C0": State()}
    for i in range(1, N):
        schema[f"C{i}"] = State(require=[f"C{i - 1}"])
    m = Machine(schema)
    m.add(list(schema))
    assert len(m.active_states) == N
    seen: list[list[str]] = []

    class Tracer:
        def transition_end(self, tx: Any) -> None:
            seen.append(list(tx.exits))

    m.bind_tracer(Tracer())
    assert m.remove("C0") == Result.EXECUTED
    assert m.active_states == []
    assert seen == [list(schema)]  # required states leave first


def test_waiters_on_untouched_states_stay_parked() -> None:
    m = Machine(flat(N))
    waiters = [m.when(f"S{i}") for i in range(1, N)]
    ticks = [m.when_ticks("S0", 10 + i) for i in range(N)]
    for _ in range(8):
        m.toggle("S0")
    assert not any(w.done for w in waiters)
    assert not any(w.done for w in ticks)
    # only what S0's heap holds was looked at; the rest stayed filed away
    assert len(m._subs._parked["S0"]) == N
    m.toggle("S0")
    m.toggle("S0")  # tick 10: the first when_ticks is due
    assert [w.done for w in ticks[:3]] == [True, False, False]
    m.add("S5")
    assert waiters[4].done and waiters[4].result
    assert sum(w.done for w in waiters) == 1


def test_dropped_waiters_do_not_pile_up() -> None:
    m = Machine(flat(3))
    for _ in range(5000):
        m.when("S1")  # never held: dropped at once
    assert len(m._subs._parked["S1"]) < 200
    kept = m.when("S1")
    m.add("S1")
    assert kept.result


def test_a_restored_inconsistent_clock_is_resolved_in_full() -> None:
    """from_state trusts its data; the first transition then resolves in full."""
    schema = {"A": State(), "B": State(require=["A"]), "C": State()}
    data = {"id": "m", "states": ["A", "B", "C"], "time": [0, 1, 0]}
    fast = Machine.from_state(schema, data)
    full = Machine.from_state(schema, data)
    full._resolver = FullResolver(full._schema)
    assert fast.active_states == ["B"]  # B without its requirement
    for m in (fast, full):
        assert m.add("C") == Result.EXECUTED
    assert fast.active_states == full.active_states == ["C"]
    assert fast.time() == full.time()
    assert fast._consistent  # resolved once: deltas again from here
