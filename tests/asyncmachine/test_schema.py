"""State values, schema parsing, merge_schemas and the shared schemas.

Contract: /work/shared/docs/API.md ("State(...) immutable value", "A schema is
a mapping ...") plus the lead's API notes (schema problems, merge_schemas,
asyncmachine.states), and asyncmachine-go's Schema.Parse / SchemaMerge /
pkg/states for what those pages leave open.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType

import pytest

from asyncmachine import EXCEPTION, Machine, Result, State, StateError, merge_schemas
from asyncmachine.states import BASIC, CONNECTED, CONNECTED_GROUP, DISPOSED

GO_KEYS = {"Auto", "Multi", "Require", "Add", "Remove", "After", "Tags"}


# ---------------------------------------------------------------------------
# State: an immutable, hashable value


def test_state_defaults() -> None:
    s = State()
    assert (s.require, s.add, s.remove, s.after, s.tags) == ((),) * 5
    assert s.auto is False
    assert s.multi is False


def test_state_is_immutable() -> None:
    s = State(require=["A"], auto=True)
    for field, value in (
        ("require", ("B",)),
        ("auto", False),
        ("multi", True),
        ("tags", ("t",)),
    ):
        with pytest.raises(AttributeError):
            setattr(s, field, value)
    # (CPython 3.11 raises TypeError here for frozen slots dataclasses)
    with pytest.raises((AttributeError, TypeError)):
        s.brand_new = 1  # type: ignore[attr-defined]
    assert not hasattr(s, "brand_new")
    # relations are stored as tuples: nothing to mutate in place
    assert isinstance(s.require, tuple)
    assert s.require == ("A",) and s.auto is True


def test_state_copies_the_given_lists() -> None:
    names = ["A", "B"]
    s = State(add=names)
    names.append("C")
    names[0] = "Z"
    assert s.add == ("A", "B")


def test_state_is_hashable_and_compares_by_value() -> None:
    a = State(require=["A"], add=["B"], multi=True, tags=["t"])
    b = State(require=("A",), add="B", multi=True, tags="t")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, State()}) == 2
    assert {a: 1}[b] == 1
    assert a != State(require=["A"], add=["B"], multi=False, tags=["t"])
    assert a != State(require=["A"], add=["B"], multi=True)


@pytest.mark.parametrize("field", ["require", "add", "remove", "after", "tags"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: "A",
        lambda: ["A"],
        lambda: ("A",),
        lambda: {"A"},
        lambda: iter(["A"]),
        lambda: (n for n in ["A"]),
        lambda: {"A": 1},
    ],
    ids=["str", "list", "tuple", "set", "iter", "generator", "dict-keys"],
)
def test_state_takes_one_name_or_an_iterable(
    field: str, make: Callable[[], object]
) -> None:
    s = State(**{field: make()})
    assert getattr(s, field) == ("A",)


def test_state_one_name_is_not_split_into_characters() -> None:
    s = State(require="Water", remove="Dry", tags="kind:demo")
    assert s.require == ("Water",)
    assert s.remove == ("Dry",)
    assert s.tags == ("kind:demo",)


def test_state_keeps_order_and_drops_duplicates() -> None:
    s = State(add=["C", "A", "C", "B", "A"])
    assert s.add == ("C", "A", "B")


@pytest.mark.parametrize("field", ["require", "add", "remove", "after", "tags"])
def test_state_non_str_name_in_iterable_is_type_error(field: str) -> None:
    with pytest.raises(TypeError) as info:
        State(**{field: ["A", 42]})
    msg = str(info.value)
    assert field in msg
    assert "42" in msg
    assert "int" in msg


@pytest.mark.parametrize("field", ["require", "add", "remove", "after", "tags"])
def test_state_non_iterable_value_is_type_error(field: str) -> None:
    with pytest.raises(TypeError) as info:
        State(**{field: 42})
    assert field in str(info.value)
    assert "int" in str(info.value)


def test_state_none_name_is_type_error() -> None:
    with pytest.raises(TypeError, match="NoneType"):
        State(require=["A", None])


# ---------------------------------------------------------------------------
# extend / replace


def test_extend_merges_relations_flags_and_tags() -> None:
    a = State(require=["A"], add=["B"], remove=["C"], after=["D"], tags=["x"])
    b = State(
        require=["A", "E"], add=["F"], remove=["C", "G"], auto=True, tags=["y", "x"]
    )
    merged = a.extend(b)
    assert merged.require == ("A", "E")
    assert merged.add == ("B", "F")
    assert merged.remove == ("C", "G")
    assert merged.after == ("D",)
    assert merged.tags == ("x", "y")
    assert merged.auto is True
    assert merged.multi is False
    assert a.extend(State(multi=True)).multi is True
    # values: neither operand changed
    assert a == State(require=["A"], add=["B"], remove=["C"], after=["D"], tags="x")
    assert b.auto is True and b.require == ("A", "E")


def test_extend_with_empty_state_is_identity() -> None:
    a = State(require=["A"], after=["B"], multi=True, tags=["t"])
    assert a.extend(State()) == a
    assert State().extend(a) == a


def test_replace_changes_only_the_given_fields() -> None:
    a = State(require=["A"], add=["B"], auto=True, tags=["t"])
    b = a.replace(add=["C", "D"], multi=True)
    assert b == State(require=["A"], add=["C", "D"], auto=True, multi=True, tags="t")
    assert a.add == ("B",) and a.multi is False
    # one name works here too, and names are still checked
    assert a.replace(remove="X").remove == ("X",)
    with pytest.raises(TypeError):
        a.replace(require=[1])


def test_replace_unknown_field_is_type_error() -> None:
    with pytest.raises(TypeError, match="requires"):
        State().replace(requires=["A"])


# ---------------------------------------------------------------------------
# to_dict / from_dict: Go's JSON field names


def test_to_dict_has_every_go_key_none_for_empty() -> None:
    d = State().to_dict()
    assert set(d) == GO_KEYS
    assert d == {
        "Auto": False,
        "Multi": False,
        "Require": None,
        "Add": None,
        "Remove": None,
        "After": None,
        "Tags": None,
    }


def test_to_dict_full_state() -> None:
    s = State(
        require=["A"],
        add=["B", "C"],
        remove=["D"],
        after=["E"],
        auto=True,
        multi=True,
        tags=["t1", "t2"],
    )
    assert s.to_dict() == {
        "Auto": True,
        "Multi": True,
        "Require": ["A"],
        "Add": ["B", "C"],
        "Remove": ["D"],
        "After": ["E"],
        "Tags": ["t1", "t2"],
    }


@pytest.mark.parametrize(
    "state",
    [
        State(),
        State(auto=True),
        State(multi=True, tags=["t"]),
        State(require=["A"], add=["B", "C"], remove=["D"], after=["E"]),
        State(require="A", add="B", remove="C", after="D", auto=True, multi=True),
    ],
)
def test_to_dict_from_dict_roundtrip(state: State) -> None:
    assert State.from_dict(state.to_dict()) == state
    # through JSON too (the wire form)
    wire = json.loads(json.dumps(state.to_dict()))
    assert set(wire) == GO_KEYS
    assert State.from_dict(wire) == state


def test_from_dict_missing_and_nil_keys_mean_empty() -> None:
    assert State.from_dict({}) == State()
    assert State.from_dict({"Require": None, "Tags": None, "Auto": None}) == State()
    assert State.from_dict({"Add": ["X"], "Multi": True}) == State(add="X", multi=True)


# ---------------------------------------------------------------------------
# parsing, via Machine(...)


def test_exception_appended_last_when_missing() -> None:
    m = Machine({"B": State(), "A": State()})
    assert m.state_names == ["B", "A", EXCEPTION]
    assert m.schema[EXCEPTION].multi is True
    assert m.has(EXCEPTION)


def test_exception_kept_where_given() -> None:
    exc = State(multi=True, tags=["mine"])
    m = Machine({EXCEPTION: exc, "A": State(), "B": State()})
    assert m.state_names == [EXCEPTION, "A", "B"]
    assert m.schema[EXCEPTION] == exc


def test_state_order_is_the_mapping_order_not_alphabetical() -> None:
    names = ["Zeta", "Alpha", "Mid", "Beta"]
    m = Machine({n: State() for n in names})
    assert m.state_names == [*names, EXCEPTION]
    m.add(["Beta", "Zeta", "Mid"])
    assert m.active_states == ["Zeta", "Mid", "Beta"]


def test_any_mapping_is_a_schema() -> None:
    base = OrderedDict([("B", State()), ("A", State(require="B"))])
    assert Machine(MappingProxyType(base)).state_names == ["B", "A", EXCEPTION]

    class Lazy(Mapping[str, State]):
        def __getitem__(self, key: str) -> State:
            return base[key]

        def __iter__(self) -> Iterator[str]:
            return iter(base)

        def __len__(self) -> int:
            return len(base)

    m = Machine(Lazy())
    assert m.state_names == ["B", "A", EXCEPTION]
    assert m.add("A") == Result.CANCELED  # the require relation was parsed


def test_parsing_does_not_change_the_given_schema() -> None:
    schema = {"A": State(remove=["A", "B"], after=["A"]), "B": State()}
    Machine(schema)
    assert list(schema) == ["A", "B"]
    assert schema["A"] == State(remove=["A", "B"], after=["A"])


def test_schema_not_a_mapping_is_type_error() -> None:
    with pytest.raises(TypeError):
        Machine([("A", State())])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [{"require": ["A"]}, None, "State()", State],
    ids=["dict", "None", "str", "class"],
)
def test_schema_value_not_a_state_is_type_error_naming_the_key(value: object) -> None:
    with pytest.raises(TypeError) as info:
        Machine({"A": State(), "BadOne": value})  # type: ignore[dict-item]
    assert "BadOne" in str(info.value)


@pytest.mark.parametrize("relation", ["require", "add", "remove", "after"])
def test_relation_to_unknown_state_is_state_error(relation: str) -> None:
    schema = {"A": State(), "Holder": State(**{relation: ["A", "Ghost"]})}
    with pytest.raises(StateError) as info:
        Machine(schema)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "Ghost" in msg
    assert "Holder" in msg
    assert relation in msg


def test_require_and_remove_of_the_same_state_is_state_error() -> None:
    with pytest.raises(StateError) as info:
        Machine({"A": State(require=["B"], remove=["B"]), "B": State()})
    assert "A" in str(info.value)
    assert "B" in str(info.value)


def test_self_remove_and_self_after_are_dropped() -> None:
    m = Machine(
        {
            "A": State(remove=["A", "B"], after=["A", "B"]),
            "B": State(),
        }
    )
    spec = m.schema["A"]
    assert spec.remove == ("B",)
    assert spec.after == ("B",)
    # and the state can be activated (it does not remove itself)
    assert m.add("A") == Result.EXECUTED
    assert m.is_active("A")
    assert m.add("A") == Result.EXECUTED
    assert m.active_states == ["A"]
    assert m.tick("A") == 1


def test_add_and_remove_of_the_same_target_keeps_add() -> None:
    m = Machine({"A": State(add=["B"], remove=["B", "C"]), "B": State(), "C": State()})
    spec = m.schema["A"]
    assert spec.add == ("B",)
    assert spec.remove == ("C",)
    m.add("C")
    assert m.add("A") == Result.EXECUTED
    assert m.active_states == ["A", "B"]


def test_parsed_schema_is_a_copy() -> None:
    m = Machine({"A": State()})
    m.schema["A"] = State(require=["Exception"])
    m.schema.pop(EXCEPTION)
    assert m.schema["A"] == State()
    assert m.state_names == ["A", EXCEPTION]


# ---------------------------------------------------------------------------
# merge_schemas


def test_merge_schemas_later_overrides() -> None:
    first = {"A": State(), "B": State(auto=True)}
    second = {"B": State(multi=True), "C": State()}
    merged = merge_schemas(first, second)
    assert merged["B"] == State(multi=True)  # replaced, not extended
    assert merged["A"] == State()
    assert merged["C"] == State()


def test_merge_schemas_preserves_order() -> None:
    merged = merge_schemas(
        {"C": State(), "A": State()},
        {"B": State(), "A": State(auto=True)},
        {"D": State()},
    )
    # an overridden state keeps the place where it first appeared
    assert list(merged) == ["C", "A", "B", "D"]
    assert merged["A"].auto is True


def test_merge_schemas_leaves_inputs_alone() -> None:
    first = {"A": State()}
    second = {"A": State(multi=True), "B": State()}
    merged = merge_schemas(first, second)
    merged["Z"] = State()
    assert first == {"A": State()}
    assert list(second) == ["A", "B"]
    assert merge_schemas() == {}
    assert merge_schemas(first) == first
    assert merge_schemas(first) is not first


def test_merge_schemas_result_builds_a_machine() -> None:
    merged = merge_schemas({"A": State(require=["B"])}, {"B": State()})
    m = Machine(merged)
    assert m.add(["A", "B"]) == Result.EXECUTED
    assert m.active_states == ["A", "B"]


# ---------------------------------------------------------------------------
# the shared schemas: asyncmachine.states


def shared_machine() -> Machine:
    return Machine(merge_schemas(BASIC, CONNECTED, DISPOSED), id="shared")


def test_shared_schemas_are_state_dicts() -> None:
    for schema in (BASIC, CONNECTED, DISPOSED):
        assert schema
        assert all(isinstance(k, str) for k in schema)
        assert all(isinstance(v, State) for v in schema.values())
    assert set(CONNECTED_GROUP) <= set(CONNECTED)
    for name in ("Start", "Ready", EXCEPTION):
        assert name in BASIC
    for name in ("Disposing", "Disposed"):
        assert name in DISPOSED


def test_shared_schemas_merged_build_a_valid_machine() -> None:
    m = shared_machine()
    expected = [*BASIC, *(n for n in CONNECTED if n not in BASIC)]
    expected += [n for n in DISPOSED if n not in expected]
    assert m.state_names == expected
    assert m.state_names.count(EXCEPTION) == 1
    assert m.active_states == []
    assert m.add("Start") == Result.EXECUTED


def test_shared_schemas_are_values() -> None:
    # building machines never changes the shared dicts
    before = {k: dict(v) for k, v in (("b", BASIC), ("c", CONNECTED))}
    shared_machine()
    assert dict(BASIC) == before["b"]
    assert dict(CONNECTED) == before["c"]


def test_connected_group_is_mutually_exclusive() -> None:
    m = shared_machine()
    m.add("Start")
    for state in [*CONNECTED_GROUP, *reversed(CONNECTED_GROUP)]:
        assert m.add(state) == Result.EXECUTED, state
        active = [s for s in CONNECTED_GROUP if m.is_active(s)]
        assert active == [state]
    # two of the group at once: never both
    m.add(["Connecting", "Connected"])
    assert m.count_active(list(CONNECTED_GROUP)) <= 1


def test_disconnected_auto_activates_after_start() -> None:
    m = shared_machine()
    m.add("Start")
    assert m.is_active("Disconnected")
    assert m.add("Connecting") == Result.EXECUTED
    assert m.not_active("Disconnected")
    assert m.add("Connected") == Result.EXECUTED
    assert m.not_active(["Disconnected", "Connecting"])
    # none of the group active any more: Disconnected comes back by itself
    assert m.remove("Connected") == Result.EXECUTED
    assert m.is_active("Disconnected")
    assert m.count_active(list(CONNECTED_GROUP)) == 1


def test_connecting_and_connected_require_start() -> None:
    m = shared_machine()
    assert m.add("Connecting") == Result.CANCELED
    assert m.add("Connected") == Result.CANCELED
    m.add(["Start", "Connected"])
    assert m.is_active("Connected")
    m.remove("Start")
    assert m.not_active("Connected")


def test_ready_requires_start() -> None:
    m = shared_machine()
    assert m.add("Ready") == Result.CANCELED
    assert m.not_active("Ready")
    m.add("Start")
    assert m.add("Ready") == Result.EXECUTED
    assert m.is_active(["Start", "Ready"])
    m.remove("Start")
    assert m.not_active(["Start", "Ready"])
    assert m.add(["Start", "Ready"]) == Result.EXECUTED


def test_disposing_removes_start() -> None:
    m = shared_machine()
    m.add(["Start", "Ready"])
    m.add("Connected")
    assert m.add("Disposing") == Result.EXECUTED
    assert m.is_active("Disposing")
    assert m.not_active(["Start", "Ready", "Connected"])
    assert m.add("Disposed") == Result.EXECUTED
    assert m.is_active("Disposed")
    assert m.not_active(["Disposing", "Start"])


def test_err_states_of_basic_bring_exception() -> None:
    m = shared_machine()
    assert m.schema["ErrNetwork"].multi is True
    m.add_err_state("ErrNetwork", OSError("down"))
    assert m.is_active(["ErrNetwork", EXCEPTION])
    m.remove(EXCEPTION)
    assert m.not_active("ErrNetwork")  # it requires Exception
