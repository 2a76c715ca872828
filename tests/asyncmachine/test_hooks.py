"""Plugin hooks (pluggy): specs, registration, export_to and lazy loading.

Contract: /work/shared/docs/API.md ("the pluggy hook specs", ``export_to``)
and the lead's notes: the manager and the entry points of group
``asyncmachine`` are loaded lazily and once; machines never pay for plugins
on the hot path.

Every test starts with no plugin manager (``hooks._manager`` reset) and an
installed-distributions list that holds only the fake distributions a test
adds, so no test sees another test's plugins, nor the plugins installed in
the environment.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pluggy
import pytest

import asyncmachine
from asyncmachine import (
    AsyncMachineError,
    ExportError,
    Machine,
    Result,
    State,
    hookimpl,
    hooks,
)

WAIT = 5.0
SCHEMA = {"Foo": State(), "Bar": State(require="Foo")}


class Target:
    """A target type some test plugins accept."""


class OtherTarget:
    """A target type no plugin accepts."""


class FakeDist(importlib.metadata.Distribution):
    """An installed distribution, as far as importlib.metadata can tell."""

    def __init__(self, name: str, entry_points: str) -> None:
        self._name = name
        self._entry_points = entry_points

    def read_text(self, filename: str) -> str | None:
        if filename == "entry_points.txt":
            return self._entry_points
        if filename in ("METADATA", "PKG-INFO"):
            return f"Metadata-Version: 2.1\nName: {self._name}\nVersion: 0.1\n"
        return None

    def locate_file(self, path: Any) -> pathlib.Path:
        return pathlib.Path(path)


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """No manager yet; installed distributions are only the test's fakes."""
    monkeypatch.setattr(hooks, "_manager", None)
    state = SimpleNamespace(dists=[], scans=0)

    def distributions(**kwargs: Any) -> list[importlib.metadata.Distribution]:
        state.scans += 1
        return list(state.dists)

    monkeypatch.setattr(importlib.metadata, "distributions", distributions)
    yield state


PLUGIN_MODULE = "am_test_fake_plugin"

PLUGIN_SOURCE = """
from asyncmachine import hookimpl

INITS = []
EXPORTS = []


@hookimpl
def am_machine_init(machine):
    INITS.append(machine.id)


@hookimpl
def am_export_to(machine, target, opts):
    if type(target).__name__ != "Target":
        return None
    EXPORTS.append((machine.id, opts))
    return ("from-entry-point", machine.id)
"""


@pytest.fixture
def entry_point_plugin(
    env: SimpleNamespace, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SimpleNamespace]:
    """A fake installed distribution with an ``asyncmachine`` entry point."""
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(PLUGIN_MODULE, None)
    env.dists.append(
        FakeDist(
            "am-fake-plugin",
            f"[asyncmachine]\nfake = {PLUGIN_MODULE}\n\n"
            "[console_scripts]\nnot-a-plugin = nowhere:main\n",
        )
    )
    # an entry point of another group must never be loaded
    env.dists.append(FakeDist("other", "[pytest11]\nother = no_such_module_xyz\n"))
    yield env
    sys.modules.pop(PLUGIN_MODULE, None)


def make_machine(**kw: Any) -> Machine:
    return Machine(SCHEMA, **kw)


# ---------------------------------------------------------------------------
# specs and markers


def test_hook_specs() -> None:
    specs = hooks.MachineSpecs
    for name in ("am_machine_init", "am_machine_dispose", "am_export_to"):
        opts = getattr(getattr(specs, name), "asyncmachine_spec", None)
        assert opts is not None, f"{name} is not a hookspec of project asyncmachine"
    assert specs.am_export_to.asyncmachine_spec["firstresult"] is True
    assert hooks.PROJECT == "asyncmachine"
    assert asyncmachine.hookimpl is hooks.hookimpl
    assert asyncmachine.hookspec is hooks.hookspec
    assert isinstance(hookimpl, pluggy.HookimplMarker)
    assert hookimpl.project_name == "asyncmachine"


