"""The Machine: the queue, mutations, checking, waiting and disposal.

Theory of operation: every mutation becomes a :class:`Mutation` in one
queue. The thread that finds the machine idle becomes its runner and drains
the queue, one transition at a time, in its own stack; a mutation made
meanwhile, from a handler or from any other thread, is appended and returns
``QUEUED``, and the runner picks it up in order. So handlers never nest and
never run concurrently, and they need no locks.

The clock is the single source of truth: one tick per state, odd while
active. Each transition publishes a new tick list (never mutated in place),
so readers in other threads always see a consistent snapshot without locks.
"""

from __future__ import annotations

import difflib
import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from time import monotonic as _monotonic
from typing import Any

from . import hooks
from .errors import ExportError, HandlerError, StateError
from .resolver import Resolver
from .schema import EXCEPTION, Names, State, parse_schema
from .transition import (
    HandlerRaisedError,
    Mutation,
    MutationType,
    Relation,
    Result,
    Transition,
)
from .waiting import StateContext, Subscriptions, Waiter

log = logging.getLogger("asyncmachine.machine")

EXECUTED, CANCELED, QUEUED = Result.EXECUTED, Result.CANCELED, Result.QUEUED
ADD, REMOVE, SET = MutationType.ADD, MutationType.REMOVE, MutationType.SET

_DEBUG = logging.DEBUG
HANDLER_SUFFIXES = ("enter", "exit", "state", "end")
GLOBAL_HANDLERS = ("any_enter", "any_state")
TRACER_METHODS = (
    "transition_init",
    "transition_start",
    "transition_end",
    "mutation_queued",
    "queue_end",
    "machine_dispose",
)

Handler = Callable[[Any], Any]


