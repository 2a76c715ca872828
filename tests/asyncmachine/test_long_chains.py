"""Long relation chains: built and resolved without recursion, in linear time.

Schemas also arrive from untrusted peers (a ``RemoteMachine`` is built from
whatever schema an ``info`` carries), so a 10,000-long ``require`` chain must
build and resolve like a short one. It used to hit Python's recursion limit
while ranking the states (a recursive depth-first walk), and dropping unmet
requirements re-checked the whole list once per link (quadratic).

The second half checks the linear walks against the simple definitions they
replace (a recursive ranking, fixpoints), on random small schemas.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmachine import Machine, Result, State
from asyncmachine._resolver import Resolver

K = 10_000


def chain(k: int, *, add: bool = False, dependants_first: bool = False) -> Any:
    """C1 requires C0, C2 requires C1, ...; ``add``: each also adds the previous.

    ``dependants_first`` lists C(k-1) first: the order that made the old
    ranking recurse k deep.
    """
    names = [f"C{i}" for i in range(k)]
    schema = {names[0]: State()}
    for i in range(1, k):
        prev = names[i - 1]
        schema[names[i]] = State(require=[prev], add=[prev] if add else ())
    if dependants_first:
        schema = dict(reversed(schema.items()))
    return names, schema


class Enters:
    """A tracer keeping the enter order of each transition."""

    def __init__(self) -> None:
        self.enters: list[list[str]] = []

    def transition_end(self, tx: Any) -> None:
        self.enters.append(list(tx.enters))


def test_a_10000_long_require_chain_listed_dependants_first_builds() -> None:
    names, schema = chain(K, dependants_first=True)
    m = Machine(schema)
    assert m.state_names[:2] == [names[-1], names[-2]]


def test_adding_the_end_of_a_require_chain_alone_is_refused() -> None:
    names, schema = chain(K, dependants_first=True)
    m = Machine(schema)
    assert m.add(names[-1]) is Result.CANCELED
    assert m.active_states == []


def test_adding_a_whole_require_chain_enters_it_in_require_order() -> None:
    names, schema = chain(K, dependants_first=True)
    m = Machine(schema)
    tracer = Enters()
    m.bind_tracer(tracer)
    assert m.add(list(reversed(names))) is Result.EXECUTED
    assert set(m.active_states) == set(names)
    assert tracer.enters[-1] == names


def test_a_missing_link_drops_everything_above_it() -> None:
    names, schema = chain(K)
    m = Machine(schema)
    m.add(names[:100])
    # C100 is missing: C101 .. C9999 can't be met, C0 .. C99 are active
    assert m.add(names[101:]) is Result.CANCELED
    assert m.active_states == names[:100]
    assert m.add(names[100:]) is Result.EXECUTED
    assert len(m.active_states) == K


def test_adding_the_end_of_an_add_chain_activates_the_whole_chain() -> None:
    for dependants_first in (False, True):
        names, schema = chain(K, add=True, dependants_first=dependants_first)
        m = Machine(schema)
        tracer = Enters()
        m.bind_tracer(tracer)
        assert m.add(names[-1]) is Result.EXECUTED
        assert len(m.active_states) == K
        assert tracer.enters[-1] == names  # required states enter first
        assert m.remove(names[0]) is Result.EXECUTED
        assert m.active_states == []  # nothing above C0 stays without it


def test_a_long_auto_chain_settles_in_one_pass() -> None:
    names = [f"A{i}" for i in range(K)]
    schema = {"Go": State()}
    for i, name in enumerate(names):
        schema[name] = State(auto=True, require=[names[i - 1] if i else "Go"])
    m = Machine(dict(reversed(schema.items())))
    assert m.active_states == []
    m.add("Go")
    assert set(m.active_states) == {"Go", *names}


# -- the linear walks agree with the simple definitions ------------------------

NAMES = ["A", "B", "C", "D", "E", "F"]


def reference_rank(schema: dict[str, State]) -> dict[str, int]:
    """The recursive depth-first ranking the resolver used to run."""
    names = list(schema)
    before: dict[str, list[str]] = {}
    for name, spec in schema.items():
        if spec.require or spec.after:
            before[name] = [*spec.require, *spec.after]
    in_graph = set(before)
    for preds in before.values():
        in_graph.update(preds)
    order: list[str] = []
    seen: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in visiting:
            return
        visiting.add(name)
        for pred in sorted(before.get(name, ()), key=names.index):
            visit(pred)
        visiting.discard(name)
        seen.add(name)
        order.append(name)

    for name in names:
        if name in in_graph:
            visit(name)
    return {name: i for i, name in enumerate(order)}


def reference_drop(schema: dict[str, State], states: list[str]) -> list[str]:
    """Drop states with a requirement outside the list, until nothing changes."""
    while True:
        kept = [s for s in states if all(r in states for r in schema[s].require)]
        if kept == states:
            return kept
        states = kept


@st.composite
def schemas(draw: st.DrawFn) -> dict[str, State]:
    names = draw(st.permutations(NAMES))
    others = st.lists(st.sampled_from(NAMES), max_size=3)
    return {
        n: State(require=draw(others), after=draw(others), auto=draw(st.booleans()))
        for n in names
    }


@settings(max_examples=300, deadline=None, database=None)
@given(schemas(), st.lists(st.sampled_from(NAMES), unique=True), st.data())
def test_linear_walks_agree_with_the_simple_definitions(
    schema: dict[str, State], states: list[str], data: st.DataObject
) -> None:
    resolver = Resolver(schema)
    assert resolver.rank == reference_rank(schema)
    assert resolver.drop_unmet_requires(states) == reference_drop(schema, states)
    # auto candidates: inactive autos whose requirements active states or
    # other candidates meet, the candidates themselves included
    active = set(data.draw(st.lists(st.sampled_from(NAMES), unique=True)))
    autos = [n for n, s in schema.items() if s.auto and n not in active]
    met = reference_drop({**schema, **{a: State() for a in active}}, [*active, *autos])
    assert resolver.auto_candidates(active) == [a for a in autos if a in met]
