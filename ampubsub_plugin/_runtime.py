"""Where topics run: a trio run, the caller's or a shared background one.

py-libp2p is trio-only. A topic started from trio code runs its tasks as
system tasks of the caller's own run (they end with that run). A topic
started from plain threads or asyncio runs on one background trio thread
shared by every topic of the process, created on first use.

A task spawned here never takes the run down: an exception is logged and
handed to the spawner's ``on_error`` callback (the topic turns it into an
error state). Cancelling a :class:`Task` is thread-safe.

Exit: the shared thread is a daemon, so the interpreter would stop it
mid-goodbye when a program exits right after ``topic.dispose()``. A topic
leaving on it registers its ``when_disposed()`` waiter (``delay_exit``), and
an ``atexit`` hook waits for those, ``EXIT_TIMEOUT`` seconds in all, before
the interpreter tears the thread down; ``SharedRuntime.shutdown`` waits the
same way before it stops the thread. A trio caller's own run needs no such
help: a topic's goodbye is shielded there, and trio waits for it before
``trio.run`` returns.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import trio

if TYPE_CHECKING:
    from asyncmachine import Waiter

log = logging.getLogger("ampubsub.runtime")

T = TypeVar("T")
AsyncFn = Callable[..., Awaitable[Any]]
ErrorCallback = Callable[[BaseException], None]

#: at interpreter exit, how long in all to wait for topics still saying bye
EXIT_TIMEOUT = 3.0


class Task:
    """A spawned task: cancel it from any thread; wait for it to finish."""

    __slots__ = ("_cancel_requested", "_finished", "_runtime", "_scope", "done", "name")

    def __init__(self, runtime: Runtime, name: str) -> None:
        self._runtime = runtime
        self.name = name
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False
        self._finished: trio.Event | None = None
        self.done = threading.Event()

    def __repr__(self) -> str:
        state = "done" if self.done.is_set() else "running"
        return f"<Task {self.name} {state}>"

    def cancel(self) -> None:
        """Cancel the task (from any thread); a no-op once it finished."""
        self._cancel_requested = True
        if self.done.is_set():
            return
        self._runtime.call_soon(self._cancel_now)

    async def wait(self) -> None:
        """Wait (on this task's trio run) until the task has finished."""
        while not self.done.is_set():
            finished = self._finished
            if finished is None or not self._runtime.in_thread:
                await trio.sleep(0.01)  # not started yet, or another run
            else:
                await finished.wait()

    def _cancel_now(self) -> None:
        if self._scope is not None:
            self._scope.cancel()


class Runtime:
    """A trio run that hosts tasks for code that may live in other threads."""

    def __init__(
        self, token: trio.lowlevel.TrioToken, thread_id: int, clock_offset: float
    ) -> None:
        self.token = token
        self._thread_id = thread_id
        #: trio's clock minus ``perf_counter`` (trio's SystemClock adds an offset)
        self._clock_offset = clock_offset

    def now(self) -> float:
        """This run's clock, from any thread.

        In the trio thread it is ``trio.current_time()`` (virtual under a
        MockClock); elsewhere the same system clock, read through the offset
        measured when the runtime was made.
        """
        if self.in_thread:
            return trio.current_time()
        return time.perf_counter() + self._clock_offset

    @property
    def in_thread(self) -> bool:
        """True when called from this runtime's trio thread."""
        return threading.get_ident() == self._thread_id

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the trio thread soon (thread-safe, non-blocking)."""
        try:
            self.token.run_sync_soon(_guarded, fn, *args)
        except trio.RunFinishedError:
            log.debug("runtime finished; dropped a call to %r", fn)

    def spawn(
        self,
        fn: AsyncFn,
        *args: Any,
        name: str | None = None,
        on_error: ErrorCallback | None = None,
    ) -> Task:
        """Start ``fn(*args)`` as a task of this run; returns at once."""
        task = Task(self, name or str(getattr(fn, "__qualname__", repr(fn))))

        async def run() -> None:
            task._finished = trio.Event()
            try:
                with trio.CancelScope() as scope:
                    task._scope = scope
                    if task._cancel_requested:
                        scope.cancel()
                    await fn(*args)
            except Exception as error:
                log.debug("task %s failed", task.name, exc_info=True)
                if on_error is not None:
                    try:
                        on_error(error)
                    except Exception:
                        log.exception("on_error of task %s raised", task.name)
                else:
                    log.error("task %s failed: %r", task.name, error)
            finally:
                task.done.set()
                task._finished.set()

        def start() -> None:
            try:
                trio.lowlevel.spawn_system_task(run, name=task.name)
            except RuntimeError:  # the run is ending: nothing starts any more
                log.debug("run ending; task %s not started", task.name)
                task.done.set()

        if self.in_thread:
            start()
        else:
            self.call_soon(start)
        return task

    def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the trio thread and block for its result.

        Only for code outside this runtime's thread (it would deadlock there).
        """
        if self.in_thread:
            raise RuntimeError("Runtime.run called from its own trio thread")
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def delay_exit(self, done: Waiter) -> None:
        """A topic is leaving on this run: the process should wait for ``done``.

        Nothing to do on a caller's trio run (trio waits for the shielded
        goodbye before ``trio.run`` returns); the shared runtime waits at exit.
        """


class SharedRuntime(Runtime):
    """The process-wide background trio thread."""

    _instance: SharedRuntime | None = None
    _lock = threading.Lock()
    #: ``when_disposed()`` of topics leaving on the shared thread
    _leaving: ClassVar[list[Waiter]] = []
    _exit_hook = False

    def __init__(self) -> None:
        ready = threading.Event()
        holder: dict[str, Any] = {}

        async def main() -> None:
            holder["token"] = trio.lowlevel.current_trio_token()
            holder["offset"] = _clock_offset()
            holder["stop"] = trio.Event()
            ready.set()
            await holder["stop"].wait()

        def target() -> None:
            try:
                trio.run(main)
            except BaseException:  # the thread must never die silently
                log.exception("the shared ampubsub runtime crashed")
                raise
            finally:
                ready.set()

        thread = threading.Thread(target=target, name="ampubsub-trio", daemon=True)
        thread.start()
        ready.wait()
        if "token" not in holder:
            raise RuntimeError("the shared ampubsub trio runtime failed to start")
        super().__init__(holder["token"], thread.ident or 0, holder["offset"])
        self.thread = thread
        self._stop: trio.Event = holder["stop"]

    @classmethod
    def get(cls) -> SharedRuntime:
        """The shared runtime, started on first use (and after a shutdown)."""
        with cls._lock:
            instance = cls._instance
            if instance is None or not instance.thread.is_alive():
                instance = cls._instance = cls()
            return instance

    @classmethod
    def shutdown(cls, timeout: float = 10.0) -> None:
        """Stop the shared thread, cancelling every task still on it.

        Topics still saying bye get up to ``EXIT_TIMEOUT`` seconds first.
        """
        cls.wait_leaving(min(timeout, EXIT_TIMEOUT))
        with cls._lock:
            instance, cls._instance = cls._instance, None
        if instance is None or not instance.thread.is_alive():
            return
        instance.call_soon(instance._stop.set)
        instance.thread.join(timeout)

    def delay_exit(self, done: Waiter) -> None:
        """Make the interpreter's exit wait (bounded) until ``done``."""
        cls = SharedRuntime
        with cls._lock:
            cls._leaving = [w for w in cls._leaving if not w.done]
            cls._leaving.append(done)
            if not cls._exit_hook:
                cls._exit_hook = True
                atexit.register(cls.wait_leaving)

    @classmethod
    def wait_leaving(cls, timeout: float = EXIT_TIMEOUT) -> bool:
        """Wait until the topics leaving on the shared thread are disposed.

        True when they all are; False after ``timeout`` seconds in all, or at
        once when the shared thread is not running (nobody would finish
        them). The ``atexit`` hook of the shared runtime.
        """
        with cls._lock:
            leaving = cls._leaving = [w for w in cls._leaving if not w.done]
            instance = cls._instance
        if not leaving:
            return True
        if instance is None or not instance.thread.is_alive():
            return False
        deadline = time.monotonic() + timeout
        return all(w.wait(max(0.0, deadline - time.monotonic())) for w in leaving)


def _guarded(fn: Callable[..., Any], *args: Any) -> None:
    """Run a ``run_sync_soon`` callback; what it raises is logged: raised,
    it would crash the whole trio run and every topic on it."""
    try:
        fn(*args)
    except Exception:
        log.exception("a call on the runtime thread raised: %r", fn)


def run_is_ending() -> bool:
    """True in a task spawned here once its trio run is shutting down.

    A run cancels its system tasks (ours, and py-libp2p's listeners) when its
    main task returns; a goodbye on its way checks this not to wait any more.
    """
    nursery = trio.lowlevel.current_task().parent_nursery
    return nursery is not None and nursery.cancel_scope.cancel_called


def current_trio_runtime() -> Runtime | None:
    """A runtime on the caller's trio run, or None outside trio."""
    if "trio" not in sys.modules:
        return None
    try:
        token = trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None
    return Runtime(token, threading.get_ident(), _clock_offset())


def _clock_offset() -> float:
    """Measured in a trio thread: how far its clock is from ``perf_counter``."""
    return trio.current_time() - time.perf_counter()


def runtime_for_caller() -> Runtime:
    """The caller's trio run when there is one, else the shared background one."""
    return current_trio_runtime() or SharedRuntime.get()
