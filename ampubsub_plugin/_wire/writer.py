"""Writing payloads: ``encode`` in asyncmachine-go's layout.

Rules:

1. Byte-compatible with asyncmachine-go's pkg/pubsub: one msgpack map per
   payload, ``"Type"`` first, Go's field names, every field present, integer
   map keys for machine indexes. Where Go's sender allocates, an empty value
   is sent as an empty container, else as nil, as in the golden data.
2. Our extensions ride in extra keys (``"V"``, ``"SchemaHash"``, ``"Inc"``,
   ``"Sig"``, ``"Proofs"``, ``"Probe"``, ``"Pull"``, ``"Again"``, ``"At"``),
   which Go skips; a default value is not written.
3. Every message passes the reader's checks before it is packed (so whatever
   we send, we accept); a message over :data:`MAX_PAYLOAD` is refused, never
   cut.
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]

from .errors import ProtocolError, short
from .messages import (
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
)
from .reader import read_message


def _info_wire(info: Info) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "Id": info.id,
        "Schema": None
        if info.schema is None
        else {name: st.to_dict() for name, st in info.schema.items()},
        "States": None if info.states is None else list(info.states),
        "MTime": list(info.time),
        "Tags": list(info.tags) or None,
        "Parent": info.parent,
    }
    if info.schema_hash is not None:
        wire["SchemaHash"] = info.schema_hash
    if info.incarnation:
        wire["Inc"] = info.incarnation
    if info.signature is not None:
        wire["Sig"] = info.signature
    return wire


def _to_wire(msg: Message) -> dict[str, Any]:
    """Go's layout. Where Go's sender allocates, an empty value is sent as
    an empty container (PeerInfo, PeerGossips of info, time vectors), else
    as nil (other top-level maps and lists, tags), as in the golden data."""
    wire: dict[str, Any] = {"Type": msg.TYPE}
    if isinstance(msg, UpdatesMsg):
        wire["PeerClocks"] = {
            peer: {idx: list(t) for idx, t in machs.items()}
            for peer, machs in msg.peer_clocks.items()
        } or None
        if msg.proofs:
            wire["Proofs"] = {
                peer: {"Inc": proof.incarnation, "Sigs": dict(proof.signatures)}
                for peer, proof in msg.proofs.items()
            }
    elif isinstance(msg, GossipMsg):
        wire["PeerGossips"] = {p: dict(g) for p, g in msg.peer_gossips.items()} or None
        if msg.incarnation:
            wire["Inc"] = msg.incarnation
    elif isinstance(msg, InfoMsg):
        wire["PeerInfo"] = {
            peer: {idx: _info_wire(info) for idx, info in machs.items()}
            for peer, machs in msg.peer_info.items()
        }
        wire["PeerGossips"] = {p: dict(g) for p, g in msg.peer_gossips.items()}
        if msg.pull:
            wire["Pull"] = True
        if msg.again:
            wire["Again"] = True
    elif isinstance(msg, ReqInfoMsg | ReqUpdatesMsg):
        wire["PeerIds"] = list(msg.peer_ids) or None
        if isinstance(msg, ReqUpdatesMsg) and msg.probe:
            wire["Probe"] = True
    elif isinstance(msg, ByeMsg):
        wire["Machs"] = {
            idx: {"PeerBye": m.peer_bye, "Id": m.id, "MTime": list(m.time)}
            for idx, m in msg.machs.items()
        } or None
        if msg.incarnation:
            wire["Inc"] = msg.incarnation
    else:
        raise TypeError(f"not a protocol message: {type(msg).__name__}")
    if msg.sent_at:
        wire["At"] = msg.sent_at
    wire["V"] = PROTOCOL_VERSION
    return wire


def encode(msg: Message, *, strict_relations: bool = True) -> bytes:
    """Serialise a message in Go's layout, plus ``"V"``.

    The message passes the same checks as :func:`decode` (so whatever we send,
    we accept); raises ProtocolError, e.g. "too_large" over MAX_PAYLOAD.
    """
    try:
        wire = _to_wire(msg)
    except ProtocolError:
        raise
    except Exception as exc:  # wrong types from the caller: say which
        raise ProtocolError(
            "field_type", f"{type(msg).__name__}: cannot encode ({exc})"
        ) from None
    read_message(wire, strict_relations)
    try:
        data: bytes = msgpack.packb(wire, use_bin_type=True)
    except Exception as exc:  # e.g. a lone surrogate in a string
        raise ProtocolError(
            "field_type", f"{type(msg).__name__}: cannot encode ({short(str(exc))})"
        ) from None
    if len(data) > MAX_PAYLOAD:
        raise ProtocolError(
            "too_large",
            f"{type(msg).__name__}: {len(data)} bytes exceed MAX_PAYLOAD",
        )
    return data
