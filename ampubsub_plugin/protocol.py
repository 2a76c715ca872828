"""Wire codec of the gossip protocol: msgpack payloads <-> typed messages.

Sans-IO, so the topic logic and the tests use it without a network or an event
loop. Byte-compatible with asyncmachine-go's pkg/pubsub: one msgpack map per
payload, ``"Type"`` first, Go's field names, every field present, integer map
keys for machine indexes; our extensions ride in extra keys (``"V"``,
``"SchemaHash"``), which Go skips. Every payload comes from an untrusted peer,
so :func:`decode` checks sizes before unpacking, validates every field, type,
limit and cross-field rule, and raises nothing but :class:`ProtocolError`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NoReturn, TypeAlias, TypeVar

import msgpack  # type: ignore[import-untyped]

from asyncmachine.schema import RELATIONS, State

PROTOCOL_VERSION: Final = 1
#: Largest payload we produce or accept, in bytes (gossipsub allows ~1 MiB).
MAX_PAYLOAD: Final = 1_000_000
MAX_PEERS_PER_MSG: Final = 1024
MAX_MACHINES_PER_PEER: Final = 1024
MAX_STATES: Final = 4096
#: Largest tick, time sum and machine index (Go sends uint64, we keep int64).
MAX_TICK: Final = 2**63 - 1
#: Longest peer id, machine id, state name, tag or hash, in characters.
MAX_ID_LEN: Final = 256
MAX_TAGS: Final = 256

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

# Unpacker's own container bound: a safety net against length-header bombs,
# above every field limit so those still report the field by name.
_UNPACK_MAX_ITEMS: Final = 4 * MAX_STATES
_HASH_PERSON: Final = b"ampubsub-schema"
# Go field name of each State relation, in Go's declaration order.
_RELATION_KEYS: Final = {r: r.capitalize() for r in RELATIONS}


class ProtocolError(ValueError):
    """A payload (or a message to encode) that breaks the protocol.

    ``reason`` is a short stable key (one of :data:`REASONS`) for counters;
    the message names the culprit field.
    """

    reason: str

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- messages ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Info:
    """One exported machine, as introduced in an ``info`` message.

    ``schema`` and ``states`` are None when not sent (Go's test-schema mode,
    or a schema shipped earlier and referred to by ``schema_hash``).
    """

    id: str
    schema: dict[str, State] | None
    states: list[str] | None
    time: list[int]
    tags: list[str]
    parent: str
    schema_hash: str | None = None


@dataclass(frozen=True, slots=True)
class InfoMsg:
    """Introduces machines: peer -> machine index -> Info, plus gossip sums."""

    TYPE: ClassVar[str] = "info"
    peer_info: dict[str, dict[int, Info]]
    peer_gossips: dict[str, dict[int, int]]


@dataclass(frozen=True, slots=True)
class UpdatesMsg:
    """New machine times: peer -> machine index -> full time vector."""

    TYPE: ClassVar[str] = "updates"
    peer_clocks: dict[str, dict[int, list[int]]]


@dataclass(frozen=True, slots=True)
class GossipMsg:
    """Checksums: peer -> machine index -> time sum seen by the sender."""

    TYPE: ClassVar[str] = "gossip"
    peer_gossips: dict[str, dict[int, int]]


@dataclass(frozen=True, slots=True)
class ReqInfoMsg:
    """Asks for (re)introductions of these peers."""

    TYPE: ClassVar[str] = "reqinfo"
    peer_ids: list[str]


@dataclass(frozen=True, slots=True)
class ReqUpdatesMsg:
    """Asks for the current clocks of these peers' machines."""

    TYPE: ClassVar[str] = "requpdates"
    peer_ids: list[str]


@dataclass(frozen=True, slots=True)
class ByeMach:
    """One departing machine (``peer_bye``: the whole peer leaves)."""

    peer_bye: bool
    id: str
    time: list[int]