def test_manager_has_the_specs() -> None:
    manager = hooks.get_plugin_manager()
    assert manager.project_name == "asyncmachine"
    for name in ("am_machine_init", "am_machine_dispose", "am_export_to"):
        caller = getattr(manager.hook, name)
        assert caller.spec is not None, name
    assert hooks.load_plugins() is manager


def test_export_error_is_an_asyncmachine_error() -> None:
    assert issubclass(ExportError, AsyncMachineError)


# ---------------------------------------------------------------------------
# export_to through registered plugins


class ExportPlugin:
    def __init__(self, accepts: type, result: object) -> None:
        self.accepts = accepts
        self.result = result
        self.calls: list[tuple[Machine, object, dict[str, Any]]] = []

    @hookimpl
    def am_export_to(
        self, machine: Machine, target: object, opts: dict[str, Any]
    ) -> object | None:
        self.calls.append((machine, target, opts))
        if isinstance(target, self.accepts):
            return self.result
        return None


def test_registered_plugin_gets_export_to_and_its_result_is_returned() -> None:
    plugin = ExportPlugin(Target, {"handle": 1})
    hooks.register(plugin)
    m = make_machine(id="exported")
    target = Target()
    result = m.export_to(target, interval=0.5, name="x")
    assert result is plugin.result
    assert len(plugin.calls) == 1
    machine, got_target, opts = plugin.calls[0]
    assert machine is m
    assert got_target is target
    assert opts == {"interval": 0.5, "name": "x"}
    # no options: an empty dict, not None
    m.export_to(target)
    assert plugin.calls[1][2] == {}


def test_target_no_plugin_accepts_is_export_error_naming_the_type() -> None:
    plugin = ExportPlugin(Target, "ok")
    hooks.register(plugin)
    m = make_machine()
    with pytest.raises(ExportError) as info:
        m.export_to(OtherTarget())
    assert "OtherTarget" in str(info.value)
    assert len(plugin.calls) == 1, "the plugin was asked"


def test_export_error_without_any_plugin() -> None:
    m = make_machine()
    with pytest.raises(ExportError, match="OtherTarget"):
        m.export_to(OtherTarget())
    with pytest.raises(ExportError, match="int"):
        m.export_to(42)


def test_first_result_wins_with_two_plugins() -> None:
    class First(ExportPlugin):
        @hookimpl(tryfirst=True)
        def am_export_to(
            self, machine: Machine, target: object, opts: dict[str, Any]
        ) -> object | None:
            return super().am_export_to(machine, target, opts)

    first = First(Target, "first")
    second = ExportPlugin(Target, "second")
    hooks.register(first)
    hooks.register(second)
    m = make_machine()
    assert m.export_to(Target()) == "first"
    assert len(first.calls) == 1
    assert second.calls == [], "firstresult: nobody is asked after a result"


def test_plugin_returning_none_lets_the_next_one_try() -> None:
    declines = ExportPlugin(OtherTarget, "declines")
    accepts = ExportPlugin(Target, "accepts")
    hooks.register(accepts)
    hooks.register(declines)
    m = make_machine()
    assert m.export_to(Target()) == "accepts"
    assert len(declines.calls) == 1
    assert m.export_to(OtherTarget()) == "declines"


def test_unregister_stops_export() -> None:
    plugin = ExportPlugin(Target, "ok")
    hooks.register(plugin)
    m = make_machine()
    assert m.export_to(Target()) == "ok"
    hooks.unregister(plugin)
    with pytest.raises(ExportError):
        m.export_to(Target())


def test_module_plugin_with_name() -> None:
    calls: list[str] = []

    @hookimpl
    def am_export_to(
        machine: Machine, target: object, opts: dict[str, Any]
    ) -> object | None:
        calls.append(machine.id)
        return "module" if isinstance(target, Target) else None

    plugin = SimpleNamespace(am_export_to=am_export_to)
    hooks.register(plugin, name="by-hand")
    assert "by-hand" in hooks.plugin_names()
    assert make_machine(id="mm").export_to(Target()) == "module"
    assert calls == ["mm"]


# ---------------------------------------------------------------------------
# machine init / dispose hooks


