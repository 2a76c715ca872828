"""Waiting plans: each "eventually" check written once, run in threads or trio.

A plan is a generator that yields asyncmachine waiters (remote clocks, topic
states) and is told whether each was met in time. :func:`run_sync` drives it
with ``waiter.wait(timeout)`` in a plain thread; :func:`run_trio` with
``await waiter`` under a trio cancel scope. Because plans wait on the
waiters of the machines themselves, a state that is active for a moment
between two looks is still seen: the waiter latches on the transition.

Both runners give up at the deadline, and fail at once when a peer's topic
crashed (its machine entered ``Exception``) rather than wait the timeout out.
A waiter can also end unmet (its machine was disposed, or a remote machine's
owner left: ``OwnerGone``): the runners tell the plan ``False``, and a plan
that needed it met raises :class:`Ended` (see :func:`met`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from typing import Any

from asyncmachine import Waiter, WaiterCancelled

Plan = Generator[Waiter, bool, Any]

#: how often a blocked runner looks for crashed peers
CRASH_CHECK = 0.25


class Timeout(Exception):
    """A plan's waiter was not met before the deadline (internal)."""

    def __init__(self, waiter: Waiter) -> None:
        super().__init__(waiter.description)
        self.waiter = waiter


class Ended(Timeout):
    """A plan's waiter ended unmet before the deadline (internal)."""

    def __init__(self, waiter: Waiter) -> None:
        why = waiter.reason or "its machine was disposed"
        waiter.description = f"{waiter.description}; it ended unmet: {why}"
        super().__init__(waiter)


def met(waiter: Waiter, result: bool) -> None:
    """In a plan, after ``result = yield waiter``: fail unless it was met."""
    if not result:
        raise Ended(waiter)


def run_sync(plan: Plan, deadline: float, crashed: Callable[[], None]) -> Any:
    """Drive ``plan`` in this thread; returns the plan's return value."""
    __tracebackhide__ = True
    try:
        waiter = next(plan)
        while True:
            while True:
                crashed()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(waiter)  # even if done: a plan may never settle
                if waiter.done:
                    break
                waiter.wait(min(remaining, CRASH_CHECK))
            waiter = plan.send(waiter.result)
    except StopIteration as done:
        return done.value


async def run_trio(plan: Plan, deadline: float, crashed: Callable[[], None]) -> Any:
    """Drive ``plan`` on the caller's trio run (deadline in ``time.monotonic``)."""
    __tracebackhide__ = True
    import trio

    try:
        waiter = next(plan)
        while True:
            while True:
                crashed()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(waiter)  # even if done: a plan may never settle
                if waiter.done:
                    await trio.lowlevel.checkpoint()
                    break
                # ended unmet (WaiterCancelled): the plan is told so below
                with (
                    trio.move_on_after(min(remaining, CRASH_CHECK)),
                    contextlib.suppress(WaiterCancelled),
                ):
                    await waiter
            waiter = plan.send(waiter.result)
    except StopIteration as done:
        return done.value


async def run_asyncio(plan: Plan, deadline: float, crashed: Callable[[], None]) -> Any:
    """Drive ``plan`` on the caller's asyncio loop (topics run elsewhere)."""
    __tracebackhide__ = True
    import asyncio

    try:
        waiter = next(plan)
        while True:
            while True:
                crashed()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(waiter)  # even if done: a plan may never settle
                if waiter.done:
                    await asyncio.sleep(0)
                    break
                with contextlib.suppress(WaiterCancelled, TimeoutError):
                    await asyncio.wait_for(
                        _awaited(waiter), timeout=min(remaining, CRASH_CHECK)
                    )
            waiter = plan.send(waiter.result)
    except StopIteration as done:
        return done.value


async def _awaited(waiter: Waiter) -> bool:
    return await waiter
