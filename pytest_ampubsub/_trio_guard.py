"""Telling a live trio run from a dead one, and finishing a dead one.

pytest-timeout (``signal`` method) raises its failure from a SIGALRM handler.
When that lands while a trio test's run waits for I/O (``epoll.poll`` inside
``trio.run``), the exception leaves ``trio.run`` without finishing the run:
trio's run generator is left suspended and the run stays installed in this
thread. Until it is collected, ``trio.lowlevel.in_trio_run()`` says True in
every later test, the next ``trio.run`` fails with "Attempted to call run()
from inside a run()", and the abandoned run's tasks (topics, sockets) never
end. One timeout then fails every later test.

:func:`finish_abandoned_run` drives such a run to its end from the outside:
it cancels everything in it and keeps feeding it I/O events, as ``trio.run``
would have, until the run returns (or a bound passes, then it is closed).
This reaches into trio's internals (the run generator, ``Runner``), checked
against trio 0.35; anything unexpected falls back to doing nothing.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
import types
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger("pytest_ampubsub.trio_guard")

#: how long a dead run gets to end after everything in it was cancelled
FINISH_TIMEOUT = 5.0


def in_live_trio_task() -> bool:
    """True only when called from a task of a trio run that is running now.

    ``in_trio_run()`` alone is fooled by an abandoned run (see the module
    docstring); a live task's coroutine is on the stack, so it is running.
    """
    trio = sys.modules.get("trio")
    if trio is None or not trio.lowlevel.in_trio_task():
        return False
    try:
        return bool(trio.lowlevel.current_task().coro.cr_running)
    except (RuntimeError, AttributeError):
        return False


def _abandoned_runner() -> Any:
    """The non-guest trio run installed in this thread while no task runs."""
    trio = sys.modules.get("trio")
    if trio is None or not trio.lowlevel.in_trio_run() or in_live_trio_task():
        return None
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT
    except ImportError:  # pragma: no cover - another trio layout
        return None
    runner = getattr(GLOBAL_RUN_CONTEXT, "runner", None)
    if runner is None or getattr(runner, "is_guest", False):
        return None  # a guest run (anyio's trio runner) lives between tests
    return runner


def _run_generator(runner: Any) -> types.GeneratorType[Any, Any, Any] | None:
    """The suspended ``unrolled_run`` generator that drives ``runner``."""
    from trio._core import _run

    code = _run.unrolled_run.__code__
    # a suspended generator holds its frame's locals itself (3.11+)
    for gen in gc.get_referrers(runner):
        if isinstance(gen, types.GeneratorType) and gen.gi_code is code:
            return gen
    return None


def finish_abandoned_run(
    before: Sequence[Callable[[], Awaitable[Any]]] = (),
    timeout: float = FINISH_TIMEOUT,
) -> bool:
    """End a trio run abandoned in this thread; True if there was one.

    ``before`` are awaited in the run first (closing its networks cleanly),
    then everything still in it is cancelled.
    """
    runner = _abandoned_runner()
    if runner is None:
        return False
    gen = _run_generator(runner)
    from trio._core._run import GLOBAL_RUN_CONTEXT

    if gen is None or gen.gi_running:
        log.warning("clearing an abandoned trio run that could not be finished")
        GLOBAL_RUN_CONTEXT.__dict__.clear()
        return True
    log.warning("finishing a trio run abandoned by an exception (a test timeout?)")
    import sniffio

    previous, sniffio.thread_local.name = sniffio.thread_local.name, "trio"
    deadline = time.monotonic() + timeout
    try:
        if runner.system_nursery is not None:
            import trio

            async def wind_up() -> None:
                with trio.move_on_after(timeout / 2):
                    for step in before:
                        try:
                            await step()
                        except Exception:
                            log.debug("a step before the end failed", exc_info=True)
                runner.system_nursery.cancel_scope.cancel("abandoned run")

            trio.lowlevel.spawn_system_task(wind_up, name="ampubsub-wind-up")
        events = runner.io_manager.get_events(0)
        while True:
            try:
                wait = gen.send(events)
            except StopIteration:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("the abandoned trio run did not end; closing it")
                break
            events = runner.io_manager.get_events(min(wait, remaining))
    except BaseException:  # the run is being thrown away: never let it out
        log.debug("finishing the abandoned trio run raised", exc_info=True)
    finally:
        sniffio.thread_local.name = previous
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                gen.close()
            except BaseException:
                log.debug("closing the abandoned trio run raised", exc_info=True)
        GLOBAL_RUN_CONTEXT.__dict__.clear()
    return True
