"""Errors raised by asyncmachine; every one names the culprit."""

from __future__ import annotations


class AsyncMachineError(Exception):
    """Base class of every error this package raises on purpose."""


class StateError(AsyncMachineError, ValueError):
    """A state name that the machine's schema does not define, or a bad schema."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class HandlerError(AsyncMachineError, ValueError):
    """A handler object that cannot be bound, e.g. a method named after a typo."""


class ExportError(AsyncMachineError):
    """No installed plugin accepts the target of ``Machine.export_to``."""


class ReadOnlyError(AsyncMachineError):
    """A mutation was attempted on a read-only (remote) machine."""