@dataclass(frozen=True, slots=True)
class ByeMsg:
    """These machines of the sender (or the sender itself) leave."""

    TYPE: ClassVar[str] = "bye"
    machs: dict[int, ByeMach]


Message: TypeAlias = (
    InfoMsg | UpdatesMsg | GossipMsg | ReqInfoMsg | ReqUpdatesMsg | ByeMsg
)


# --- helpers ----------------------------------------------------------------


def time_sum(time: list[int]) -> int:
    """Sum of a time vector; for one machine it only grows."""
    return sum(time)


def schema_hash(schema: dict[str, State], states: list[str]) -> str:
    """Stable 16-hex-digit digest of ``schema`` in ``states`` order.

    Raises ProtocolError("schema") when the schema's keys are not the states.
    """
    if len(schema) != len(states) or schema.keys() != set(states):
        _schema_mismatch(schema, states, "schema")
    rows = []
    for name in states:
        st = schema[name]
        rows.append(
            [
                name,
                st.auto,
                st.multi,
                list(st.require),
                list(st.add),
                list(st.remove),
                list(st.after),
                list(st.tags),
            ]
        )
    blob: bytes = msgpack.packb(rows, use_bin_type=True)
    return hashlib.blake2b(blob, digest_size=8, person=_HASH_PERSON).hexdigest()


