"""Disposal: stopping a machine for good and releasing whatever waits on it.

Why this module exists: disposal touches every other part -- it drops the
queue, expires the state contexts, calls the tracers, the ``on_dispose``
callbacks and the plugins, releases the waiters and unbinds the handlers --
and that order is easier to check in one short file than spread over them.

Rules: ``dispose`` only marks the machine (``_disposing``); the disposal
completes in ``_finish_dispose`` once no transition runs, either at once or
when the runner drains the queue (``machine.py``). It completes once.
A callback that raises is logged and the disposal goes on. Logs go to the
``asyncmachine.machine`` logger, as before this module was split out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from . import hooks
from ._fields import MachineFields

if TYPE_CHECKING:
    from ._machine import Machine

log = logging.getLogger("asyncmachine.machine")


class Disposal(MachineFields):
    """dispose, on_dispose, and the disposal itself."""

    def on_dispose(self, fn: Callable[[Machine], Any]) -> None:
        """Call ``fn(machine)`` once the machine is disposed."""
        with self._lock:
            if not self._disposed:
                self._dispose_fns.append(fn)
                return
        fn(cast("Machine", self))

    def dispose(self) -> None:
        """Stop the machine: the queue is dropped and every waiter released.

        From a handler (or while another thread runs the queue) the disposal
        completes once the running transition ends.
        """
        with self._lock:
            if self._disposing:
                return
            self._disposing = True
            if self._blocked:
                self._room.notify_all()
            if self._running:
                return
        self._finish_dispose()

    def _finish_dispose(self) -> None:
        with self._lock:
            if self._disposed:
                return
            self._disposed = True
            self._queue.clear()
            contexts = [c for cs in self._contexts.values() for c in cs]
            self._contexts.clear()
            fns, self._dispose_fns = self._dispose_fns, []
        for fn in self._trace.get("machine_dispose", ()):
            _safely(fn, self)
        for ctx in contexts:
            ctx._expire()
        for dispose_fn in fns:
            _safely(dispose_fn, self)
        hooks.machine_dispose(cast("Machine", self))
        self._subs.dispose()
        self._bindings.clear()
        self._handlers = {}
        self._pair_handlers = {}
        self._self_handlers = ()
        loop, self._handler_loop = self._handler_loop, None
        if loop is not None:
            loop.stop()
        log.debug("machine %s disposed", self._id)


def _safely(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("callback %r raised during disposal", fn)
