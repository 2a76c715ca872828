#!/usr/bin/env python
"""Core throughput benchmark: asyncmachine vs pytransitions vs python-statemachine.

Measures toggles per second, side by side in one run, for three scenarios:

  (a) plain   -- toggle one state, no handlers;
  (b) handler -- toggle one state with one handler per direction
                 (asyncmachine: Foo_state / Foo_end on a bound object;
                 transitions: on_enter / on_exit of the "on" state;
                 python-statemachine: on_enter_on / on_exit_on);
  (c) relations -- an 8-state schema using require / remove / add / auto /
                 after; toggling "Start" activates (or deactivates) six
                 states through relations.  The baselines have no relations,
                 so the same effect is emulated with one two-state machine per
                 asyncmachine state, guards (conditions / cond) for Require
                 and after-transition callbacks for Add, Remove and the
                 removal cascade (see the note printed with the results).

Then the scaling cases (``--only s``): microseconds per operation of one
transition as the machine around it grows -- states, active states, require
chains (k=32 vs 128), an exclusive group of 200 (vs pytransitions' 200-state
machine), 10,000 pending waiters, 8 threads -- each measured interleaved
with its baseline, printed as ratios against the targets of issue 15.

Every measurement: warm-up, calibration of the loop length, then R timed runs
(time.perf_counter, gc enabled, libraries interleaved run by run); the best
and the median ops/s are reported.  After the runs each case verifies the
machine's state (and clocks / handler counters where the library has them),
so a broken benchmark fails instead of printing numbers.

Usage:
  python benchmarks/core_bench.py            # full run (a few seconds per case)
  python benchmarks/core_bench.py --quick    # short runs, CI smoke test
  python benchmarks/core_bench.py --only s   # only the scaling cases
  python benchmarks/core_bench.py --profile  # cProfile asyncmachine (a) and (c)

Exit status: 0 on success, 1 when a library or case could not run,
2 with --check-target when a target is not met ((a) >= 2.5x, (b) >= 2.2x
pytransitions, and the scaling targets).
Plain script, no pytest; optional pretty output with `rich` when installed.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.metadata
import io
import platform
import pstats
import statistics
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

LIBS = ("asyncmachine", "transitions", "python-statemachine")
#: asyncmachine / pytransitions wanted, per scenario (issue 15)
TARGETS = {"a": 2.5, "b": 2.2}


def check(cond: bool, msg: str) -> None:
    """An assert that survives `python -O`."""
    if not cond:
        raise AssertionError(msg)


# ---------------------------------------------------------------------------
# scenario (c): the relations schema, as plain data shared by all libraries
# ---------------------------------------------------------------------------

# name -> relations.  Schema order matters (asyncmachine keeps mapping order).
REL: dict[str, dict[str, Any]] = {
    "Start": {"add": ["Init", "Config"], "remove": ["Idle"]},
    "Init": {"require": ["Start"]},
    "Config": {"require": ["Start"], "after": ["Init"]},
    "Connecting": {"auto": True, "require": ["Init", "Config"], "remove": ["Idle"]},
    "Connected": {"auto": True, "require": ["Connecting"], "after": ["Connecting"]},
    "Ready": {"auto": True, "require": ["Connected", "Config"], "remove": ["Degraded"]},
    "Degraded": {"remove": ["Ready"]},
    "Idle": {},
}
TOGGLED = "Start"
# active after an odd number of toggles of Start (Idle is active only initially)
CASCADE = ["Start", "Init", "Config", "Connecting", "Connected", "Ready"]

REL_NOTE = (
    "(c) relations: asyncmachine resolves Add/Remove/Require/Auto/After itself (the "
    "called transition, then the auto-state pass). The baselines have no relations, "
    "so each of the 8 states is its own 2-state machine (off/on) and a small emulator"
    " drives them: Require -> a guard on 'up' (transitions: conditions=, python-"
    "statemachine: cond=); Add/Remove -> 'after' callbacks of 'up'; the removal "
    "cascade (a state whose requirement goes away) -> 'after' callbacks of 'down'; "
    "Auto -> one pass over the auto states after each top-level toggle. Approximated:"
    " no single atomic transition (6 nested triggers per toggle instead), no "
    "negotiation/cancellation of the whole set, no clocks, After only as call order, "
    "the auto pass is plain Python in the benchmark, not library code."
)


# ---------------------------------------------------------------------------
# benchmark cases
# ---------------------------------------------------------------------------


@dataclass
class Case:
    """One library x scenario.  `run(n)` performs n toggles; `verify(total)`
    checks the state after `total` toggles done since construction."""

    lib: str
    run: Callable[[int], None]
    verify: Callable[[int], None]
    done: int = 0  # toggles performed so far
    times: list[float] = field(default_factory=list)  # seconds per timed run
    ops: list[int] = field(default_factory=list)  # toggles per timed run
    error: str | None = None

    def do(self, n: int) -> float:
        t0 = time.perf_counter()
        self.run(n)
        dt = time.perf_counter() - t0
        self.done += n
        return dt

    @property
    def rates(self) -> list[float]:
        return [n / t for n, t in zip(self.ops, self.times, strict=True) if t > 0]

    @property
    def best(self) -> float | None:
        return max(self.rates) if self.rates else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None


# --- asyncmachine ----------------------------------------------------------


def am_plain() -> Case:
    from asyncmachine import Machine, Result, State

    m = Machine({"Foo": State()}, id="bench-plain")
    check(m.toggle("Foo") == Result.EXECUTED, "asyncmachine: toggle not EXECUTED")
    check(m.is_active("Foo"), "asyncmachine: Foo not active after toggle")
    check(m.toggle("Foo") == Result.EXECUTED, "asyncmachine: toggle not EXECUTED")
    check(m.not_active("Foo"), "asyncmachine: Foo active after 2nd toggle")
    base = m.tick("Foo")

    def run(n: int, toggle: Any = m.toggle) -> None:
        for _ in range(n):
            toggle("Foo")

    def verify(total: int) -> None:
        check(
            m.tick("Foo") == base + total,
            f"asyncmachine (a): tick {m.tick('Foo')} != {base + total}",
        )
        check(m.is_active("Foo") == (total % 2 == 1), "asyncmachine (a): wrong state")

    return Case("asyncmachine", run, verify)


def am_handler() -> Case:
    from asyncmachine import Machine, State

    class Handlers:
        def __init__(self) -> None:
            self.entered = 0
            self.ended = 0

        def Foo_state(self, e: Any) -> None:
            self.entered += 1

        def Foo_end(self, e: Any) -> None:
            self.ended += 1

    h = Handlers()
    m = Machine({"Foo": State()}, id="bench-handler")
    m.bind(h)
    m.toggle("Foo")
    m.toggle("Foo")
    check(h.entered == 1 and h.ended == 1, "asyncmachine (b): handlers not called")
    base = m.tick("Foo")

    def run(n: int, toggle: Any = m.toggle) -> None:
        for _ in range(n):
            toggle("Foo")

    def verify(total: int) -> None:
        check(m.tick("Foo") == base + total, "asyncmachine (b): wrong tick")
        check(
            h.entered + h.ended == 2 + total,
            f"asyncmachine (b): {h.entered + h.ended} handler calls != {2 + total}",
        )
        check(h.entered - h.ended == total % 2, "asyncmachine (b): state/end mismatch")
        check(m.is_active("Foo") == (total % 2 == 1), "asyncmachine (b): wrong state")

    return Case("asyncmachine", run, verify)


def am_relations_machine() -> Any:
    from asyncmachine import Machine, State

    schema = {
        name: State(
            require=r.get("require", ()),
            add=r.get("add", ()),
            remove=r.get("remove", ()),
            after=r.get("after", ()),
            auto=r.get("auto", False),
        )
        for name, r in REL.items()
    }
    m = Machine(schema, id="bench-relations")
    m.add("Idle")
    check(m.active_states == ["Idle"], f"asyncmachine (c): setup {m.active_states}")
    return m


def am_relations() -> Case:
    m = am_relations_machine()
    # sanity: one toggle cascades to all six states, the next one clears them
    m.toggle(TOGGLED)
    check(
        m.active_states == CASCADE,
        f"asyncmachine (c): after toggle on: {m.active_states} != {CASCADE}",
    )
    m.toggle(TOGGLED)
    check(
        m.active_states == [],
        f"asyncmachine (c): after toggle off: {m.active_states} != []",
    )
    base = {s: m.tick(s) for s in CASCADE}

    def run(n: int, toggle: Any = m.toggle) -> None:
        for _ in range(n):
            toggle(TOGGLED)

    def verify(total: int) -> None:
        want = CASCADE if total % 2 else []
        check(
            m.active_states == want,
            f"asyncmachine (c): active {m.active_states} != {want}",
        )
        for s in CASCADE:
            check(
                m.tick(s) == base[s] + total,
                f"asyncmachine (c): tick({s}) {m.tick(s)} != {base[s] + total}",
            )
        check(m.err is None, f"asyncmachine (c): err {m.err!r}")

    return Case("asyncmachine", run, verify)


# --- pytransitions ---------------------------------------------------------


class _TrModel:
    """Model object; transitions' Machine attaches the state and the triggers."""

    state: str
    toggle: Callable[[], bool]
    up: Callable[[], bool]
    down: Callable[[], bool]


