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


class HandlerTimeoutError(AsyncMachineError, TimeoutError):
    """A handler ran longer than the machine's ``handler_timeout``.

    The machine gets it as ``Exception`` (``args["err"]``); ``handler`` is
    the handler's name (``Foo_enter``), ``state`` its state (``""`` for
    ``any_enter`` / ``any_state``), ``timeout`` the limit in seconds.
    """

    def __init__(
        self, machine_id: str, handler: str, state: str, timeout: float
    ) -> None:
        of_state = f" of state {state!r}" if state else ""
        super().__init__(
            f"machine {machine_id!r}: handler {handler}{of_state} ran over "
            f"its handler_timeout of {timeout:g} s; transition canceled"
        )
        self.machine_id = machine_id
        self.handler = handler
        self.state = state
        self.timeout = timeout
