"""ampubsub_plugin: share asyncmachine machines over a libp2p gossipsub topic.

``machine.export_to(topic)`` works once this package is installed (it is an
``asyncmachine`` plugin). Names are imported lazily, so importing the package
(as pytest and asyncmachine's plugin loading do) pulls in neither trio nor
py-libp2p.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._runtime import SharedRuntime
    from ._signals import SignalBye, bye_on_signals
    from .gossip import GossipConfig
    from .hooks import hookimpl, hookspec
    from .libp2p_transport import Libp2pTransport
    from .memory_transport import MemoryNetwork, MemoryTransport
    from .mutations import (
        CALLER_ARG,
        MutationArgsError,
        MutationDenied,
        MutationRateLimited,
        MutationTimeout,
        OwnerUnreachable,
        PendingMutation,
        RemoteMutation,
        RemoteMutationError,
    )
    from .remote import OwnerGone, RemoteMachine
    from .topic import Topic
    from .transport import PskMismatchError, Transport, TransportError

_EXPORTS = {
    "Topic": ".topic",
    "RemoteMachine": ".remote",
    "OwnerGone": ".remote",
    "GossipConfig": ".gossip",
    "Transport": ".transport",
    "TransportError": ".transport",
    "PskMismatchError": ".transport",
    "CALLER_ARG": ".mutations",
    "MutationArgsError": ".mutations",
    "MutationDenied": ".mutations",
    "MutationRateLimited": ".mutations",
    "MutationTimeout": ".mutations",
    "OwnerUnreachable": ".mutations",
    "PendingMutation": ".mutations",
    "RemoteMutation": ".mutations",
    "RemoteMutationError": ".mutations",
    "MemoryNetwork": ".memory_transport",
    "MemoryTransport": ".memory_transport",
    "Libp2pTransport": ".libp2p_transport",
    "SharedRuntime": "._runtime",
    "SignalBye": "._signals",
    "bye_on_signals": "._signals",
    "hookimpl": ".hooks",
    "hookspec": ".hooks",
}

__all__ = [
    "CALLER_ARG",
    "GossipConfig",
    "Libp2pTransport",
    "MemoryNetwork",
    "MemoryTransport",
    "MutationArgsError",
    "MutationDenied",
    "MutationRateLimited",
    "MutationTimeout",
    "OwnerGone",
    "OwnerUnreachable",
    "PendingMutation",
    "PskMismatchError",
    "RemoteMachine",
    "RemoteMutation",
    "RemoteMutationError",
    "SharedRuntime",
    "SignalBye",
    "Topic",
    "Transport",
    "TransportError",
    "bye_on_signals",
    "hookimpl",
    "hookspec",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ampubsub_plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