class LifecyclePlugin:
    def __init__(self) -> None:
        self.inits: list[Machine] = []
        self.disposes: list[Machine] = []

    @hookimpl
    def am_machine_init(self, machine: Machine) -> None:
        self.inits.append(machine)

    @hookimpl
    def am_machine_dispose(self, machine: Machine) -> None:
        self.disposes.append(machine)


def test_machine_init_and_dispose_hooks() -> None:
    plugin = LifecyclePlugin()
    hooks.register(plugin)
    m = make_machine(id="life")
    assert plugin.inits == [m]
    assert plugin.disposes == []
    m.add(["Foo", "Bar"])
    m.remove("Foo")
    assert plugin.inits == [m]
    m.dispose()
    assert plugin.disposes == [m]
    m.dispose()
    assert m.when_disposed().wait(WAIT)
    assert plugin.disposes == [m], "dispose hook runs once"
    other = make_machine()
    assert plugin.inits == [m, other]


def test_init_hook_sees_a_usable_machine() -> None:
    seen: list[tuple[str, list[str], list[str]]] = []

    class Plugin:
        @hookimpl
        def am_machine_init(self, machine: Machine) -> None:
            seen.append((machine.id, machine.state_names, machine.tags))

    hooks.register(Plugin())
    make_machine(id="u", tags=["t:1"])
    assert seen == [("u", ["Foo", "Bar", "Exception"], ["t:1"])]


def test_dispose_hook_failure_does_not_break_dispose(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        @hookimpl
        def am_machine_dispose(self, machine: Machine) -> None:
            raise RuntimeError("plugin broke")

    hooks.register(Broken())
    m = make_machine()
    released = m.when("Bar")
    with caplog.at_level("ERROR", logger="asyncmachine"):
        m.dispose()
    assert m.is_disposed
    assert released.wait(WAIT) is False
    assert "plugin broke" in caplog.text or "plugin" in caplog.text


def test_rejected_snapshot_does_not_announce_a_machine() -> None:
    plugin = LifecyclePlugin()
    hooks.register(plugin)
    good = make_machine(id="snap")
    data = good.export_state()
    data["states"] = ["Foo", "Nope", "Exception"]
    with pytest.raises(ValueError, match="Nope"):
        Machine.from_state(SCHEMA, data)
    # every machine a plugin was told about is one the caller got, or was
    # disposed again
    orphans = [x for x in plugin.inits if x is not good and x not in plugin.disposes]
    assert orphans == [], "from_state announced a machine it then threw away"


# ---------------------------------------------------------------------------
# validation at register


def test_unknown_hook_name_is_plugin_validation_error() -> None:
    class Typo:
        @hookimpl
        def am_typo(self, machine: Machine) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError, match="am_typo"):
        hooks.register(Typo())


def test_wrong_hook_arguments_are_plugin_validation_error() -> None:
    class WrongArgs:
        @hookimpl
        def am_export_to(self, machine: Machine, destination: object) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError):
        hooks.register(WrongArgs())


def test_rejected_plugin_is_not_left_registered() -> None:
    class Typo:
        @hookimpl
        def am_typo(self, machine: Machine) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError):
        hooks.register(Typo())
    # a good plugin registers fine afterwards, and exports work
    good = ExportPlugin(Target, "ok")
    hooks.register(good)
    assert make_machine().export_to(Target()) == "ok"


# ---------------------------------------------------------------------------
# entry points: lazily and once


def test_entry_points_load_lazily_and_once(entry_point_plugin: SimpleNamespace) -> None:
    env = entry_point_plugin
    early = make_machine(id="early")
    early.add(["Foo", "Bar"])
    assert hooks._manager is None
    assert env.scans == 0, "entry points scanned before anything needed plugins"
    assert PLUGIN_MODULE not in sys.modules

    assert early.export_to(Target(), x=1) == ("from-entry-point", "early")
    assert env.scans == 1
    plugin = sys.modules[PLUGIN_MODULE]
    assert plugin.EXPORTS == [("early", {"x": 1})]
    assert "fake" in hooks.plugin_names()
    assert plugin.INITS == [], "a machine made before loading is not re-announced"

    # later machines are announced; the entry points are not scanned again
    late = make_machine(id="late")
    assert late.export_to(Target()) == ("from-entry-point", "late")
    hooks.load_plugins()
    hooks.get_plugin_manager()
    assert env.scans == 1
    assert plugin.INITS == ["late"]
    assert sys.modules[PLUGIN_MODULE] is plugin


