"""Waiting: the ``when*`` methods and state contexts of a Machine.

Why this module exists: ``waiting.py`` holds the mechanism (``Waiter``,
``Subscriptions``, ``StateContext``) and knows nothing of a machine's API;
this module is that API -- each ``when*`` method turns a question about the
clock into a waiter filed under the states it depends on. The core wakes
them: after each transition that changed the clock it hands the changed
states to ``_subs.process`` and to ``_expire_contexts``; so does
``Machine._show_time`` for a clock computed elsewhere.

Rule: register first, check second (see ``waiting.py``), so a transition
racing in another thread can wake a waiter twice but never miss it. A
disposed machine releases every new waiter at once with False.
``_cancel_waiters(reason)`` ends the pending condition waiters with a reason
(a machine fed from elsewhere, like a remote one, uses it when its source is
gone); subclasses that refuse new waiters for a while do it in ``_waiter``,
after registering, so that a cancellation racing with them is never missed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from ._checking import Checking
from ._schema import EXCEPTION, Names
from ._transition import Transition
from ._waiting import (
    ACTIVE,
    INACTIVE,
    ClockCondition,
    StateContext,
    Waiter,
    WaiterCancelled,
)

if TYPE_CHECKING:
    from ._machine import Machine


class WaitingAPI(Checking):
    """when, when_not, when_time, ... and new_state_ctx; built on the checks."""

    def when(self, states: Names) -> Waiter:
        """Done once all the states are active."""
        names = self._parse(states)
        return self._waiter(
            f"when({' '.join(names)})",
            names,
            self._condition([(n, ACTIVE) for n in names]),
        )

    def when_not(self, states: Names) -> Waiter:
        """Done once none of the states is active."""
        names = self._parse(states)
        return self._waiter(
            f"when_not({' '.join(names)})",
            names,
            self._condition([(n, INACTIVE) for n in names]),
        )

    def when_err(self) -> Waiter:
        return self.when(EXCEPTION)

    def when_time(self, states: Names, ticks: Iterable[int]) -> Waiter:
        """Done once each state's tick reached the given one."""
        names = self._parse(states)
        wanted = list(ticks)
        if len(wanted) != len(names):
            raise ValueError(
                f"when_time got {len(names)} states but {len(wanted)} ticks"
            )
        for tick in wanted:
            if not isinstance(tick, int) or isinstance(tick, bool):
                raise TypeError(f"when_time needs ticks as ints, got {tick!r}")
        return self._waiter(
            f"when_time({names}, {wanted})",
            names,
            # ticks are never negative: a wanted one below 0 holds like 0
            self._condition(
                [(n, max(t, 0)) for n, t in zip(names, wanted, strict=True)]
            ),
        )

    def when_ticks(self, state: str, ticks: int) -> Waiter:
        """Done once the state's tick grew by ``ticks`` from now."""
        return self.when_time(state, [self.tick(state) + ticks])

    def when_args(self, state: str, args: Mapping[str, Any]) -> Waiter:
        """Done once ``state`` is activated by a mutation carrying these args."""
        name = self._parse(state)[0]
        wanted = dict(args)

        def carries_args(tx: Transition | None) -> bool:
            if tx is None:
                return False
            given = tx.mutation.args
            return all(k in given and given[k] == v for k, v in wanted.items())

        waiter = Waiter(
            f"when_args({name}, {wanted})",
            self._condition([(name, ACTIVE)], carries_args),
        )
        self._subs.add(waiter, (name,))
        if self._disposed:
            waiter._fire(False)
        return waiter

    def _condition(
        self,
        needs: list[tuple[str, int]],
        tx_check: Callable[[Transition | None], bool] | None = None,
    ) -> ClockCondition:
        return ClockCondition(cast("Machine", self), needs, tx_check)

    def when_query(self, query: Callable[[dict[str, int]], bool]) -> Waiter:
        """Done once ``query(clock)`` returns true; checked after each change."""
        return self._waiter(
            f"when_query({getattr(query, '__name__', query)})",
            None,
            lambda _tx: bool(query(self.clock())),
        )

    def when_disposed(self) -> Waiter:
        waiter = Waiter(f"when_disposed({self._id})")
        if self._disposed:
            waiter._fire(True)
        else:
            self._subs.add_disposed(waiter)
            if self._disposed:
                waiter._fire(True)
        return waiter

    def when_queue_end(self) -> Waiter:
        """Done once the queue is drained (at once when the machine is idle)."""
        waiter = Waiter(f"when_queue_end({self._id})")
        with self._lock:
            busy = self._running
            if busy:
                self._subs.add_queue_end(waiter)
        if not busy:
            waiter._fire(not self._disposed)
        return waiter

    def when_queue(self, tick: int) -> Waiter:
        """Done once the mutation of queue tick ``tick`` has been processed.

        See ``Machine.queue_tick`` and ``Machine.last_queue_tick``. Done at
        once for a tick already processed; released (False) on disposal.
        """
        if not isinstance(tick, int) or isinstance(tick, bool):
            raise TypeError(f"when_queue needs a queue tick (int), got {tick!r}")
        waiter = Waiter(f"when_queue({tick})")
        if self._disposed:
            waiter._fire(False)
            return waiter
        with self._lock:
            passed = self._queue_tick >= tick
            if not passed:
                self._subs.add_queue_tick(waiter, tick)
        if passed:
            waiter._fire(True)
        elif self._disposed:
            waiter._fire(False)
        return waiter

    def _cancel_waiters(self, reason: WaiterCancelled | None) -> None:
        """End every pending state waiter unmet, with ``reason`` (None: release).

        ``when_disposed`` and ``when_queue_end`` waiters are not touched.
        """
        self._subs.cancel(reason)

    def _waiter(
        self,
        description: str,
        states: tuple[str, ...] | None,
        check: Callable[[Transition | None], bool],
    ) -> Waiter:
        waiter = Waiter(description, check)
        if self._disposed:
            waiter._fire(False)
            return waiter
        self._subs.add(waiter, states)
        if check(None):
            waiter._fire(True)
        elif self._disposed:
            waiter._fire(False)
        return waiter

    # -- state contexts --------------------------------------------------

    def new_state_ctx(self, state: str) -> StateContext:
        """A context valid until ``state``'s tick changes (also when inactive)."""
        return StateContext(cast("Machine", self), self._parse(state)[0])

    def _watch_context(self, ctx: StateContext) -> None:
        with self._lock:
            self._contexts.setdefault(ctx.state, []).append(ctx)

    def _cancel_contexts(self, state: str) -> None:
        """Expire every context of ``state`` made so far, its tick unchanged."""
        with self._lock:
            self._ctx_epochs[state] = self._ctx_epochs.get(state, 0) + 1
        self._expire_contexts([state])

    def _expire_contexts(self, changed: list[str]) -> None:
        expired: list[StateContext] = []
        with self._lock:
            for state in changed:
                expired.extend(self._contexts.pop(state, ()))
        for ctx in expired:
            ctx._expire()