def _tr_toggle_machine(states: list[Any]) -> _TrModel:
    from transitions import Machine

    model = _TrModel()
    Machine(
        model=model,
        states=states,
        initial="off",
        transitions=[
            {"trigger": "toggle", "source": "off", "dest": "on"},
            {"trigger": "toggle", "source": "on", "dest": "off"},
        ],
        auto_transitions=False,  # no to_<state>() triggers
        queued=False,
        send_event=False,
    )
    return model


def tr_plain() -> Case:
    model = _tr_toggle_machine(["off", "on"])
    check(model.toggle() is True and model.state == "on", "transitions (a): toggle")
    check(model.toggle() is True and model.state == "off", "transitions (a): toggle")

    def run(n: int, toggle: Any = model.toggle) -> None:
        for _ in range(n):
            toggle()

    def verify(total: int) -> None:
        want = "on" if total % 2 else "off"
        check(model.state == want, f"transitions (a): state {model.state} != {want}")

    return Case("transitions", run, verify)


def tr_handler() -> Case:
    counts = {"enter": 0, "exit": 0}

    def on_enter() -> None:
        counts["enter"] += 1

    def on_exit() -> None:
        counts["exit"] += 1

    model = _tr_toggle_machine(
        ["off", {"name": "on", "on_enter": on_enter, "on_exit": on_exit}]
    )
    model.toggle()
    model.toggle()
    check(counts == {"enter": 1, "exit": 1}, "transitions (b): callbacks not called")

    def run(n: int, toggle: Any = model.toggle) -> None:
        for _ in range(n):
            toggle()

    def verify(total: int) -> None:
        calls = counts["enter"] + counts["exit"]
        check(calls == 2 + total, f"transitions (b): {calls} callbacks != {2 + total}")
        check(
            counts["enter"] - counts["exit"] == total % 2, "transitions (b): mismatch"
        )
        check(model.state == ("on" if total % 2 else "off"), "transitions (b): state")

    return Case("transitions", run, verify)


