"""Plugin hooks (pluggy): how other packages extend every machine.

The project name and the entry-point group are both ``asyncmachine``. The
plugin manager is created, and installed entry points are loaded, lazily and
once: on the first ``Machine.export_to`` or an explicit :func:`load_plugins`.
Until then no machine pays anything for plugins; after it, machine init and
dispose hooks run only when some plugin implements them. Per-transition work
never goes through hooks: a plugin attaches a tracer to the machines it
exports instead.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._machine import Machine

PROJECT = "asyncmachine"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

log = logging.getLogger("asyncmachine.hooks")


class MachineSpecs:
    """Hook specifications of asyncmachine."""

    @hookspec
    def am_machine_init(self, machine: Machine) -> None:
        """A machine was created (after its plugins were loaded)."""

    @hookspec
    def am_machine_dispose(self, machine: Machine) -> None:
        """A machine was disposed: release what the plugin holds for it."""

    @hookspec(firstresult=True)
    def am_export_to(
        self, machine: Machine, target: object, opts: dict[str, Any]
    ) -> object | None:
        """Export ``machine`` to ``target`` if this plugin knows its type.

        Return a non-None value (e.g. the export handle) to claim the target;
        return None to let other plugins try.
        """

    @hookspec(firstresult=True)
    def am_unexport_from(self, machine: Machine, target: object) -> bool | None:
        """Undo an export; return True when this plugin handled it."""


_manager: pluggy.PluginManager | None = None
_manager_lock = threading.Lock()


def new_plugin_manager(
    project: str,
    specs: type,
    *,
    manager_type: type[pluggy.PluginManager] | None = None,
) -> pluggy.PluginManager:
    """A manager with ``specs`` and the installed entry points of ``project``.

    The same recipe serves every pluggy project of this distribution: specs
    first, then entry points of the group of the same name, then a check that
    every hook implemented is a known one. ``manager_type`` (a
    ``pluggy.PluginManager`` subclass, the default) lets a project see every
    registration, entry points included (ampubsub guards its plugins so).
    """
    manager = (manager_type or pluggy.PluginManager)(project)
    manager.add_hookspecs(specs)
    loaded = manager.load_setuptools_entrypoints(project)
    manager.check_pending()
    log.debug("loaded %d %s plugin(s)", loaded, project)
    return manager


def register_checked(
    manager: pluggy.PluginManager, plugin: object, name: str | None = None
) -> None:
    """Register a plugin, rejecting (and removing) one with unknown hooks."""
    manager.register(plugin, name=name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError:
        manager.unregister(plugin)  # a rejected plugin must not stay behind
        raise


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager; built and loaded on first use."""
    global _manager
    if _manager is None:
        with _manager_lock:
            if _manager is None:
                _manager = new_plugin_manager(PROJECT, MachineSpecs)
    return _manager


def load_plugins() -> pluggy.PluginManager:
    """Load installed plugins now, so they see every machine created after."""
    return get_plugin_manager()


def register(plugin: object, name: str | None = None) -> None:
    """Register a plugin object or module by hand (checked against the specs)."""
    register_checked(get_plugin_manager(), plugin, name)


def unregister(plugin: object) -> None:
    get_plugin_manager().unregister(plugin)


def plugin_names() -> list[str]:
    if _manager is None:
        return []
    return [name for name, _ in _manager.list_name_plugin() if name]


def machine_init(machine: Machine) -> None:
    manager = _manager
    if manager is not None and manager.hook.am_machine_init.get_hookimpls():
        manager.hook.am_machine_init(machine=machine)


def machine_dispose(machine: Machine) -> None:
    manager = _manager
    if manager is not None and manager.hook.am_machine_dispose.get_hookimpls():
        try:
            manager.hook.am_machine_dispose(machine=machine)
        except Exception:
            log.exception("a plugin failed on disposal of %s", machine.id)


def export_to(machine: Machine, target: object, opts: dict[str, Any]) -> Any:
    return get_plugin_manager().hook.am_export_to(
        machine=machine, target=target, opts=opts
    )


def unexport_from(machine: Machine, target: object) -> Any:
    return get_plugin_manager().hook.am_unexport_from(machine=machine, target=target)
