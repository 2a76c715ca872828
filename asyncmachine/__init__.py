"""asyncmachine: a multi-state, clock-based, relational state machine.

A Python port of asyncmachine-go's core. No network, no event loop needed;
machines are thread-safe and their waiters work in threads, asyncio and trio.
"""

import logging

from ._errors import (
    AsyncMachineError,
    ExportError,
    HandlerError,
    HandlerTimeoutError,
    ReadOnlyError,
    StateError,
)
from ._machine import Machine
from ._schema import EXCEPTION, RELATIONS, Names, Schema, State, merge_schemas
from ._transition import Event, Mutation, MutationType, Relation, Result, Transition
from ._waiting import Outcome, StateContext, Waiter, WaiterCancelled, any_of
from .hooks import hookimpl, hookspec

__version__ = "0.1.0"

# a library logs, the application decides where it goes
logging.getLogger("asyncmachine").addHandler(logging.NullHandler())

__all__ = [
    "EXCEPTION",
    "RELATIONS",
    "AsyncMachineError",
    "Event",
    "ExportError",
    "HandlerError",
    "HandlerTimeoutError",
    "Machine",
    "Mutation",
    "MutationType",
    "Names",
    "Outcome",
    "ReadOnlyError",
    "Relation",
    "Result",
    "Schema",
    "State",
    "StateContext",
    "StateError",
    "Transition",
    "Waiter",
    "WaiterCancelled",
    "__version__",
    "any_of",
    "hookimpl",
    "hookspec",
    "merge_schemas",
]