class RelationsEmulator:
    """Drives one 2-state machine per schema state, emulating asyncmachine's
    relations with the baseline library's guards and after-callbacks.
    Subclasses fill `up`, `down` and `is_on` (name -> zero-arg callable)."""

    def __init__(self, rel: dict[str, dict[str, Any]]) -> None:
        names = list(rel)
        self.req = {n: tuple(rel[n].get("require", ())) for n in names}
        self.add = {n: tuple(rel[n].get("add", ())) for n in names}
        self.rm = {n: tuple(rel[n].get("remove", ())) for n in names}
        self.dependents = {
            n: tuple(d for d in names if n in self.req[d]) for n in names
        }
        self.removers = {n: tuple(s for s in names if n in self.rm[s]) for n in names}
        self.auto = tuple(n for n in names if rel[n].get("auto"))
        self.up: dict[str, Callable[[], Any]] = {}
        self.down: dict[str, Callable[[], Any]] = {}
        self.is_on: dict[str, Callable[[], bool]] = {}

    # guard of "up" (Require)
    def requirements_met(self, name: str) -> bool:
        is_on = self.is_on
        for r in self.req[name]:  # noqa: SIM110 - a loop beats all(genexpr) here
            if not is_on[r]():
                return False
        return True

    # after-callback of "up" (Remove, Add)
    def after_up(self, name: str) -> None:
        is_on = self.is_on
        for r in self.rm[name]:
            if is_on[r]():
                self.down[r]()
        for a in self.add[name]:
            if not is_on[a]():
                self.up[a]()

    # after-callback of "down" (states requiring this one go too)
    def after_down(self, name: str) -> None:
        is_on = self.is_on
        for d in self.dependents[name]:
            if is_on[d]():
                self.down[d]()

    def toggle(self, name: str) -> None:
        is_on = self.is_on
        if is_on[name]():
            self.down[name]()
        else:
            self.up[name]()
        # Auto: try every inactive auto state not removed by an active one
        for a in self.auto:
            if is_on[a]():
                continue
            for s in self.removers[a]:
                if is_on[s]():
                    break
            else:
                self.up[a]()  # the Require guard decides

    def active(self) -> list[str]:
        return [n for n in self.is_on if self.is_on[n]()]


class TransitionsRelations(RelationsEmulator):
    def __init__(self, rel: dict[str, dict[str, Any]]) -> None:
        from transitions import Machine

        super().__init__(rel)
        for name in rel:
            model = _TrModel()
            Machine(
                model=model,
                states=["off", "on"],
                initial="off",
                transitions=[
                    {
                        "trigger": "up",
                        "source": "off",
                        "dest": "on",
                        "conditions": [partial(self.requirements_met, name)],
                        "after": [partial(self.after_up, name)],
                    },
                    {
                        "trigger": "down",
                        "source": "on",
                        "dest": "off",
                        "after": [partial(self.after_down, name)],
                    },
                ],
                auto_transitions=False,
                queued=False,
                send_event=False,
            )
            self.up[name] = model.up
            self.down[name] = model.down
            self.is_on[name] = partial(_tr_is_on, model)


