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
from collections.abc import Iterable
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


class Relation(Enum):
    ADD = "add"
    REQUIRE = "require"
    REMOVE = "remove"
    AFTER = "after"


class Mutation:
    """A queued request to change the active states."""

    __slots__ = ("args", "called", "is_auto", "is_check", "type")

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

    def __repr__(self) -> str:
        auto = " auto" if self.is_auto else ""
        return f"<Mutation {self.type.value}{auto} {' '.join(self.called)}>"


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
    """One mutation being executed: before, target and after, and its handlers."""

    __slots__ = (
        "_before",
        "_id",
        "enters",
        "exits",
        "is_accepted",
        "is_completed",
        "machine",
        "mutation",
        "target_states",
        "time_after",
        "time_before",
    )

    def __init__(self, machine: Machine, mutation: Mutation) -> None:
        self._id = next(_tx_ids)
        self.machine = machine
        self.mutation = mutation
        self.time_before: list[int] = machine._ticks
        self.time_after: list[int] = self.time_before
        active = machine._active
        self._before: tuple[str, ...] = active
        self.is_completed = False

        called = mutation.called
        kind = mutation.type
        resolver = machine._resolver
        if kind is MutationType.ADD:
            if resolver.trivial or resolver.simple_add(called, active):
                targets = resolver.sort(list(dict.fromkeys([*called, *active])))
            else:
                targets = resolver.target_states([*called, *active], active)
            if len(called) == 1:
                accepted = called[0] in targets
            elif mutation.is_auto:
                accepted = any(c in targets for c in called)
            else:
                accepted = all(c in targets for c in called)
        elif kind is MutationType.REMOVE:
            to_set = [s for s in active if s not in called]
            targets = resolver.target_states(to_set, active, called)
            accepted = True
        else:
            targets = resolver.target_states(list(called), active)
            accepted = all(c in targets for c in called)
        self.target_states: list[str] = targets
        self.is_accepted = accepted
        if not accepted:
            self.enters: list[str] = []
            self.exits: list[str] = []
        elif len(targets) == 1 and not active:
            state = targets[0]
            self.enters = [state]
            self.exits = []
        elif not targets and len(active) == 1:
            self.enters = []
            self.exits = [active[0]]
        else:
            self._setup_enters_exits()

    def _setup_enters_exits(self) -> None:
        targets = self.target_states
        before = self._before
        resolver = self.machine._resolver
        multi = resolver.multi
        called = self.mutation.called
        self.enters = [
            s for s in targets if s not in before or (s in multi and s in called)
        ]
        exits = [s for s in before if s not in targets]
        self.exits = resolver.sort(exits) if len(exits) > 1 else exits

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
        m = self.machine
        ticks = list(self.time_before)
        multi, called = m._resolver.multi, self.mutation.called
        for state in self.target_states:
            if state not in self._before:
                ticks[m._index[state]] += 1
            elif state in multi and state in called:
                ticks[m._index[state]] += 2
        for state in self._before:
            if state not in self.target_states:
                ticks[m._index[state]] += 1
        return ticks

    def __repr__(self) -> str:
        return (
            f"<Transition {self.id} {self.mutation.type.value} "
            f"{' '.join(self.mutation.called)} -> ({' '.join(self.target_states)})>"
        )

    # -- execution -------------------------------------------------------

    def _call(self, name: str, state: str, handlers: list[Any]) -> bool:
        event = Event(name, self.machine, self)
        for handler in handlers:
            try:
                if handler(event) is False:
                    return False
            except Exception as error:
                raise HandlerRaisedError(name, state, error) from error
        return True

    def _refuse(self, state: str) -> bool:
        """A handler of ``state`` said no: drop it (auto) or cancel (False)."""
        m = self.machine
        if self.mutation.is_auto and m._schema[state].auto:
            if state in self.target_states:
                self.target_states = [s for s in self.target_states if s != state]
            return True
        return False

    def negotiate(self, table: dict[str, list[Any]]) -> bool:
        """Run negotiation handlers; False when the transition is canceled."""
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
        if self.mutation.type is not MutationType.REMOVE:
            before = self._before
            for state in list(self.target_states):
                if state not in before:
                    continue
                name = names[state][4]
                if (
                    name in table
                    and not self._call(name, state, table[name])
                    and not self._refuse(state)
                ):
                    return False
        if m._pair_handlers:
            pairs = m._pair_handlers
            for src in self._before:
                for dst in list(self.target_states):
                    pair = pairs.get((src, dst)) if src != dst else None
                    if (
                        pair is not None
                        and not self._call(pair, dst, table[pair])
                        and not self._refuse(dst)
                    ):
                        return False
        if self.mutation.is_auto and not self.target_states:
            return False
        any_enter = table.get("any_enter")
        return not (any_enter and not self._call("any_enter", "", any_enter))

    def finalize(self, table: dict[str, list[Any]]) -> None:
        """Run final handlers; on an error the unfinished states are reverted."""
        names = self.machine._handler_names
        exits, enters = self.exits, self.enters
        for i, state in enumerate(exits):
            name = names[state][3]
            if name in table:
                try:
                    self._call(name, state, table[name])
                except HandlerRaisedError:
                    self._revert(exits[i:], enters)
                    raise
        for i, state in enumerate(enters):
            name = names[state][2]
            if name in table:
                try:
                    self._call(name, state, table[name])
                except HandlerRaisedError:
                    self._revert((), enters[i:])
                    raise
        any_state = table.get("any_state")
        if any_state:
            self._call("any_state", "", any_state)

    def _revert(self, exits: Iterable[str], enters: Iterable[str]) -> None:
        """Put back the states whose final handlers didn't run."""
        m = self.machine
        active = set(m._active)
        active.update(exits)
        active.difference_update(enters)
        m._apply(self, [s for s in m._names if s in active], ())
