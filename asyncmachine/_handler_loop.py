"""The handler thread of a machine with ``handler_timeout``.

Why this module exists: Python can't interrupt a function, so the only way
to stop waiting for a handler that overruns is not to run it on the waiting
thread. With ``handler_timeout`` set, a machine's handlers run one at a time
on its handler thread, and the thread running the queue waits for each one
up to the timeout.

A handler that overruns is abandoned, not stopped: its thread goes on until
the handler returns, its result is then dropped, and the thread ends. The
machine starts a fresh handler thread for the next handler, so one stuck
handler never stalls the machine (each one still holds its thread). Without
``handler_timeout`` none of this exists and handlers run on the queue's
thread directly.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("asyncmachine.machine")


class HandlerCall:
    """One handler call handed to the loop, and how it ended."""

    __slots__ = ("args", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class HandlerLoop:
    """A daemon thread running handler calls in order until stopped or abandoned."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[HandlerCall | None] = queue.SimpleQueue()
        self.abandoned = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self.ident = self.thread.ident

    def call(self, call: HandlerCall, timeout: float) -> bool:
        """Run ``call`` on the loop; False when it didn't end within ``timeout``.

        After False the loop is abandoned: the late handler finishes on its
        own, and the thread ends once it did.
        """
        self._calls.put(call)
        if call.done.wait(timeout):
            return True
        self.abandoned = True
        self._calls.put(None)  # nothing else will come; end after the late one
        return False

    def stop(self) -> None:
        self._calls.put(None)

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            try:
                call.result = call.fn(*call.args)
            except BaseException as error:  # handed back to the waiting thread
                call.error = error
            call.done.set()
            if self.abandoned:
                log.warning(
                    "late handler %s returned after its timeout; result dropped",
                    getattr(call.fn, "__name__", call.fn),
                )
