"""Property tests: random schemas, random handlers, random mutation sequences.

Each example draws a schema of 2-8 states (S0..Sn) with random require / add /
remove / after relations and random auto / multi flags, binds a handler object
with every handler name the schema allows (some of them cancel by returning
False or raise, depending on the mutation's ``args["k"]``), and then runs a
random sequence of add / remove / set / toggle calls, plus calls naming an
unknown state. After every call the machine must satisfy the invariants that
asyncmachine-go guarantees (see API.md "Clocks", "Handlers" and the Go
resolver in pkg/machine/relations.go and transition.go):

* tick parity equals activity, for every state;
* every active state has all of its ``require``-d states active;
* ticks never decrease;
* a CANCELED mutation (no handler raised) changes neither time() nor
  active_states;
* a multi state called while active ticks by exactly 2 in an accepted
  transition;
* unknown names raise StateError and change nothing (no handler runs);
* a handler's exception never escapes, activates Exception and reaches the
  Exception handler as ``args["err"]``; the mutation whose own transition
  raised returns CANCELED;
* handlers never nest (a handler never starts while another one runs).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from asyncmachine import Machine, Result, State, StateError

KINDS = ("require", "add", "remove", "after")
NEGOTIATION_SUFFIXES = ("enter", "exit")
FINAL_SUFFIXES = ("state", "end")
UNKNOWN = "Nope"


class Boom(Exception):
    """Raised by a handler on purpose."""

    _ids = itertools.count()

    def __init__(self, handler: str) -> None:
        super().__init__(f"boom from {handler}")
        self.handler = handler
        self.serial = next(self._ids)


# ---------------------------------------------------------------------------
# strategies


@dataclass(frozen=True)
class SchemaSpec:
    names: tuple[str, ...]
    relations: dict[str, dict[str, tuple[str, ...]]]
    auto: frozenset[str]
    multi: frozenset[str]

    def build(self) -> dict[str, State]:
        return {
            name: State(
                require=self.relations[name]["require"],
                add=self.relations[name]["add"],
                remove=self.relations[name]["remove"],
                after=self.relations[name]["after"],
                auto=name in self.auto,
                multi=name in self.multi,
            )
            for name in self.names
        }

    def __repr__(self) -> str:  # readable in hypothesis' falsifying example
        parts = []
        for name in self.names:
            rels = ", ".join(
                f"{k}={list(v)}" for k, v in self.relations[name].items() if v
            )
            flags = ", ".join(
                f
                for f, on in (
                    ("auto=True", name in self.auto),
                    ("multi=True", name in self.multi),
                )
                if on
            )
            body = ", ".join(x for x in (rels, flags) if x)
            parts.append(f"{name!r}: State({body})")
        return "{" + ", ".join(parts) + "}"


@st.composite
def schema_specs(draw: st.DrawFn) -> SchemaSpec:
    n = draw(st.integers(min_value=2, max_value=8), label="n_states")
    names = tuple(f"S{i}" for i in range(n))
    triples = draw(
        st.lists(
            st.tuples(
                st.sampled_from(names), st.sampled_from(names), st.sampled_from(KINDS)
            ),
            max_size=2 * n,
        ),
        label="relations",
    )
    rel: dict[str, dict[str, list[str]]] = {s: {k: [] for k in KINDS} for s in names}
    for a, b, kind in triples:
        if a == b or b in rel[a][kind]:
            continue
        # avoid require-remove conflicts on one pair, in either direction
        if kind == "require" and (b in rel[a]["remove"] or a in rel[b]["remove"]):
            continue
        if kind == "remove" and (b in rel[a]["require"] or a in rel[b]["require"]):
            continue
        rel[a][kind].append(b)
    auto = draw(st.frozensets(st.sampled_from(names)), label="auto")
    multi = draw(st.frozensets(st.sampled_from(names)), label="multi")
    relations = {s: {k: tuple(v) for k, v in rel[s].items()} for s in names}
    return SchemaSpec(names, relations, auto, multi)


def handler_names(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Return (negotiation, final) handler names for these states."""
    negotiation = [f"{s}_{suf}" for s in names for suf in NEGOTIATION_SUFFIXES]
    negotiation += [f"{a}_{b}" for a in names for b in names]  # incl. self Foo_Foo
    negotiation.append("any_enter")
    final = [f"{s}_{suf}" for s in names for suf in FINAL_SUFFIXES]
    final.append("any_state")
    return negotiation, final


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SchemaSpec, dict[str, Any], list[Any]]:
    spec = draw(schema_specs())
    negotiation, final = handler_names(spec.names)
    # behaviour of a few handlers: (action, trigger); the trigger is the
    # mutation's args["k"], or "auto" for auto transitions (cancel only: an
    # auto state that raises would loop forever through Exception -> auto).
    cancel_b = st.tuples(st.just("cancel"), st.sampled_from([0, 1, 2, "auto"]))
    raise_b = st.tuples(st.just("raise"), st.sampled_from([0, 1, 2]))
    behaviours: dict[str, Any] = {}
    behaviours.update(
        draw(
            st.dictionaries(
                st.sampled_from(negotiation), st.one_of(cancel_b, raise_b), max_size=5
            ),
            label="negotiation_behaviours",
        )
    )
    behaviours.update(
        draw(
            st.dictionaries(st.sampled_from(final), raise_b, max_size=3),
            label="final_behaviours",
        )
    )
    # handlers that run often, so that cancels and raises really happen
    hot = ["any_enter", "any_state"] + [f"{n}_enter" for n in spec.names]
    behaviours.update(
        draw(
            st.dictionaries(
                st.sampled_from(hot), st.one_of(cancel_b, raise_b), max_size=2
            ),
            label="hot_behaviours",
        )
    )
    op = st.one_of(
        st.tuples(
            st.sampled_from(["add", "remove", "toggle"]),
            st.lists(st.sampled_from(spec.names), min_size=1, max_size=3, unique=True),
            st.one_of(st.none(), st.integers(0, 3)),
        ),
        st.tuples(
            st.just("set"),
            st.lists(st.sampled_from(spec.names), min_size=0, max_size=3, unique=True),
            st.one_of(st.none(), st.integers(0, 3)),
        ),
        st.tuples(
            st.just("unknown"),
            st.lists(st.sampled_from(spec.names), max_size=2, unique=True),
            st.sampled_from(["add", "remove", "set", "toggle", "is_active", "tick"]),
        ),
    )
    ops = draw(st.lists(op, min_size=1, max_size=25), label="ops")
    return spec, behaviours, ops


