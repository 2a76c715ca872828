"""Signed peer records on the pubsub path, checked once per peer, not per RPC.

py-libp2p 0.8 attaches the sender's signed peer record (an envelope with an
Ed25519 signature) to every pubsub RPC and verifies it on every RPC it
receives -- twice for an RPC with control messages -- and rebuilds its own
record's address set before every send. A peer's record changes only when
its addresses do, so on a busy topic this is one signature check per
reception for nothing new: py-spy put it at ~7 % of a 60-peer run's CPU,
plus ~4 % for the sends.

Rules:

1. Received: a record byte-for-byte equal to the one this host last
   accepted from the same peer is accepted without a check (it was checked,
   and is in the peerstore). Anything else goes to py-libp2p's own
   function. The entry is refreshed through it every :data:`RECHECK`
   seconds, so the peerstore's TTL keeps being renewed as before.
2. Sent: the record py-libp2p chose for this host is reused for
   :data:`REUSE` seconds; a change of listen addresses shows after at most
   that long (py-libp2p re-issues it on the next call).
3. Only ``libp2p.pubsub``'s references are replaced (:func:`install`,
   idempotent); the DHT and relays keep py-libp2p's functions. Per-host
   tables live in a ``WeakKeyDictionary``: a closed host takes its own.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

import libp2p.pubsub.floodsub as floodsub_module
import libp2p.pubsub.gossipsub as gossipsub_module
import libp2p.pubsub.pubsub as pubsub_module
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.utils import maybe_consume_signed_record

#: a record accepted from a peer is checked again after this long, s
RECHECK = 300.0
#: our own record is re-derived after this long, s
REUSE = 1.0
#: peers remembered per host (a bound, not a working size)
MAX_PEERS = 4096

Consume = Callable[[rpc_pb2.RPC, IHost, ID], bool]
Issue = Callable[[IHost], tuple[bytes, bool]]

_accepted: weakref.WeakKeyDictionary[Any, dict[ID, tuple[bytes, float]]] = (
    weakref.WeakKeyDictionary()
)
_issued: weakref.WeakKeyDictionary[Any, tuple[bytes, float]] = (
    weakref.WeakKeyDictionary()
)


def consume_once(
    msg: rpc_pb2.RPC,
    host: IHost,
    peer_id: ID,
    consume: Consume = maybe_consume_signed_record,
) -> bool:
    """py-libp2p's ``maybe_consume_signed_record``, skipping repeats."""
    if not msg.HasField("senderRecord"):
        return True
    record = msg.senderRecord
    now = time.monotonic()
    seen = _accepted.get(host)
    if seen is not None:
        last = seen.get(peer_id)
        if last is not None and last[0] == record and now - last[1] < RECHECK:
            return True
    if not consume(msg, host, peer_id):
        return False
    if seen is None:
        seen = _accepted.setdefault(host, {})
    if len(seen) >= MAX_PEERS and peer_id not in seen:
        seen.pop(next(iter(seen)))  # the longest known
    seen[peer_id] = (record, now)
    return True


def issue_reused(host: IHost, issue: Issue = env_to_send_in_RPC) -> tuple[bytes, bool]:
    """py-libp2p's ``env_to_send_in_RPC``, re-derived at most every REUSE s."""
    now = time.monotonic()
    last = _issued.get(host)
    if last is not None and now - last[1] < REUSE:
        return last[0], False
    envelope, fresh = issue(host)
    _issued[host] = (envelope, now)
    return envelope, fresh


def install() -> None:
    """Route py-libp2p's pubsub modules through the functions above."""
    for module in (pubsub_module, gossipsub_module, floodsub_module):
        if hasattr(module, "maybe_consume_signed_record"):
            module.maybe_consume_signed_record = consume_once  # type: ignore[attr-defined]
        if hasattr(module, "env_to_send_in_RPC"):
            module.env_to_send_in_RPC = issue_reused  # type: ignore[attr-defined]
