"""Where topics run: the caller's trio run, or one shared background trio thread.

Real threads and real time here (``ampubsub_plugin/_runtime.py``), so every
wait is bounded and nothing sleeps to synchronise: each test waits on an
event the runtime's thread sets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from ampubsub_plugin._runtime import SharedRuntime, runtime_for_caller

TIMEOUT = 5.0
#: how far two readings of one clock from two threads may be apart
CLOCK_SLACK = 0.005


@pytest.fixture
def shared() -> Iterator[SharedRuntime]:
    """The shared runtime, running (tests may shut it down; later ones restart it)."""
    yield SharedRuntime.get()


def test_get_returns_one_shared_thread_reused(shared: SharedRuntime) -> None:
    assert SharedRuntime.get() is shared
    assert shared.thread.is_alive() and shared.thread.name == "ampubsub-trio"
    assert shared.thread.daemon
    assert not shared.in_thread
    names = [t.name for t in threading.enumerate()]
    assert names.count("ampubsub-trio") == 1


def test_call_soon_runs_on_the_trio_thread(shared: SharedRuntime) -> None:
    seen: list[tuple[int, bool, bool]] = []
    done = threading.Event()

    def record(marker: str) -> None:
        assert marker == "x"
        in_trio = trio.lowlevel.current_trio_token() is shared.token
        seen.append((threading.get_ident(), shared.in_thread, in_trio))
        done.set()

    shared.call_soon(record, "x")
    assert done.wait(TIMEOUT)
    assert seen == [(shared.thread.ident, True, True)]


def test_spawn_runs_a_task_until_cancelled(shared: SharedRuntime) -> None:
    started = threading.Event()
    ended: list[str] = []

    async def forever(label: str) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            ended.append(label)

    task = shared.spawn(forever, "t", name="forever")
    assert task.name == "forever"
    assert started.wait(TIMEOUT)
    assert not task.done.is_set() and "running" in repr(task)
    task.cancel()
    assert task.done.wait(TIMEOUT)
    assert ended == ["t"] and "done" in repr(task)
    task.cancel()  # a no-op once finished


def test_a_task_cancelled_before_it_starts_stops_at_its_first_checkpoint(
    shared: SharedRuntime,
) -> None:
    ran = threading.Event()

    async def body() -> None:
        await trio.lowlevel.checkpoint()
        ran.set()

    gate = threading.Event()
    shared.call_soon(gate.wait, TIMEOUT)  # hold the trio thread for a moment
    task = shared.spawn(body)
    task.cancel()
    gate.set()
    assert task.done.wait(TIMEOUT)
    assert not ran.is_set()


def test_a_failing_task_reaches_on_error_and_the_run_survives(
    shared: SharedRuntime,
) -> None:
    errors: list[BaseException] = []

    async def fail() -> None:
        raise ValueError("boom")

    task = shared.spawn(fail, on_error=errors.append)
    assert task.done.wait(TIMEOUT)
    assert [str(e) for e in errors] == ["boom"]
    assert shared.thread.is_alive()
    assert shared.run(trio.lowlevel.checkpoint) is None


def test_now_from_another_thread_agrees_with_the_trio_clock(
    shared: SharedRuntime,
) -> None:
    for _ in range(5):
        before = shared.now()
        inside = shared.run(_current_time)
        after = shared.now()
        assert before - CLOCK_SLACK <= inside <= after + CLOCK_SLACK
        assert after - before < 1.0


async def _current_time() -> float:
    return trio.current_time()


def test_run_from_its_own_thread_is_refused(shared: SharedRuntime) -> None:
    async def nested() -> str:
        try:
            shared.run(trio.lowlevel.checkpoint)
        except RuntimeError as error:
            return str(error)
        return "ran"

    assert "its own trio thread" in shared.run(nested)


def test_shutdown_stops_the_thread_and_get_starts_a_new_one(
    shared: SharedRuntime,
) -> None:
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await trio.sleep_forever()

    task = shared.spawn(forever)
    assert started.wait(TIMEOUT)
    SharedRuntime.shutdown(timeout=TIMEOUT)
    assert not shared.thread.is_alive()
    assert task.done.is_set()  # its tasks were cancelled with it
    calls: list[str] = []
    shared.call_soon(calls.append, "late")  # a finished run: dropped, no error
    assert calls == []
    fresh = SharedRuntime.get()
    assert fresh is not shared and fresh.thread.is_alive()
    assert fresh.run(_current_time) >= 0
    SharedRuntime.shutdown(timeout=TIMEOUT)
    SharedRuntime.shutdown(timeout=TIMEOUT)  # twice: a no-op


def test_runtime_for_caller_inside_trio_is_the_callers_run() -> None:
    async def main() -> tuple[float, float]:
        runtime = runtime_for_caller()
        assert not isinstance(runtime, SharedRuntime)
        assert runtime.in_thread
        assert runtime.token is trio.lowlevel.current_trio_token()
        # the caller's clock, virtual under a MockClock
        trio.lowlevel.current_clock().jump(100.0)  # type: ignore[attr-defined]
        return runtime.now(), trio.current_time()

    now, trio_now = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert now == trio_now and now >= 100.0


def test_runtime_for_caller_outside_trio_is_the_shared_one() -> None:
    assert runtime_for_caller() is SharedRuntime.get()


def test_task_wait_returns_once_the_task_finished(shared: SharedRuntime) -> None:
    release = threading.Event()

    async def body() -> None:
        await trio.to_thread.run_sync(release.wait, TIMEOUT)

    async def waiter() -> bool:
        task = shared.spawn(body)
        before = task.done.is_set()
        release.set()
        with trio.fail_after(TIMEOUT):
            await task.wait()
        return not before and task.done.is_set()

    assert shared.run(waiter)


def test_a_call_that_raises_is_logged_and_the_shared_thread_survives(
    shared: SharedRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("Nursery is closed to new arrivals")

    after = threading.Event()
    with caplog.at_level("ERROR", logger="ampubsub.runtime"):
        shared.call_soon(broken)
        shared.call_soon(after.set)  # the run is still going
        assert after.wait(TIMEOUT)
    assert shared.thread.is_alive() and SharedRuntime.get() is shared
    assert "a call on the runtime thread raised" in caplog.text