# ---------------------------------------------------------------------------
# recording harness


@dataclass
class TxRecord:
    called: list[str]
    is_auto: bool
    raised: list[BaseException] = field(default_factory=list)
    canceled_by: list[str] = field(default_factory=list)
    clock_before: dict[str, int] | None = None
    clock_after: dict[str, int] | None = None
    accepted: bool | None = None
    ended: bool = False


class Harness:
    def __init__(self, spec: SchemaSpec, behaviours: dict[str, Any]) -> None:
        self.spec = spec
        self.behaviours = behaviours
        self.txs: list[TxRecord] = []
        self.raised: list[BaseException] = []
        self.delivered: list[Any] = []
        self.handler_calls: list[str] = []
        self.depth = 0
        self.nesting_errors: list[str] = []
        self.m = Machine(spec.build(), id="prop")
        self.m.bind(self._handler_object())
        self.m.bind_tracer(self)

    # tracer -------------------------------------------------------------
    def transition_start(self, tx: Any) -> None:
        self.txs.append(
            TxRecord(called=list(tx.called_states), is_auto=bool(tx.is_auto))
        )

    def transition_end(self, tx: Any) -> None:
        if not self.txs:
            return
        rec = self.txs[-1]
        rec.clock_before = dict(tx.clock_before)
        rec.clock_after = dict(tx.clock_after)
        rec.accepted = bool(tx.is_accepted)
        rec.ended = True

    # handlers -------------------------------------------------------------
    def _make(self, name: str, is_final: bool) -> Any:
        behaviour = self.behaviours.get(name)
        harness = self

        def handler(_self: Any, e: Any) -> Any:
            if harness.depth:
                harness.nesting_errors.append(name)
            harness.depth += 1
            try:
                harness.handler_calls.append(name)
                assert isinstance(e.args, dict), f"{name}: e.args not a dict"
                if name == "Exception_state":
                    harness.delivered.append(e.args.get("err"))
                    return None
                if behaviour is None:
                    return None
                # never interfere with the Exception transition itself
                if "Exception" in list(e.transition.called_states):
                    return None
                action, trigger = behaviour
                if trigger == "auto":
                    hit = bool(e.transition.is_auto)
                else:
                    hit = (not e.transition.is_auto) and e.args.get("k") == trigger
                if not hit:
                    return None
                if action == "cancel" and not is_final:
                    if harness.txs:
                        harness.txs[-1].canceled_by.append(name)
                    return False
                if action == "raise":
                    exc = Boom(name)
                    harness.raised.append(exc)
                    if harness.txs:
                        harness.txs[-1].raised.append(exc)
                    raise exc
                return None
            finally:
                harness.depth -= 1

        handler.__name__ = name
        return handler

    def _handler_object(self) -> Any:
        negotiation, final = handler_names(self.spec.names)
        methods = {n: self._make(n, False) for n in negotiation}
        methods.update({n: self._make(n, True) for n in final})
        methods["Exception_state"] = self._make("Exception_state", True)
        return type("RandomHandlers", (), methods)()


