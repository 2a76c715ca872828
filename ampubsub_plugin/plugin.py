"""The asyncmachine plugin: ``machine.export_to(topic)`` lands here.

Registered through the ``asyncmachine`` entry-point group (see
pyproject.toml), so any installed asyncmachine finds it without imports.
It claims only :class:`~ampubsub_plugin.topic.Topic` targets and leaves
every other target to other plugins.
"""

from __future__ import annotations

from typing import Any

import asyncmachine
from asyncmachine import Machine


@asyncmachine.hookimpl
def am_export_to(machine: Machine, target: object, opts: dict[str, Any]) -> Any:
    from .topic import Topic

    if not isinstance(target, Topic):
        return None
    unknown = sorted(set(opts) - {"mutable_by", "mutable_states"})
    if unknown:
        raise TypeError(
            "Topic exports take no options but mutable_by and mutable_states, "
            f"got {unknown}"
        )
    return target.export(machine, **opts)


@asyncmachine.hookimpl
def am_unexport_from(machine: Machine, target: object) -> bool | None:
    from .topic import Topic

    if not isinstance(target, Topic):
        return None
    return target.unexport(machine)