def _short(value: object) -> str:
    """repr() cut short: culprits come from untrusted peers and end up in logs."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: object) -> str:
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


def _wrong(path: str, expected: str, value: object) -> ProtocolError:
    return ProtocolError(
        "field_type", f"{path}: expected {expected}, got {_kind(value)} {_short(value)}"
    )


def _schema_mismatch(schema: dict[str, Any], states: list[str], path: str) -> NoReturn:
    known = set(states)
    extra = [n for n in schema if n not in known]
    missing = [n for n in states if n not in schema]
    if extra:
        detail = f"state {_short(extra[0])} is in the schema but not in States"
    elif missing:
        detail = f"state {_short(missing[0])} is in States but not in the schema"
    else:
        detail = "States lists a state twice"
    raise ProtocolError("schema", f"{path}: {detail}")


# --- validation (shared by decode and encode) ------------------------------
#
# Every function takes a decoded msgpack value and the path of its field
# (for the error message) and returns the typed value. nil means empty,
# missing keys read as nil, unknown keys are ignored: Go's decoding rules.


def _map(value: Any, path: str, limit: int) -> dict[Any, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise _wrong(path, "a map", value)
    if len(value) > limit:
        raise ProtocolError(
            "limit", f"{path}: {len(value)} entries exceed the limit of {limit}"
        )
    return value


def _list(value: Any, path: str, limit: int) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise _wrong(path, "an array", value)
    if len(value) > limit:
        raise ProtocolError(
            "limit", f"{path}: {len(value)} items exceed the limit of {limit}"
        )
    return value


def _str(value: Any, path: str, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if type(value) is not str:
        raise _wrong(path, "a string", value)
    if len(value) > MAX_ID_LEN:
        raise ProtocolError(
            "limit", f"{path}: {len(value)} characters exceed MAX_ID_LEN"
        )
    if required and not value:
        raise ProtocolError("limit", f"{path}: must not be empty")
    return value


def _strs(value: Any, path: str, limit: int, *, required: bool = False) -> list[str]:
    items = _list(value, path, limit)
    for i, item in enumerate(items):
        if type(item) is not str:
            raise _wrong(f"{path}[{i}]", "a string", item)
        if len(item) > MAX_ID_LEN or (required and not item):
            _str(item, f"{path}[{i}]", required=required)
    return items


def _bool(value: Any, path: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise _wrong(path, "a bool", value)
    return value


def _tick(value: Any, path: str) -> int:
    if type(value) is not int:
        raise _wrong(path, "an unsigned integer", value)
    if value < 0 or value > MAX_TICK:
        raise ProtocolError("tick", f"{path}: {value} is outside 0..MAX_TICK")
    return value


def _time(value: Any, path: str) -> list[int]:
    ticks = _list(value, path, MAX_STATES)
    for i, tick in enumerate(ticks):
        if type(tick) is not int or tick < 0 or tick > MAX_TICK:
            _tick(tick, f"{path}[{i}]")
    total = sum(ticks)
    if total > MAX_TICK:
        raise ProtocolError("tick", f"{path}: time sum {total} exceeds MAX_TICK")
    return ticks


def _peer_id(value: Any, path: str) -> str:
    if type(value) is not str:
        raise _wrong(path, "a peer id (string)", value)
    if not value or len(value) > MAX_ID_LEN:
        raise ProtocolError(
            "limit", f"{path}: peer id {_short(value)} must have 1..MAX_ID_LEN chars"
        )
    return value


def _index(value: Any, path: str) -> int:
    if type(value) is not int:
        raise _wrong(path, "a machine index (integer)", value)
    if value < 0 or value > MAX_TICK:
        raise ProtocolError(
            "limit", f"{path}: machine index {value} is outside 0..MAX_TICK"
        )
    return value


_T = TypeVar("_T")


def _machines(value: Any, path: str, item: Callable[[Any, str], _T]) -> dict[int, _T]:
    """A ``map[int]X`` keyed by machine index."""
    machs = _map(value, path, MAX_MACHINES_PER_PEER)
    out: dict[int, _T] = {}
    for idx, val in machs.items():
        _index(idx, f"{path} key")
        out[idx] = item(val, f"{path}[{idx}]")
    return out


def _peers(
    value: Any, path: str, item: Callable[[Any, str], _T]
) -> dict[str, dict[int, _T]]:
    """A ``map[peerId]map[int]X``."""
    peers = _map(value, path, MAX_PEERS_PER_MSG)
    out: dict[str, dict[int, _T]] = {}
    for peer, machs in peers.items():
        _peer_id(peer, f"{path} key")
        out[peer] = _machines(machs, f"{path}[{_short(peer)}]", item)
    return out


def _state(value: Any, path: str) -> State:
    if value is None:
        return State()
    if type(value) is not dict:
        raise _wrong(path, "a state (map)", value)
    rels = {
        rel: _strs(value.get(key), f"{path}.{key}", MAX_STATES)
        for rel, key in _RELATION_KEYS.items()
    }
    return State(
        auto=_bool(value.get("Auto"), f"{path}.Auto"),
        multi=_bool(value.get("Multi"), f"{path}.Multi"),
        tags=_strs(value.get("Tags"), f"{path}.Tags", MAX_TAGS),
        **rels,
    )


def _info_reader(strict_relations: bool) -> Callable[[Any, str], Info]:
    def read(value: Any, path: str) -> Info:
        if type(value) is not dict:
            raise _wrong(path, "an Info (map)", value)
        states: list[str] | None = None
        if value.get("States") is not None:
            states = _strs(value["States"], f"{path}.States", MAX_STATES, required=True)
            if len(set(states)) != len(states):
                _duplicate(states, f"{path}.States")
        schema: dict[str, State] | None = None
        hash_ = value.get("SchemaHash")
        if hash_ is not None:
            _str(hash_, f"{path}.SchemaHash", required=True)
        known = _known_schema(hash_, value.get("Schema"), states, strict_relations)
        if known is not None:
            schema = known
        elif value.get("Schema") is not None:
            raw = _map(value["Schema"], f"{path}.Schema", MAX_STATES)
            schema = {}
            for name, st in raw.items():
                _str(name, f"{path}.Schema key", required=True)
                schema[name] = _state(st, f"{path}.Schema[{_short(name)}]")
        time = _time(value.get("MTime"), f"{path}.MTime")

        if states is not None and len(time) != len(states):
            raise ProtocolError(
                "vector_length",
                f"{path}.MTime: {len(time)} ticks for {len(states)} States",
            )
        if schema is not None:
            if states is None:
                raise ProtocolError("schema", f"{path}.States: nil while Schema is set")
            if len(schema) != len(states) or schema.keys() != set(states):
                _schema_mismatch(schema, states, f"{path}.Schema")
            schema = {name: schema[name] for name in states}
            if strict_relations:
                _check_relations(schema, f"{path}.Schema")
            if known is None and hash_ is not None:
                if hash_ != schema_hash(schema, states):
                    raise ProtocolError(
                        "schema",
                        f"{path}.SchemaHash: {_short(hash_)} does not match Schema",
                    )
                _remember(hash_, value["Schema"], states, schema, strict_relations)
        return Info(
            id=_str(value.get("Id"), f"{path}.Id"),
            schema=schema,
            states=states,
            time=time,
            tags=_strs(value.get("Tags"), f"{path}.Tags", MAX_TAGS),
            parent=_str(value.get("Parent"), f"{path}.Parent"),
            schema_hash=hash_,
        )

    return read


# Validated schemas by hash: the same schema arrives again and again (every
# info of every machine that uses it), and hashing and rebuilding it each time
# was the decoder's largest cost. A hit needs the same hash, the same raw
# schema and the same states; anything else takes the full path.
_SCHEMA_MEMO: OrderedDict[str, tuple[Any, list[str], dict[str, State], bool]] = (
    OrderedDict()
)
_SCHEMA_MEMO_SIZE = 256
_memo_lock = threading.Lock()


def _known_schema(
    hash_: Any, raw: Any, states: list[str] | None, strict: bool
) -> dict[str, State] | None:
    if type(hash_) is not str or raw is None or states is None:
        return None
    with _memo_lock:
        entry = _SCHEMA_MEMO.get(hash_)
        if entry is None or entry[1] != states or (strict and not entry[3]):
            return None
        if entry[0] != raw:
            return None
        _SCHEMA_MEMO.move_to_end(hash_)
        return entry[2]


def _remember(
    hash_: str, raw: Any, states: list[str], schema: dict[str, State], strict: bool
) -> None:
    with _memo_lock:
        _SCHEMA_MEMO[hash_] = (raw, list(states), schema, strict)
        _SCHEMA_MEMO.move_to_end(hash_)
        while len(_SCHEMA_MEMO) > _SCHEMA_MEMO_SIZE:
            _SCHEMA_MEMO.popitem(last=False)


def _duplicate(states: list[str], path: str) -> None:
    seen: set[str] = set()
    for name in states:
        if name in seen:
            raise ProtocolError("schema", f"{path}: lists {_short(name)} twice")
        seen.add(name)


def _check_relations(schema: dict[str, State], path: str) -> None:
    for name, st in schema.items():
        for rel, key in _RELATION_KEYS.items():
            for target in getattr(st, rel):
                if target not in schema:
                    raise ProtocolError(
                        "schema",
                        f"{path}[{_short(name)}].{key}: {_short(target)} "
                        "is not a state of this schema",
                    )


def _bye_mach(value: Any, path: str) -> ByeMach:
    if type(value) is not dict:
        raise _wrong(path, "a bye entry (map)", value)
    return ByeMach(
        peer_bye=_bool(value.get("PeerBye"), f"{path}.PeerBye"),
        id=_str(value.get("Id"), f"{path}.Id"),
        time=_time(value.get("MTime"), f"{path}.MTime"),
    )


def _peer_ids(value: Any, path: str) -> list[str]:
    ids = _list(value, path, MAX_PEERS_PER_MSG)
    for i, peer in enumerate(ids):
        _peer_id(peer, f"{path}[{i}]")
    return ids


def _message(obj: Any, strict_relations: bool) -> Message:
    """Validate one unpacked payload and build its typed message."""
    if type(obj) is not dict:
        raise ProtocolError("not_a_map", f"payload: expected a map, got {_kind(obj)}")
    type_ = obj.get("Type")
    if type_ is None:
        raise ProtocolError("missing_field", "Type: missing")
    if type(type_) is not str:
        raise _wrong("Type", "a string", type_)
    version = obj.get("V")
    if version is not None and (type(version) is not int or version < 0):
        raise _wrong("V", "a protocol version (unsigned integer)", version)

    if type_ == "updates":
        return UpdatesMsg(_peers(obj.get("PeerClocks"), "PeerClocks", _time))
    if type_ == "gossip":
        return GossipMsg(_peers(obj.get("PeerGossips"), "PeerGossips", _tick))
    if type_ == "info":
        return InfoMsg(
            _peers(obj.get("PeerInfo"), "PeerInfo", _info_reader(strict_relations)),
            _peers(obj.get("PeerGossips"), "PeerGossips", _tick),
        )
    if type_ == "reqinfo":
        return ReqInfoMsg(_peer_ids(obj.get("PeerIds"), "PeerIds"))
    if type_ == "requpdates":
        return ReqUpdatesMsg(_peer_ids(obj.get("PeerIds"), "PeerIds"))
    if type_ == "bye":
        return ByeMsg(_machines(obj.get("Machs"), "Machs", _bye_mach))
    raise ProtocolError("unknown_type", f"Type: unknown message type {_short(type_)}")


# --- public codec -----------------------------------------------------------


def decode(data: bytes, *, strict_relations: bool = True) -> Message:
    """Parse one payload; raises only ProtocolError, whatever the bytes.

    With ``strict_relations`` (the default) a schema whose relations name a
    state outside it is rejected; Go's ``Schema.Parse`` keeps such ``Require``
    entries, so pass False to accept them as sent.
    """
    try:
        size = memoryview(data).nbytes
    except TypeError:
        raise _wrong("payload", "bytes", data) from None
    if size > MAX_PAYLOAD:
        raise ProtocolError(
            "too_large", f"payload: {size} bytes exceed MAX_PAYLOAD ({MAX_PAYLOAD})"
        )
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            use_list=True,
            max_str_len=MAX_PAYLOAD,
            max_bin_len=MAX_PAYLOAD,
            max_ext_len=MAX_PAYLOAD,
            max_array_len=_UNPACK_MAX_ITEMS,
            max_map_len=_UNPACK_MAX_ITEMS,
        )
    except Exception as exc:  # msgpack raises many types; all mean "malformed"
        reason = "limit" if "exceeds max_" in str(exc) else "msgpack"
        raise ProtocolError(
            reason, f"payload: {type(exc).__name__} {_short(str(exc))}"
        ) from None
    return _message(obj, strict_relations)


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
    elif isinstance(msg, GossipMsg):
        wire["PeerGossips"] = {p: dict(g) for p, g in msg.peer_gossips.items()} or None
    elif isinstance(msg, InfoMsg):
        wire["PeerInfo"] = {
            peer: {idx: _info_wire(info) for idx, info in machs.items()}
            for peer, machs in msg.peer_info.items()
        }
        wire["PeerGossips"] = {p: dict(g) for p, g in msg.peer_gossips.items()}
    elif isinstance(msg, ReqInfoMsg | ReqUpdatesMsg):
        wire["PeerIds"] = list(msg.peer_ids) or None
    elif isinstance(msg, ByeMsg):
        wire["Machs"] = {
            idx: {"PeerBye": m.peer_bye, "Id": m.id, "MTime": list(m.time)}
            for idx, m in msg.machs.items()
        } or None
    else:
        raise TypeError(f"not a protocol message: {type(msg).__name__}")
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
    _message(wire, strict_relations)
    try:
        data: bytes = msgpack.packb(wire, use_bin_type=True)
    except Exception as exc:  # e.g. a lone surrogate in a string
        raise ProtocolError(
            "field_type", f"{type(msg).__name__}: cannot encode ({_short(str(exc))})"
        ) from None
    if len(data) > MAX_PAYLOAD:
        raise ProtocolError(
            "too_large",
            f"{type(msg).__name__}: {len(data)} bytes exceed MAX_PAYLOAD",
        )
    return data
