"""asyncmachine: a multi-state, clock-based, relational state machine.

A Python port of asyncmachine-go's core. No network, no event loop needed;
machines are thread-safe and their waiters work in threads, asyncio and trio.
"""

import logging

from .errors import (
    AsyncMachineError,
    ExportError,
    HandlerError,
    ReadOnlyError,
    StateError,
)
from .hooks import hookimpl, hookspec
from .machine import Machine
from .schema import EXCEPTION, Schema, State, merge_schemas
from .transition import Event, Mutation, MutationType, Relation, Result, Transition
from .waiting import StateContext, Waiter, any_of

__version__ = "0.1.0"

# a library logs, the application decides where it goes
logging.getLogger("asyncmachine").addHandler(logging.NullHandler())

__all__ = [
    "EXCEPTION",
    "AsyncMachineError",
    "Event",
    "ExportError",
    "HandlerError",
    "Machine",
    "Mutation",
    "MutationType",
    "ReadOnlyError",
    "Relation",
    "Result",
    "Schema",
    "State",
    "StateContext",
    "StateError",
    "Transition",
    "Waiter",
    "__version__",
    "any_of",
    "hookimpl",
    "hookspec",
    "merge_schemas",
]