def _tr_is_on(model: _TrModel) -> bool:
    return model.state == "on"


def emu_case(lib: str, emu: RelationsEmulator) -> Case:
    emu.up["Idle"]()
    check(emu.active() == ["Idle"], f"{lib} (c): setup {emu.active()}")
    emu.toggle(TOGGLED)
    check(emu.active() == CASCADE, f"{lib} (c): after toggle on: {emu.active()}")
    emu.toggle(TOGGLED)
    check(emu.active() == [], f"{lib} (c): after toggle off: {emu.active()}")

    def run(n: int, toggle: Any = emu.toggle) -> None:
        for _ in range(n):
            toggle(TOGGLED)

    def verify(total: int) -> None:
        want = CASCADE if total % 2 else []
        check(emu.active() == want, f"{lib} (c): active {emu.active()} != {want}")

    return Case(lib, run, verify)


def tr_relations() -> Case:
    return emu_case("transitions", TransitionsRelations(REL))


# --- python-statemachine ---------------------------------------------------


def _psm_classes() -> dict[str, type]:
    from statemachine import State, StateMachine

    class Toggle(StateMachine):
        off = State(initial=True)
        on = State()
        toggle = off.to(on) | on.to(off)

    class ToggleHandlers(StateMachine):
        off = State(initial=True)
        on = State()
        toggle = off.to(on) | on.to(off)

        def __init__(self) -> None:
            self.entered = 0
            self.exited = 0
            super().__init__()

        def on_enter_on(self) -> None:
            self.entered += 1

        def on_exit_on(self) -> None:
            self.exited += 1

    class Flag(StateMachine):
        allow_event_without_transition = True  # a failed guard is not an error
        off = State(initial=True)
        on = State()
        up = off.to(on, cond="can_up")
        down = on.to(off)

        def __init__(self, flag: str, emu: RelationsEmulator) -> None:
            self.flag = flag
            self.emu = emu
            super().__init__()

        def can_up(self) -> bool:
            return self.emu.requirements_met(self.flag)

        def after_up(self) -> None:
            self.emu.after_up(self.flag)

        def after_down(self) -> None:
            self.emu.after_down(self.flag)

    return {"Toggle": Toggle, "ToggleHandlers": ToggleHandlers, "Flag": Flag}


_PSM: dict[str, type] = {}


def psm(name: str) -> type:
    if not _PSM:
        _PSM.update(_psm_classes())
    return _PSM[name]


def psm_plain() -> Case:
    sm = psm("Toggle")()
    sm.toggle()
    check(sm.current_state_value == "on", "python-statemachine (a): toggle")
    sm.toggle()
    check(sm.current_state_value == "off", "python-statemachine (a): toggle")

    def run(n: int, toggle: Any = sm.toggle) -> None:
        for _ in range(n):
            toggle()

    def verify(total: int) -> None:
        want = "on" if total % 2 else "off"
        check(
            sm.current_state_value == want,
            f"python-statemachine (a): {sm.current_state_value} != {want}",
        )

    return Case("python-statemachine", run, verify)


def psm_handler() -> Case:
    sm = psm("ToggleHandlers")()
    sm.toggle()
    sm.toggle()
    check(sm.entered == 1 and sm.exited == 1, "python-statemachine (b): no callbacks")

    def run(n: int, toggle: Any = sm.toggle) -> None:
        for _ in range(n):
            toggle()

    def verify(total: int) -> None:
        calls = sm.entered + sm.exited
        check(calls == 2 + total, f"python-statemachine (b): {calls} != {2 + total}")
        check(sm.entered - sm.exited == total % 2, "python-statemachine (b): mismatch")
        want = "on" if total % 2 else "off"
        check(sm.current_state_value == want, "python-statemachine (b): state")

    return Case("python-statemachine", run, verify)


def _psm_is_on(sm: Any) -> bool:
    return bool(sm.current_state_value == "on")


class PsmRelations(RelationsEmulator):
    def __init__(self, rel: dict[str, dict[str, Any]]) -> None:
        super().__init__(rel)
        flag_cls = psm("Flag")
        for name in rel:
            sm = flag_cls(name, self)
            self.up[name] = sm.up
            self.down[name] = sm.down
            self.is_on[name] = partial(_psm_is_on, sm)


def psm_relations() -> Case:
    return emu_case("python-statemachine", PsmRelations(REL))


SCENARIOS: list[tuple[str, str, dict[str, Callable[[], Case]]]] = [
    (
        "a",
        "plain toggle",
        {
            "asyncmachine": am_plain,
            "transitions": tr_plain,
            "python-statemachine": psm_plain,
        },
    ),
    (
        "b",
        "toggle + 1 handler",
        {
            "asyncmachine": am_handler,
            "transitions": tr_handler,
            "python-statemachine": psm_handler,
        },
    ),
    (
        "c",
        "relations (8 states)",
        {
            "asyncmachine": am_relations,
            "transitions": tr_relations,
            "python-statemachine": psm_relations,
        },
    ),
]


