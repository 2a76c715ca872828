"""Checking: reading a machine without changing it.

Why this module exists: most of a Machine's API only reads -- its identity,
which states are active, the clock, what the queue holds, the relations of
the schema, and the string forms. None of it takes part in a transition, so
it lives apart from the core (``machine.py``), which only needs
``is_active``.

Rule: a reader takes one snapshot of ``_ticks`` (``ticks = self._ticks``)
and works on it; the core publishes a new list on every change and never
mutates the old one, so no lock is needed to read the clock.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._fields import MachineFields
from ._schema import Names, State
from ._transition import ADD, REMOVE, SET, MutationType, Relation, Transition


class Checking(MachineFields):
    """Identity, active states, the clock, relations and string forms."""

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


def _relation_fields(spec: State) -> list[tuple[Relation, tuple[str, ...]]]:
    return [
        (Relation.ADD, spec.add),
        (Relation.REQUIRE, spec.require),
        (Relation.REMOVE, spec.remove),
        (Relation.AFTER, spec.after),
    ]