# ---------------------------------------------------------------------------
# invariants


def check_static_invariants(h: Harness, ctx: str) -> None:
    m, spec = h.m, h.spec
    active = list(m.active_states)
    clock = m.clock()
    names = list(m.state_names)
    assert names[: len(spec.names)] == list(spec.names), ctx
    assert names[-1] == "Exception", ctx
    # active_states in schema order
    assert active == [s for s in names if s in active], ctx
    for s in names:
        t = m.tick(s)
        assert t == clock[s], ctx
        assert (t % 2 == 1) == (s in active) == m.is_active(s), (
            f"{ctx}: parity of {s} tick={t} active={active}"
        )
    for s in active:
        if s == "Exception":
            continue
        missing = [r for r in spec.relations[s]["require"] if r not in active]
        assert not missing, f"{ctx}: {s} active without required {missing}"
    assert not h.nesting_errors, f"{ctx}: nested handlers {h.nesting_errors}"


def run_op(h: Harness, i: int, op: tuple[Any, ...]) -> None:
    m = h.m
    kind = op[0]
    time_before = list(m.time())
    active_before = list(m.active_states)
    n_tx = len(h.txs)
    n_raised = len(h.raised)
    n_calls = len(h.handler_calls)
    ctx = f"op#{i} {op!r} from {active_before} {time_before}"

    if kind == "unknown":
        _, states, method = op
        bad = [*states, UNKNOWN]
        with pytest.raises(StateError) as info:
            if method in ("is_active", "tick"):
                if method == "tick":
                    m.tick(UNKNOWN)
                else:
                    m.is_active(bad)
            else:
                getattr(m, method)(bad)
        assert isinstance(info.value, ValueError)
        assert UNKNOWN in str(info.value), ctx
        assert list(m.time()) == time_before, ctx
        assert list(m.active_states) == active_before, ctx
        assert len(h.handler_calls) == n_calls, f"{ctx}: handlers ran"
        assert len(h.txs) == n_tx, f"{ctx}: a transition started"
        return

    _, states, k = op
    args = None if k is None else {"k": k}
    # any exception escaping here fails the test: handlers must never leak
    res = getattr(m, kind)(states, args)
    assert res in (Result.EXECUTED, Result.CANCELED), f"{ctx}: result {res!r}"

    time_after = list(m.time())
    new_raised = h.raised[n_raised:]
    op_txs = h.txs[n_tx:]
    # coverage labels (shown by --hypothesis-show-statistics)
    event(f"result={res.name}")
    if new_raised:
        event("handler raised")
    if any(t.is_auto for t in op_txs):
        event("auto transition ran")
    if (
        any(s in h.spec.multi and s in active_before for s in states)
        and kind != "remove"
    ):
        event("multi called while active")
    ctx += f" -> {res!r} {list(m.active_states)} {time_after}"

    # ticks never decrease
    assert all(a >= b for a, b in zip(time_after, time_before, strict=True)), ctx

    # a transition ran for a valid mutation on an idle machine
    assert op_txs, f"{ctx}: no transition recorded"
    main = op_txs[0]
    assert all(t.ended for t in op_txs), f"{ctx}: transition_end missing"

    # exceptions: never escape, become Exception with args["err"]
    if new_raised:
        assert m.is_active("Exception"), f"{ctx}: Exception not active"
        for exc in new_raised:
            assert any(d is exc for d in h.delivered), (
                f"{ctx}: {exc!r} not delivered to Exception_state as args['err']"
            )
        assert m.err is new_raised[-1], f"{ctx}: m.err={m.err!r}"
    if main.raised:
        assert res == Result.CANCELED, f"{ctx}: handler raised but result {res!r}"

    if not new_raised:
        if main.canceled_by and not main.is_auto:
            # a negotiation handler returning False cancels the transition
            assert res == Result.CANCELED, (
                f"{ctx}: {main.canceled_by} returned False but result {res!r}"
            )
        if res == Result.CANCELED:
            # canceled: nothing changed
            assert time_after == time_before, f"{ctx}: canceled but time changed"
            assert list(m.active_states) == active_before, ctx
            assert len(op_txs) == 1, f"{ctx}: canceled but more transitions ran"
            assert main.accepted is False, f"{ctx}: canceled tx is_accepted"
        else:
            assert main.accepted is True, f"{ctx}: executed tx not accepted"
            assert main.clock_before is not None and main.clock_after is not None
            for s in m.state_names:
                d = main.clock_after[s] - main.clock_before[s]
                assert d in (0, 1, 2), f"{ctx}: {s} ticked by {d} in one transition"
            eff = kind
            if kind == "toggle":
                eff = "remove" if all(s in active_before for s in states) else "add"
            for s in states:
                want = 0 if eff == "remove" else 1
                assert main.clock_after[s] % 2 == want, (
                    f"{ctx}: executed but {s} has the wrong activity after the "
                    "transition"
                )
            # an auto state free of relations (and of handlers refusing auto
            # transitions) follows every accepted change of the clock
            if time_after != time_before and main.clock_after != main.clock_before:
                for a in free_auto_states(h):
                    assert m.is_active(a), f"{ctx}: free auto state {a} not active"
            # multi called while active grows by exactly 2
            for s in states:
                if s in h.spec.multi and s in active_before and eff in ("add", "set"):
                    d = main.clock_after[s] - main.clock_before[s]
                    assert d == 2, f"{ctx}: multi {s} ticked by {d}, expected 2"
                    if len(op_txs) == 1:
                        assert (
                            m.tick(s) == time_before[list(m.state_names).index(s)] + 2
                        ), ctx

    check_static_invariants(h, ctx)


