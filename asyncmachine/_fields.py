"""The fields of a Machine, set up in one place, and the check of state names.

Why this module exists: :class:`~asyncmachine._machine.Machine` is composed
of parts, each in its own module -- checking, waiting, binding, disposal,
snapshots -- and the core (the queue, mutations, transitions) in
``machine.py``. Every part reads the same private fields, so they are all
assigned here, in ``_setup``, with what each one holds; every part inherits
this class, which is how each knows (and type-checks) the fields it uses.
A part that hands the machine to code typed for ``Machine`` (hooks,
``StateContext``, ``on_dispose`` callbacks) casts ``self``: at run time it
is always a Machine, the only class that composes the parts.

Rules: the clock (``_ticks``) is replaced, never mutated in place, so a
reader in another thread always sees one consistent list; ``_active`` is
derived from it on demand (odd tick = active, in schema order). No field has a
class-level value, and ``_setup`` assigns all of them, always in the same
order (an instance's attributes are exactly what they were before the split).

State names arrive from callers everywhere, so their validation lives here
too: ``_parse`` turns what a caller passed into known names, or raises a
``StateError`` with a did-you-mean hint.
"""

from __future__ import annotations

import difflib
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._errors import StateError
from ._handler_loop import HandlerLoop
from ._resolver import Resolver
from ._schema import Names, State
from ._transition import Mutation, Transition
from ._waiting import StateContext, Subscriptions

if TYPE_CHECKING:
    from ._machine import Machine

Handler = Callable[[Any], Any]


class MachineFields:
    """What every part of a Machine relies on; see the module docstring."""

    def _setup(
        self,
        schema: dict[str, State],
        id: str | None,
        tags: Iterable[str],
        parent: Machine | str | None,
    ) -> None:
        """Everything but validation; subclasses with their own schema rules call it."""
        # the schema; its order is the clock's order
        self._schema = schema
        self._names = list(self._schema)
        self._index = {name: i for i, name in enumerate(self._names)}
        # the clock: one tick per state, odd while active
        self._ticks = [0] * len(self._names)
        # (clock, its active states): derived on demand, see ``_active``
        self._active_memo: tuple[list[int], tuple[str, ...]] = (self._ticks, ())
        # (clock, the auto states to try on it): see ``Machine._auto_after``
        self._auto_memo: tuple[list[int], list[str]] | None = None
        # False while the active states may break the relations (a restored
        # snapshot): transitions then resolve in full instead of by deltas
        self._consistent = True
        self._resolver = Resolver(self._schema)
        self._handler_names = {
            s: (f"{s}_enter", f"{s}_exit", f"{s}_state", f"{s}_end", f"{s}_{s}")
            for s in self._names
        }
        # identity
        self._id = id if id is not None else uuid.uuid4().hex[:16]
        if not isinstance(self._id, str) or not self._id:
            raise ValueError(f"a machine id must be a non-empty str, got {id!r}")
        if isinstance(tags, str):
            tags = (tags,)
        self._tags = list(dict.fromkeys(tags))
        if isinstance(parent, MachineFields):
            self._parent_id: str | None = parent.id
        else:
            self._parent_id = parent or None

        # the queue; one thread at a time (the runner) drains it
        self._lock = threading.RLock()
        self._room = threading.Condition(self._lock)  # other threads wait for room
        self._blocked = 0  # how many of them
        self._queue: deque[Mutation] = deque()
        self._queue_issued = 0  # queue ticks given to mutations so far
        self._queue_tick = 0  # the tick of the last one processed
        self._last_tick = threading.local()  # per thread: its last QUEUED tick
        self._groups: dict[str, tuple[str, ...]] = {}
        self._running = False
        self._runner: int | None = None  # the runner's thread id
        self._transition: Transition | None = None

        # handlers and tracers as tables, rebuilt on each (un)bind
        self._bindings: dict[str, dict[str, Handler]] = {}
        self._handlers: dict[str, list[Handler]] = {}
        self._pair_handlers: dict[tuple[str, str], str] = {}
        self._self_handlers: tuple[str, ...] = ()  # states with Foo_Foo bound
        self._negotiators = False  # a handler runs before the clock changes
        self._tracers: list[object] = []
        self._trace: dict[str, list[Callable[..., Any]]] = {}
        self._emitters: dict[str, list[str]] = {}  # binding ids, as _handlers
        # handlers under a timeout, on their own thread (see _handler_loop.py)
        self._handler_timeout: float | None = None
        self._handler_loop: HandlerLoop | None = None
        self._watch_handlers = False  # a timeout, or tracers of each handler

        # waiting, contexts, errors and disposal
        self._subs = Subscriptions(self._tick_of)
        self._contexts: dict[str, list[StateContext]] = {}
        self._ctx_epochs: dict[str, int] = {}  # bumped to cancel a state's contexts
        self._err: BaseException | None = None
        self._disposing = False
        self._disposed = False
        self._dispose_fns: list[Callable[[Machine], Any]] = []

    @property
    def _active(self) -> tuple[str, ...]:
        """The active states of the current clock, in schema order.

        Derived from ``_ticks`` once per published clock, and only when asked
        for: a transition works on the states it changes, so a machine with
        many active states doesn't pay for listing them on every change.
        """
        ticks = self._ticks
        memo = self._active_memo
        if memo[0] is ticks:
            return memo[1]
        active = tuple(n for n, t in zip(self._names, ticks) if t & 1)
        self._active_memo = (ticks, active)
        return active

    def _tick_of(self, state: str) -> int:
        return self._ticks[self._index[state]]

    # -- state names -----------------------------------------------------

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


def did_you_mean(
    word: str, choices: Iterable[str], before: str = "", after: str = ""
) -> str:
    """`` (did you mean X?)`` for the closest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {before}{close[0]}{after!s}?)" if close else ""