# ---------------------------------------------------------------------------
# scaling: what one transition costs as the machine around it grows
# ---------------------------------------------------------------------------

SCALING_NOTE = (
    "scaling: microseconds per operation (median of the timed runs); every "
    "case is measured interleaved with its baseline in this run. pytransitions "
    "has one active state per model and no relations or waiters, so only the "
    "exclusive group (one active state out of 200) and the plain toggle have "
    "an equivalent there; the other ratios are asyncmachine against itself."
)


@dataclass
class Op:
    """One scaling case: ``run(n)`` performs n operations; ``verify()`` checks."""

    name: str
    run: Callable[[int], None]
    verify: Callable[[], None] = lambda: None
    times: list[float] = field(default_factory=list)  # seconds per operation

    @property
    def median_us(self) -> float:
        return statistics.median(self.times) * 1e6

    @property
    def best_us(self) -> float:
        return min(self.times) * 1e6


def _am_toggler(n_states: int, active: int, name: str) -> Op:
    """Toggle S0 in a machine of ``n_states`` flat states, ``active`` others on."""
    from asyncmachine import Machine, State

    m = Machine({f"S{i}": State() for i in range(n_states)}, id=name)
    if active:
        m.add([f"S{i}" for i in range(1, active + 1)])
    base = m.tick("S0")
    done = [0]

    def run(n: int, toggle: Any = m.toggle) -> None:
        for _ in range(n):
            toggle("S0")
        done[0] += n

    def verify() -> None:
        check(m.tick("S0") == base + done[0], f"{name}: tick of S0")
        check(len(m.active_states) == active + done[0] % 2, f"{name}: active")

    return Op(name, run, verify)


def _am_handler_toggler() -> Op:
    from asyncmachine import Machine, State

    class Handlers:
        calls = 0

        def S0_state(self, e: Any) -> None:
            Handlers.calls += 1

    m = Machine({"S0": State()}, id="handler")
    m.bind(Handlers())

    def run(n: int, toggle: Any = m.toggle) -> None:
        for _ in range(n):
            toggle("S0")

    return Op("am: toggle + 1 handler", run, lambda: check(Handlers.calls > 0, "h"))


def _tr_toggler(with_handler: bool) -> Op:
    calls = [0]

    def on_enter() -> None:
        calls[0] += 1

    on = {"name": "on", "on_enter": on_enter} if with_handler else "on"
    model = _tr_toggle_machine(["off", on])

    def run(n: int, toggle: Any = model.toggle) -> None:
        for _ in range(n):
            toggle()

    def verify() -> None:
        check(model.state in ("on", "off"), "transitions: state")
        check(not with_handler or calls[0] > 0, "transitions: handler")

    name = "pytransitions: toggle" + (" + 1 handler" if with_handler else "")
    return Op(name, run, verify)


def _am_chain(k: int) -> Op:
    """A require chain C0 <- C1 <- ... (each also adds the previous one):
    one op adds the top (the whole chain comes), the next removes the root
    (the whole chain goes)."""
    from asyncmachine import Machine, State

    names = [f"C{i}" for i in range(k)]
    schema = {names[0]: State()}
    for i in range(1, k):
        schema[names[i]] = State(require=[names[i - 1]], add=[names[i - 1]])
    m = Machine(schema, id=f"chain{k}")
    top, root = names[-1], names[0]
    done = [0]

    def run(n: int, add: Any = m.add, remove: Any = m.remove) -> None:
        for i in range(n):
            if (done[0] + i) % 2:
                remove(root)
            else:
                add(top)
        done[0] += n

    def verify() -> None:
        want = k if done[0] % 2 else 0
        check(len(m.active_states) == want, f"chain {k}: {len(m.active_states)}")

    return Op(f"am: require chain k={k}", run, verify)


def _am_group(size: int) -> Op:
    """An exclusive group: each state removes all the others; add cycles."""
    from asyncmachine import Machine, State

    names = [f"G{i}" for i in range(size)]
    m = Machine(
        {n: State(remove=[o for o in names if o != n]) for n in names}, id="group"
    )
    done = [0]

    def run(n: int, add: Any = m.add) -> None:
        start = done[0]
        for i in range(start, start + n):
            add(names[i % size])
        done[0] += n

    def verify() -> None:
        want = [names[(done[0] - 1) % size]]
        check(m.active_states == want, f"group: {m.active_states} != {want}")

    return Op(f"am: exclusive group of {size}", run, verify)


