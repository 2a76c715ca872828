"""Handler timeouts: ``Machine(..., handler_timeout=seconds)``.

As asyncmachine-go's ``HandlerTimeout``: a handler that overruns ends its
transition as canceled and the machine gets ``Exception`` with a
:class:`HandlerTimeoutError` naming the handler and the state. Here the
state's contexts are cancelled too, tracers hear of it, and the late handler
goes on in an abandoned thread (Python can't stop it) while the machine
carries on with a fresh one. No test sleeps to synchronise: slow handlers
block on events the test releases.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import trio

from asyncmachine import (
    EXCEPTION,
    HandlerTimeoutError,
    Machine,
    Result,
    State,
    StateContext,
)

TIMEOUT = 0.05
LONG = 10.0  # bound on every wait of a test; never reached when it passes

SCHEMA = {"Slow": State(), "Fast": State(), "Other": State()}


class Handlers:
    """``Slow_enter`` (or ``Slow_state``) blocks until ``release`` is set."""

    def __init__(self, final: bool = False) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.finished = threading.Event()
        self.ctx: StateContext | None = None
        self.ctx_expired_in_handler: bool | None = None
        self.late_result: Any = None
        self.threads: list[int] = []
        if final:
            self.Slow_state = self._slow
        else:
            self.Slow_enter = self._slow

    def _slow(self, e: Any) -> bool:
        self.threads.append(threading.get_ident())
        self.ctx = e.machine.new_state_ctx("Slow")
        self.started.set()
        self.release.wait(LONG)
        self.ctx_expired_in_handler = self.ctx.expired
        self.finished.set()
        return True

    def Fast_enter(self, e: Any) -> bool:
        self.threads.append(threading.get_ident())
        return True


def test_an_overrunning_handler_cancels_and_raises_exception() -> None:
    m = Machine(SCHEMA, handler_timeout=TIMEOUT)
    h = Handlers()
    m.bind(h)
    assert m.add("Slow") == Result.CANCELED
    assert not m.is_active("Slow")
    assert m.is_active(EXCEPTION)
    err = m.err
    assert isinstance(err, HandlerTimeoutError)
    assert isinstance(err, TimeoutError)
    assert (err.handler, err.state, err.timeout) == ("Slow_enter", "Slow", TIMEOUT)
    assert "Slow_enter" in str(err) and "'Slow'" in str(err)
    # the forked work sees its state's context cancelled, tick unchanged
    assert h.ctx is not None and h.ctx.expired
    assert m.tick("Slow") == 0
    h.release.set()
    assert h.finished.wait(LONG)
    assert h.ctx_expired_in_handler is True
    assert not m.is_active("Slow")  # the late True changed nothing


def test_the_machine_goes_on_with_a_fresh_handler_thread() -> None:
    m = Machine(SCHEMA, handler_timeout=TIMEOUT)
    h = Handlers()
    m.bind(h)
    m.add("Slow")
    m.remove(EXCEPTION)
    assert m.add("Fast") == Result.EXECUTED
    assert m.is_active("Fast")
    assert h.threads[0] != h.threads[1]  # the stuck one kept its own thread
    assert h.threads[1] != threading.get_ident()
    h.release.set()
    assert h.finished.wait(LONG)


def test_handlers_in_time_run_as_without_a_timeout() -> None:
    calls: list[str] = []

    class Quick:
        def Fast_enter(self, e: Any) -> None:
            calls.append("enter")

        def Fast_state(self, e: Any) -> None:
            calls.append("state")

        def Other_enter(self, e: Any) -> bool:
            return False

        def Exception_state(self, e: Any) -> None:
            calls.append(type(e.args["err"]).__name__)

        def Fast_end(self, e: Any) -> None:
            raise KeyError("boom")

    m = Machine(SCHEMA, handler_timeout=5)
    m.bind(Quick())
    assert m.add("Fast") == Result.EXECUTED
    assert m.add("Other") == Result.CANCELED
    assert m.remove("Fast") == Result.CANCELED  # Fast_end raised: put back
    assert calls == ["enter", "state", "KeyError"]
    assert isinstance(m.err, KeyError)


def test_a_final_handler_overrunning_puts_its_state_back() -> None:
    m = Machine(SCHEMA, handler_timeout=TIMEOUT)
    h = Handlers(final=True)
    m.bind(h)
    assert m.add("Slow") == Result.CANCELED
    assert not m.is_active("Slow")
    assert m.tick("Slow") == 2  # activated, then put back
    err = m.err
    assert isinstance(err, HandlerTimeoutError)
    assert err.handler == "Slow_state"
    h.release.set()
    assert h.finished.wait(LONG)


def test_tracers_hear_of_the_timeout() -> None:
    seen: list[tuple[str, str]] = []

    class Tracer:
        def handler_start(self, tx: Any, emitter: str, handler: str) -> None:
            seen.append(("start", handler))

        def handler_end(self, tx: Any, emitter: str, handler: str) -> None:
            seen.append(("end", handler))

        def handler_timeout(self, tx: Any, handler: str, err: Exception) -> None:
            assert isinstance(err, HandlerTimeoutError)
            seen.append(("timeout", handler))

    m = Machine(SCHEMA, handler_timeout=TIMEOUT, tracers=[Tracer()])
    h = Handlers()
    m.bind(h)
    m.add("Slow")
    assert seen[:3] == [
        ("start", "Slow_enter"),
        ("timeout", "Slow_enter"),
        ("end", "Slow_enter"),
    ]
    h.release.set()
    assert h.finished.wait(LONG)


def test_mutations_from_the_handler_thread_are_the_runners() -> None:
    """A handler on the handler thread queues, and can_add answers, as usual."""
    results: list[Any] = []

    class Queuing:
        def Fast_enter(self, e: Any) -> None:
            results.append(e.machine.add("Other"))
            results.append(e.machine.can_add("Other"))

    m = Machine(SCHEMA, handler_timeout=5)
    m.bind(Queuing())
    assert m.add("Fast") == Result.EXECUTED
    assert results == [Result.QUEUED, Result.EXECUTED]
    assert m.is_active("Other")


def mutate_in_thread(m: Machine) -> threading.Thread:
    t = threading.Thread(target=m.add, args=("Slow",), daemon=True)
    t.start()
    return t


def test_asyncio_waiter_wakes_on_a_timeout_in_another_thread() -> None:
    m = Machine(SCHEMA, handler_timeout=TIMEOUT)
    h = Handlers()
    m.bind(h)

    async def main() -> bool:
        waiter = m.when_err()
        mutate_in_thread(m)
        return await asyncio.wait_for(waiter, LONG)

    assert asyncio.run(main()) is True
    assert isinstance(m.err, HandlerTimeoutError)
    h.release.set()


def test_trio_waiter_wakes_on_a_timeout_in_another_thread() -> None:
    m = Machine(SCHEMA, handler_timeout=TIMEOUT)
    h = Handlers()
    m.bind(h)

    async def main() -> bool:
        waiter = m.when_err()
        mutate_in_thread(m)
        with trio.fail_after(LONG):
            return await waiter

    assert trio.run(main) is True
    assert isinstance(m.err, HandlerTimeoutError)
    h.release.set()


def test_thread_waiter_wakes_on_a_timeout() -> None:
    m = Machine(SCHEMA, handler_timeout=TIMEOUT)
    h = Handlers()
    m.bind(h)
    waiter = m.when_err()
    t = mutate_in_thread(m)
    assert waiter.wait(LONG)
    t.join(LONG)
    assert not t.is_alive()
    h.release.set()


@pytest.mark.parametrize("bad", [0, -1, "1", True, float("nan")])
def test_a_bad_handler_timeout_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="handler_timeout"):
        Machine(SCHEMA, handler_timeout=bad)


def test_no_timeout_runs_handlers_on_the_mutating_thread() -> None:
    m = Machine(SCHEMA)
    h = Handlers()
    m.bind(h)
    h.release.set()
    m.add("Slow")
    assert h.threads == [threading.get_ident()]


def test_dispose_stops_the_handler_thread() -> None:
    m = Machine(SCHEMA, handler_timeout=5)
    h = Handlers()
    m.bind(h)
    m.add("Fast")
    loop = m._handler_loop
    assert loop is not None and loop.thread.is_alive()
    m.dispose()
    loop.thread.join(LONG)
    assert not loop.thread.is_alive()


def test_eval_is_under_the_handler_timeout_too() -> None:
    m = Machine(SCHEMA, handler_timeout=TIMEOUT)
    release = threading.Event()
    assert m.eval(lambda: release.wait(LONG), timeout=LONG) is False
    err = m.err
    assert isinstance(err, HandlerTimeoutError) and err.handler == "eval"
    release.set()
    assert m.eval(lambda: None) is True


def test_the_late_handler_mutates_like_any_other_thread() -> None:
    m = Machine(SCHEMA, handler_timeout=TIMEOUT)
    late_result: list[Result] = []
    release, done = threading.Event(), threading.Event()

    class Late:
        def Slow_enter(self, e: Any) -> None:
            release.wait(LONG)
            late_result.append(e.machine.add("Other"))
            done.set()

    m.bind(Late())
    assert m.add("Slow") == Result.CANCELED
    release.set()
    assert done.wait(LONG)
    # not a handler any more: the machine was idle, so it ran at once
    assert late_result == [Result.EXECUTED]
    assert m.is_active("Other") and not m.is_active("Slow")
