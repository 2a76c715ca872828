"""The Machine: the queue, mutations and transitions, composed with its parts.

Theory of operation: every mutation becomes a :class:`Mutation` in one
queue. The thread that finds the machine idle becomes its runner and drains
the queue, one transition at a time, in its own stack; a mutation made
meanwhile, from a handler or from any other thread, is appended and returns
``QUEUED``, and the runner picks it up in order. So handlers never nest and
never run concurrently, and they need no locks.

The clock is the single source of truth: one tick per state, odd while
active. Each transition publishes a new tick list (never mutated in place),
so readers in other threads always see a consistent snapshot without locks.
A subclass that shows a clock computed elsewhere (a read-only copy of a
machine) publishes it with ``_show_time``, which wakes waiters the same way.

This module keeps that core -- the queue, mutations and running transitions
-- and composes the rest, one private module per part, all on the fields
that ``_fields.py`` sets up:

- ``_checking.py``: reading without changing (is_active, time, clock,
  relations, inspect, the string forms);
- ``_waiting_api.py``: the ``when*`` methods and state contexts;
- ``_binding.py``: bind / unbind of handlers and tracers;
- ``_disposal.py``: dispose and on_dispose;
- ``_snapshots.py``: export_state, from_state, export_to;
- ``_schema_changes.py``: set_schema and state groups;
- ``_handler_loop.py``: the handler thread of a machine with
  ``handler_timeout``.

Costs: a transition is resolved by deltas when its called states reach no
further than their own relations (see ``Transition``), so it costs what it
changes; only the clock's list is copied whole on each change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from time import monotonic as _monotonic
from typing import Any

from . import hooks

# the binding constants lived here before the split; still importable from here
from ._binding import GLOBAL_HANDLERS as GLOBAL_HANDLERS
from ._binding import HANDLER_SUFFIXES as HANDLER_SUFFIXES
from ._binding import TRACER_METHODS as TRACER_METHODS
from ._binding import Binding
from ._checking import Checking
from ._disposal import Disposal
from ._errors import HandlerTimeoutError
from ._fields import Handler as Handler
from ._handler_loop import HandlerCall, HandlerLoop
from ._resolver import ActiveView, Resolver
from ._schema import EXCEPTION, Names, State, parse_schema
from ._schema_changes import SchemaChanges
from ._snapshots import Snapshots
from ._transition import (
    ADD,
    REMOVE,
    SET,
    EvalMutation,
    HandlerRaisedError,
    Mutation,
    MutationType,
    Result,
    Transition,
    advanced_clock,
)
from ._waiting_api import WaitingAPI

log = logging.getLogger("asyncmachine.machine")

EXECUTED, CANCELED, QUEUED = Result.EXECUTED, Result.CANCELED, Result.QUEUED

_DEBUG = logging.DEBUG


class Machine(WaitingAPI, Checking, Binding, Disposal, Snapshots, SchemaChanges):
    """A multi-state, clock-based, relational state machine."""

    #: Longest queue; beyond it other threads wait for room, handlers are refused.
    queue_limit = 1000
    #: Seconds another thread waits for room in a full queue before CANCELED.
    queue_full_timeout = 10.0

    def __init__(
        self,
        schema: Mapping[str, State],
        *,
        id: str | None = None,
        tags: Iterable[str] = (),
        parent: Machine | str | None = None,
        tracers: Iterable[object] = (),
        handler_timeout: float | None = None,
        groups: Mapping[str, Names] | None = None,
    ) -> None:
        self._setup(parse_schema(schema), id, tags, parent)
        if groups is not None:
            self.set_groups(groups)
        if handler_timeout is not None:
            if (
                isinstance(handler_timeout, bool)
                or not isinstance(handler_timeout, int | float)
                or not handler_timeout > 0
            ):
                raise ValueError(
                    "handler_timeout must be a number of seconds > 0 or None, "
                    f"got {handler_timeout!r}"
                )
            self._handler_timeout = float(handler_timeout)
            self._watch_handlers = True
        if isinstance(parent, Machine):
            # Go's submachines: the parent's tracers hear of the child, and
            # those that say they are inheritable follow it
            for tracer in list(parent._tracers):
                new_submachine = getattr(tracer, "new_submachine", None)
                if new_submachine is not None:
                    new_submachine(parent, self)
                inheritable = getattr(tracer, "inheritable", None)
                if inheritable is not None and inheritable():
                    tracers = [*tracers, tracer]
        for tracer in tracers:
            self.bind_tracer(tracer)
            init = getattr(tracer, "machine_init", None)
            if init is not None:
                init(self)
        hooks.machine_init(self)

    # -- mutations -------------------------------------------------------

    def add(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        """Activate states (with their relations); see the module docstring."""
        return self._mutate(ADD, states, args)

    def remove(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        """Deactivate states."""
        return self._mutate(REMOVE, states, args)

    def set(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        """Make exactly these states (and what relations imply) active."""
        return self._mutate(SET, states, args)

    def toggle(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        """Remove the states when all are active, add them otherwise."""
        if isinstance(states, str):
            i = self._index.get(states)
            if i is not None:  # one known name, the common case: no parsing
                if args is not None and not isinstance(args, dict):
                    raise TypeError(f"args must be a dict, not {type(args).__name__}")
                if self._disposing:
                    return CANCELED
                kind = REMOVE if self._ticks[i] & 1 else ADD
                return self._enqueue(Mutation(kind, (states,), args))
        kind = REMOVE if self.is_active(states) else ADD
        return self._mutate(kind, states, args)

    def add_err(self, exc: BaseException, args: dict[str, Any] | None = None) -> Result:
        """Activate ``Exception`` with ``args["err"] = exc``."""
        return self.add_err_state(EXCEPTION, exc, args)

    def add_err_state(
        self, state: str, exc: BaseException, args: dict[str, Any] | None = None
    ) -> Result:
        """Activate an error state together with ``Exception``."""
        if not isinstance(exc, BaseException):
            raise TypeError(f"add_err needs an exception, got {type(exc).__name__}")
        called = self._parse(state) + ((EXCEPTION,) if state != EXCEPTION else ())
        if self._disposing:
            return CANCELED
        self._err = exc
        merged = dict(args) if args else {}
        merged["err"] = exc
        return self._enqueue(Mutation(ADD, called, merged))

    def can_add(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        """Dry run of ``add``: EXECUTED when it would be accepted now."""
        return self._dry_run(ADD, states, args)

    def can_remove(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        """Dry run of ``remove``."""
        return self._dry_run(REMOVE, states, args)

    def _mutate(
        self, kind: MutationType, states: Names, args: dict[str, Any] | None
    ) -> Result:
        called = self._parse(states)
        if args is not None and not isinstance(args, dict):
            raise TypeError(f"args must be a dict, not {type(args).__name__}")
        if self._disposing:
            return CANCELED
        return self._enqueue(Mutation(kind, called, args))

    def _dry_run(
        self, kind: MutationType, states: Names, args: dict[str, Any] | None
    ) -> Result:
        called = self._parse(states)
        mutation = Mutation(kind, called, dict(args or {}), is_check=True)
        with self._lock:
            if self._disposing:
                return CANCELED
            if self._running:
                if not self._on_runner():
                    return QUEUED
                # nested in a handler: the relations alone decide
                tx = Transition(self, mutation)
                return EXECUTED if tx.is_accepted else CANCELED
            self._running = True
            self._runner = threading.get_ident()
        return self._drain(mutation)

    def _enqueue(self, mutation: Mutation) -> Result:
        """Run the mutation now when idle, else queue it behind the running one.

        A full queue (``queue_limit``) makes other threads wait for room, up
        to ``queue_full_timeout`` seconds; the runner itself (a handler) can't
        wait for its own queue, so its mutation is refused (CANCELED), as in
        Go. ``Exception`` always gets in once. A runner that has run
        ``queue_limit`` mutations while others wait for room hands the queue
        to one of them (it runs the rest, in order, and gets QUEUED): threads
        that refill the queue as fast as it drains pay for it themselves.
        """
        # acquire/release, not `with`: half the cost on the hottest path
        lock = self._lock
        lock.acquire()
        try:
            if self._disposing:
                return CANCELED
            if self._running:
                if len(self._queue) >= self.queue_limit and not self._room_for(
                    mutation
                ):
                    log.warning(
                        "machine %s: queue full (%d), refused %r",
                        self._id,
                        len(self._queue),
                        mutation,
                    )
                    return CANCELED
                if self._disposing:
                    return CANCELED
            # waiting for room may have outlived the runner
            queued: bool = self._running
            handed = False
            if queued:
                if self._repeats_last(mutation):
                    self._last_tick.value = self._queue[-1].queue_tick
                    return QUEUED
                self._queue_issued += 1
                mutation.queue_tick = self._queue_issued
                self._last_tick.value = self._queue_issued
                self._queue.append(mutation)
            else:
                self._queue_issued += 1
                mutation.queue_tick = self._queue_issued
                self._running = True
                self._runner = threading.get_ident()
                # a runner handed the queue over (``_drain``): keep its order
                handed = bool(self._queue)
                if handed:
                    self._last_tick.value = self._queue_issued
                    self._queue.append(mutation)
        finally:
            lock.release()
        if self._trace:
            for trace in self._trace.get("mutation_queued", ()):
                trace(self, mutation)
        if queued:
            return QUEUED
        if handed:
            self._drain()
            return QUEUED
        return self._drain(mutation)

    # -- the queue: eval and queue ticks ----------------------------------

    @property
    def queue_tick(self) -> int:
        """How many of the mutations made so far have been processed.

        Every ``add``/``remove``/``set``/``toggle``/``add_err``/``eval``
        gets the next queue tick when it is made (``Mutation.queue_tick``);
        this is the tick of the last one processed. See :meth:`when_queue`.
        """
        return self._queue_tick

    @property
    def last_queue_tick(self) -> int:
        """The queue tick of the last mutation this thread got ``QUEUED`` for.

        Mutations return ``Result.QUEUED`` (the public API keeps Go's three
        results), so the tick Go would return is read here, per thread::

            if m.add("B") == Result.QUEUED:
                m.when_queue(m.last_queue_tick).wait(5)
        """
        return int(getattr(self._last_tick, "value", 0))

    def eval(self, fn: Callable[[], object], timeout: float | None = None) -> bool:
        """Run ``fn()`` on the machine's queue, between transitions.

        The way to read or change what handlers use without locks: when the
        machine is idle ``fn`` runs at once on this thread, otherwise after
        the mutations queued before it, and this thread waits. False when it
        did not run: the machine is (being) disposed, ``timeout`` seconds
        passed first (default: half of ``handler_timeout``, if set; else no
        limit), or the call comes from a handler or another ``eval`` (the
        queue waits for them, so waiting on it would never end -- Go's
        nested evals fail the same way). An exception from ``fn`` goes to
        the ``Exception`` state, and ``eval`` returns False.
        """
        if not callable(fn):
            raise TypeError(f"eval needs a callable, got {type(fn).__name__}")
        if timeout is None and self._handler_timeout is not None:
            timeout = self._handler_timeout / 2
        if self._disposing:
            return False
        with self._lock:
            nested = self._running and self._on_runner()
        if nested:
            log.warning("machine %s: eval from a handler or an eval refused", self._id)
            return False
        mutation = EvalMutation(fn)
        result = self._enqueue(mutation)
        if result is QUEUED and not mutation.done.wait(timeout):
            with self._lock:
                if not mutation.done.is_set():
                    mutation.skip = True
                    return False
        return mutation.ok

    def _evaluate(self, mutation: EvalMutation) -> Result:
        with self._lock:
            skip = mutation.skip or self._disposing
        try:
            if not skip:
                if self._handler_timeout is None:
                    mutation.fn()
                else:  # under the same timeout as handlers, as in Go
                    fn = mutation.fn
                    self._run_handler(None, lambda _: fn(), None, "eval", "")
                mutation.ok = True
        except Exception as error:
            self._err = error
            log.error("machine %s: eval %r raised %r", self._id, mutation, error)
            with self._lock:
                if not self._disposing:
                    args = {"err": error, "eval": mutation.fn}
                    self._queue.appendleft(Mutation(ADD, (EXCEPTION,), args))
        finally:
            mutation.done.set()
        return EXECUTED if mutation.ok else CANCELED

    def _repeats_last(self, mutation: Mutation) -> bool:
        """Go folds argument-less repeats of non-multi mutations into one.

        Only a repeat of the last queued mutation is folded, which can't
        change the outcome (Go folds any queued one, which can).
        """
        if mutation.args or not self._queue or mutation.is_check:
            return False
        last = self._queue[-1]
        return (
            not last.args
            and not last.is_check
            and last.type is mutation.type
            and last.called == mutation.called
            and not any(s in self._resolver.multi for s in mutation.called)
        )

    def _room_for(self, mutation: Mutation) -> bool:
        """Wait (lock held) until the full queue has room; False to refuse."""
        if EXCEPTION in mutation.called and not self.is_active(EXCEPTION):
            return True
        if self._on_runner():
            return False
        deadline = _monotonic() + self.queue_full_timeout
        self._blocked += 1
        try:
            while self._running and len(self._queue) >= self.queue_limit:
                remaining = deadline - _monotonic()
                if remaining <= 0 or self._disposing:
                    return False
                self._room.wait(remaining)
        finally:
            self._blocked -= 1
        return True

    def _on_runner(self) -> bool:
        """True on the thread running the queue, or on its handler thread."""
        ident = threading.get_ident()
        if ident == self._runner:
            return True
        loop = self._handler_loop
        return loop is not None and not loop.abandoned and loop.ident == ident

    def _drain(self, first_mutation: Mutation | None = None) -> Result:
        """Run ``first_mutation``, then the queue until it is empty.

        Only the thread that set ``_running`` calls this. The result is the
        first transition's.
        """
        first: Result | None = None
        lock, queue = self._lock, self._queue
        served, handed_over = 0, False
        try:
            if first_mutation is not None:
                first = self._execute(first_mutation)
                tick = first_mutation.queue_tick
                if tick:  # done: wake when_queue (inlined, a hot path)
                    self._queue_tick = tick
                    if self._subs._queue_ticks:
                        self._subs.queue_ticked(tick)
            while True:
                lock.acquire()
                try:
                    if not queue or self._disposing:
                        if self._disposing:
                            queue.clear()
                        self._running = False
                        self._runner = None
                        if self._blocked:
                            self._room.notify_all()
                        break
                    if self._blocked and served >= self.queue_limit:
                        # other threads refill the queue as fast as we drain
                        # it: one of them takes it over (in order), or this
                        # thread -- maybe a shared event loop -- never returns
                        self._running = False
                        self._runner = None
                        self._room.notify_all()
                        handed_over = True
                        break
                    mutation = queue.popleft()
                    if self._blocked:
                        self._room.notify()
                finally:
                    lock.release()
                served += 1
                result = self._execute(mutation)
                tick = mutation.queue_tick
                if tick:
                    self._queue_tick = tick
                    if self._subs._queue_ticks:
                        self._subs.queue_ticked(tick)
                if first is None:
                    first = result
        except BaseException:
            with lock:
                self._running = False
                self._runner = None
            raise
        if handed_over:
            return CANCELED if first is None else first
        if self._trace:
            for trace in self._trace.get("queue_end", ()):
                trace(self)
        if self._subs._count:
            self._subs.queue_ended()
        if self._disposing and not self._disposed:
            self._finish_dispose()
        return CANCELED if first is None else first

    # -- running a transition --------------------------------------------

    def _execute(self, mutation: Mutation) -> Result:
        if mutation.is_check and type(mutation) is EvalMutation:
            return self._evaluate(mutation)
        tx = Transition(self, mutation)
        self._transition = tx
        trace = self._trace
        if trace:
            for fn in trace.get("transition_init", ()):
                fn(tx)
            for fn in trace.get("transition_start", ()):
                fn(tx)
        table = self._handlers
        failure: HandlerRaisedError | None = None
        accepted = tx.is_accepted
        if accepted and self._negotiators:
            try:
                accepted = tx.negotiate(table)
            except HandlerRaisedError as err:
                accepted, failure = False, err
            if accepted and tx._refused:
                self._reresolve_auto(tx)
        if not mutation.is_check and accepted:
            self._apply(tx, tx.enters, tx.exits)
            targets = tx._targets
            if targets is not None and tx.time_after is self._ticks:
                # fully resolved: the active states are known, keep them
                index = self._index
                active = tuple(sorted(targets, key=index.__getitem__))
                self._active_memo = (self._ticks, active)
            if not self._consistent:
                self._consistent = True  # fully resolved: relations hold
            if trace:
                for fn in trace.get("transition_finals", ()):
                    fn(tx)
            if table:
                try:
                    tx.finalize(table)
                except HandlerRaisedError as err:
                    accepted, failure = False, err
        tx.is_accepted = accepted
        tx.is_completed = True
        if log.isEnabledFor(_DEBUG):
            self._log_transition(tx)
        if trace:
            for fn in trace.get("transition_end", ()):
                fn(tx)
        self._transition = None

        if failure is not None:
            self._handler_failed(tx, failure)
        changed = tx.time_after is not tx.time_before
        if (
            changed
            and self._resolver.auto_states
            and accepted
            and not mutation.is_auto
            and not self._disposing
        ):
            auto = self._auto_after(tx)
            if auto:
                with self._lock:
                    self._queue.appendleft(Mutation(ADD, tuple(auto), is_auto=True))
        if changed and self._subs._count:
            self._subs.process(tx.changed, tx)

        if not accepted:
            return CANCELED
        if mutation.is_check:
            if mutation.type is REMOVE:
                still = any(tx._in_targets(s) for s in mutation.called)
                return CANCELED if still else EXECUTED
            return EXECUTED
        if mutation.type is REMOVE:
            ticks, index = self._ticks, self._index
            for state in mutation.called:
                if ticks[index[state]] & 1:
                    return CANCELED
            return EXECUTED
        if mutation.is_auto:
            return EXECUTED if len(tx.target_states) > len(tx._before) else CANCELED
        return EXECUTED

    def _auto_after(self, tx: Transition) -> list[str]:
        """The auto states to try after ``tx`` (which changed the clock).

        They depend only on which states are active, so a transition that
        only re-entered active multi states (an event such as ``MsgReceived``,
        the common case) finds the ones found on the clock it started from.
        Every clock is a new list, so its identity says nothing else changed
        the clock in between (a schema change, a shown clock).
        """
        ticks = self._ticks
        memo = self._auto_memo
        if memo is not None and memo[0] is tx.time_before:
            before, index = tx.time_before, self._index
            for state in tx.changed:
                i = index[state]
                if (before[i] ^ ticks[i]) & 1:
                    break  # (de)activated: the active states differ
            else:
                self._auto_memo = (ticks, memo[1])
                return memo[1]
        auto = self._resolver.auto_candidates(ActiveView(ticks, self._index))
        self._auto_memo = (ticks, auto)
        return auto

    def _reresolve_auto(self, tx: Transition) -> None:
        """Auto states refused by handlers are left out; targets are recomputed."""
        kept = [s for s in tx.mutation.called if tx._in_targets(s)]
        before = tx._before
        tx.target_states = self._resolver.target_states(kept + list(before), before)
        tx._setup_enters_exits()

    def _apply(self, tx: Transition, enters: list[str], exits: list[str]) -> None:
        """Publish the new clock: +1 on (de)activation, +2 for a re-called multi.

        Costs the states that change (and one copy of the clock's list), not
        the states that stay active.
        """
        if not enters and not exits:
            return  # same clock: publish nothing, so nothing looks changed
        if len(enters) + len(exits) == 1:  # one state: its tick, in place
            ticks = self._ticks[:]
            for state in enters or exits:
                i = self._index[state]
                ticks[i] += 2 if enters and ticks[i] & 1 else 1
        else:
            ticks = advanced_clock(self._ticks, enters, exits, self._index)
        self._ticks = ticks
        tx.time_after = ticks
        changed = enters + exits
        tx.changed = tx.changed + changed if tx.changed else changed
        if self._contexts:
            self._expire_contexts(changed)

    def _run_handler(
        self,
        tx: Transition | None,
        handler: Handler,
        event: Any,
        name: str,
        state: str,
    ) -> Any:
        """Call one handler; under ``handler_timeout``, on the handler thread.

        A handler that overruns raises :class:`HandlerTimeoutError` here (so
        its transition ends like one that raised), after the contexts of its
        state are cancelled and the tracers told; the handler itself goes on
        in its abandoned thread (see ``_handler_loop.py``).
        """
        timeout = self._handler_timeout
        if timeout is None:
            return handler(event)
        loop = self._handler_loop
        if loop is None or loop.abandoned:
            loop = HandlerLoop(f"asyncmachine-handlers-{self._id}")
            self._handler_loop = loop
        call = HandlerCall(handler, event)
        if loop.call(call, timeout):
            if call.error is not None:
                raise call.error
            return call.result
        error = HandlerTimeoutError(self._id, name, state, timeout)
        if state:
            self._cancel_contexts(state)
        for fn in self._trace.get("handler_timeout", ()):
            fn(tx, name, error)
        raise error

    def _handler_failed(self, tx: Transition, failure: HandlerRaisedError) -> None:
        error = failure.error
        self._err = error
        log.error(
            "machine %s: handler %s raised %s: %s",
            self._id,
            failure.handler,
            type(error).__name__,
            error,
            exc_info=error if log.isEnabledFor(logging.DEBUG) else None,
        )
        if EXCEPTION in tx.mutation.called or self._disposing:
            return  # an error while handling an error is logged, not re-raised
        args = {"err": error, "handler": failure.handler, "transition": tx}
        with self._lock:
            self._queue.appendleft(Mutation(ADD, (EXCEPTION,), args))

    def _log_transition(self, tx: Transition) -> None:
        kind = "auto" if tx.is_auto else tx.mutation.type.value
        called = " ".join(tx.mutation.called)
        if tx.is_check:
            log.debug("%s: [check:%s] %s -> %s", self._id, kind, called, tx.is_accepted)
        elif not tx.is_accepted:
            log.debug("%s: [cancel:%s] %s", self._id, kind, called)
        else:
            changes = [f"+{s}" for s in tx.enters] + [f"-{s}" for s in tx.exits]
            log.debug("%s: [%s] %s: %s", self._id, kind, called, " ".join(changes))

    # -- a clock computed elsewhere --------------------------------------

    def _show_time(
        self, time: list[int], schema: dict[str, State] | None = None
    ) -> list[str]:
        """Show a clock this machine did not compute; the names whose ticks changed.

        For subclasses that show another machine's clock, such as a read-only
        network copy: no relations are resolved and no handlers run. The
        caller guarantees ``len(time) == len(self.state_names)``; it is not
        checked, as applying a remote clock is a hot path. Under the lock the
        ticks become ``list(time)`` and the active states are recomputed (odd
        tick = active, in state order); ``schema``, when given, replaces the
        schema and its resolver and must keep the state names, in order
        (``ValueError`` otherwise, before anything changes). Then, outside
        the lock, the contexts of the changed states expire and their waiters
        wake, as after a transition. A disposed machine returns ``[]`` and
        changes nothing.
        """
        names = self._names
        with self._lock:
            if self._disposed:
                return []
            if schema is not None:
                if list(schema) != names:
                    raise ValueError(
                        f"machine {self._id!r}: a shown schema must keep the "
                        f"states {names}, got {list(schema)}"
                    )
                self._schema = dict(schema)
                self._resolver = Resolver(self._schema)
            old = self._ticks
            ticks = list(time)
            self._ticks = ticks
        changed = [n for n, a, b in zip(names, old, ticks) if a != b]
        if changed:
            if self._contexts:
                self._expire_contexts(changed)
            if self._subs._count:
                self._subs.process(changed, None)
        return changed