def free_auto_states(h: Harness) -> list[str]:
    """Auto states with no relations from or to them, when no handler refuses
    auto transitions: Go's NewAutoMutation always activates them after a
    non-auto transition that changed the clock."""
    spec = h.spec
    if any(b[1] == "auto" for b in h.behaviours.values()):
        return []
    free = []
    for a in sorted(spec.auto):
        if any(spec.relations[a][k] for k in KINDS):
            continue
        if any(a in spec.relations[o][k] for o in spec.names for k in KINDS):
            continue
        free.append(a)
    return free


# ---------------------------------------------------------------------------
# tests


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_random_schemas_and_mutations_keep_invariants(
    scenario: tuple[SchemaSpec, dict[str, Any], list[Any]],
) -> None:
    spec, behaviours, ops = scenario
    h = Harness(spec, behaviours)
    check_static_invariants(h, "initial")
    assert all(t == 0 for t in h.m.time()), "fresh machine must start at zero"
    for i, op in enumerate(ops):
        run_op(h, i, op)


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    calls=st.lists(st.sampled_from(["add", "set", "remove"]), min_size=1, max_size=20)
)
def test_multi_state_ticks(calls: list[str]) -> None:
    """A multi state ticks +1 on activation, +2 when called while active."""
    m = Machine({"M": State(multi=True), "Other": State()})
    for call in calls:
        before = m.tick("M")
        was_active = m.is_active("M")
        res = getattr(m, call)("M")
        assert res == Result.EXECUTED
        after = m.tick("M")
        if call == "remove":
            assert after == before + (1 if was_active else 0)
            assert not m.is_active("M")
        else:
            assert after == before + (2 if was_active else 1)
            assert m.is_active("M")


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    names=st.lists(
        st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=6),
        min_size=1,
        max_size=3,
    ),
    method=st.sampled_from(
        [
            "add",
            "remove",
            "set",
            "toggle",
            "is_active",
            "not_active",
            "any_active",
            "when",
            "when_not",
            "tick",
            "new_state_ctx",
        ]
    ),
)
def test_unknown_names_raise_and_change_nothing(names: list[str], method: str) -> None:
    schema = {"A": State(), "B": State(require=["A"])}
    m = Machine(schema)
    m.add("A")
    unknown = [n for n in names if n not in ("A", "B", "Exception")]
    if not unknown:
        unknown = ["Zz"]
    bad = ["A", *unknown]
    time_before, active_before = list(m.time()), list(m.active_states)
    with pytest.raises(StateError) as info:
        if method == "any_active":
            m.any_active(bad)
        elif method in ("tick", "new_state_ctx"):
            getattr(m, method)(unknown[0])
        else:
            getattr(m, method)(bad)
    assert isinstance(info.value, ValueError)
    assert any(u in str(info.value) for u in unknown)
    assert list(m.time()) == time_before
    assert list(m.active_states) == active_before
    assert m.has(["A", "B"]) and not m.has(bad)


