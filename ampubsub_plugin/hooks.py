"""ampubsub's own hooks (pluggy project and entry-point group ``ampubsub``).

Third parties watch the network and filter it without subclassing:

- ``ampubsub_peer_joined`` / ``ampubsub_peer_left``: a direct neighbour
  subscribed to, or left, a topic;
- ``ampubsub_machine_discovered`` / ``_updated`` / ``_gone``: a remote machine
  appeared, showed a newer clock, or disconnected (bye or silence);
- ``ampubsub_accept_remote``: return False to hide a remote machine;
- ``ampubsub_accept_export``: return False to refuse exporting a machine.

Hooks run synchronously on the topic's trio thread: they must not block.
The manager loads installed entry points on first use; a topic calls a hook
only when some plugin implements it.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import pluggy

from asyncmachine.hooks import new_plugin_manager, register_checked

if TYPE_CHECKING:
    from asyncmachine import Machine

    from .protocol import Info
    from .remote import RemoteMachine
    from .topic import Topic

PROJECT = "ampubsub"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

log = logging.getLogger("ampubsub.hooks")


class TopicSpecs:
    """Hook specifications of ampubsub."""

    @hookspec
    def ampubsub_peer_joined(self, topic: Topic, peer_id: str) -> None:
        """A directly connected peer subscribed to ``topic``."""

    @hookspec
    def ampubsub_peer_left(self, topic: Topic, peer_id: str) -> None:
        """A directly connected peer left ``topic`` (it may still be reachable)."""

    @hookspec
    def ampubsub_machine_discovered(self, topic: Topic, remote: RemoteMachine) -> None:
        """A remote machine became known."""

    @hookspec
    def ampubsub_machine_updated(self, topic: Topic, remote: RemoteMachine) -> None:
        """A remote machine shows a newer clock (or reconnected)."""

    @hookspec
    def ampubsub_machine_gone(self, topic: Topic, remote: RemoteMachine) -> None:
        """A remote machine disconnected (its peer said bye or fell silent)."""

    @hookspec(firstresult=True)
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> bool | None:
        """Return False to hide this remote machine from ``topic``."""

    @hookspec(firstresult=True)
    def ampubsub_accept_export(self, topic: Topic, machine: Machine) -> bool | None:
        """Return False to refuse exporting ``machine`` to ``topic``."""


_manager: pluggy.PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide ampubsub manager; entry points load once, on first use."""
    global _manager
    if _manager is None:
        with _lock:
            if _manager is None:
                _manager = new_plugin_manager(PROJECT, TopicSpecs)
    return _manager


def register(plugin: object, name: str | None = None) -> None:
    """Register a plugin by hand (validated against the specs at once)."""
    register_checked(get_plugin_manager(), plugin, name)


def unregister(plugin: object) -> None:
    get_plugin_manager().unregister(plugin)


def implemented(name: str) -> bool:
    """True when some plugin implements hook ``name`` (cheap; for hot paths)."""
    caller = getattr(get_plugin_manager().hook, name)
    return bool(caller.get_hookimpls())


def call(name: str, **kwargs: Any) -> Any:
    """Call a hook, each plugin on its own: one failing never silences others.

    A plugin's exception is logged and skipped. For first-result hooks the
    first non-None answer wins, except that a ``False`` from any plugin wins
    for the accept hooks (a refusal is never lost to another plugin's error).
    """
    caller = getattr(get_plugin_manager().hook, name)
    impls = caller.get_hookimpls()
    if not impls:
        return None
    first_result = bool(caller.spec and caller.spec.opts.get("firstresult"))
    refusal = name.startswith("ampubsub_accept_")
    answer: Any = None
    for impl in reversed(impls):  # pluggy's order: last registered first
        try:
            result = impl.function(*(kwargs[arg] for arg in impl.argnames))
        except Exception:
            log.exception(
                "an ampubsub plugin failed in %s (%s)", name, impl.plugin_name
            )
            continue
        if refusal and result is False:
            return False
        if first_result and result is not None and answer is None:
            answer = result
            if not refusal:
                return answer
    return answer
