"""The codec's one error type, and how a rejection names its culprit.

Rules:

1. Nothing but :class:`ProtocolError` leaves ``decode`` or ``encode`` for a
   bad payload or message, whatever the bytes; a broken peer cannot corrupt
   local state, it only produces this error.
2. ``reason`` is one of :data:`REASONS`: short, stable, fit for a counter.
   The message names the field that broke the rule (``PeerInfo[...].MTime``).
3. Culprits come from untrusted peers and end up in logs, so a value is
   quoted cut short (:func:`short`) and named by msgpack's type names
   (:func:`kind`), never dumped whole.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

#: Every value of :attr:`ProtocolError.reason`.
REASONS: Final = (
    "msgpack",
    "not_a_map",
    "unknown_type",
    "field_type",
    "missing_field",
    "too_large",
    "limit",
    "tick",
    "vector_length",
    "schema",
)


class ProtocolError(ValueError):
    """A payload (or a message to encode) that breaks the protocol.

    ``reason`` is a short stable key (one of :data:`REASONS`) for counters;
    the message names the culprit field.
    """

    reason: str

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def short(value: object) -> str:
    """repr() cut short: culprits come from untrusted peers and end up in logs."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def kind(value: object) -> str:
    """msgpack's name for a value's type."""
    if value is None:
        return "nil"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bytes):
        return "bin"
    return type(value).__name__


def wrong(path: str, expected: str, value: object) -> ProtocolError:
    """The "field_type" error of a field holding the wrong kind of value."""
    return ProtocolError(
        "field_type", f"{path}: expected {expected}, got {kind(value)} {short(value)}"
    )


def schema_mismatch(schema: dict[str, Any], states: list[str], path: str) -> NoReturn:
    """Raise the "schema" error of a schema whose keys are not ``states``."""
    known = set(states)
    extra = [n for n in schema if n not in known]
    missing = [n for n in states if n not in schema]
    if extra:
        detail = f"state {short(extra[0])} is in the schema but not in States"
    elif missing:
        detail = f"state {short(missing[0])} is in States but not in the schema"
    else:
        detail = "States lists a state twice"
    raise ProtocolError("schema", f"{path}: {detail}")
