"""Property tests of the gossip codec: hostile input never escapes as a crash.

Whatever bytes arrive, decode() returns a message or raises ProtocolError;
whatever it accepts, encode() can send again unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampubsub_plugin import protocol as p
from ampubsub_plugin.protocol import (
    ByeMach,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    ProtocolError,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
    decode,
    encode,
    schema_hash,
)
from asyncmachine import State

MESSAGE_TYPES = (InfoMsg, UpdatesMsg, GossipMsg, ReqInfoMsg, ReqUpdatesMsg, ByeMsg)
TYPES = [m.TYPE for m in MESSAGE_TYPES]
FIELDS = [
    "Type",
    "V",
    "PeerInfo",
    "PeerGossips",
    "PeerClocks",
    "PeerIds",
    "Machs",
    "Id",
    "Schema",
    "States",
    "MTime",
    "Tags",
    "Parent",
    "SchemaHash",
    "PeerBye",
    "Auto",
    "Multi",
    "Require",
    "Add",
    "Remove",
    "After",
]

GOLDEN = [
    bytes.fromhex(line.split()[1])
    for line in (Path(__file__).parent / "data" / "go-golden.hex")
    .read_text()
    .splitlines()
    if line.strip()
]

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check(data: bytes) -> None:
    """The property: a Message or a ProtocolError; accepted means re-sendable."""
    try:
        msg = decode(data)
    except ProtocolError as err:
        assert err.reason in p.REASONS
        assert str(err)
        return
    assert isinstance(msg, MESSAGE_TYPES)
    assert decode(encode(msg)) == msg


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


# --- (1) arbitrary bytes ----------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.sampled_from(TYPES), st.binary(max_size=200))
def test_typed_prefix_then_garbage(type_: str, tail: bytes) -> None:
    # a valid map header and Type, then anything: exercises the field parsers
    head = b"\x83" + pack("Type") + pack(type_)
    check(head + tail)


# --- (2) arbitrary msgpack structures ---------------------------------------

ints = st.one_of(
    st.integers(min_value=-3, max_value=300),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([p.MAX_TICK, p.MAX_TICK + 1, 2**64 - 1, -1]),
)
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["12D3KooWPeerA", "A", "B", "Exception", "", *FIELDS, *TYPES]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    texts,
    st.binary(max_size=8),
    st.floats(allow_nan=False),
)
keys = st.one_of(texts, st.integers(min_value=-2, max_value=5), st.booleans())
anything = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=25,
)

# Go-shaped pieces filled with random values, so deep validators get reached.
peer_ids = st.sampled_from(["12D3KooWPeerA", "12D3KooWPeerB", "p"]) | texts
idx_keys = st.integers(min_value=-1, max_value=4) | st.sampled_from([True, "0", 1.0])
ticks = st.lists(ints | scalars, max_size=5) | scalars
state_maps = st.fixed_dictionaries(
    {},
    optional={
        k: st.lists(st.sampled_from(["A", "B", "C"]) | texts, max_size=3) | scalars
        for k in ["Require", "Add", "Remove", "After", "Tags", "Auto", "Multi"]
    },
)
info_maps = st.fixed_dictionaries(
    {},
    optional={
        "Id": texts | scalars,
        "Schema": st.dictionaries(
            st.sampled_from(["A", "B", "C"]) | texts, state_maps | anything, max_size=3
        )
        | scalars,
        "States": st.lists(st.sampled_from(["A", "B", "C"]) | texts, max_size=4)
        | scalars,
        "MTime": ticks,
        "Tags": st.lists(texts, max_size=3) | scalars,
        "Parent": texts | scalars,
        "SchemaHash": texts | scalars,
        "Extra": anything,
    },
)


def per_peer(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    machs = st.dictionaries(idx_keys, values, max_size=3) | scalars
    return st.dictionaries(peer_ids, machs, max_size=3) | anything


bye_maps = st.fixed_dictionaries(
    {},
    optional={"PeerBye": scalars, "Id": texts | scalars, "MTime": ticks},
)
messages = st.fixed_dictionaries(
    {"Type": st.sampled_from(TYPES)},
    optional={
        "V": ints | scalars,
        "PeerInfo": per_peer(info_maps | anything),
        "PeerGossips": per_peer(ints | scalars),
        "PeerClocks": per_peer(ticks),
        "PeerIds": st.lists(peer_ids | scalars, max_size=4) | scalars,
        "Machs": st.dictionaries(idx_keys, bye_maps | anything, max_size=3) | scalars,
        "Unknown": anything,
    },
)


@FUZZ
@given(anything)
def test_arbitrary_structures(obj: Any) -> None:
    check(pack(obj))


@FUZZ
@given(messages)
def test_message_shaped_structures(obj: dict[str, Any]) -> None:
    check(pack(obj))


@FUZZ
@given(info_maps | anything, peer_ids, idx_keys)
def test_info_shaped_structures(info: Any, peer: Any, idx: Any) -> None:
    check(pack({"Type": "info", "PeerInfo": {peer: {idx: info}}}))


# --- (3) mutated golden payloads --------------------------------------------

mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "set"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
)


@FUZZ
@given(st.sampled_from(GOLDEN), st.lists(mutation, min_size=1, max_size=4))
def test_mutated_golden(golden: bytes, mutations: list[tuple[str, int, int]]) -> None:
    data = bytearray(golden)
    for op, pos, byte in mutations:
        if not data:
            data.append(byte)
            continue
        i = pos % len(data)
        if op == "flip":
            data[i] ^= 1 << (byte % 8)
        elif op == "set":
            data[i] = byte
        elif op == "insert":
            data.insert(i, byte)
        else:
            del data[i]
    check(bytes(data))


def test_golden_still_pass_the_property() -> None:
    for data in GOLDEN:
        try:
            decode(data)
        except ProtocolError as err:  # info_schema1 under the strict default
            assert err.reason == "schema"


# --- (4) roundtrip of valid messages ----------------------------------------

valid_peers = st.text(
    alphabet="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz",
    min_size=1,
    max_size=20,
)
valid_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8)
valid_ticks = st.integers(min_value=0, max_value=2**40) | st.just(0)
indexes = st.integers(min_value=0, max_value=2**31)


@st.composite
def valid_infos(draw: st.DrawFn) -> Info:
    states = draw(st.none() | st.lists(names, unique=True, max_size=5))
    schema: dict[str, State] | None = None
    if states is not None and draw(st.booleans()):
        pick = st.lists(st.sampled_from(states), max_size=3) if states else st.just([])
        schema = {
            name: State(
                require=draw(pick),
                add=draw(pick),
                remove=draw(pick),
                after=draw(pick),
                auto=draw(st.booleans()),
                multi=draw(st.booleans()),
                tags=draw(st.lists(valid_text, max_size=2)),
            )
            for name in states
        }
    size = len(states) if states is not None else draw(st.integers(0, 4))
    time = draw(st.lists(valid_ticks, min_size=size, max_size=size))
    hash_: str | None = None
    if states is not None and draw(st.booleans()):
        hash_ = (
            schema_hash(schema, states)
            if schema is not None
            else draw(st.text("0123456789abcdef", min_size=1, max_size=16))
        )
    return Info(
        id=draw(valid_text),
        schema=schema,
        states=states,
        time=time,
        tags=draw(st.lists(valid_text, max_size=3)),
        parent=draw(valid_text),
        schema_hash=hash_,
    )


def by_peer(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.dictionaries(
        valid_peers, st.dictionaries(indexes, values, max_size=3), max_size=3
    )


gossips = by_peer(valid_ticks)
valid_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(InfoMsg, by_peer(valid_infos()), gossips),
    st.builds(UpdatesMsg, by_peer(st.lists(valid_ticks, max_size=6))),
    st.builds(GossipMsg, gossips),
    st.builds(ReqInfoMsg, st.lists(valid_peers, max_size=5)),
    st.builds(ReqUpdatesMsg, st.lists(valid_peers, max_size=5)),
    st.builds(
        ByeMsg,
        st.dictionaries(
            indexes,
            st.builds(
                ByeMach, st.booleans(), valid_text, st.lists(valid_ticks, max_size=4)
            ),
            max_size=3,
        ),
    ),
)


@FUZZ
@given(valid_messages)
def test_roundtrip_valid_messages(msg: Message) -> None:
    data = encode(msg)
    assert len(data) <= p.MAX_PAYLOAD
    wire = msgpack.unpackb(data, strict_map_key=False, raw=False)
    assert next(iter(wire)) == "Type"
    assert wire["V"] == p.PROTOCOL_VERSION
    assert decode(data) == msg
