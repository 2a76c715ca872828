"""Reading untrusted payloads: ``decode`` and the validators it runs.

Rules:

1. Every payload comes from an untrusted peer. Sizes are checked before
   unpacking (:data:`MAX_PAYLOAD`, then msgpack's own container bound), then
   every field, type, limit and cross-field rule (vector lengths, a schema
   that matches its States, relations inside the schema, a SchemaHash that
   matches the schema) before a typed message is built.
2. Nothing but :class:`ProtocolError` escapes, whatever the bytes; its
   message names the field by its Go path (``PeerInfo['p'][0].MTime``).
3. Go's decoding rules: nil means empty, missing keys read as nil, unknown
   keys are ignored (so Go's peers and ours may add fields).
4. The writer validates our own messages with :func:`read_message` too, so
   whatever we send, we accept.

Every validator takes a decoded msgpack value and the path of its field (for
the error message) and returns the typed value.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgpack  # type: ignore[import-untyped]

from asyncmachine import RELATIONS, State

from .errors import ProtocolError, kind, schema_mismatch, short, wrong
from .messages import (
    MAX_ID_LEN,
    MAX_MACHINES_PER_PEER,
    MAX_PAYLOAD,
    MAX_PEERS_PER_MSG,
    MAX_SIG_LEN,
    MAX_STATES,
    MAX_TAGS,
    MAX_TICK,
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
    schema_hash,
)

# Unpacker's own container bound: a safety net against length-header bombs,
# above every field limit so those still report the field by name.
_UNPACK_MAX_ITEMS: Final = 4 * MAX_STATES
# Go field name of each State relation, in Go's declaration order.
_RELATION_KEYS: Final = {r: r.capitalize() for r in RELATIONS}


def decode(data: bytes, *, strict_relations: bool = True) -> Message:
    """Parse one payload; raises only ProtocolError, whatever the bytes.

    With ``strict_relations`` (the default) a schema whose relations name a
    state outside it is rejected; Go's ``Schema.Parse`` keeps such ``Require``
    entries, so pass False to accept them as sent.
    """
    try:
        size = memoryview(data).nbytes
    except TypeError:
        raise wrong("payload", "bytes", data) from None
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
            reason, f"payload: {type(exc).__name__} {short(str(exc))}"
        ) from None
    return read_message(obj, strict_relations)


def read_message(obj: Any, strict_relations: bool) -> Message:
    """Validate one unpacked payload and build its typed message."""
    if type(obj) is not dict:
        raise ProtocolError("not_a_map", f"payload: expected a map, got {kind(obj)}")
    type_ = obj.get("Type")
    if type_ is None:
        raise ProtocolError("missing_field", "Type: missing")
    if type(type_) is not str:
        raise wrong("Type", "a string", type_)
    version = obj.get("V")
    if version is not None and (type(version) is not int or version < 0):
        raise wrong("V", "a protocol version (unsigned integer)", version)

    at = obj.get("At")
    sent_at = 0 if at is None else _tick(at, "At")
    if type_ == "updates":
        return UpdatesMsg(
            _peers(obj.get("PeerClocks"), "PeerClocks", _time),
            _proofs(obj.get("Proofs"), "Proofs"),
            sent_at,
        )
    if type_ == "gossip":
        return GossipMsg(
            _peers(obj.get("PeerGossips"), "PeerGossips", _tick),
            _incarnation(obj.get("Inc"), "Inc"),
            sent_at,
        )
    if type_ == "info":
        return InfoMsg(
            _peers(obj.get("PeerInfo"), "PeerInfo", _info_reader(strict_relations)),
            _peers(obj.get("PeerGossips"), "PeerGossips", _tick),
            _bool(obj.get("Pull"), "Pull"),
            _bool(obj.get("Again"), "Again"),
            sent_at,
        )
    if type_ == "reqinfo":
        return ReqInfoMsg(_peer_ids(obj.get("PeerIds"), "PeerIds"), sent_at)
    if type_ == "requpdates":
        probe = obj.get("Probe")
        return ReqUpdatesMsg(
            _peer_ids(obj.get("PeerIds"), "PeerIds"),
            False if probe is None else _bool(probe, "Probe"),
            sent_at,
        )
    if type_ == "bye":
        return ByeMsg(
            _machines(obj.get("Machs"), "Machs", _bye_mach),
            _incarnation(obj.get("Inc"), "Inc"),
            sent_at,
        )
    raise ProtocolError("unknown_type", f"Type: unknown message type {short(type_)}")


# --- validators -------------------------------------------------------------


def _map(value: Any, path: str, limit: int) -> dict[Any, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise wrong(path, "a map", value)
    if len(value) > limit:
        raise ProtocolError(
            "limit", f"{path}: {len(value)} entries exceed the limit of {limit}"
        )
    return value


def _list(value: Any, path: str, limit: int) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise wrong(path, "an array", value)
    if len(value) > limit:
        raise ProtocolError(
            "limit", f"{path}: {len(value)} items exceed the limit of {limit}"
        )
    return value


def _str(value: Any, path: str, *, required: bool = False) -> str:
    if value is None:
        value = ""
    if type(value) is not str:
        raise wrong(path, "a string", value)
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
            raise wrong(f"{path}[{i}]", "a string", item)
        if len(item) > MAX_ID_LEN or (required and not item):
            _str(item, f"{path}[{i}]", required=required)
    return items


def _bool(value: Any, path: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise wrong(path, "a bool", value)
    return value


def _tick(value: Any, path: str) -> int:
    if type(value) is not int:
        raise wrong(path, "an unsigned integer", value)
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
        raise wrong(path, "a peer id (string)", value)
    if not value or len(value) > MAX_ID_LEN:
        raise ProtocolError(
            "limit", f"{path}: peer id {short(value)} must have 1..MAX_ID_LEN chars"
        )
    return value


def _index(value: Any, path: str) -> int:
    if type(value) is not int:
        raise wrong(path, "a machine index (integer)", value)
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
        out[peer] = _machines(machs, f"{path}[{short(peer)}]", item)
    return out


def _state(value: Any, path: str) -> State:
    if value is None:
        return State()
    if type(value) is not dict:
        raise wrong(path, "a state (map)", value)
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
            raise wrong(path, "an Info (map)", value)
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
                schema[name] = _state(st, f"{path}.Schema[{short(name)}]")
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
                schema_mismatch(schema, states, f"{path}.Schema")
            schema = {name: schema[name] for name in states}
            if strict_relations:
                _check_relations(schema, f"{path}.Schema")
            if known is None and hash_ is not None:
                if hash_ != schema_hash(schema, states):
                    raise ProtocolError(
                        "schema",
                        f"{path}.SchemaHash: {short(hash_)} does not match Schema",
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
            incarnation=_incarnation(value.get("Inc"), f"{path}.Inc"),
            signature=_signature(value.get("Sig"), f"{path}.Sig"),
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
            raise ProtocolError("schema", f"{path}: lists {short(name)} twice")
        seen.add(name)


def _check_relations(schema: dict[str, State], path: str) -> None:
    for name, st in schema.items():
        for rel, key in _RELATION_KEYS.items():
            for target in getattr(st, rel):
                if target not in schema:
                    raise ProtocolError(
                        "schema",
                        f"{path}[{short(name)}].{key}: {short(target)} "
                        "is not a state of this schema",
                    )


def _bye_mach(value: Any, path: str) -> ByeMach:
    if type(value) is not dict:
        raise wrong(path, "a bye entry (map)", value)
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


def _incarnation(value: Any, path: str) -> int:
    return 0 if value is None else _tick(value, path)


def _signature(value: Any, path: str) -> bytes | None:
    if value is None:
        return None
    if type(value) is not bytes:
        raise wrong(path, "a signature (bin)", value)
    if not value or len(value) > MAX_SIG_LEN:
        raise ProtocolError(
            "limit", f"{path}: {len(value)} bytes is outside 1..MAX_SIG_LEN"
        )
    return value


def _proof(value: Any, path: str) -> Proof:
    if type(value) is not dict:
        raise wrong(path, "a proof (map)", value)
    sigs = _machines(value.get("Sigs"), f"{path}.Sigs", _required_signature)
    return Proof(_incarnation(value.get("Inc"), f"{path}.Inc"), sigs)


def _required_signature(value: Any, path: str) -> bytes:
    sig = _signature(value, path)
    if sig is None:
        raise ProtocolError("missing_field", f"{path}: missing")
    return sig


def _proofs(value: Any, path: str) -> dict[str, Proof]:
    if value is None:
        return {}
    out: dict[str, Proof] = {}
    for peer, proof in _map(value, path, MAX_PEERS_PER_MSG).items():
        _peer_id(peer, f"{path} key")
        out[peer] = _proof(proof, f"{path}[{short(peer)}]")
    return out