def _tr_group(size: int) -> Op:
    from transitions import Machine

    names = [f"G{i}" for i in range(size)]
    model = _TrModel()
    Machine(model=model, states=names, initial=names[0], auto_transitions=True)
    # to_G<i> triggers, one per state, cycled like the asyncmachine case
    triggers = [getattr(model, f"to_{n}") for n in names]
    done = [0]

    def run(n: int) -> None:
        start = done[0]
        for i in range(start, start + n):
            triggers[i % size]()
        done[0] += n

    def verify() -> None:
        want = names[(done[0] - 1) % size]
        check(model.state == want, f"transitions group: {model.state} != {want}")

    return Op(f"pytransitions: {size} states, to_<state>", run, verify)


def _am_waiters(count: int, on_toggled: bool) -> Op:
    """Toggle S0 with ``count`` pending waiters: when() on as many other
    states, or when_ticks on S0 itself that never come due."""
    from asyncmachine import Machine, State

    m = Machine({f"S{i}": State() for i in range(count + 1)}, id="waiters")
    if on_toggled:
        waiters = [m.when_ticks("S0", 10**9 + i) for i in range(count)]
        name = f"am: toggle, {count:,} when_ticks on it"
    else:
        waiters = [m.when(f"S{i}") for i in range(1, count + 1)]
        name = f"am: toggle, {count:,} when() on others"

    def run(n: int, toggle: Any = m.toggle) -> None:
        for _ in range(n):
            toggle("S0")

    def verify() -> None:
        check(not any(w.done for w in waiters), "waiters: none may be done")

    return Op(name, run, verify)


