"""States, schemas and their validation.

A schema is an ordered mapping of state name to :class:`State`. Validation
happens once, when a machine is built, so the transition hot path can trust
every name it meets. The rules follow asyncmachine-go's ``Schema.Parse``:
a state never removes itself nor runs after itself, and a state that adds
another never also removes it; unlike Go, a relation that names an unknown
state is an error instead of being dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import StateError

#: The built-in error state, present in every machine (multi).
EXCEPTION = "Exception"

RELATIONS = ("require", "add", "remove", "after")

Names = str | Iterable[str]


def names_tuple(value: Names, what: str) -> tuple[str, ...]:
    """One name or an iterable of names as a duplicate-free tuple."""
    if isinstance(value, str):
        return (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(
            f"{what} must be a state name or an iterable of names, "
            f"not {type(value).__name__}"
        ) from None
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"{what} must hold state names (str), got {type(item).__name__}"
                f" {item!r}"
            )
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True, slots=True)
class State:
    """One state's relations and properties; immutable, hashable."""

    require: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    auto: bool = False
    multi: bool = False
    tags: tuple[str, ...] = field(default=())

    def __init__(
        self,
        require: Names = (),
        add: Names = (),
        remove: Names = (),
        after: Names = (),
        auto: bool = False,
        multi: bool = False,
        tags: Names = (),
    ) -> None:
        set_ = object.__setattr__
        set_(self, "require", names_tuple(require, "require"))
        set_(self, "add", names_tuple(add, "add"))
        set_(self, "remove", names_tuple(remove, "remove"))
        set_(self, "after", names_tuple(after, "after"))
        set_(self, "auto", bool(auto))
        set_(self, "multi", bool(multi))
        set_(self, "tags", names_tuple(tags, "tags"))

    def extend(self, other: State) -> State:
        """Union of both states' relations and tags; auto/multi if either has it."""
        return State(
            require=self.require + other.require,
            add=self.add + other.add,
            remove=self.remove + other.remove,
            after=self.after + other.after,
            auto=self.auto or other.auto,
            multi=self.multi or other.multi,
            tags=self.tags + other.tags,
        )

    def replace(self, **changes: Any) -> State:
        """A copy with some fields replaced (relations given as names)."""
        values: dict[str, Any] = {
            "require": self.require,
            "add": self.add,
            "remove": self.remove,
            "after": self.after,
            "auto": self.auto,
            "multi": self.multi,
            "tags": self.tags,
        }
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"State has no field(s) {sorted(unknown)}")
        values.update(changes)
        return State(**values)

    def to_dict(self) -> dict[str, Any]:
        """Go's field names, every key present (the wire and JSON form)."""
        return {
            "Auto": self.auto,
            "Multi": self.multi,
            "Require": list(self.require) or None,
            "Add": list(self.add) or None,
            "Remove": list(self.remove) or None,
            "After": list(self.after) or None,
            "Tags": list(self.tags) or None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        """Inverse of :meth:`to_dict`; missing or nil keys mean empty."""
        return cls(
            require=data.get("Require") or (),
            add=data.get("Add") or (),
            remove=data.get("Remove") or (),
            after=data.get("After") or (),
            auto=bool(data.get("Auto")),
            multi=bool(data.get("Multi")),
            tags=data.get("Tags") or (),
        )


Schema = Mapping[str, State]


def parse_schema(schema: Schema) -> dict[str, State]:
    """Validate and normalise a schema; adds ``Exception`` when missing."""
    if not isinstance(schema, Mapping):
        raise TypeError(f"a schema is a mapping of name to State, not {type(schema)}")
    parsed: dict[str, State] = {}
    for name, state in schema.items():
        if not isinstance(name, str) or not name:
            raise StateError(f"state names must be non-empty strings, got {name!r}")
        if not isinstance(state, State):
            raise TypeError(
                f"schema value for {name!r} must be a State, not {type(state).__name__}"
            )
        parsed[name] = state
    if EXCEPTION not in parsed:
        parsed[EXCEPTION] = State(multi=True)

    for name, state in parsed.items():
        for relation in RELATIONS:
            for target in getattr(state, relation):
                if target not in parsed:
                    raise StateError(
                        f"state {name!r} has {relation}={target!r}, "
                        f"which is not a state of this schema",
                        target,
                    )
        conflicts = set(state.require) & set(state.remove)
        if conflicts:
            other = sorted(conflicts)[0]
            raise StateError(
                f"state {name!r} both requires and removes {other!r}", other
            )
        remove = tuple(r for r in state.remove if r != name and r not in state.add)
        after = tuple(a for a in state.after if a != name)
        if remove != state.remove or after != state.after:
            parsed[name] = state.replace(remove=remove, after=after)
    return parsed


def merge_schemas(*schemas: Schema) -> dict[str, State]:
    """Combine schemas in order; a later state replaces an earlier one of its name.

    Use :meth:`State.extend` to combine two definitions of one state instead.
    """
    merged: dict[str, State] = {}
    for schema in schemas:
        for name, state in schema.items():
            merged[name] = state
    return merged
