"""ampubsub's own hooks (pluggy project and entry-point group ``ampubsub``).

Third parties watch the network and filter it without subclassing:

- ``ampubsub_peer_joined`` / ``ampubsub_peer_left``: a direct neighbour
  subscribed to, or left, a topic;
- ``ampubsub_machine_discovered`` / ``_updated`` / ``_gone``: a remote machine
  appeared, showed a newer clock, or disconnected (bye or silence);
- ``ampubsub_accept_remote``: return False to hide a remote machine;
- ``ampubsub_accept_export``: return False to refuse exporting a machine;
- ``ampubsub_accept_peer``: return False to keep a peer out of the topic
  (its connections closed, its messages dropped, infos about it ignored).

Hooks run synchronously inside the topic machine's handlers (on the topic's
trio thread, or on a user's thread that happens to run the topic machine's
queue): they must not block.
The manager loads installed entry points on first use.

Theory of operation. Rule 1: a hook is called through pluggy, never by a
loop of our own: :class:`TopicHooks` (one per topic, one method per hook)
calls ``pm.hook.ampubsub_<name>(...)``, so call order (``tryfirst`` /
``trylast``), wrappers (``wrapper=True`` and old-style ``hookwrapper=True``),
first-result specs and ``pm.add_hookcall_monitoring`` behave as pluggy
documents them. A hook nobody implements costs one look at the caller's
implementations: no keyword arguments are built and pluggy is not entered.

Rule 2: a plugin never breaks a topic, nor silences another plugin. The
manager (:class:`GuardedPluginManager`) wraps each hook implementation once,
when its plugin registers (by hand or as an installed entry point), in a
guard that logs an exception (logger ``ampubsub.hooks``, naming the hook and
the plugin) and then gets out of the way: an implementation answers None; a
wrapper that fails before its ``yield`` steps aside; one that fails after it
leaves the result of the others as it was. pluggy goes on with the rest.

Rule 3: failures are counted on the topic they happened on. A guard does not
know the topic, so it appends the plugin's name to the failure list of the
current call, a context variable that :class:`TopicHooks` sets around each
call; the facade then adds them to the topic's counters (``hook_errors`` and
``hook_errors_<hook name>``). Anything that still escapes pluggy (a wrapper
re-raising, pluggy's own errors) is logged and counted by the facade, which
never lets an ``Exception`` reach the topic (``BaseException``s such as
cancellation go on).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Generator
from contextvars import ContextVar
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

    @hookspec(firstresult=True)
    def ampubsub_accept_peer(self, topic: Topic, peer_id: str) -> bool | None:
        """Return False to keep ``peer_id`` out of ``topic`` (see docs/security.md).

        Called often (for each message a peer authors, each connection): it
        must be fast and must not block. True or None leave the decision to
        the topic's ``allow_peers``; it can't let in a peer that refuses.
        """


# -- isolation: guards put on each implementation as its plugin registers ----

#: names of the plugins that failed during the current TopicHooks call
_failures: ContextVar[list[str] | None] = ContextVar(
    "ampubsub_hook_failures", default=None
)


def _failed(hook_name: str, plugin_name: str, exc: BaseException) -> None:
    log.error(
        "an ampubsub plugin failed in %s (%s)", hook_name, plugin_name, exc_info=exc
    )
    failures = _failures.get()
    if failures is not None:
        failures.append(plugin_name)


def _guard_call(
    hook_name: str, plugin_name: str, function: Callable[..., object]
) -> Callable[..., object]:
    """An implementation that raises answers None (pluggy asks the next one)."""

    @functools.wraps(function)
    def guarded(*args: object, **kwargs: object) -> object:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            _failed(hook_name, plugin_name, exc)
            return None

    return guarded


def _started(
    teardown: Generator[None, Any, object], hook_name: str, plugin_name: str
) -> bool:
    """Run a wrapper up to its ``yield``; False (logged) if it failed before."""
    try:
        next(teardown)
    except StopIteration:
        _failed(hook_name, plugin_name, RuntimeError("the wrapper did not yield"))
        return False
    except Exception as exc:
        _failed(hook_name, plugin_name, exc)
        return False
    return True


def _guard_wrapper(
    hook_name: str, plugin_name: str, function: Callable[..., object]
) -> Callable[..., object]:
    """A ``wrapper=True`` implementation that cannot break the call.

    Failing before its ``yield`` it steps aside (the others run without it);
    failing after, the result it was given stands. An exception pluggy throws
    into it is passed on to it, and what it raises then goes on, as in pluggy.
    """

    @functools.wraps(function)
    def guarded(*args: object, **kwargs: object) -> Generator[None, object, object]:
        teardown: Generator[None, object, object]
        teardown = function(*args, **kwargs)  # type: ignore[assignment]
        if not _started(teardown, hook_name, plugin_name):
            return (yield)
        try:
            result = yield
        except BaseException as exc:
            try:
                teardown.throw(exc)
            except StopIteration as stop:
                return stop.value  # the wrapper handled it
            teardown.close()  # a second yield
            raise
        try:
            teardown.send(result)
        except StopIteration as stop:
            return stop.value
        except Exception as exc:
            _failed(hook_name, plugin_name, exc)
            return result
        teardown.close()
        _failed(hook_name, plugin_name, RuntimeError("the wrapper has a second yield"))
        return result

    return guarded


def _guard_hookwrapper(
    hook_name: str, plugin_name: str, function: Callable[..., object]
) -> Callable[..., object]:
    """An old-style ``hookwrapper=True`` implementation that cannot break the call.

    It gets pluggy's own ``Result`` (``force_result`` works); failing before
    its ``yield`` it steps aside, failing after it leaves the result alone.
    """

    @functools.wraps(function)
    def guarded(
        *args: object, **kwargs: object
    ) -> Generator[None, pluggy.Result[object], None]:
        teardown: Generator[None, pluggy.Result[object], None]
        teardown = function(*args, **kwargs)  # type: ignore[assignment]
        if not _started(teardown, hook_name, plugin_name):
            yield
            return
        outcome = yield
        try:
            teardown.send(outcome)
        except StopIteration:
            return
        except Exception as exc:
            if exc is not outcome.exception:  # not just re-raising the others'
                _failed(hook_name, plugin_name, exc)
            return
        teardown.close()
        _failed(hook_name, plugin_name, RuntimeError("the wrapper has a second yield"))

    return guarded


def _guard(hook_name: str, impl: pluggy.HookImpl) -> None:
    if impl.hookwrapper:
        guard = _guard_hookwrapper
    elif impl.wrapper:
        guard = _guard_wrapper
    else:
        guard = _guard_call
    # ``Final`` in pluggy's annotations only; pluggy itself reads it per call
    impl.function = guard(hook_name, impl.plugin_name, impl.function)  # type: ignore[misc]


class GuardedPluginManager(pluggy.PluginManager):
    """A plugin manager whose hook implementations cannot raise into a call.

    Each implementation is guarded once, when its plugin is registered, by
    :func:`register`, by ``pm.register`` or as an installed entry point
    (``load_setuptools_entrypoints`` registers through here). Calls are
    pluggy's own.
    """

    def register(self, plugin: object, name: str | None = None) -> str | None:
        plugin_name = super().register(plugin, name)
        if plugin_name is not None:
            for caller in self.get_hookcallers(plugin) or ():
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin:
                        _guard(caller.name, impl)
        return plugin_name


# -- the manager ---------------------------------------------------------------

_manager: pluggy.PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide ampubsub manager; entry points load once, on first use."""
    global _manager
    if _manager is None:
        with _lock:
            if _manager is None:
                _manager = new_plugin_manager(
                    PROJECT, TopicSpecs, manager_type=GuardedPluginManager
                )
    return _manager