def _am_threads(threads: int) -> Op:
    """Mutations spread over ``threads`` threads, each on its own state, one
    machine; ``run(n)`` performs n in total (n / threads per thread).

    Each thread alternates add and remove (not toggle: a toggle decides from
    the state now, while a mutation from another thread may still wait in
    the queue), so every one of them ticks once and the clocks stay exact.
    """
    import threading

    from asyncmachine import Machine, State

    m = Machine({f"T{i}": State() for i in range(threads)}, id=f"threads{threads}")
    done = [0]

    def worker(state: str, count: int) -> None:
        add, remove = m.add, m.remove
        for _ in range(count // 2):
            add(state)
            remove(state)

    def run(n: int) -> None:
        per = max(2, n // threads) & ~1  # even: every state ends inactive
        if threads == 1:
            worker("T0", per)
        else:
            pool = [
                threading.Thread(target=worker, args=(f"T{i}", per))
                for i in range(threads)
            ]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        done[0] += per

    def verify() -> None:
        for i in range(threads):
            tick = m.tick(f"T{i}")
            check(tick == done[0], f"threads: tick of T{i} {tick} != {done[0]}")

    return Op(f"am: {threads} thread(s), add/remove", run, verify)


#: (title, case, baseline, target): ratio = case / baseline in time per op;
#: a target "<= x" caps it, ">= x" is a speed-up wanted (baseline / case)
SCALING: list[tuple[str, Callable[[], Op], Callable[[], Op], str | None]] = [
    (
        "plain toggle vs pytransitions",
        partial(_am_toggler, 1, 0, "am: toggle"),
        partial(_tr_toggler, False),
        ">= 2.5",
    ),
    (
        "one handler vs pytransitions",
        _am_handler_toggler,
        partial(_tr_toggler, True),
        ">= 2.2",
    ),
    (
        "1,000 states (none active) vs 1",
        partial(_am_toggler, 1000, 0, "am: 1,000 states"),
        partial(_am_toggler, 1, 0, "am: toggle"),
        None,
    ),
    (
        "10,000 states (none active) vs 1",
        partial(_am_toggler, 10_000, 0, "am: 10,000 states"),
        partial(_am_toggler, 1, 0, "am: toggle"),
        None,
    ),
    (
        "999 others active vs plain toggle",
        partial(_am_toggler, 1000, 999, "am: 999 others active"),
        partial(_am_toggler, 1, 0, "am: toggle"),
        "<= 3",
    ),
    (
        "require chain k=128 vs k=32",
        partial(_am_chain, 128),
        partial(_am_chain, 32),
        "<= 4.5",
    ),
    (
        "exclusive group of 200 vs pytransitions",
        partial(_am_group, 200),
        partial(_tr_group, 200),
        None,
    ),
    (
        "10,000 waiters on other states vs none",
        partial(_am_waiters, 10_000, False),
        partial(_am_toggler, 10_001, 0, "am: 10,001 states, no waiters"),
        "<= 1.1",
    ),
    (
        "10,000 when_ticks on the toggled state vs none",
        partial(_am_waiters, 10_000, True),
        partial(_am_toggler, 10_001, 0, "am: 10,001 states, no waiters"),
        None,
    ),
    (
        "8 threads vs 1 (time per toggle)",
        partial(_am_threads, 8),
        partial(_am_threads, 1),
        None,
    ),
]


def measure_ops(ops: list[Op], st: Settings) -> None:
    """Calibrate each op to ~st.seconds, then st.repeat interleaved runs."""
    sizes = []
    for op in ops:
        n = 16
        while True:
            t0 = time.perf_counter()
            op.run(n)
            dt = time.perf_counter() - t0
            if dt >= st.seconds / 4 or n >= st.max_ops:
                break
            n *= 4
        sizes.append(max(2, min(st.max_ops, int(n * st.seconds / max(dt, 1e-9)))))
    for _ in range(st.repeat):
        for op, n in zip(ops, sizes, strict=True):
            gc.collect()
            t0 = time.perf_counter()
            op.run(n)
            op.times.append((time.perf_counter() - t0) / n)
    for op in ops:
        op.verify()


def run_scaling(st: Settings) -> list[tuple[str, Op, Op, str | None, float]]:
    results = []
    for title, case_f, base_f, target in SCALING:
        case, base = case_f(), base_f()
        measure_ops([case, base], st)
        results.append((title, case, base, target, case.median_us / base.median_us))
    return results


def render_scaling(results: list[tuple[str, Op, Op, str | None, float]]) -> int:
    print("scaling (us per op, median of the timed runs; best in brackets)")
    missed = 0
    for title, case, base, target, ratio in results:
        verdict = ""
        if target is not None:
            kind, bound = target.split()
            if kind == ">=":
                value, ok = 1 / ratio, 1 / ratio >= float(bound)
                shown = f"speed-up {value:.2f}x (target {target})"
            else:
                value, ok = ratio, ratio <= float(bound)
                shown = f"ratio {value:.2f}x (target {target})"
            verdict = f"  {shown} {'MET' if ok else 'NOT MET'}"
            missed += not ok
        else:
            verdict = f"  ratio {ratio:.2f}x"
        print(f"- {title}:{verdict}")
        print(
            f"    {case.name}: {case.median_us:.2f} ({case.best_us:.2f}) | "
            f"{base.name}: {base.median_us:.2f} ({base.best_us:.2f})"
        )
    print(textwrap.fill(SCALING_NOTE, width=100, subsequent_indent="  "))
    return missed


# ---------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------


@dataclass
class Settings:
    warmup: int
    seconds: float  # target duration of one timed run
    repeat: int
    min_ops: int
    max_ops: int


def make_case(lib: str, factory: Callable[[], Case]) -> Case:
    try:
        return factory()
    except AssertionError:
        raise
    except Exception as exc:  # library missing or API mismatch: report, go on
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Case(lib, lambda n: None, lambda t: None, error=detail)


def measure(cases: list[Case], st: Settings) -> None:
    live = [c for c in cases if c.error is None]
    sizes: dict[int, int] = {}
    for c in live:
        dt = c.do(st.warmup)  # warm-up, also a first rate estimate
        c.verify(c.done)
        rate = st.warmup / dt if dt > 0 else float(st.max_ops)
        n = int(rate * st.seconds)
        sizes[id(c)] = max(st.min_ops, min(st.max_ops, n)) | 1  # odd: state flips
    for _ in range(st.repeat):
        for c in live:  # interleaved, so drift hits every library alike
            n = sizes[id(c)]
            gc.collect()
            c.times.append(c.do(n))
            c.ops.append(n)
    for c in live:
        c.verify(c.done)


def fmt_rate(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def fmt_ratio(a: Case | None, b: Case | None) -> str:
    if a is None or b is None or a.median is None or b.median is None:
        return "n/a"
    assert a.best is not None and b.best is not None
    return f"{a.median / b.median:.2f}x ({a.best / b.best:.2f}x)"


def render_table(results: list[tuple[str, str, dict[str, Case]]]) -> None:
    short = {
        "asyncmachine": "asyncmachine",
        "transitions": "transitions",
        "python-statemachine": "python-sm",
    }
    headers = ["scenario"]
    for lib in LIBS:
        headers.append(f"{short[lib]}\nbest / median")
    headers += ["am/transitions\nmedian (best)", "am/python-sm\nmedian (best)"]
    rows = []
    for key, title, cases in results:
        row = [f"({key}) {title}"]
        for lib in LIBS:
            c = cases.get(lib)
            if c is None or c.error:
                row.append("n/a")
            else:
                row.append(f"{fmt_rate(c.best)} / {fmt_rate(c.median)}")
        am = cases.get("asyncmachine")
        row.append(fmt_ratio(am, cases.get("transitions")))
        row.append(fmt_ratio(am, cases.get("python-statemachine")))
        rows.append(row)

    title = "toggles per second (higher is better)"
    try:
        from rich.console import Console  # type: ignore[import-not-found,unused-ignore]
        from rich.table import Table  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        head = [[*h.split("\n"), ""][:2] for h in headers]
        widths = [
            max(len(h[0]), len(h[1]), *(len(r[i]) for r in rows))
            for i, h in enumerate(head)
        ]
        print(title)
        for line_no in (0, 1):
            print(
                "  ".join(
                    h[line_no].ljust(w) if i == 0 else h[line_no].rjust(w)
                    for i, (h, w) in enumerate(zip(head, widths, strict=True))
                )
            )
        print("-" * (sum(widths) + 2 * (len(widths) - 1)))
        for r in rows:
            cells = [r[0].ljust(widths[0])]
            cells += [v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)]
            print("  ".join(cells))
        return
    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*r)
    # piped output (CI logs) would otherwise be squeezed to 80 columns
    Console(width=None if sys.stdout.isatty() else 120).print(table)


def version_of(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def print_env() -> None:
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}, "
        f"{sys.version.split()[0]}) on {platform.platform()} [{platform.machine()}]"
    )
    try:
        import asyncmachine

        am_where = getattr(asyncmachine, "__file__", "?")
        am_ver = getattr(asyncmachine, "__version__", None) or version_of("ampubsub")
    except Exception as exc:
        am_where, am_ver = f"import failed: {exc!r}", "-"
    print(
        f"asyncmachine {am_ver} ({am_where}); transitions {version_of('transitions')}; "
        f"python-statemachine {version_of('python-statemachine')}"
    )


