"""Mutations, transitions and the events handlers receive.

Theory of operation: a :class:`Mutation` is a request (add, remove or set
some called states, with args). The machine's queue turns each one into a
:class:`Transition`, which

1. resolves the target states from relations (see ``resolver``),
2. runs the negotiation handlers in this order: ``Foo_exit`` of every state
   leaving, ``Foo_enter`` of every state arriving, ``Foo_Foo`` of every state
   staying active (not for ``remove``), ``Foo_Bar`` for each active ``Foo``
   and target ``Bar``, then ``any_enter``; any of them cancels by returning
   ``False`` (in an auto transition a refusing auto state is dropped instead),
3. applies the new clock (this is the moment ``is_active`` changes),
4. runs the final handlers: ``Foo_end`` of each state left, ``Foo_state`` of
   each state entered, then ``any_state``.

A handler that raises cancels the transition; in the final phase the states
whose final handlers did not run yet are put back as they were. Either way the
error is queued as the ``Exception`` state and never reaches the caller.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from enum import Enum, IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._machine import Machine

_tx_ids = itertools.count(1)


class Result(IntEnum):
    """Outcome of a mutation, numbered as in asyncmachine-go."""

    EXECUTED = 0
    CANCELED = 1
    QUEUED = 2


class MutationType(Enum):
    ADD = "add"
    REMOVE = "remove"
    SET = "set"


# module constants: reading an Enum member off its class costs ~90 ns on
# CPython 3.11, which the hot path would pay several times per transition
ADD, REMOVE, SET = MutationType.ADD, MutationType.REMOVE, MutationType.SET


class Relation(Enum):
    ADD = "add"
    REQUIRE = "require"
    REMOVE = "remove"
    AFTER = "after"


class Mutation:
    """A queued request to change the active states."""

    __slots__ = ("args", "called", "is_auto", "is_check", "queue_tick", "type")

    def __init__(
        self,
        type: MutationType,
        called: tuple[str, ...],
        args: dict[str, Any] | None = None,
        *,
        is_auto: bool = False,
        is_check: bool = False,
    ) -> None:
        self.type = type
        self.called = called
        self.args: dict[str, Any] = {} if args is None else args
        self.is_auto = is_auto
        self.is_check = is_check
        #: its place in the queue's history (1, 2, ...); 0 for the machine's
        #: own mutations (auto states, Exception) and dry runs
        self.queue_tick = 0

    def __repr__(self) -> str:
        auto = " auto" if self.is_auto else ""
        return f"<Mutation {self.type.value}{auto} {' '.join(self.called)}>"


class EvalMutation(Mutation):
    """``Machine.eval``: ``fn`` to run on the queue, and how that went.

    Marked ``is_check`` (it changes no state), so nothing that reads the
    queue for mutations (``will_be``, folding repeats) takes it for one.
    """

    __slots__ = ("done", "fn", "ok", "skip")

    def __init__(self, fn: Callable[[], object]) -> None:
        super().__init__(SET, (), is_check=True)
        self.fn = fn
        self.done = threading.Event()
        self.ok = False
        self.skip = False  # the caller gave up waiting before it ran

    def __repr__(self) -> str:
        return f"<Mutation eval {getattr(self.fn, '__name__', self.fn)}>"


class Event:
    """What a handler receives: its name, the machine, the args, the transition."""

    __slots__ = ("args", "machine", "name", "transition")

    def __init__(self, name: str, machine: Machine, transition: Transition) -> None:
        self.name = name
        self.machine = machine
        self.transition = transition
        self.args = transition.mutation.args

    @property
    def is_check(self) -> bool:
        """True inside ``can_add`` / ``can_remove`` dry runs."""
        return self.transition.mutation.is_check

    def __repr__(self) -> str:
        return f"<Event {self.name} of {self.machine.id}>"


class HandlerRaisedError(Exception):
    """Internal: carries an exception raised by a handler out of a phase."""

    def __init__(self, handler: str, state: str, error: Exception) -> None:
        super().__init__(handler)
        self.handler = handler
        self.state = state
        self.error = error


class Transition:
    """One mutation being executed: before, target and after, and its handlers.

    Most mutations are resolved by deltas: ``enters`` and ``exits`` come
    from the called states and the relations of those alone, and the full
    ``target_states`` list is only built if someone reads it. The full
    resolution (``Resolver.target_states``) runs only when relations could
    reach further, so a transition costs what it changes, not what is active.
    """

    # no __slots__: the fields below are class-level defaults, so the common
    # transition (resolved by deltas, nothing refused) never assigns them
    _before_memo: tuple[str, ...] | None = None
    _targets: list[str] | None = None
    _target_set: set[str] | None = None
    _refused = False
    is_completed = False
    #: the states whose ticks this transition changed, once applied
    changed: list[str] = []

    def __init__(self, machine: Machine, mutation: Mutation) -> None:
        self._id = next(_tx_ids)
        self.machine = machine
        self.mutation = mutation
        ticks = machine._ticks
        self.time_before: list[int] = ticks
        self.time_after: list[int] = ticks

        called = mutation.called
        kind = mutation.type
        resolver = machine._resolver
        if machine._consistent:
            index = machine._index
            if len(called) == 1 and not resolver.multi_adders:
                # one state that reaches nothing else: the common toggle
                state = called[0]
                if kind is ADD and state in resolver.free:
                    on = ticks[index[state]] & 1
                    new = not on or state in resolver.multi
                    self.enters: list[str] = [state] if new else []
                    self.exits: list[str] = []
                    self.is_accepted = True
                    return
                if kind is REMOVE and state in resolver.unrequired:
                    self.enters = []
                    self.exits = [state] if ticks[index[state]] & 1 else []
                    self.is_accepted = True
                    return
            if kind is ADD and resolver.simple_add(called, ticks, index):
                multi = resolver.multi
                if len(called) == 1:  # no comprehension: a frame of its own
                    state = called[0]
                    new = not ticks[index[state]] & 1 or state in multi
                    enters = [state] if new else []
                else:
                    enters = [
                        s for s in called if not ticks[index[s]] & 1 or s in multi
                    ]
                self.enters = resolver.sort(enters) if len(enters) > 1 else enters
                self.exits = []
                self.is_accepted = True
                return
            if kind is REMOVE:
                exits = resolver.simple_remove_exits(called, ticks, index)
                if exits is not None:
                    self.enters = []
                    self.exits = exits
                    self.is_accepted = True
                    return

        active = machine._active
        self._before_memo = active
        if kind is ADD:
            targets = resolver.target_states([*called, *active], active)
        elif kind is REMOVE:
            removing = set(called)
            to_set = [s for s in active if s not in removing]
            targets = resolver.target_states(to_set, active, called)
        else:
            targets = resolver.target_states(list(called), active)
        self._targets = targets
        if kind is REMOVE:
            accepted = True
        else:
            in_targets = self._in_targets
            if len(called) == 1:
                accepted = in_targets(called[0])
            elif mutation.is_auto:
                accepted = any(in_targets(c) for c in called)
            else:
                accepted = all(in_targets(c) for c in called)
        self.is_accepted = accepted
        if not accepted:
            self.enters = []
            self.exits = []
        else:
            self._setup_enters_exits()

    def _setup_enters_exits(self) -> None:
        """``enters`` and ``exits`` from fully resolved ``target_states``."""
        targets = self.target_states
        ticks, index = self.time_before, self.machine._index
        resolver = self.machine._resolver
        multi = resolver.multi
        called = self.mutation.called
        self.enters = [
            s
            for s in targets
            if not ticks[index[s]] & 1 or (s in multi and s in called)
        ]
        target_set = self._targets_as_set()
        exits = [s for s in self._before if s not in target_set]
        self.exits = resolver.sort(exits) if len(exits) > 1 else exits

    # -- membership without listing every target ----------------------------

    def _was_active(self, state: str) -> bool:
        return bool(self.time_before[self.machine._index[state]] & 1)

    def _in_targets(self, state: str) -> bool:
        """True when ``state`` is (still) among the states this ends with."""
        if self._targets is not None or len(self.exits) > 8:
            return state in self._targets_as_set()
        if state in self.exits:
            return False
        return self._was_active(state) or state in self.enters

    def _ordered(self, candidates: Iterable[str]) -> list[str]:
        """Those of ``candidates`` (schema order) that are targets, in target order.

        Without listing every target: the called states come first, then the
        rest in schema order, then :meth:`Resolver.sort`, as the full list.
        """
        if self._targets is not None:
            wanted = set(candidates)
            return [s for s in self._targets if s in wanted]
        called = self.mutation.called
        first = set(called)
        listed = [s for s in called if s in candidates]
        listed += [s for s in candidates if s not in first]
        in_targets = self._in_targets
        return self.machine._resolver.sort([s for s in listed if in_targets(s)])

    def _targets_as_set(self) -> set[str]:
        target_set = self._target_set
        if target_set is None:
            target_set = self._target_set = set(self.target_states)
        return target_set

    @property
    def target_states(self) -> list[str]:
        """The active states this transition ends with, in handler order."""
        targets = self._targets
        if targets is None:
            # resolved by deltas: what the full resolution would have listed
            m = self.machine
            resolver = m._resolver
            exits = set(self.exits)
            if self.mutation.type is ADD:
                listed = dict.fromkeys([*self.mutation.called, *self._before])
                targets = resolver.sort([s for s in listed if s not in exits])
            else:
                targets = resolver.sort([s for s in self._before if s not in exits])
            self._targets = targets
        return targets

    @target_states.setter
    def target_states(self, targets: list[str]) -> None:
        self._targets = targets
        self._target_set = None

    @property
    def _before(self) -> tuple[str, ...]:
        """Active states when the transition started, in schema order."""
        before = self._before_memo
        if before is None:
            m = self.machine
            if m._ticks is self.time_before:
                before = m._active
            else:
                ticks = self.time_before
                before = tuple(n for n, t in zip(m._names, ticks) if t & 1)
            self._before_memo = before
        return before

    # -- read-only views -------------------------------------------------

    @property
    def id(self) -> str:
        return f"{self._id:x}"

    @property
    def states_before(self) -> list[str]:
        """Active states when the transition started, in schema order."""
        return list(self._before)

    @property
    def called_states(self) -> list[str]:
        return list(self.mutation.called)

    @property
    def args(self) -> dict[str, Any]:
        return self.mutation.args

    @property
    def is_auto(self) -> bool:
        return self.mutation.is_auto

    @property
    def is_check(self) -> bool:
        return self.mutation.is_check

    @property
    def mutation_type(self) -> MutationType:
        return self.mutation.type

    @property
    def clock_before(self) -> dict[str, int]:
        return dict(zip(self.machine._names, self.time_before, strict=True))

    @property
    def clock_after(self) -> dict[str, int]:
        """Ticks after the transition; predicted while negotiation runs."""
        return dict(zip(self.machine._names, self.predicted_time(), strict=True))

    def predicted_time(self) -> list[int]:
        """``time_after`` once applied; before that, what applying would give."""
        if self.time_after is not self.time_before or not self.is_accepted:
            return self.time_after
        return advanced_clock(
            self.time_before, self.enters, self.exits, self.machine._index
        )

    def __repr__(self) -> str:
        return (
            f"<Transition {self.id} {self.mutation.type.value} "
            f"{' '.join(self.mutation.called)} -> ({' '.join(self.target_states)})>"
        )

    # -- execution -------------------------------------------------------

    def _call(self, name: str, state: str, handlers: list[Any]) -> bool:
        m = self.machine
        event = Event(name, m, self)
        if m._watch_handlers:
            return self._call_watched(name, state, handlers, event)
        for handler in handlers:
            try:
                if handler(event) is False:
                    return False
            except Exception as error:
                raise HandlerRaisedError(name, state, error) from error
        return True

    def _call_watched(
        self, name: str, state: str, handlers: list[Any], event: Event
    ) -> bool:
        """``_call`` with tracers told of each handler, and the timeout kept."""
        m = self.machine
        trace = m._trace
        emitters = m._emitters.get(name, ())
        for i, handler in enumerate(handlers):
            emitter = emitters[i] if i < len(emitters) else ""
            for fn in trace.get("handler_start", ()):
                fn(self, emitter, name)
            try:
                result = m._run_handler(self, handler, event, name, state)
            except Exception as error:
                raise HandlerRaisedError(name, state, error) from error
            finally:
                for fn in trace.get("handler_end", ()):
                    fn(self, emitter, name)
            if result is False:
                return False
        return True

    def _refuse(self, state: str) -> bool:
        """A handler of ``state`` said no: drop it (auto) or cancel (False)."""
        m = self.machine
        if self.mutation.is_auto and m._schema[state].auto:
            if self._in_targets(state):
                self.target_states = [s for s in self.target_states if s != state]
                self._refused = True
            return True
        return False

    def negotiate(self, table: dict[str, list[Any]]) -> bool:
        """Run negotiation handlers; False when the transition is canceled.

        The handlers of states staying active (``Foo_Foo``) and of pairs
        (``Foo_Bar``) are looked up from what is bound, not by walking every
        active state.
        """
        m = self.machine
        names = m._handler_names
        for state in self.exits:
            name = names[state][1]
            if name in table and not self._call(name, state, table[name]):
                return False
        for state in list(self.enters):
            name = names[state][0]
            if (
                name in table
                and not self._call(name, state, table[name])
                and not self._refuse(state)
            ):
                return False
        if m._self_handlers and self.mutation.type is not REMOVE:
            was_active = self._was_active
            staying = [s for s in m._self_handlers if was_active(s)]
            for state in self._ordered(staying) if staying else ():
                name = names[state][4]
                if (
                    name in table  # bound meanwhile in another thread: skipped
                    and not self._call(name, state, table[name])
                    and not self._refuse(state)
                ):
                    return False
        if m._pair_handlers:
            for _src, dst, pair in self._pairs(m._pair_handlers):
                if pair not in table or not self._in_targets(dst):
                    continue  # an auto state refused meanwhile
                if not self._call(pair, dst, table[pair]) and not self._refuse(dst):
                    return False
        if self.mutation.is_auto and not self.target_states:
            return False
        any_enter = table.get("any_enter")
        return not (any_enter and not self._call("any_enter", "", any_enter))

    def _pairs(self, pairs: dict[tuple[str, str], str]) -> list[tuple[str, str, str]]:
        """Bound ``Foo_Bar`` handlers that apply: Foo was active, Bar a target.

        In Go's order: by ``Foo`` in schema order, then ``Bar`` in target order.
        """
        was_active, in_targets = self._was_active, self._in_targets
        found = [
            (src, dst, name)
            for (src, dst), name in pairs.items()
            if was_active(src) and in_targets(dst)
        ]
        if len(found) < 2:
            return found
        index = self.machine._index
        dsts = sorted({dst for _, dst, _ in found}, key=index.__getitem__)
        position = {dst: i for i, dst in enumerate(self._ordered(dsts))}
        found.sort(key=lambda f: (index[f[0]], position[f[1]]))
        return found

    def finalize(self, table: dict[str, list[Any]]) -> None:
        """Run final handlers; on an error the unfinished states are reverted."""
        names = self.machine._handler_names
        exits, enters = self.exits, self.enters
        # no enumerate(): the position is only needed on an error, and the
        # states are unique, so index() finds it then
        for state in exits:
            name = names[state][3]
            if name in table:
                try:
                    self._call(name, state, table[name])
                except HandlerRaisedError:
                    self._revert(exits[exits.index(state) :], enters)
                    raise
        for state in enters:
            name = names[state][2]
            if name in table:
                try:
                    self._call(name, state, table[name])
                except HandlerRaisedError:
                    self._revert((), enters[enters.index(state) :])
                    raise
        any_state = table.get("any_state")
        if any_state:
            self._call("any_state", "", any_state)

    def _revert(self, exits: Iterable[str], enters: Iterable[str]) -> None:
        """Put back the states whose final handlers didn't run."""
        m = self.machine
        m._apply(self, list(exits), list(enters))
        # half a transition may leave a state without its requirement
        m._consistent = False


def advanced_clock(
    ticks: list[int], enters: list[str], exits: list[str], index: dict[str, int]
) -> list[int]:
    """A new clock: +1 per (de)activation, +2 for a multi state re-entered."""
    new = ticks[:]
    for state in enters:
        i = index[state]
        new[i] += 2 if new[i] & 1 else 1
    for state in exits:
        new[index[state]] += 1
    return new
