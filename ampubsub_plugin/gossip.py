"""The gossip protocol's public face: ``GossipConfig`` and the sans-IO core.

The code lives in the private package ``ampubsub_plugin._gossip``, one room
per rule; this module re-exports the names users and tests import, so
``from ampubsub_plugin.gossip import GossipConfig`` keeps working.
"""

from ._gossip import (
    BYE_GRACE,
    Advanced,
    Discovered,
    Event,
    Gone,
    GossipConfig,
    GossipCore,
    MachineRecord,
    Phase,
    Refused,
    Revived,
    SchemaKnown,
)

__all__ = [
    "BYE_GRACE",
    "Advanced",
    "Discovered",
    "Event",
    "Gone",
    "GossipConfig",
    "GossipCore",
    "MachineRecord",
    "Phase",
    "Refused",
    "Revived",
    "SchemaKnown",
]
