"""Schema changes: the schema and the state groups, replaced at run time.

Why this module exists: a schema is fixed for most of a machine's life and
everything in the core is derived from it once (names, index, resolver,
handler names). ``set_schema`` re-derives all of that, between transitions
(on the queue, through ``eval``), and keeps the clock's order: old states
stay in place, new ones are appended. State groups are names for lists of
states, for readers and tools; they change no relation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from ._errors import StateError
from ._fields import MachineFields
from ._resolver import Resolver
from ._schema import Names, State, parse_schema

if TYPE_CHECKING:
    from ._machine import Machine


class SchemaChanges(MachineFields):
    """set_schema, set_groups, groups and group."""

    def set_groups(self, groups: Mapping[str, Names]) -> None:
        """Name groups of states (Go's state groups), replacing any before.

        A group is a label over states, for readers and tools (``groups``,
        ``group``); it changes no relation. Unknown states raise
        ``StateError``; a group name must be a non-empty str.
        """
        parsed: dict[str, tuple[str, ...]] = {}
        for name, states in groups.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"a group name must be a non-empty str, got {name!r}")
            parsed[name] = self._parse(states)
        self._groups = parsed

    @property
    def groups(self) -> dict[str, list[str]]:
        """The state groups, in the order they were given."""
        return {name: list(states) for name, states in self._groups.items()}

    def group(self, name: str) -> list[str]:
        """The states of one group (``KeyError`` for an unknown group)."""
        try:
            return list(self._groups[name])
        except KeyError:
            raise KeyError(
                f"machine {self._id!r} has no state group {name!r}"
            ) from None

    def set_schema(self, schema: Mapping[str, State]) -> None:
        """Replace the schema while the machine runs (Go's ``SetSchema``).

        The new schema keeps every state of the old one, which keep their
        place in the clock; new ones are appended (inactive, tick 0), in the
        new schema's order. Relations and flags may change. It takes effect
        between transitions (through :meth:`eval`), so not from a handler
        (``RuntimeError``). Tracers get
        ``schema_change(machine, old_schema)`` and ``verify_states(machine)``.
        Handlers of the new states are bound with ``bind`` afterwards.
        """
        machine = cast("Machine", self)
        parsed = parse_schema(schema)
        old_names = self._names
        missing = [n for n in old_names if n not in parsed]
        if missing:
            raise StateError(
                f"machine {self._id!r}: a new schema keeps every state, "
                f"missing {missing}",
                missing[0],
            )
        # the clock's order stays; new states come after, in their order
        parsed = {
            **{n: parsed[n] for n in old_names},
            **{n: st for n, st in parsed.items() if n not in self._index},
        }
        done: list[dict[str, State]] = []

        def replace() -> None:
            done.append(self._replace_schema(parsed))

        if not machine.eval(replace):
            if self._disposing:
                raise RuntimeError(f"machine {self._id!r} is disposed")
            raise RuntimeError(
                f"machine {self._id!r}: set_schema can't run from a handler or "
                "an eval, nor while the queue is stuck"
            )
        old = done[0]
        for fn in self._trace.get("schema_change", ()):
            fn(self, old)
        for fn in self._trace.get("verify_states", ()):
            fn(self)

    def _replace_schema(self, schema: dict[str, State]) -> dict[str, State]:
        """On the queue: swap the schema and what is derived from it."""
        old = self._schema
        with self._lock:
            names = list(schema)
            added = names[len(self._names) :]
            self._schema = schema
            self._names = names
            self._index = {name: i for i, name in enumerate(names)}
            self._handler_names.update(
                {
                    s: (f"{s}_enter", f"{s}_exit", f"{s}_state", f"{s}_end", f"{s}_{s}")
                    for s in added
                }
            )
            self._resolver = Resolver(schema)
            self._ticks = self._ticks + [0] * len(added)
            self._consistent = False  # relations changed: resolve in full once
            cast("Machine", self)._rebuild_handlers()
        return old