def test_load_plugins_loads_entry_points(entry_point_plugin: SimpleNamespace) -> None:
    manager = hooks.load_plugins()
    assert entry_point_plugin.scans == 1
    assert manager.has_plugin("fake")
    assert sys.modules[PLUGIN_MODULE].INITS == []
    make_machine(id="after")
    assert sys.modules[PLUGIN_MODULE].INITS == ["after"]


def test_register_loads_entry_points_first(entry_point_plugin: SimpleNamespace) -> None:
    hooks.register(LifecyclePlugin())
    assert entry_point_plugin.scans == 1
    assert hooks.get_plugin_manager().has_plugin("fake")


def test_manager_reset_between_tests_1() -> None:
    assert hooks._manager is None
    hooks.register(ExportPlugin(Target, "leak?"), name="leak-check")


def test_manager_reset_between_tests_2() -> None:
    assert hooks._manager is None
    assert "leak-check" not in hooks.plugin_names()
    with pytest.raises(ExportError):
        make_machine().export_to(Target())


# ---------------------------------------------------------------------------
# the hot path pays nothing


def test_machines_never_create_the_manager(
    env: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden() -> pluggy.PluginManager:
        raise AssertionError("the plugin manager was requested")

    monkeypatch.setattr(hooks, "get_plugin_manager", forbidden)
    monkeypatch.setattr(pluggy, "PluginManager", forbidden)

    class Handlers:
        def Foo_state(self, e: Any) -> None:
            e.machine.add("Bar")

    class Tracer:
        def transition_end(self, tx: Any) -> None:
            pass

    parent = make_machine(id="parent")
    m = Machine(SCHEMA, id="child", parent=parent, tags=["a"])
    binding = m.bind(Handlers())
    m.bind_tracer(Tracer())
    waiter = m.when("Bar")
    assert m.add("Foo") == Result.EXECUTED
    assert waiter.wait(WAIT)
    m.can_add("Bar")
    m.toggle("Foo")
    m.add_err(RuntimeError("x"))
    m.unbind(binding)
    data = json.loads(json.dumps(m.export_state()))
    restored = Machine.from_state(SCHEMA, data)
    m.dispose()
    restored.dispose()
    parent.dispose()
    assert hooks._manager is None
    assert env.scans == 0


def test_import_loads_no_event_loop_and_no_entry_points(
    tmp_path: pathlib.Path,
) -> None:
    """A real installed plugin (dist-info on sys.path) is not loaded by
    ``import asyncmachine`` nor by using machines; export_to loads it."""
    module = "am_probe_plugin_subprocess"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from asyncmachine import hookimpl

            @hookimpl
            def am_export_to(machine, target, opts):
                return "probe" if type(target).__name__ == "Probe" else None
            """
        )
    )
    dist = tmp_path / "am_probe-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: am-probe\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(f"[asyncmachine]\nprobe = {module}\n")
    code = textwrap.dedent(
        f"""
        import sys
        import asyncmachine
        from asyncmachine import Machine, State, hooks

        loaded = [n for n in ("trio", "asyncio", {module!r}) if n in sys.modules]
        assert not loaded, f"imported by `import asyncmachine`: {{loaded}}"
        assert hooks._manager is None

        m = Machine({{"A": State(), "B": State(require="A")}}, id="sub")
        w = m.when("B")
        m.add(["A", "B"])
        assert w.wait(5)
        m.remove("A")
        loaded = [n for n in ("trio", "asyncio", {module!r}) if n in sys.modules]
        assert not loaded, f"imported by using a machine: {{loaded}}"
        assert hooks._manager is None

        class Probe:
            pass

        assert m.export_to(Probe()) == "probe"
        assert {module!r} in sys.modules
        print("ok")
        """
    )
    repo = pathlib.Path(asyncmachine.__file__).resolve().parent.parent
    pythonpath = os.pathsep.join([str(tmp_path), str(repo)])
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