class Machine:
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
    ) -> None:
        self._setup(parse_schema(schema), id, tags, parent)
        for tracer in tracers:
            self.bind_tracer(tracer)
            init = getattr(tracer, "machine_init", None)
            if init is not None:
                init(self)
        hooks.machine_init(self)

    def _setup(
        self,
        schema: dict[str, State],
        id: str | None,
        tags: Iterable[str],
        parent: Machine | str | None,
    ) -> None:
        """Everything but validation; subclasses with their own schema rules call it."""
        self._schema = schema
        self._names = list(self._schema)
        self._index = {name: i for i, name in enumerate(self._names)}
        self._ticks = [0] * len(self._names)
        self._active: tuple[str, ...] = ()
        self._resolver = Resolver(self._schema)
        self._handler_names = {
            s: (f"{s}_enter", f"{s}_exit", f"{s}_state", f"{s}_end", f"{s}_{s}")
            for s in self._names
        }
        self._id = id if id is not None else uuid.uuid4().hex[:16]
        if not isinstance(self._id, str) or not self._id:
            raise ValueError(f"a machine id must be a non-empty str, got {id!r}")
        if isinstance(tags, str):
            tags = (tags,)
        self._tags = list(dict.fromkeys(tags))
        if isinstance(parent, Machine):
            self._parent_id: str | None = parent.id
        else:
            self._parent_id = parent or None

        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)
        self._blocked = 0
        self._queue: deque[Mutation] = deque()
        self._running = False
        self._runner: int | None = None
        self._transition: Transition | None = None

        self._bindings: dict[str, dict[str, Handler]] = {}
        self._handlers: dict[str, list[Handler]] = {}
        self._pair_handlers: dict[tuple[str, str], str] = {}
        self._negotiators = False
        self._tracers: list[object] = []
        self._trace: dict[str, list[Callable[..., Any]]] = {}

        self._subs = Subscriptions()
        self._contexts: dict[str, list[StateContext]] = {}
        self._err: BaseException | None = None
        self._disposing = False
        self._disposed = False
        self._dispose_fns: list[Callable[[Machine], Any]] = []

    # -- identity --------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def tags(self) -> list[str]:
        return list(self._tags)

    @property
    def parent_id(self) -> str | None:
        return self._parent_id

    @property
    def schema(self) -> dict[str, State]:
        return dict(self._schema)

    @property
    def state_names(self) -> list[str]:
        return list(self._names)

    @property
    def err(self) -> BaseException | None:
        """The last error handed to ``add_err`` or raised by a handler."""
        return self._err

    @property
    def is_disposed(self) -> bool:
        return self._disposed

    @property
    def queue_len(self) -> int:
        return len(self._queue)

    @property
    def transition(self) -> Transition | None:
        """The transition running now, if any (handlers see their own)."""
        return self._transition

    # -- names -----------------------------------------------------------

    def _parse(self, states: Names) -> tuple[str, ...]:
        """Validated called states, without duplicates."""
        index = self._index
        if isinstance(states, str):
            if states in index:
                return (states,)
            raise self._unknown(states)
        try:
            names = tuple(dict.fromkeys(states))
        except TypeError:
            raise TypeError(
                f"states must be a state name or an iterable of names, "
                f"not {type(states).__name__}"
            ) from None
        for name in names:
            if name not in index:
                raise self._unknown(name)
        return names

    def _unknown(self, name: object) -> StateError:
        if not isinstance(name, str):
            return StateError(
                f"state names are str, got {type(name).__name__} {name!r} "
                f"for machine {self._id!r}"
            )
        close = difflib.get_close_matches(name, self._names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return StateError(
            f"unknown state {name!r} for machine {self._id!r}{hint}", name
        )

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
        if self.is_active(states):
            return self._mutate(REMOVE, states, args)
        return self._mutate(ADD, states, args)

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
                if self._runner != threading.get_ident():
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
        Go. ``Exception`` always gets in once.
        """
        with self._lock:
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
            if queued:
                if self._repeats_last(mutation):
                    return QUEUED
                self._queue.append(mutation)
            else:
                self._running = True
                self._runner = threading.get_ident()
        if self._trace:
            for trace in self._trace.get("mutation_queued", ()):
                trace(self, mutation)
        if queued:
            return QUEUED
        return self._drain(mutation)

    def _repeats_last(self, mutation: Mutation) -> bool:
        """Go folds argument-less repeats of non-multi mutations into one.

        Only a repeat of the last queued mutation is folded, which can't
        change the outcome (Go folds any queued one, which can).
        """
        if mutation.args or not self._queue:
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
        if self._runner == threading.get_ident():
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

    def _drain(self, first_mutation: Mutation | None = None) -> Result:
        """Run ``first_mutation``, then the queue until it is empty.

        Only the thread that set ``_running`` calls this. The result is the
        first transition's.
        """
        first: Result | None = None
        lock, queue = self._lock, self._queue
        try:
            if first_mutation is not None:
                first = self._execute(first_mutation)
            while True:
                with lock:
                    if not queue or self._disposing:
                        if self._disposing:
                            queue.clear()
                        self._running = False
                        self._runner = None
                        if self._blocked:
                            self._room.notify_all()
                        break
                    mutation = queue.popleft()
                    if self._blocked:
                        self._room.notify()
                result = self._execute(mutation)
                if first is None:
                    first = result
        except BaseException:
            with lock:
                self._running = False
                self._runner = None
            raise
        if self._trace:
            for trace in self._trace.get("queue_end", ()):
                trace(self)
        if self._subs._count:
            self._subs.queue_ended()
        if self._disposing and not self._disposed:
            self._finish_dispose()
        return CANCELED if first is None else first

    def _execute(self, mutation: Mutation) -> Result:
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
            targets = tx.target_states
            try:
                accepted = tx.negotiate(table)
            except HandlerRaisedError as err:
                accepted, failure = False, err
            if accepted and mutation.is_auto and tx.target_states is not targets:
                self._reresolve_auto(tx)
        if not mutation.is_check:
            if accepted:
                self._apply(tx, tx.target_states, mutation.called)
                if table:
                    try:
                        tx.finalize(table)
                    except HandlerRaisedError as err:
                        accepted, failure = False, err
            tx.time_after = self._ticks
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
            and accepted
            and not mutation.is_auto
            and not self._disposing
            and self._resolver.auto_states
        ):
            auto = self._resolver.auto_candidates(self._active)
            if auto:
                with self._lock:
                    self._queue.appendleft(Mutation(ADD, tuple(auto), is_auto=True))
        if changed and self._subs._count:
            before, after = tx.time_before, tx.time_after
            self._subs.process(
                [n for n, b, a in zip(self._names, before, after) if b != a], tx
            )

        if not accepted:
            return CANCELED
        if mutation.is_check:
            if mutation.type is REMOVE:
                targets = tx.target_states
                return (
                    CANCELED if any(s in targets for s in mutation.called) else EXECUTED
                )
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

    def _reresolve_auto(self, tx: Transition) -> None:
        """Auto states refused by handlers are left out; targets are recomputed."""
        kept = [s for s in tx.mutation.called if s in tx.target_states]
        to_set = kept + list(tx._before)
        tx.target_states = self._resolver.target_states(to_set, tx._before)
        tx._setup_enters_exits()

    def _apply(
        self, tx: Transition, targets: list[str], called: tuple[str, ...]
    ) -> None:
        """Publish the new clock: +1 on (de)activation, +2 for a re-called multi."""
        previous = self._active
        old = self._ticks
        ticks = old[:]
        index = self._index
        multi = self._resolver.multi
        changed = False
        for state in targets:
            if state not in previous:
                ticks[index[state]] += 1
                changed = True
            elif state in multi and state in called:
                ticks[index[state]] += 2
                changed = True
        if previous:
            lookup = targets if len(targets) < 8 else set(targets)
            for state in previous:
                if state not in lookup:
                    ticks[index[state]] += 1
                    changed = True
        if not changed:
            return  # same clock: publish nothing, so nothing looks changed
        self._ticks = ticks
        tx.time_after = ticks
        if len(targets) < 2:
            self._active = tuple(targets)
        else:
            self._active = tuple(sorted(targets, key=index.__getitem__))
        if self._contexts:
            self._expire_contexts(
                [n for n, a, b in zip(self._names, old, ticks) if a != b]
            )

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

    # -- checking --------------------------------------------------------

    def is_active(self, states: Names) -> bool:
        """True when every one of the states is active."""
        if self._disposed:
            return False
        ticks, index = self._ticks, self._index
        if isinstance(states, str):
            i = index.get(states)
            if i is None:
                raise self._unknown(states)
            return bool(ticks[i] & 1)
        return all(ticks[index[s]] & 1 for s in self._parse(states))

    def not_active(self, states: Names) -> bool:
        """True when none of the states is active."""
        ticks, index = self._ticks, self._index
        return not any(ticks[index[s]] & 1 for s in self._parse(states))

    def any_active(self, *groups: Names) -> bool:
        """True when all states of at least one group are active."""
        return any(self.is_active(group) for group in groups)

    def has(self, states: Names) -> bool:
        """True when the schema defines every one of the states."""
        names = (states,) if isinstance(states, str) else tuple(states)
        return all(name in self._index for name in names)

    def count_active(self, states: Names) -> int:
        ticks, index = self._ticks, self._index
        return sum(ticks[index[s]] & 1 for s in self._parse(states))

    def switch(self, *groups: Names) -> str | None:
        """The first active state among the names given, in their order."""
        for group in groups:
            for name in self._parse(group):
                if self._ticks[self._index[name]] & 1:
                    return name
        return None

    @property
    def active_states(self) -> list[str]:
        return [] if self._disposed else list(self._active)

    def tick(self, state: str) -> int:
        i = self._index.get(state)
        if i is None:
            raise self._unknown(state)
        return self._ticks[i]

    def time(self, states: Names | None = None) -> list[int]:
        """Ticks of the states (all, in schema order, by default)."""
        ticks = self._ticks
        if states is None:
            return list(ticks)
        return [ticks[self._index[s]] for s in self._parse(states)]

    def clock(self, states: Names | None = None) -> dict[str, int]:
        """Ticks by state name."""
        ticks = self._ticks
        if states is None:
            return dict(zip(self._names, ticks, strict=True))
        return {s: ticks[self._index[s]] for s in self._parse(states)}

    def is_clock(self, clock: Mapping[str, int]) -> bool:
        """True when the given states still have exactly these ticks."""
        ticks = self._ticks
        return all(ticks[self._index[s]] == t for s, t in self._check_clock(clock))

    def _check_clock(self, clock: Mapping[str, int]) -> list[tuple[str, int]]:
        self._parse(list(clock))
        return list(clock.items())

    def is_time(self, time: list[int], states: Names | None = None) -> bool:
        """True when the states (all by default) still have exactly these ticks."""
        return self.time(states) == list(time)

    def will_be(self, states: Names) -> bool:
        """True when a queued mutation will add all of the states."""
        return self._queued_with(ADD, self._parse(states))

    def will_be_removed(self, states: Names) -> bool:
        """True when a queued mutation will remove all of the states."""
        return self._queued_with(REMOVE, self._parse(states))

    def _queued_with(self, kind: MutationType, names: tuple[str, ...]) -> bool:
        with self._lock:
            queue = list(self._queue)
        wanted = set(names)
        for mutation in queue:
            if mutation.is_check:
                continue
            if mutation.type is kind and wanted <= set(mutation.called):
                return True
            if kind is ADD and mutation.type is SET and wanted <= set(mutation.called):
                return True
        return False

    def relations_of(self, state: str) -> list[Relation]:
        """The kinds of relations ``state`` has towards other states."""
        spec = self._schema[self._parse(state)[0]]
        return [kind for kind, targets in _relation_fields(spec) if targets]

    def relations_between(self, source: str, target: str) -> list[Relation]:
        """The kinds of relations from ``source`` to ``target``."""
        self._parse(target)
        spec = self._schema[self._parse(source)[0]]
        return [kind for kind, targets in _relation_fields(spec) if target in targets]

    def __str__(self) -> str:
        ticks = self._ticks
        return (
            "(" + " ".join(f"{n}:{ticks[self._index[n]]}" for n in self._active) + ")"
        )

    def string_all(self) -> str:
        """Active states in parentheses, then inactive ones in brackets."""
        ticks = self._ticks
        inactive = " ".join(f"{n}:{t}" for n, t in zip(self._names, ticks) if not t & 1)
        return f"{self} [{inactive}]"

    def __repr__(self) -> str:
        return f"<Machine {self._id} {self}>"

    def inspect(self, states: Names | None = None) -> str:
        """A readable dump in asyncmachine-go's layout: tick, flags, relations."""
        names = self._names if states is None else self._parse(states)
        lines = []
        for name in names:
            tick = self._ticks[self._index[name]]
            spec = self._schema[name]
            lines.append(f"{tick & 1} {name}")
            lines.append(f"    |Tick     {tick}")
            if spec.auto:
                lines.append("    |Auto     true")
            if spec.multi:
                lines.append("    |Multi    true")
            for kind, targets in _relation_fields(spec):
                if targets:
                    label = kind.value.capitalize()
                    lines.append(f"    |{label:<8} {' '.join(targets)}")
        return "\n".join(lines) + "\n"

    # -- handlers and tracers ----------------------------------------------

    def bind(self, handlers: object) -> str:
        """Bind every method of ``handlers`` named after states; returns an id.

        A method that looks like a handler of a state missing from the schema
        (``Fooo_enter``, ``Foo_Barr``) raises ``HandlerError``.
        """
        found: dict[str, Handler] = {}
        for attr in dir(handlers):
            if attr.startswith("_"):
                continue
            kind = self._handler_kind(attr)
            if kind is None:
                continue
            method = getattr(handlers, attr, None)
            if not callable(method):
                continue
            if kind != "ok":
                raise HandlerError(
                    f"{type(handlers).__name__}.{attr} looks like a handler, "
                    f"but {kind} (machine {self._id!r})"
                )
            found[attr] = method
        binding_id = uuid.uuid4().hex[:12]
        with self._lock:
            self._bindings[binding_id] = found
            self._rebuild_handlers()
        return binding_id

    def unbind(self, binding_id: str) -> None:
        with self._lock:
            if self._bindings.pop(binding_id, None) is None:
                raise KeyError(f"no handlers bound with id {binding_id!r}")
            self._rebuild_handlers()

    def _rebuild_handlers(self) -> None:
        table: dict[str, list[Handler]] = {}
        for found in self._bindings.values():
            for name, method in found.items():
                table.setdefault(name, []).append(method)
        pairs: dict[tuple[str, str], str] = {}
        for name in table:
            pair = self._pair_of(name)
            if pair is not None:
                pairs[pair] = name
        self._handlers = table
        self._pair_handlers = pairs
        finals = ("_state", "_end")
        self._negotiators = any(
            not name.endswith(finals) or name in self._pair_handlers.values()
            for name in table
            if name != "any_state"
        )

    def _pair_of(self, name: str) -> tuple[str, str] | None:
        for i, char in enumerate(name):
            if char != "_":
                continue
            src, dst = name[:i], name[i + 1 :]
            if src in self._index and dst in self._index and src != dst:
                return (src, dst)
        return None

    def _handler_kind(self, attr: str) -> str | None:
        """ "ok" for a handler name, an explanation for a likely typo, else None."""
        if attr in GLOBAL_HANDLERS:
            return "ok"
        index = self._index
        typo: str | None = None
        for i, char in enumerate(attr):
            if char != "_" or i == 0:
                continue
            prefix, suffix = attr[:i], attr[i + 1 :]
            if prefix in index:
                if suffix in HANDLER_SUFFIXES or suffix in index:
                    return "ok"
                if suffix[:1].isupper():
                    typo = f"state {suffix!r} is not in the schema" + _hint(
                        suffix, self._names, f"{prefix}_"
                    )
                elif difflib.get_close_matches(suffix, HANDLER_SUFFIXES, n=1):
                    typo = f"{suffix!r} is not a handler kind" + _hint(
                        suffix, HANDLER_SUFFIXES, f"{prefix}_"
                    )
            elif prefix == "any" and suffix in HANDLER_SUFFIXES:
                typo = "only any_enter and any_state exist" + _hint(
                    attr, GLOBAL_HANDLERS, ""
                )
            elif prefix[:1].isupper() and (
                suffix in HANDLER_SUFFIXES or suffix in index
            ):
                typo = f"state {prefix!r} is not in the schema" + _hint(
                    prefix, self._names, "", f"_{suffix}"
                )
        return typo

    def bind_tracer(self, tracer: object) -> None:
        """Call the tracer's methods (see TRACER_METHODS) synchronously."""
        with self._lock:
            if tracer not in self._tracers:
                self._tracers.append(tracer)
            self._rebuild_tracers()

    def unbind_tracer(self, tracer: object) -> None:
        with self._lock:
            try:
                self._tracers.remove(tracer)
            except ValueError:
                raise KeyError(f"tracer {tracer!r} is not bound") from None
            self._rebuild_tracers()

    def _rebuild_tracers(self) -> None:
        trace: dict[str, list[Callable[..., Any]]] = {}
        for tracer in self._tracers:
            for method in TRACER_METHODS:
                fn = getattr(tracer, method, None)
                if fn is not None:
                    trace.setdefault(method, []).append(fn)
        self._trace = trace

    # -- waiting ---------------------------------------------------------

    def when(self, states: Names) -> Waiter:
        """Done once all the states are active."""
        names = self._parse(states)
        return self._waiter(
            f"when({' '.join(names)})", names, lambda _tx: self._all_active(names)
        )

    def when_not(self, states: Names) -> Waiter:
        """Done once none of the states is active."""
        names = self._parse(states)
        return self._waiter(
            f"when_not({' '.join(names)})",
            names,
            lambda _tx: not any(self._ticks[self._index[s]] & 1 for s in names),
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
        pairs = [(self._index[n], t) for n, t in zip(names, wanted, strict=True)]
        return self._waiter(
            f"when_time({names}, {wanted})",
            names,
            lambda _tx: all(self._ticks[i] >= t for i, t in pairs),
        )

    def when_ticks(self, state: str, ticks: int) -> Waiter:
        """Done once the state's tick grew by ``ticks`` from now."""
        return self.when_time(state, [self.tick(state) + ticks])

    def when_args(self, state: str, args: Mapping[str, Any]) -> Waiter:
        """Done once ``state`` is activated by a mutation carrying these args."""
        name = self._parse(state)[0]
        wanted = dict(args)
        i = self._index[name]

        def check(tx: Transition | None) -> bool:
            if tx is None or not self._ticks[i] & 1:
                return False
            given = tx.mutation.args
            return all(k in given and given[k] == v for k, v in wanted.items())

        waiter = Waiter(f"when_args({name}, {wanted})", check)
        self._subs.add(waiter, (name,))
        if self._disposed:
            waiter._fire(False)
        return waiter

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

    def _all_active(self, names: tuple[str, ...]) -> bool:
        ticks, index = self._ticks, self._index
        return all(ticks[index[s]] & 1 for s in names)

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
        return StateContext(self, self._parse(state)[0])

    def _watch_context(self, ctx: StateContext) -> None:
        with self._lock:
            self._contexts.setdefault(ctx.state, []).append(ctx)

    def _expire_contexts(self, changed: list[str]) -> None:
        expired: list[StateContext] = []
        with self._lock:
            for state in changed:
                expired.extend(self._contexts.pop(state, ()))
        for ctx in expired:
            ctx._expire()

    # -- disposal --------------------------------------------------------

    def on_dispose(self, fn: Callable[[Machine], Any]) -> None:
        """Call ``fn(machine)`` once the machine is disposed."""
        with self._lock:
            if not self._disposed:
                self._dispose_fns.append(fn)
                return
        fn(self)

    def dispose(self) -> None:
        """Stop the machine: the queue is dropped and every waiter released.

        From a handler (or while another thread runs the queue) the disposal
        completes once the running transition ends.
        """
        with self._lock:
            if self._disposing:
                return
            self._disposing = True
            if self._blocked:
                self._room.notify_all()
            if self._running:
                return
        self._finish_dispose()

    def _finish_dispose(self) -> None:
        with self._lock:
            if self._disposed:
                return
            self._disposed = True
            self._queue.clear()
            contexts = [c for cs in self._contexts.values() for c in cs]
            self._contexts.clear()
            fns, self._dispose_fns = self._dispose_fns, []
        for fn in self._trace.get("machine_dispose", ()):
            _safely(fn, self)
        for ctx in contexts:
            ctx._expire()
        for dispose_fn in fns:
            _safely(dispose_fn, self)
        hooks.machine_dispose(self)
        self._subs.dispose()
        self._bindings.clear()
        self._handlers = {}
        self._pair_handlers = {}
        log.debug("machine %s disposed", self._id)

    # -- snapshots and plugins -----------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """A msgpack- and JSON-friendly snapshot: id, tags, parent, names, time."""
        return {
            "id": self._id,
            "tags": list(self._tags),
            "parent": self._parent_id or "",
            "states": list(self._names),
            "time": list(self._ticks),
        }

    @classmethod
    def from_state(
        cls, schema: Mapping[str, State], data: Mapping[str, Any]
    ) -> Machine:
        """A machine with ``schema`` restored to a snapshot of ``export_state``."""
        try:
            states, time = list(data["states"]), list(data["time"])
            machine_id = data["id"]
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a machine snapshot: missing {err}") from None
        if len(states) != len(time):
            raise ValueError(f"snapshot has {len(states)} states but {len(time)} ticks")
        names = list(parse_schema(schema))
        positions = {name: i for i, name in enumerate(names)}
        ticks = [0] * len(names)
        for name, tick in zip(states, time, strict=True):
            if name not in positions:
                raise StateError(
                    f"snapshot of {machine_id!r} has state {name!r}, "
                    "which is not in the schema" + _hint(name, names),
                    name,
                )
            if not isinstance(tick, int) or isinstance(tick, bool) or tick < 0:
                raise ValueError(f"tick of {name!r} must be an int >= 0, got {tick!r}")
            ticks[positions[name]] = tick
        machine = cls(
            schema,
            id=machine_id,
            tags=data.get("tags") or (),
            parent=data.get("parent") or None,
        )
        machine._ticks = ticks
        machine._active = tuple(
            n for n, t in zip(machine._names, ticks, strict=True) if t & 1
        )
        return machine

    def export_to(self, target: object, **opts: Any) -> Any:
        """Hand this machine to the installed plugin that accepts ``target``."""
        result = hooks.export_to(self, target, opts)
        if result is None:
            raise ExportError(
                f"no installed asyncmachine plugin accepts an export to "
                f"{type(target).__module__}.{type(target).__qualname__} "
                f"(plugins: {', '.join(hooks.plugin_names()) or 'none'})"
            )
        return result


def _relation_fields(spec: State) -> list[tuple[Relation, tuple[str, ...]]]:
    return [
        (Relation.ADD, spec.add),
        (Relation.REQUIRE, spec.require),
        (Relation.REMOVE, spec.remove),
        (Relation.AFTER, spec.after),
    ]


def _hint(word: str, choices: Iterable[str], before: str = "", after: str = "") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {before}{close[0]}{after!s}?)" if close else ""


def _safely(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("callback %r raised during disposal", fn)
