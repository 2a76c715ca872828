"""The py-libp2p transport: one gossipsub topic over TCP (or QUIC) with Noise.

This is the transport's public face: it re-exports symbols from the
role-specific modules of the private package :mod:`ampubsub_plugin._libp2p`,
so imports from ``ampubsub_plugin.libp2p_transport`` keep working while the
rooms change. Each room opens with its own rules and the py-libp2p
behaviour it works around:

- ``_libp2p/transport.py``: :class:`Libp2pTransport`, the facade, and the
  things the topic must know (best-effort delivery, silent drops, ordering,
  replays, mesh timing, redials);
- ``_libp2p/pubsub.py``: how the gossipsub router is tuned and why, and the
  Pubsub subclass that reports peer join/leave and hands messages over;
- ``_libp2p/inbox.py``: the unbounded queue between py-libp2p's hooks and
  the handler, one reader task, generations;
- ``_libp2p/stack.py``: one ``serve`` call's host, services and shutdown;
- ``_libp2p/dial.py``: multiaddrs and ``connect``'s dials;
- ``_libp2p/addresses.py``, ``errors.py``, ``mdns.py``: listen checks and
  announced addresses, failures in our words, mDNS discovery;
- ``_libp2p/logs.py``: py-libp2p's logging kept off the root logger.

Importing this module imports trio and py-libp2p; importing
``ampubsub_plugin`` does not (it loads this module on first use of
``Libp2pTransport``).
"""

from __future__ import annotations

from ._libp2p.dial import MAX_PARALLEL_DIALS
from ._libp2p.inbox import INBOX_WARN_BACKLOG
from ._libp2p.pubsub import MAX_PAYLOAD, OUTBOUND_QUEUE_SIZE
from ._libp2p.shedding import ShedConfig
from ._libp2p.stack import SHUTDOWN_TIMEOUT, STARTUP_TIMEOUT
from ._libp2p.transport import Libp2pTransport
from .transport import MESH_POLL_INTERVAL

__all__ = [
    "INBOX_WARN_BACKLOG",
    "MAX_PARALLEL_DIALS",
    "MAX_PAYLOAD",
    "MESH_POLL_INTERVAL",
    "OUTBOUND_QUEUE_SIZE",
    "SHUTDOWN_TIMEOUT",
    "STARTUP_TIMEOUT",
    "Libp2pTransport",
    "ShedConfig",
]