def register(plugin: object, name: str | None = None) -> None:
    """Register a plugin by hand (validated against the specs at once)."""
    register_checked(get_plugin_manager(), plugin, name)


def unregister(plugin: object) -> None:
    get_plugin_manager().unregister(plugin)


# -- calling: one facade per topic ---------------------------------------------


class TopicHooks:
    """A topic's hooks: one method per hook, each a plain pluggy call.

    The hook callers are looked up once, here; each method returns at once
    when nobody implements its hook (``machine_updated`` runs for every
    remote clock change). Plugin failures are logged by their guards and
    counted in ``counters`` (``hook_errors``, ``hook_errors_<hook name>``);
    no ``Exception`` reaches the caller.
    """

    __slots__ = (
        "_accept_export",
        "_accept_peer",
        "_accept_remote",
        "_counters",
        "_discovered",
        "_gone",
        "_peer_joined",
        "_peer_left",
        "_topic",
        "_updated",
    )

    def __init__(
        self,
        topic: Topic,
        counters: Counter[str],
    ) -> None:
        self._topic = topic
        self._counters = counters
        hook = get_plugin_manager().hook
        self._peer_joined: pluggy.HookCaller = hook.ampubsub_peer_joined
        self._peer_left: pluggy.HookCaller = hook.ampubsub_peer_left
        self._discovered: pluggy.HookCaller = hook.ampubsub_machine_discovered
        self._updated: pluggy.HookCaller = hook.ampubsub_machine_updated
        self._gone: pluggy.HookCaller = hook.ampubsub_machine_gone
        self._accept_remote: pluggy.HookCaller = hook.ampubsub_accept_remote
        self._accept_export: pluggy.HookCaller = hook.ampubsub_accept_export
        self._accept_peer: pluggy.HookCaller = hook.ampubsub_accept_peer

    def peer_joined(self, peer_id: str) -> None:
        if self._peer_joined.get_hookimpls():
            self._call(self._peer_joined, topic=self._topic, peer_id=peer_id)

    def peer_left(self, peer_id: str) -> None:
        if self._peer_left.get_hookimpls():
            self._call(self._peer_left, topic=self._topic, peer_id=peer_id)

    def wants_remotes(self) -> bool:
        """Does any plugin look at remote machines (so they must be built)?"""
        return bool(
            self._discovered.get_hookimpls()
            or self._updated.get_hookimpls()
            or self._gone.get_hookimpls()
        )

    def machine_discovered(self, remote: RemoteMachine) -> None:
        if self._discovered.get_hookimpls():
            self._call(self._discovered, topic=self._topic, remote=remote)

    def machine_updated(self, remote: RemoteMachine) -> None:
        if self._updated.get_hookimpls():
            self._call(self._updated, topic=self._topic, remote=remote)

    def machine_gone(self, remote: RemoteMachine) -> None:
        if self._gone.get_hookimpls():
            self._call(self._gone, topic=self._topic, remote=remote)

    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        """False: hide the machine (the first non-None answer decides)."""
        if not self._accept_remote.get_hookimpls():
            return True
        verdict = self._call(
            self._accept_remote,
            topic=self._topic,
            peer_id=peer_id,
            index=index,
            info=info,
        )
        return verdict is not False

    def accept_export(self, machine: Machine) -> bool:
        """False: refuse the export (the first non-None answer decides)."""
        if not self._accept_export.get_hookimpls():
            return True
        verdict = self._call(self._accept_export, topic=self._topic, machine=machine)
        return verdict is not False

    def accept_peer(self, peer_id: str) -> bool:
        """False: keep the peer out (the first non-None answer decides)."""
        if not self._accept_peer.get_hookimpls():
            return True
        verdict = self._call(self._accept_peer, topic=self._topic, peer_id=peer_id)
        return verdict is not False

    def _call(self, caller: pluggy.HookCaller, **kwargs: object) -> object:
        failures: list[str] = []
        token = _failures.set(failures)
        try:
            return caller(**kwargs)
        except Exception as exc:  # past the guards: a wrapper re-raising, pluggy
            log.error("the ampubsub hook call %s failed", caller.name, exc_info=exc)
            failures.append("")
            return None
        finally:
            _failures.reset(token)
            if failures:
                self._counters["hook_errors"] += len(failures)
                self._counters[f"hook_errors_{caller.name}"] += len(failures)
