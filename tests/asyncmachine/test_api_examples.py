"""The code examples of the docs work as written.

- docs/api.md (the API contract), section "asyncmachine": its code block is run
  as written, the strings it quotes are compared, and each behaviour its
  bullet list shows by example is checked here.
- /work/main/README.md: its Python snippets, run in order.
- examples/core_quickstart.py: run in a subprocess, its output checked.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import asyncmachine
from asyncmachine import (
    Event,
    Machine,
    MutationType,
    Result,
    State,
    StateError,
    Transition,
)

WAIT = 5.0
REPO = Path(__file__).resolve().parents[2]
API_MD = REPO / "docs" / "api.md"  # the public API contract, kept in the repo
README = REPO / "README.md"

SCHEMA = {
    "Wet": State(require=["Water"]),
    "Dry": State(remove=["Water"]),
    "Water": State(add=["Wet"], remove=["Dry"]),
    "Tick": State(multi=True),
    "Ready": State(auto=True, require=["Water"]),
}
STR_AFTER_WATER = "(Wet:1 Water:1 Ready:1)"
STRING_ALL_AFTER_WATER = "(Wet:1 Water:1 Ready:1) [Dry:0 Tick:0 Exception:0]"


def drywaterwet() -> Machine:
    return Machine(SCHEMA, id="drywaterwet", tags=["kind:demo"], parent=None)


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.S | re.M)


def api_section() -> str:
    text = API_MD.read_text()
    start = text.index("\n## asyncmachine\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


# ---------------------------------------------------------------------------
# API.md: the code block and the strings it quotes


def test_api_md_code_block_runs_as_written() -> None:
    blocks = python_blocks(api_section())
    assert blocks, "no python block in API.md's asyncmachine section"
    ns: dict[str, Any] = {}
    exec(compile(blocks[0], "API.md", "exec"), ns)
    m = ns["m"]
    assert isinstance(m, Machine)
    assert ns["Result"] is Result
    assert m.id == "drywaterwet"
    assert m.tags == ["kind:demo"]
    assert m.parent_id is None
    assert m.state_names == ["Wet", "Dry", "Water", "Tick", "Ready", "Exception"]
    assert m.active_states == []


def test_api_md_quoted_strings_after_add_water() -> None:
    section = api_section()
    ns: dict[str, Any] = {}
    exec(compile(python_blocks(section)[0], "API.md", "exec"), ns)
    m = ns["m"]
    quoted_str = re.search(r"`str\(m\)` ->\s*`([^`]+)`", section)
    quoted_all = re.search(r"`m\.string_all\(\)` ->\s*`([^`]+)`", section)
    assert quoted_str and quoted_all, "API.md no longer quotes the strings"
    assert m.add("Water") == Result.EXECUTED
    assert str(m) == quoted_str.group(1)
    assert m.string_all() == quoted_all.group(1)


def test_drywaterwet_strings() -> None:
    m = drywaterwet()
    assert str(m) == "()"
    assert m.string_all() == "() [Wet:0 Dry:0 Water:0 Tick:0 Ready:0 Exception:0]"
    assert m.add("Water") == Result.EXECUTED
    assert str(m) == STR_AFTER_WATER
    assert m.string_all() == STRING_ALL_AFTER_WATER
    assert m.active_states == ["Wet", "Water", "Ready"]
    assert m.time() == [1, 0, 1, 0, 1, 0]
    assert m.clock(["Water", "Ready"]) == {"Water": 1, "Ready": 1}
    assert m.tick("Dry") == 0
    # Dry removes Water; Wet and Ready require it
    assert m.add("Dry") == Result.EXECUTED
    assert str(m) == "(Dry:1)"
    assert m.string_all() == "(Dry:1) [Wet:2 Water:2 Tick:0 Ready:2 Exception:0]"


def test_api_names_importable() -> None:
    names = [
        "Machine",
        "State",
        "Result",
        "MutationType",
        "Relation",
        "Event",
        "Transition",
        "StateContext",
        "Waiter",
        "StateError",
        "ExportError",
        "ReadOnlyError",
        "HandlerError",
        "AsyncMachineError",
        "EXCEPTION",
        "merge_schemas",
        "hookimpl",
        "hookspec",
    ]
    missing = [n for n in names if not hasattr(asyncmachine, n)]
    assert missing == []
    assert issubclass(StateError, ValueError)
    assert asyncmachine.EXCEPTION == "Exception"
    assert [int(r) for r in Result] == [0, 1, 2]
    assert [r.name for r in Result] == ["EXECUTED", "CANCELED", "QUEUED"]
    assert {t.name for t in MutationType} == {"ADD", "REMOVE", "SET"}


def test_checking_methods_on_the_example() -> None:
    m = drywaterwet()
    m.add("Water")
    assert m.is_active(["Wet", "Water"])
    assert not m.is_active(["Wet", "Dry"])
    assert m.not_active(["Dry", "Tick"])
    assert not m.not_active(["Dry", "Wet"])
    assert m.any_active("Dry", ["Wet", "Ready"])
    assert not m.any_active("Dry", ["Tick", "Wet"])
    assert m.has(["Wet", "Exception"]) and not m.has("Nope")
    assert m.err is None
    assert isinstance(m.schema["Water"], State)


# ---------------------------------------------------------------------------
# handlers: the table's order, events, transitions


ORDER_SCHEMA = {
    "A": State(),
    "B": State(),
    "C": State(),
    "D": State(after=["A"]),
    "E": State(remove=["A", "D"], after=["C"]),
}
ORDER = [
    "A_exit",
    "D_exit",
    "C_enter",
    "E_enter",
    "B_B",
    "A_C",
    "B_E",
    "any_enter",
    "A_end",
    "D_end",
    "C_state",
    "E_state",
    "any_state",
]


def test_handler_table_order() -> None:
    m = Machine(ORDER_SCHEMA)
    m.add(["A", "B", "D"])
    calls: list[str] = []
    events: dict[str, Event] = {}

    def make(name: str) -> Any:
        def handler(self: Any, e: Event) -> None:
            calls.append(e.name)
            events[e.name] = e

        return handler

    m.bind(type("Table", (), {name: make(name) for name in ORDER})())
    # E removes A and D, B stays (called again), C and E enter
    assert m.add(["E", "C", "B"]) == Result.EXECUTED
    assert calls == ORDER
    assert m.active_states == ["B", "C", "E"]

    tx = events["C_enter"].transition
    assert isinstance(tx, Transition)
    assert tx.called_states == ["E", "C", "B"]
    assert sorted(tx.target_states) == ["B", "C", "E"]
    assert tx.target_states.index("C") < tx.target_states.index("E")  # E after C
    assert list(tx.states_before) == ["A", "B", "D"]
    assert tx.clock_before == {"A": 1, "B": 1, "C": 0, "D": 1, "E": 0, "Exception": 0}
    after = {"A": 2, "B": 1, "C": 1, "D": 2, "E": 1, "Exception": 0}
    assert tx.clock_after == after
    assert tx.is_auto is False
    assert tx.mutation_type is MutationType.ADD
    final = events["E_state"].transition
    assert final is tx
    assert final.clock_after == after == m.clock()


def test_event_fields() -> None:
    m = drywaterwet()
    seen: dict[str, Event] = {}

    class Handlers:
        def Water_enter(self, e: Event) -> None:
            seen[e.name] = e
            assert e.machine.not_active("Water"), "negotiation runs before"

        def Water_state(self, e: Event) -> None:
            seen[e.name] = e
            assert e.machine.is_active("Water"), "final runs after"

        def Ready_enter(self, e: Event) -> None:
            seen[e.name] = e

        def Water_exit(self, e: Event) -> None:
            seen[e.name] = e

        def Tick_state(self, e: Event) -> None:
            seen[e.name] = e

    m.bind(Handlers())
    m.add("Water", {"source": "rain"})
    e = seen["Water_enter"]
    assert e.name == "Water_enter"
    assert e.machine is m
    assert e.args == {"source": "rain"}
    assert e.transition.mutation_type is MutationType.ADD
    assert e.transition.called_states == ["Water"]
    assert e.transition.clock_before["Water"] == 0
    assert e.transition.clock_after["Water"] == 1
    assert e.transition.is_auto is False
    assert seen["Water_state"].name == "Water_state"

    auto = seen["Ready_enter"]
    assert auto.transition.is_auto is True
    assert auto.transition.mutation_type is MutationType.ADD
    assert auto.args == {}
    assert isinstance(auto.args, dict)

    m.remove("Water")
    assert seen["Water_exit"].transition.mutation_type is MutationType.REMOVE
    assert seen["Water_exit"].args == {}
    m.set("Tick")
    assert seen["Tick_state"].transition.mutation_type is MutationType.SET


def test_e_args_always_a_dict() -> None:
    m = drywaterwet()
    got: list[Any] = []

    class Handlers:
        def any_enter(self, e: Event) -> None:
            got.append(e.args)

        def any_state(self, e: Event) -> None:
            got.append(e.args)

    m.bind(Handlers())
    m.add("Water")  # no args; then the auto transition of Ready
    m.add("Tick", None)
    m.can_add("Dry")
    m.toggle("Tick", {"n": 1})
    m.add_err(RuntimeError("boom"))
    assert got
    assert all(isinstance(a, dict) for a in got), got
    assert {"n": 1} in got


def test_negotiation_cancels_only_with_false() -> None:
    m = drywaterwet()
    answers: list[Any] = [None, 0, "", [], False]

    class Handlers:
        def Tick_enter(self, e: Event) -> Any:
            return answers.pop(0)

    m.bind(Handlers())
    results = [m.add("Tick") for _ in range(5)]
    assert results == [Result.EXECUTED] * 4 + [Result.CANCELED]
    assert m.tick("Tick") == 1 + 2 * 3  # a multi state grows by 2 when re-called


def test_handler_exception_becomes_exception_state() -> None:
    m = drywaterwet()
    boom = RuntimeError("boom")
    errs: list[Any] = []

    class Handlers:
        def Water_enter(self, e: Event) -> None:
            raise boom

        def Exception_state(self, e: Event) -> None:
            errs.append(e.args["err"])

    m.bind(Handlers())
    assert m.add("Water") == Result.CANCELED
    assert m.not_active("Water")
    assert m.is_active("Exception")
    assert m.err is boom
    assert errs == [boom]


# ---------------------------------------------------------------------------
# add_err, add_err_state


def test_add_err_sets_args_err_and_err() -> None:
    m = drywaterwet()
    seen: list[dict[str, Any]] = []

    class Handlers:
        def Exception_state(self, e: Event) -> None:
            seen.append(dict(e.args))

    m.bind(Handlers())
    err = ValueError("bad")
    assert m.add_err(err) == Result.EXECUTED
    assert m.is_active("Exception")
    assert m.err is err
    assert seen == [{"err": err}]
    err2 = KeyError("worse")
    m.add_err(err2, {"where": "here"})
    assert m.err is err2
    assert seen[-1] == {"where": "here", "err": err2}
    assert m.tick("Exception") == 3  # multi: +2 when called while active
    assert m.when_err().done


def test_add_err_does_not_change_given_args() -> None:
    m = drywaterwet()
    args = {"where": "there"}
    m.add_err(RuntimeError("x"), args)
    assert args == {"where": "there"}


def test_add_err_state() -> None:
    schema = {**SCHEMA, "ErrNet": State(require=["Exception"])}
    m = Machine(schema)
    seen: list[tuple[str, dict[str, Any]]] = []

    class Handlers:
        def ErrNet_state(self, e: Event) -> None:
            seen.append((e.name, dict(e.args)))

    m.bind(Handlers())
    err = OSError("unreachable")
    assert m.add_err_state("ErrNet", err, {"host": "h"}) == Result.EXECUTED
    assert m.is_active(["ErrNet", "Exception"])
    assert m.err is err
    assert seen == [("ErrNet_state", {"host": "h", "err": err})]
    assert m.transition is None
    m.remove("Exception")
    assert m.not_active("ErrNet"), "ErrNet requires Exception"


# ---------------------------------------------------------------------------
# waiting and disposal


def test_waiting_examples() -> None:
    m = drywaterwet()
    assert m.when("Water").done is False
    t = threading.Thread(target=m.add, args=("Water",))
    w = m.when("Water")
    t.start()
    assert m.when("Water").wait(timeout=5) is True  # as in API.md
    assert w.wait(WAIT) is True
    t.join(WAIT)

    async def main() -> bool:
        return await m.when("Ready")  # already holds: completes at once

    assert asyncio.run(main()) is True
    q = m.when_query(lambda clock: clock["Water"] >= 1 and clock["Tick"] == 0)
    assert q.wait(0) is True


def test_state_ctx_example() -> None:
    m = drywaterwet()
    m.add("Water")
    ctx = m.new_state_ctx("Water")
    assert ctx.expired is False
    m.add("Tick")
    assert ctx.expired is False
    m.add("Dry")
    assert ctx.expired is True


def test_dispose_releases_waiters() -> None:
    m = drywaterwet()
    pending = m.when("Dry")
    pending_not = m.when_not("Exception")  # holds: done at once
    disposed = m.when_disposed()
    results: list[bool] = []
    started = threading.Event()

    def block() -> None:
        started.set()
        results.append(pending.wait(timeout=WAIT))

    t = threading.Thread(target=block)
    t.start()
    assert started.wait(WAIT)
    m.dispose()
    t.join(WAIT)
    assert results == [False]
    assert pending.done and pending.wait(0) is False
    assert pending_not.wait(0) is True
    assert disposed.wait(WAIT) is True
    assert m.is_disposed
    # after disposal: mutations are CANCELED, new waiters are released
    assert m.add("Water") == Result.CANCELED
    assert m.when("Water").wait(0) is False
    assert m.when_disposed().wait(0) is True


def test_dispose_releases_awaiting_task() -> None:
    m = drywaterwet()

    async def main() -> bool:
        waiter = m.when("Dry")
        asyncio.get_running_loop().call_soon(m.dispose)
        return await asyncio.wait_for(waiter, WAIT)

    assert asyncio.run(main()) is False


def test_when_queue_end() -> None:
    m = drywaterwet()
    assert m.when_queue_end().wait(0) is True  # idle: at once
    seen: dict[str, Any] = {}

    class Handlers:
        def Water_state(self, e: Event) -> None:
            e.machine.add("Tick")
            seen["waiter"] = w = e.machine.when_queue_end()
            seen["done_inside"] = w.done

    m.bind(Handlers())
    m.add("Water")
    assert seen["done_inside"] is False
    assert seen["waiter"].wait(WAIT) is True
    assert m.is_active(["Tick", "Ready"]), "the queue ran to its end"


def test_will_be() -> None:
    m = drywaterwet()
    seen: dict[str, bool] = {}

    class Handlers:
        def Water_state(self, e: Event) -> None:
            mach = e.machine
            seen["before"] = mach.will_be("Tick")
            assert mach.add("Tick") == Result.QUEUED
            assert mach.remove("Wet") == Result.QUEUED
            seen["tick"] = mach.will_be("Tick")
            seen["dry"] = mach.will_be("Dry")
            seen["tick_and_dry"] = mach.will_be(["Tick", "Dry"])
            seen["wet_removed"] = mach.will_be_removed("Wet")
            seen["tick_removed"] = mach.will_be_removed("Tick")

    m.bind(Handlers())
    m.add("Water")
    assert seen == {
        "before": False,
        "tick": True,
        "dry": False,
        "tick_and_dry": False,
        "wet_removed": True,
        "tick_removed": False,
    }
    assert m.will_be("Tick") is False, "nothing queued any more"
    assert m.is_active("Tick")


# ---------------------------------------------------------------------------
# dry runs


def test_can_add_dry_run() -> None:
    m = drywaterwet()
    m.add("Water")
    ctx = m.new_state_ctx("Water")
    waiter = m.when("Dry")
    time_before = m.time()
    assert m.can_add("Dry") == Result.EXECUTED
    assert m.can_add("Tick") == Result.EXECUTED
    assert m.time() == time_before
    assert not waiter.done
    assert not ctx.expired
    assert m.add("Dry") == Result.EXECUTED  # as predicted
    m2 = drywaterwet()
    assert m2.can_add("Wet") == Result.CANCELED  # Wet requires Water
    assert m2.add("Wet") == Result.CANCELED  # as predicted
    assert m2.time() == [0] * 6


def test_can_add_runs_negotiation_only() -> None:
    m = drywaterwet()
    calls: list[tuple[str, bool]] = []

    class Handlers:
        def Water_enter(self, e: Event) -> bool:
            calls.append((e.name, e.is_check))
            return not e.args.get("refuse", False)

        def Water_state(self, e: Event) -> None:
            calls.append((e.name, e.is_check))

    m.bind(Handlers())
    assert m.can_add("Water", {"refuse": True}) == Result.CANCELED
    assert m.can_add("Water") == Result.EXECUTED
    assert calls == [("Water_enter", True), ("Water_enter", True)]
    assert m.time() == [0] * 6
    assert m.not_active("Exception")


@pytest.mark.parametrize("states", ["Water", ["Wet"], "Tick", ["Water", "Tick"]])
def test_can_remove_reports_what_remove_would_return(states: Any) -> None:
    m = drywaterwet()
    m.add(["Water", "Tick"])
    time_before = m.time()
    predicted = m.can_remove(states)
    assert m.time() == time_before
    actual = m.remove(states)
    assert actual == Result.EXECUTED
    assert predicted == actual, f"can_remove said {predicted!r}, remove did {actual!r}"


def test_can_remove_of_inactive_state() -> None:
    m = drywaterwet()
    assert m.can_remove("Dry") == m.remove("Dry") == Result.EXECUTED


# ---------------------------------------------------------------------------
# snapshots


def test_export_state_shape() -> None:
    parent = Machine({"P": State()}, id="parent-1")
    m = Machine(SCHEMA, id="child-1", tags=["kind:demo", "x:1"], parent=parent)
    m.add(["Water", "Tick"])
    m.add("Tick")
    data = m.export_state()
    assert data == {
        "id": "child-1",
        "tags": ["kind:demo", "x:1"],
        "parent": "parent-1",
        "states": ["Wet", "Dry", "Water", "Tick", "Ready", "Exception"],
        "time": [1, 0, 1, 3, 1, 0],
    }

    def plain(v: Any) -> bool:  # msgpack and JSON types only
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return type(v) in (str, int)

    assert plain(data)


def test_from_state_roundtrip_through_json() -> None:
    m = Machine(SCHEMA, id="snap", tags=["kind:demo"], parent="p-9")
    m.add("Water")
    m.add("Tick")
    m.add("Tick")
    data = json.loads(json.dumps(m.export_state()))
    m2 = Machine.from_state(SCHEMA, data)
    assert m2.id == "snap"
    assert m2.tags == ["kind:demo"]
    assert m2.parent_id == "p-9"
    assert m2.clock() == m.clock()
    assert m2.active_states == m.active_states
    assert str(m2) == str(m) == "(Wet:1 Water:1 Tick:3 Ready:1)"
    assert m2.string_all() == m.string_all()
    assert m2.export_state() == m.export_state()
    # the restored machine works on from there
    assert m2.add("Dry") == Result.EXECUTED
    assert m2.clock(["Water", "Dry"]) == {"Water": 2, "Dry": 1}
    assert m.is_active("Water"), "the original is independent"


def test_from_state_without_parent_or_tags() -> None:
    m = drywaterwet()
    data = json.loads(json.dumps(m.export_state()))
    m2 = Machine.from_state(SCHEMA, data)
    assert m2.parent_id is None
    assert m2.tags == ["kind:demo"]
    assert m2.active_states == []


def snapshot(**changes: Any) -> dict[str, Any]:
    m = drywaterwet()
    m.add("Water")
    data = m.export_state()
    data.update(changes)
    return data


def test_from_state_rejects_unknown_state() -> None:
    bad = snapshot(states=["Wet", "Dry", "Watr", "Tick", "Ready", "Exception"])
    with pytest.raises(StateError) as info:
        Machine.from_state(SCHEMA, bad)
    assert "Watr" in str(info.value)
    assert "Water" in str(info.value), "did-you-mean hint"


@pytest.mark.parametrize("time", [[1, 0, 1], [1, 0, 1, 0, 1, 0, 0], []])
def test_from_state_rejects_wrong_lengths(time: list[int]) -> None:
    with pytest.raises(ValueError) as info:
        Machine.from_state(SCHEMA, snapshot(time=time))
    msg = str(info.value)
    assert "6" in msg and str(len(time)) in msg, msg


@pytest.mark.parametrize("tick", [-1, -2, 1.5, "1", None, True])
def test_from_state_rejects_bad_ticks(tick: Any) -> None:
    time = [1, 0, 1, 0, 1, 0]
    time[3] = tick
    with pytest.raises(ValueError) as info:
        Machine.from_state(SCHEMA, snapshot(time=time))
    msg = str(info.value)
    assert "Tick" in msg, msg
    assert repr(tick) in msg, msg


@pytest.mark.parametrize("key", ["states", "time", "id"])
def test_from_state_rejects_missing_keys(key: str) -> None:
    data = snapshot()
    del data[key]
    with pytest.raises(ValueError, match=key):
        Machine.from_state(SCHEMA, data)


# ---------------------------------------------------------------------------
# inspect()


def test_inspect_layout() -> None:
    m = drywaterwet()
    m.add("Water")
    assert m.inspect() == (
        "1 Wet\n"
        "    |Tick     1\n"
        "    |Require  Water\n"
        "0 Dry\n"
        "    |Tick     0\n"
        "    |Remove   Water\n"
        "1 Water\n"
        "    |Tick     1\n"
        "    |Add      Wet\n"
        "    |Remove   Dry\n"
        "0 Tick\n"
        "    |Tick     0\n"
        "    |Multi    true\n"
        "1 Ready\n"
        "    |Tick     1\n"
        "    |Auto     true\n"
        "    |Require  Water\n"
        "0 Exception\n"
        "    |Tick     0\n"
        "    |Multi    true\n"
    )
    assert m.inspect(["Ready", "Dry"]) == (
        "1 Ready\n"
        "    |Tick     1\n"
        "    |Auto     true\n"
        "    |Require  Water\n"
        "0 Dry\n"
        "    |Tick     0\n"
        "    |Remove   Water\n"
    )
    assert m.inspect("Tick").splitlines()[0] == "0 Tick"


# ---------------------------------------------------------------------------
# README.md


def readme_blocks() -> list[str]:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3, "README's python snippets changed; update this test"
    return blocks


def run_block(code: str, ns: dict[str, Any], name: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, name, "exec"), ns)
    return out.getvalue()


def printed_comments(code: str) -> list[str]:
    """The values README shows after ``print(...)  # `` lines."""
    return [
        line.split("#", 1)[1].strip()
        for line in code.splitlines()
        if line.startswith("print(") and "#" in line
    ]