def run_benchmarks(
    st: Settings, only: set[str] | None
) -> list[tuple[str, str, dict[str, Case]]]:
    results = []
    for key, title, factories in SCENARIOS:
        if only and key not in only:
            continue
        cases = {lib: make_case(lib, f) for lib, f in factories.items()}
        measure(list(cases.values()), st)
        results.append((key, title, cases))
    return results


def profile_asyncmachine(st: Settings, top: int = 25) -> None:
    for key, factory in (("a", am_plain), ("c", am_relations)):
        case = factory()
        case.do(st.warmup)
        n = max(st.min_ops, int(st.seconds * 5 * 20_000)) | 1
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        case.run(n)
        prof.disable()
        dt = time.perf_counter() - t0
        case.done += n
        case.verify(case.done)
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        print(
            f"\n=== cProfile: asyncmachine scenario ({key}), {n} toggles, "
            f"{dt:.2f}s under the profiler ({n / dt:,.0f} ops/s), "
            f"top {top} by tottime ==="
        )
        print(out.getvalue().rstrip())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs (CI smoke test)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile asyncmachine scenarios (a) and (c) with cProfile "
        "and print the top 25 functions by tottime",
    )
    p.add_argument(
        "--repeat", type=int, help="timed runs per case (default 7, quick 3)"
    )
    p.add_argument(
        "--seconds",
        type=float,
        help="target duration of one timed run (default 0.25, quick 0.01)",
    )
    p.add_argument(
        "--only", default="", help="scenarios to run, e.g. 'ac'; 's': scaling"
    )
    p.add_argument(
        "--check-target",
        action="store_true",
        help="exit 2 unless every target is met",
    )
    args = p.parse_args(argv)

    if args.quick:
        st = Settings(warmup=300, seconds=0.01, repeat=3, min_ops=101, max_ops=20_001)
    else:
        st = Settings(
            warmup=3000, seconds=0.25, repeat=7, min_ops=1001, max_ops=2_000_001
        )
    if args.repeat:
        st.repeat = args.repeat
    if args.seconds:
        st.seconds = args.seconds

    print_env()
    if args.profile:
        profile_asyncmachine(st)
        return 0

    only = set(args.only) if args.only else None
    print(
        f"{st.repeat} timed runs per case of ~{st.seconds}s each after {st.warmup} "
        f"warm-up toggles; gc enabled; best / median ops/s\n"
    )
    status = 0
    results = run_benchmarks(st, only)
    if results:
        render_table(results)
        print()
    for key, _title, cases in results:
        for c in cases.values():
            if c.error:
                print(f"error ({key}) {c.lib}: {c.error}")
                status = 1
    if results:
        print(
            "verified: final states"
            " (+ clocks for asyncmachine, handler counts in (b)) after every case"
        )
        print("ratios: asyncmachine ops/s divided by the baseline's, median (best)")
    if any(k == "c" for k, _, _ in results):
        print(textwrap.fill("note: " + REL_NOTE, width=100, subsequent_indent="  "))
    missed = 0
    for key, _title, cases in results:
        target = TARGETS.get(key)
        am, tr = cases.get("asyncmachine"), cases.get("transitions")
        if target and am and tr and am.median and tr.median:
            ratio = am.median / tr.median
            ok = ratio >= target
            missed += not ok
            print(
                f"target ({key}) asyncmachine >= {target}x transitions: "
                f"{'MET' if ok else 'NOT MET'} ({ratio:.2f}x median)"
            )
    if only is None or "s" in only:
        print()
        missed += render_scaling(run_scaling(st))
    if args.check_target and missed:
        status = status or 2
    return status


if __name__ == "__main__":
    sys.exit(main())
