"""Snapshots: a machine's clock as data, going out and coming in.

Why this module exists: besides running transitions, a machine's clock can
leave it as plain data -- ``export_state``, or ``export_to``, which hands the
machine to the plugin that accepts the target -- and can come back from data:
``from_state`` restores a snapshot into a new machine. What comes in
bypasses relations and handlers: the data is trusted to be a clock the
owner's machine really had. (A clock shown at runtime, by a read-only copy
of another machine, goes through ``Machine._show_time`` in the core, next
to the ``_apply`` of a transition.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from . import hooks
from ._errors import ExportError, StateError
from ._fields import MachineFields, did_you_mean
from ._schema import State, parse_schema

if TYPE_CHECKING:
    from ._machine import Machine


class Snapshots(MachineFields):
    """export_state, from_state and export_to."""

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
                    "which is not in the schema" + did_you_mean(name, names),
                    name,
                )
            if not isinstance(tick, int) or isinstance(tick, bool) or tick < 0:
                raise ValueError(f"tick of {name!r} must be an int >= 0, got {tick!r}")
            ticks[positions[name]] = tick
        machine = cast("type[Machine]", cls)(
            schema,
            id=machine_id,
            tags=data.get("tags") or (),
            parent=data.get("parent") or None,
        )
        machine._ticks = ticks
        machine._consistent = False  # trusted, but not resolved here
        return machine

    def export_to(self, target: object, **opts: Any) -> Any:
        """Hand this machine to the installed plugin that accepts ``target``."""
        result = hooks.export_to(cast("Machine", self), target, opts)
        if result is None:
            raise ExportError(
                f"no installed asyncmachine plugin accepts an export to "
                f"{type(target).__module__}.{type(target).__qualname__} "
                f"(plugins: {', '.join(hooks.plugin_names()) or 'none'})"
            )
        return result