def test_readme_quickstart_prints_what_it_says() -> None:
    code = readme_blocks()[0]
    ns: dict[str, Any] = {}
    out = run_block(code, ns, "README-1")
    assert out.splitlines() == printed_comments(code)
    assert out.splitlines() == [STR_AFTER_WATER, STRING_ALL_AFTER_WATER]


def test_readme_handlers_snippet() -> None:
    first, second = readme_blocks()[:2]
    ns: dict[str, Any] = {}
    run_block(first, ns, "README-1")
    run_block(second, ns, "README-2")
    m = ns["m"]
    m.remove("Water")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert m.add("Water", {"allowed": False}) == Result.CANCELED
        assert out.getvalue() == ""
        assert m.add("Water") == Result.EXECUTED
    assert out.getvalue() == "splash ['Water']\n"
    assert m.not_active("Exception"), m.err


def test_readme_waiting_snippet_in_asyncio_and_trio() -> None:
    trio = pytest.importorskip("trio")
    blocks = readme_blocks()
    code = blocks[2]
    assert "await" in code
    for runner in ("asyncio", "trio"):
        ns: dict[str, Any] = {}
        run_block(blocks[0], ns, "README-1")
        m = ns["m"]
        t = threading.Thread(target=m.add, args=("Dry",))
        t.start()  # the thread wait in the snippet is woken by this
        compiled = compile(
            code, "README-3", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )

        async def snippet(compiled: Any = compiled, ns: dict[str, Any] = ns) -> None:
            result = eval(compiled, ns)
            if result is not None:
                await result

        if runner == "asyncio":
            asyncio.run(snippet())
        else:
            trio.run(snippet)
        t.join(WAIT)
        assert m.is_active("Dry"), runner


# ---------------------------------------------------------------------------
# examples/core_quickstart.py


def test_core_quickstart_example_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "core_quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == [
        "refused: CANCELED",
        f"added:   EXECUTED {STR_AFTER_WATER}",
        f"all:     {STRING_ALL_AFTER_WATER}",
        "dry in time: True (Dry:1)",
        "handler: water arrived, called ['Water']",
        "handler: dried out",
    ]
