"""The gossip protocol's decisions, sans-IO, in rooms with one job each.

``core.GossipCore`` is the facade the topic drives; the rooms are
``config`` (knobs), ``events`` (what the core reports), ``roster`` (other
peers and their machines as plain records), ``exports`` (own machines; the
one cross-thread room), ``discovery`` (hello, snapshots, our phase),
``answers`` (who replies), ``repair`` (what we miss), ``pacing`` (rate,
keepalive, gossip timing), ``liveness`` (probes, reunions), and the two
flows across them (``rooms``): ``intake`` (applying messages) and
``outbox`` (building them). Nothing here does I/O.
"""

from .config import BYE_GRACE, GossipConfig, Signer
from .core import INTENT_STATES, GossipCore
from .discovery import Phase
from .events import Advanced, Discovered, Event, Gone, Refused, Revived, SchemaKnown
from .roster import MachineRecord

__all__ = [
    "BYE_GRACE",
    "INTENT_STATES",
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
    "Signer",
]
