"""How a waiter ended: met, released, cancelled with a reason, or still pending.

``wait()`` keeps returning a bool (True only when met) and ``await`` keeps
returning True when met and False when released (disposal, ``cancel()``), as
API.md says. A waiter cancelled with a reason (``cancel(reason)``, or a
machine's ``_cancel_waiters(reason)``, which a remote machine uses when its
owner is gone) is a third outcome: ``wait()`` returns False, ``await`` raises
the reason (a ``WaiterCancelled``), and ``waiter.outcome`` / ``waiter.reason``
tell every case apart afterwards.

No sleeps: the cancelling side runs in a thread or is scheduled with
call_soon / start_soon, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from asyncmachine import Machine, Outcome, State, Waiter, WaiterCancelled, any_of

TIMEOUT = 5


class Gone(WaiterCancelled):
    """A reason of our own, as a plugin would define one."""


def machine() -> Machine:
    return Machine({"A": State(), "B": State()}, id="m")


def test_each_outcome_is_told_apart() -> None:
    m = machine()
    pending, met, released, cancelled = (m.when("A") for _ in range(4))
    assert not pending.wait(0.01)
    assert pending.outcome is Outcome.PENDING  # wait() timed out
    released.cancel()
    reason = Gone("the owner left")
    cancelled.cancel(reason)
    m.add("A")
    assert met.wait(0) and met.outcome is Outcome.MET and met.reason is None
    assert not released.wait(0) and released.outcome is Outcome.RELEASED
    assert released.reason is None
    assert not cancelled.wait(0) and cancelled.outcome is Outcome.CANCELLED
    assert cancelled.reason is reason
    assert "cancelled" in repr(cancelled)


def test_cancel_with_a_message_makes_a_waiter_cancelled() -> None:
    waiter = machine().when("A")
    waiter.cancel("no longer needed")
    assert isinstance(waiter.reason, WaiterCancelled)
    assert str(waiter.reason) == "no longer needed"


def test_an_ended_waiter_keeps_its_outcome() -> None:
    m = machine()
    waiter = m.when("A")
    m.add("A")
    waiter.cancel(Gone("late"))
    assert waiter.outcome is Outcome.MET and waiter.reason is None
    cancelled = m.when("B")
    cancelled.cancel(Gone("first"))
    m.add("B")
    cancelled.complete()
    assert cancelled.outcome is Outcome.CANCELLED


def test_a_thread_waiting_is_woken_by_a_cancellation() -> None:
    waiter = machine().when("A")
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(waiter.wait(TIMEOUT)))
    thread.start()
    waiter.cancel(Gone("bye"))
    thread.join(TIMEOUT)
    assert results == [False]
    assert waiter.outcome is Outcome.CANCELLED


def test_disposal_still_releases_with_false() -> None:
    m = machine()
    waiter = m.when("A")
    m.dispose()
    assert not waiter.wait(0)
    assert waiter.outcome is Outcome.RELEASED


def test_cancel_waiters_ends_state_waiters_not_the_machines_own() -> None:
    m = machine()
    m.add("B")
    state_waiters = [m.when("A"), m.when_not("B"), m.when_ticks("B", 2)]
    query = m.when_query(lambda clock: clock["A"] > 5)
    disposed = m.when_disposed()
    m._cancel_waiters(Gone("source gone"))
    for waiter in [*state_waiters, query]:
        assert waiter.outcome is Outcome.CANCELLED, waiter
    assert not disposed.done
    # later waiters wait as usual
    again = m.when("A")
    assert not again.done
    m.add("A")
    assert again.wait(0)
    m.dispose()
    assert disposed.wait(0)


def test_cancel_waiters_without_a_reason_releases_them() -> None:
    m = machine()
    waiter = m.when("A")
    m._cancel_waiters(None)
    assert waiter.outcome is Outcome.RELEASED


def test_any_of_ends_as_its_first_waiter_did() -> None:
    m = machine()
    first, second = m.when("A"), m.when("B")
    combined = any_of(first, second)
    reason = Gone("bye")
    first.cancel(reason)
    assert combined.outcome is Outcome.CANCELLED and combined.reason is reason
    done = Waiter("done")
    done.cancel(reason)
    assert any_of(done, m.when("B")).reason is reason


# -- asyncio ------------------------------------------------------------------------


def test_asyncio_await_raises_the_reason() -> None:
    async def main() -> None:
        waiter = machine().when("A")
        loop = asyncio.get_running_loop()
        loop.call_soon(waiter.cancel, Gone("bye"))
        with pytest.raises(Gone, match="bye"):
            await asyncio.wait_for(waiter, TIMEOUT)
        # awaiting it again raises again; a released one returns False
        with pytest.raises(Gone):
            await waiter
        released = machine().when("A")
        released.cancel()
        assert await released is False

    asyncio.run(main())


def test_asyncio_await_cancelled_from_another_thread() -> None:
    async def main() -> None:
        waiter = machine().when("A")
        thread = threading.Thread(target=waiter.cancel, args=(Gone("bye"),))
        loop = asyncio.get_running_loop()
        loop.call_soon(thread.start)
        with pytest.raises(WaiterCancelled):
            await asyncio.wait_for(waiter, TIMEOUT)
        thread.join(TIMEOUT)

    asyncio.run(main())


# -- trio ---------------------------------------------------------------------------


def test_trio_await_raises_the_reason() -> None:
    async def main() -> None:
        waiter = machine().when("A")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_soon, waiter)
            with pytest.raises(Gone, match="bye"), trio.fail_after(TIMEOUT):
                await waiter
        released = machine().when("A")
        released.cancel()
        assert await released is False

    trio.run(main)


async def _cancel_soon(waiter: Waiter) -> None:
    waiter.cancel(Gone("bye"))


def test_trio_await_cancelled_from_another_thread() -> None:
    async def main() -> None:
        waiter = machine().when("A")
        thread = threading.Thread(target=waiter.cancel, args=(Gone("bye"),))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_start, thread)
            with pytest.raises(WaiterCancelled), trio.fail_after(TIMEOUT):
                await waiter
        thread.join(TIMEOUT)

    trio.run(main)


async def _start(thread: threading.Thread) -> None:
    thread.start()
