"""Waiters: one-shot conditions on a machine, awaitable anywhere.

Theory of operation: a :class:`Waiter` is registered with the machine's
:class:`Subscriptions` under the states whose ticks it depends on. After each
transition the machine hands over the states whose ticks changed; only the
waiters filed under those states are checked, so an idle subscription costs
nothing on the hot path. Registration files the waiter first and checks the
condition second, so a transition racing with it in another thread can only
wake it twice (which is harmless), never zero times.

Firing a waiter never runs user code on the machine's thread: a blocked
thread is released through a ``threading.Event``; an asyncio task through
``loop.call_soon_threadsafe``; a trio task through its run's trio token. The
machine holds waiters weakly: a waiter nobody holds any more is dropped.

Outcomes: a waiter ends once, in one of three ways (:class:`Outcome`): its
condition was met (``MET``), it was released without a reason (``RELEASED``:
the machine was disposed, or ``cancel()``), or it was cancelled with a
reason (``CANCELLED``: ``cancel(reason)``; a remote machine does this when
its owner is gone). ``wait()`` and ``await`` return True only for ``MET``;
``await`` raises the reason, a :class:`WaiterCancelled`, for ``CANCELLED``,
so async code tells the three apart without keeping the waiter; threads
read ``waiter.outcome`` after ``wait()`` returned False (still ``PENDING``:
it timed out).
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ._errors import AsyncMachineError

if TYPE_CHECKING:
    from ._machine import Machine
    from ._transition import Transition

log = logging.getLogger("asyncmachine.waiting")

Check = Callable[["Transition | None"], bool]


class WaiterCancelled(AsyncMachineError):
    """A waiter was cancelled with this reason before its condition was met.

    ``await waiter`` raises it (a fresh traceback each time); ``wait()``
    returns False and leaves it in ``waiter.reason``. Subclasses say why, for
    example ``ampubsub_plugin.OwnerGone`` for a remote machine whose owner
    left. It is an ``Exception``, unrelated to asyncio's and trio's own
    cancellation.
    """


class Outcome(enum.Enum):
    """How a :class:`Waiter` ended, or ``PENDING`` while it has not."""

    #: not done yet (a ``wait(timeout)`` that returned False timed out)
    PENDING = "pending"
    #: the condition was met: ``wait()`` and ``await`` returned True
    MET = "met"
    #: released without a reason (the machine was disposed, or ``cancel()``):
    #: ``wait()`` and ``await`` returned False
    RELEASED = "released"
    #: cancelled with a reason (``waiter.reason``): ``wait()`` returned False,
    #: ``await`` raised the reason
    CANCELLED = "cancelled"


class Waiter:
    """A one-shot condition: ``.wait(timeout)`` in threads, ``await`` in async code.

    Both return True when the condition was met and False when the machine
    was disposed first, the waiter was released (``cancel()``), or
    (``wait``) time ran out. A waiter cancelled with a reason
    (``cancel(reason)``, e.g. a remote machine's owner is gone) makes
    ``wait()`` return False and ``await`` raise that :class:`WaiterCancelled`.
    ``outcome`` tells every case apart afterwards::

        w = remote.when("Done")
        if w.wait(5): ...                         # met
        elif w.outcome is Outcome.CANCELLED: ...  # w.reason says why
        elif w.outcome is Outcome.PENDING: ...    # timed out
        else: ...                                 # RELEASED (disposed)
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_check",
        "_event",
        "_keep",
        "_lock",
        "_reason",
        "_result",
        "description",
    )

    def __init__(self, description: str, check: Check | None = None) -> None:
        self.description = description
        self._check = check
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._result = False
        self._reason: WaiterCancelled | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._keep: tuple[Waiter, ...] = ()

    def __repr__(self) -> str:
        return f"<Waiter {self.description} {self.outcome.value}>"

    @property
    def done(self) -> bool:
        return self._event.is_set()

    @property
    def result(self) -> bool:
        """True once met; False while pending or when released without it."""
        return self._result

    @property
    def outcome(self) -> Outcome:
        """How it ended: ``PENDING`` until done (see :class:`Outcome`)."""
        if not self._event.is_set():
            return Outcome.PENDING
        if self._result:
            return Outcome.MET
        return Outcome.RELEASED if self._reason is None else Outcome.CANCELLED

    @property
    def reason(self) -> WaiterCancelled | None:
        """Why it was cancelled (``CANCELLED``); None otherwise."""
        return self._reason

    def wait(self, timeout: float | None = None) -> bool:
        """Block this thread until done; False on timeout, release or cancellation."""
        if self._event.wait(timeout):
            return self._result
        return False

    def cancel(self, reason: WaiterCancelled | str | None = None) -> None:
        """End the waiter unmet (a no-op once it is done).

        Without a reason it is released: ``wait()`` and ``await`` return
        False. With one (a :class:`WaiterCancelled`, or a message for one)
        ``wait()`` returns False and ``await`` raises it.
        """
        if isinstance(reason, str):
            reason = WaiterCancelled(reason)
        self._fire(False, reason)

    def complete(self) -> None:
        """Release everyone waiting with True (for waiters made by hand)."""
        self._fire(True)

    def _fire(self, result: bool, reason: WaiterCancelled | None = None) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._result = result
            self._reason = None if result else reason
            self._check = None
            self._keep = ()
            callbacks, self._callbacks = self._callbacks, []
            self._event.set()
        for wake in callbacks:
            try:
                wake()
            except Exception:  # a closed loop must not break the machine
                log.debug("could not wake a waiter for %s", self.description)

    def _settled(self) -> bool:
        """The result for ``await``: raises the reason of a cancellation."""
        reason = self._reason
        if reason is not None:
            raise reason.with_traceback(None)
        return self._result

    def _add_callback(self, wake: Callable[[], None]) -> bool:
        with self._lock:
            if self._event.is_set():
                return False
            self._callbacks.append(wake)
            return True

    def _remove_callback(self, wake: Callable[[], None]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._callbacks.remove(wake)

    def __await__(self) -> Generator[Any, None, bool]:
        return self._wait_async().__await__()

    async def _wait_async(self) -> bool:
        if self._event.is_set():
            return self._settled()
        if _asyncio_running():
            await self._wait_asyncio()
            return self._settled()
        if "trio" in sys.modules:
            await self._wait_trio()
            return self._settled()
        raise RuntimeError(
            "await a Waiter under asyncio or trio; in threads call .wait(timeout)"
        )

    async def _wait_asyncio(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(resolve)

        if self._add_callback(wake):
            try:
                await future
            finally:
                self._remove_callback(wake)

    async def _wait_trio(self) -> None:
        import trio

        token = trio.lowlevel.current_trio_token()
        event = trio.Event()

        def wake() -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(event.set)

        if self._add_callback(wake):
            try:
                await event.wait()
            finally:
                self._remove_callback(wake)


def any_of(*waiters: Waiter) -> Waiter:
    """A waiter done as soon as one of ``waiters`` is, and as it ended.

    True if that one was met; released or cancelled (with its reason) if it
    was.
    """
    combined = Waiter("any_of(" + ", ".join(w.description for w in waiters) + ")")
    combined._keep = waiters  # machines hold waiters weakly; keep them alive
    for waiter in waiters:

        def relay(source: Waiter = waiter) -> None:
            combined._fire(source._result, source._reason)

        if not waiter._add_callback(relay):
            combined._fire(waiter._result, waiter._reason)
            break
    return combined


def _asyncio_running() -> bool:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


Ref = weakref.ref[Waiter]

#: what a :class:`ClockCondition` needs of a state's tick
ACTIVE, INACTIVE = -1, -2


class ClockCondition:
    """A waiter's check on the clock that also says when to look again.

    ``needs`` pairs a state with what it needs: ``ACTIVE``, ``INACTIVE``, or
    a tick to reach. :meth:`park` names the first state still short of it
    and the tick that state must reach before the condition can change, so
    the waiter is filed under that one state, in a heap ordered by that
    tick, and a transition only looks at waiters whose tick it reached.
    ``on_change`` conditions (``when_args``) look again at every change of
    their one state, and also check the transition.
    """

    __slots__ = ("_machine", "needs", "tx_check")

    def __init__(
        self,
        machine: Machine,
        needs: list[tuple[str, int]],
        tx_check: Callable[[Transition | None], bool] | None = None,
    ) -> None:
        self._machine = machine
        self.needs = needs
        self.tx_check = tx_check

    def _unmet(self) -> tuple[str, int] | None:
        """The first state short of its need, and the tick it must reach."""
        m = self._machine
        ticks, index = m._ticks, m._index
        for state, need in self.needs:
            tick = ticks[index[state]]
            if need == ACTIVE:
                if not tick & 1:
                    return state, tick + 1
            elif need == INACTIVE:
                if tick & 1:
                    return state, tick + 1
            elif tick < need:
                return state, need
        return None

    def park(self) -> tuple[str, int] | None:
        """(state, tick) to look again at; None when the condition holds now.

        A condition on the transition too looks again at the next change of
        its first state, whatever the clock says.
        """
        where = self._unmet()
        if where is None and self.tx_check is not None:
            state = self.needs[0][0]
            m = self._machine
            return state, m._ticks[m._index[state]] + 1
        return where

    def __call__(self, tx: Transition | None) -> bool:
        if self._unmet() is not None:
            return False
        return self.tx_check is None or self.tx_check(tx)


#: a parked waiter: (tick to reach, registration order, the waiter)
Parked = tuple[int, int, Ref]


class Subscriptions:
    """The waiters of one machine, filed by the states they depend on.

    A waiter with a :class:`ClockCondition` sits in one heap, of the state
    it waits on, keyed by the tick that state must reach; a transition pops
    from the heaps of the states it changed only the waiters whose tick came,
    and files each again (or wakes it). So a pending waiter costs nothing
    to transitions that don't reach it. Other checks are filed under their
    states and looked at on every change of them, or after every transition
    (``states=None``, e.g. ``when_query``).
    """

    __slots__ = (
        "_by_state",
        "_count",
        "_disposed",
        "_every",
        "_lock",
        "_marks",
        "_parked",
        "_queue_end",
        "_queue_ticks",
        "_serial",
        "_tick_of",
    )

    def __init__(self, tick_of: Callable[[str], int]) -> None:
        self._tick_of = tick_of
        self._lock = threading.RLock()
        self._parked: dict[str, list[Parked]] = {}
        self._marks: dict[str, int] = {}  # heap size after its last sweep
        self._serial = 0
        self._by_state: dict[str, list[Ref]] = {}
        self._every: list[Ref] = []
        self._queue_end: list[Ref] = []
        self._queue_ticks: list[Parked] = []  # when_queue: a heap by tick
        self._disposed: list[Ref] = []
        self._count = 0

    @property
    def pending(self) -> int:
        """Registered waiters, including ones that may have been dropped."""
        return self._count

    def add(self, waiter: Waiter, states: tuple[str, ...] | None) -> None:
        """File a waiter under what it depends on (see the class docstring).

        A clock condition that holds already fires at once: its state may
        change back before anyone looks again.
        """
        ref = weakref.ref(waiter)
        check = waiter._check
        met = False
        with self._lock:
            if isinstance(check, ClockCondition):
                where = check.park()
                if where is None:
                    met = True
                else:
                    self._park(where, ref)
            elif states is None:
                self._count += 1 - _prune_append(self._every, ref)
            else:
                for state in states:
                    refs = self._by_state.setdefault(state, [])
                    self._count += 1 - _prune_append(refs, ref)
        if met:
            waiter._fire(True)

    def _park(self, where: tuple[str, int], ref: Ref) -> None:
        """File under a state's heap (lock held); sweep a heap grown stale."""
        state, tick = where
        heap = self._parked.get(state)
        if heap is None:
            heap = self._parked[state] = []
        self._serial += 1
        heapq.heappush(heap, (tick, self._serial, ref))
        self._count += 1
        if len(heap) > 2 * self._marks.get(state, 0) + 64:
            # waiters dropped or done without their tick coming: forget them
            live = [p for p in heap if (w := p[2]()) is not None and not w.done]
            self._count -= len(heap) - len(live)
            heapq.heapify(live)
            self._parked[state] = live
            self._marks[state] = len(live)

    def add_queue_end(self, waiter: Waiter) -> None:
        with self._lock:
            self._count += 1 - _prune_append(self._queue_end, weakref.ref(waiter))

    def add_disposed(self, waiter: Waiter) -> None:
        with self._lock:
            self._count += 1 - _prune_append(self._disposed, weakref.ref(waiter))

    def process(self, changed: list[str], tx: Transition | None) -> None:
        """Look at the waiters a change of these states may concern.

        From each changed state's heap, only the waiters whose tick came;
        then those filed under the states, and the every-time ones.
        """
        with self._lock:
            parked, by_state = self._parked, self._by_state
            for state in changed:
                heap = parked.get(state)
                if heap:
                    self._wake_parked(state, heap, tx)
                refs = by_state.get(state)
                if refs:
                    self._count -= _check_refs(refs, tx)
            if self._every:
                self._count -= _check_refs(self._every, tx)

    def _wake_parked(
        self, state: str, heap: list[Parked], tx: Transition | None
    ) -> None:
        tick = self._tick_of(state)
        due: list[Ref] = []
        while heap and heap[0][0] <= tick:
            due.append(heapq.heappop(heap)[2])
        self._count -= len(due)
        for ref in due:
            waiter = ref()
            if waiter is None or waiter.done:
                continue
            check = waiter._check
            if not isinstance(check, ClockCondition):
                continue  # pragma: no cover - only clock conditions are parked
            try:
                met = check(tx)
                where = None if met else check.park()
            except Exception:
                log.exception("a waiter condition (%s) raised", waiter.description)
                waiter._fire(False)
                continue
            if met:
                waiter._fire(True)
            elif where is not None:
                self._park(where, ref)

    def add_queue_tick(self, waiter: Waiter, tick: int) -> None:
        with self._lock:
            self._serial += 1
            heapq.heappush(self._queue_ticks, (tick, self._serial, weakref.ref(waiter)))

    def queue_ticked(self, tick: int) -> None:
        """Wake the ``when_queue`` waiters of ticks up to ``tick``."""
        due: list[Ref] = []
        with self._lock:
            heap = self._queue_ticks
            while heap and heap[0][0] <= tick:
                due.append(heapq.heappop(heap)[2])
        for ref in due:
            waiter = ref()
            if waiter is not None:
                waiter._fire(True)

    def queue_ended(self) -> None:
        with self._lock:
            refs, self._queue_end = self._queue_end, []
            self._count -= len(refs)
        for ref in refs:
            waiter = ref()
            if waiter is not None:
                waiter._fire(True)

    def _take_state_waiters(self) -> list[Ref]:
        """Unfile every state waiter (lock held)."""
        refs = [p[2] for heap in self._parked.values() for p in heap]
        refs += [r for refs in self._by_state.values() for r in refs]
        refs += self._every
        self._parked, self._marks, self._by_state, self._every = {}, {}, {}, []
        return refs

    def cancel(self, reason: WaiterCancelled | None) -> None:
        """End every pending condition waiter unmet, with ``reason``.

        ``when_disposed`` and ``when_queue_end`` waiters stay: they are
        about the machine itself, not about its states.
        """
        with self._lock:
            refs = self._take_state_waiters()
            self._count = len(self._queue_end) + len(self._disposed)
        for ref in refs:
            waiter = ref()
            if waiter is not None:
                waiter._fire(False, reason)

    def dispose(self) -> None:
        """Release every waiter: False, except ``when_disposed`` ones (True)."""
        with self._lock:
            disposed, self._disposed = self._disposed, []
            others = self._take_state_waiters() + self._queue_end
            others += [p[2] for p in self._queue_ticks]
            self._queue_end, self._queue_ticks = [], []
            self._count = 0
        for ref in disposed:
            waiter = ref()
            if waiter is not None:
                waiter._fire(True)
        for ref in others:
            waiter = ref()
            if waiter is not None:
                waiter._fire(False)


def _prune_append(refs: list[Ref], ref: Ref) -> int:
    """Append; at each power of two, drop the dead first. Returns how many."""
    dropped = 0
    if len(refs) >= 32 and len(refs) & (len(refs) - 1) == 0:
        kept = [r for r in refs if (w := r()) is not None and not w.done]
        dropped = len(refs) - len(kept)
        refs[:] = kept
    refs.append(ref)
    return dropped


def _check_refs(refs: list[Ref], tx: Transition | None) -> int:
    """Check and wake; keep the rest. Returns how many left the list."""
    keep: list[Ref] = []
    for ref in refs:
        waiter = ref()
        if waiter is None or waiter.done:
            continue
        check = waiter._check
        try:
            met = check is not None and check(tx)
        except Exception:
            log.exception("a waiter condition (%s) raised", waiter.description)
            waiter._fire(False)
            continue
        if met:
            waiter._fire(True)
        else:
            keep.append(ref)
    gone = len(refs) - len(keep)
    refs[:] = keep
    return gone


class StateContext:
    """Valid while its state keeps the tick it had when the context was made.

    Work forked from a handler checks ``expired`` (or registers ``on_expire``)
    to stop once the state that started it was left or re-entered.
    """

    __slots__ = ("_callbacks", "_epoch", "_machine", "state", "tick")

    def __init__(self, machine: Machine, state: str) -> None:
        self._machine = machine
        self.state = state
        self.tick = machine.tick(state)
        # a handler timeout of the state cancels its contexts (bumps this)
        self._epoch = machine._ctx_epochs.get(state, 0)
        self._callbacks: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        status = "expired" if self.expired else "valid"
        return f"<StateContext {self.state}@{self.tick} {status}>"

    @property
    def expired(self) -> bool:
        m = self._machine
        return (
            m.is_disposed
            or m._ticks[m._index[self.state]] != self.tick
            or m._ctx_epochs.get(self.state, 0) != self._epoch
        )

    def on_expire(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once the context expires (now, if it already has)."""
        if self.expired:
            fn()
            return
        self._machine._watch_context(self)
        self._callbacks.append(fn)
        if self.expired:  # expired while registering
            self._expire()

    def when_expired(self) -> Waiter:
        waiter = Waiter(f"expired({self.state}@{self.tick})")
        self.on_expire(lambda: waiter._fire(True))
        return waiter

    def _expire(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn()
            except Exception:
                log.exception("an on_expire callback of %r raised", self)
