"""Wire codec of the gossip protocol: msgpack payloads <-> typed messages.

This is the codec's public face: it re-exports symbols from the role-specific
modules of the private package :mod:`ampubsub_plugin._wire`, so imports from
``ampubsub_plugin.protocol`` keep working while the rooms change. Each room
opens with its own rules:

- ``_wire/errors.py``: :class:`ProtocolError`, its stable reasons
  (:data:`REASONS`), how a rejection names its culprit;
- ``_wire/messages.py``: the message types, the limits, :func:`time_sum`
  and :func:`schema_hash`;
- ``_wire/reader.py``: :func:`decode` and the validators of untrusted input;
- ``_wire/writer.py``: :func:`encode`, Go's layout.

Sans-IO, so the topic logic and the tests use it without a network or an event
loop. Byte-compatible with asyncmachine-go's pkg/pubsub: one msgpack map per
payload, ``"Type"`` first, Go's field names, every field present, integer map
keys for machine indexes; our extensions ride in extra keys (``"V"``,
``"SchemaHash"``), which Go skips. Every payload comes from an untrusted peer,
so :func:`decode` checks sizes before unpacking, validates every field, type,
limit and cross-field rule, and raises nothing but :class:`ProtocolError`.
"""

from __future__ import annotations

from ._wire.errors import REASONS, ProtocolError
from ._wire.messages import (
    MAX_ID_LEN,
    MAX_MACHINES_PER_PEER,
    MAX_PAYLOAD,
    MAX_PEERS_PER_MSG,
    MAX_SIG_LEN,
    MAX_STATES,
    MAX_TAGS,
    MAX_TICK,
    PROTOCOL_VERSION,
    ByeMach,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    Proof,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
    clock_proof_payload,
    identity_digest,
    info_identity,
    schema_hash,
    time_sum,
)
from ._wire.reader import decode
from ._wire.writer import encode

__all__ = [
    "MAX_ID_LEN",
    "MAX_MACHINES_PER_PEER",
    "MAX_PAYLOAD",
    "MAX_PEERS_PER_MSG",
    "MAX_SIG_LEN",
    "MAX_STATES",
    "MAX_TAGS",
    "MAX_TICK",
    "PROTOCOL_VERSION",
    "REASONS",
    "ByeMach",
    "ByeMsg",
    "GossipMsg",
    "Info",
    "InfoMsg",
    "Message",
    "Proof",
    "ProtocolError",
    "ReqInfoMsg",
    "ReqUpdatesMsg",
    "UpdatesMsg",
    "clock_proof_payload",
    "decode",
    "encode",
    "identity_digest",
    "info_identity",
    "schema_hash",
    "time_sum",
]