FLAT = ("A", "B", "C", "D", "E")


@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    before=st.sets(st.sampled_from(FLAT)),
    target=st.sets(st.sampled_from(FLAT)),
    pick=st.integers(0, 50),
)
def test_final_handler_exception_keeps_finished_effects(
    before: set[str], target: set[str], pick: int
) -> None:
    """Go's manual, "Panic in a final handler": the transition was applied;
    states whose final handlers did not run are removed again; Exception is
    added. Final handlers run exits first (Foo_end), then enters (Foo_state),
    then any_state."""
    exits = [s for s in FLAT if s in before and s not in target]
    enters = [s for s in FLAT if s in target and s not in before]
    finals = [f"{s}_end" for s in exits] + [f"{s}_state" for s in enters]
    finals.append("any_state")
    raiser = finals[pick % len(finals)]
    boom = RuntimeError(raiser)
    ran: list[str] = []

    def make(name: str) -> Any:
        def handler(_self: Any, e: Any) -> None:
            ran.append(name)
            if name == raiser and "Exception" not in list(e.transition.called_states):
                raise boom

        return handler

    names = [f"{s}_{suf}" for s in FLAT for suf in ("end", "state")] + ["any_state"]
    m = Machine({s: State() for s in FLAT})
    m.set([s for s in FLAT if s in before])
    m.bind(type("H", (), {n: make(n) for n in names})())

    res = m.set([s for s in FLAT if s in target])
    assert res == Result.CANCELED
    assert m.err is boom
    assert m.is_active("Exception")
    # handlers ran in order up to the raiser, none after it
    assert ran[: finals.index(raiser) + 1] == finals[: finals.index(raiser) + 1]
    active = set(m.active_states) - {"Exception"}
    i = finals.index(raiser)
    finished = finals[:i]
    for name in finished:
        state, suffix = name.split("_")
        if suffix == "end":
            assert state not in active, f"{state} exited and its {name} ran"
        elif suffix == "state":
            assert state in active, f"{state} entered and its {name} ran"
    if raiser == "any_state":
        assert active == target
    elif raiser.endswith("_state"):
        # Go and the manual: the raiser and later enters are removed again
        unfinished = {n.split("_")[0] for n in finals[i:-1]}
        assert active == target - unfinished
    for s in m.state_names:
        assert (m.tick(s) % 2 == 1) == m.is_active(s)
