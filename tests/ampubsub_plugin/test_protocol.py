"""The gossip codec: Go's golden bytes, roundtrips and every rejection reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from ampubsub_plugin import protocol as p
from ampubsub_plugin.protocol import (
    MAX_PAYLOAD,
    MAX_TICK,
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
    time_sum,
)
from asyncmachine import State

GOLDEN_FILE = Path(__file__).parent / "data" / "go-golden.hex"
PEER = "12D3KooWPeerA"
PEER_B = "12D3KooWPeerB"


def load_golden() -> dict[str, bytes]:
    out = {}
    for line in GOLDEN_FILE.read_text().splitlines():
        if line.strip():
            name, hexdata = line.split()
            out[name] = bytes.fromhex(hexdata)
    return out


GOLDEN = load_golden()

# What Go's bytes mean, written out by reading the hex.
EXPECTED: dict[str, Message] = {
    "updates1": UpdatesMsg({PEER: {0: [1, 0, 3]}}),
    "gossip1": GossipMsg({PEER: {0: 4}}),
    "reqinfo": ReqInfoMsg([PEER]),
    "requpdates": ReqUpdatesMsg([PEER]),
    "info_testschema": InfoMsg(
        {
            PEER: {
                0: Info(
                    id="rand-p1-0",
                    schema=None,
                    states=None,
                    time=[0, 1, 1],
                    tags=[],
                    parent="",
                )
            }
        },
        {},
    ),
    "info_schema1": InfoMsg(
        {
            PEER: {
                0: Info(
                    id="rand-p1-0",
                    schema={"Foo": State(require=["Bar"])},
                    states=["Foo"],
                    time=[1],
                    tags=[],
                    parent="rand-p1",
                )
            }
        },
        {},
    ),
    "bye": ByeMsg({0: ByeMach(peer_bye=False, id="rand-p1-0", time=[0, 1, 1])}),
    "nil_maps": UpdatesMsg({}),
    "empty_time": UpdatesMsg({PEER: {0: []}}),
}

# info_schema1's schema requires "Bar", which is not one of its states: Go
# keeps such a Require, our strict default rejects it.
LENIENT = {"info_schema1"}


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, strict_map_key=False, raw=False)


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def reject(data: bytes, reason: str, *culprits: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    err = info.value
    assert err.reason == reason, str(err)
    for culprit in culprits:
        assert culprit in str(err), str(err)
    return err


def go_info(**fields: Any) -> dict[str, Any]:
    """A Go-shaped Info map (every key present), with overrides."""
    info: dict[str, Any] = {
        "Id": "m1",
        "Schema": {
            "A": State(add=["B"]).to_dict(),
            "B": State(multi=True).to_dict(),
        },
        "States": ["A", "B"],
        "MTime": [1, 0],
        "Tags": None,
        "Parent": "",
    }
    info.update(fields)
    return info


def info_payload(info: Any, peer: Any = PEER, idx: Any = 0) -> bytes:
    return pack({"Type": "info", "PeerInfo": {peer: {idx: info}}, "PeerGossips": {}})


def valid_schema() -> dict[str, State]:
    return {
        "Start": State(add=["Ready"], tags=["t1"]),
        "Ready": State(require=["Start"], auto=True),
        "Tick": State(multi=True, after=["Start"], remove=["Ready"]),
        "Exception": State(multi=True),
    }


# --- golden data ------------------------------------------------------------


def test_golden_file_has_every_case() -> None:
    assert set(GOLDEN) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_decode_go_golden(name: str) -> None:
    if name in LENIENT:
        assert decode(GOLDEN[name], strict_relations=False) == EXPECTED[name]
    else:
        assert decode(GOLDEN[name]) == EXPECTED[name]


def test_golden_relation_outside_schema_is_strict_by_default() -> None:
    reject(GOLDEN["info_schema1"], "schema", "Require", "'Bar'", "'Foo'")


def test_golden_ticks_are_go_uint64() -> None:
    # Go writes every tick and sum as 0xcf + 8 bytes, even 0
    assert GOLDEN["updates1"].count(b"\xcf") == 3
    assert GOLDEN["gossip1"].endswith(b"\xcf" + (4).to_bytes(8, "big"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_our_encoding_matches_go_values(name: str) -> None:
    strict = name not in LENIENT
    ours = unpack(encode(EXPECTED[name], strict_relations=strict))
    go = unpack(GOLDEN[name])
    assert ours.pop("V") == p.PROTOCOL_VERSION
    assert ours == go
    # same key order too: "Type" first, then Go's declaration order
    assert list(ours) == list(go)
    assert next(iter(ours)) == "Type"


def test_our_encoding_keeps_go_info_and_state_key_order() -> None:
    ours = unpack(encode(EXPECTED["info_schema1"], strict_relations=False))
    go = unpack(GOLDEN["info_schema1"])
    ours_info, go_info_ = ours["PeerInfo"][PEER][0], go["PeerInfo"][PEER][0]
    assert list(ours_info) == list(go_info_)
    assert list(ours_info["Schema"]["Foo"]) == list(go_info_["Schema"]["Foo"])


def test_compact_ints() -> None:
    # Go decodes any integer width; compact ones save bytes
    assert len(encode(EXPECTED["updates1"])) < len(GOLDEN["updates1"])


# --- roundtrips -------------------------------------------------------------


def roundtrip_cases() -> list[Message]:
    schema = valid_schema()
    states = list(schema)
    full = Info(
        id="mach-1",
        schema=schema,
        states=states,
        time=[1, 2, 0, 5],
        tags=["worker", "src-id:x"],
        parent="parent-1",
        schema_hash=schema_hash(schema, states),
    )
    by_hash = Info(
        id="mach-2",
        schema=None,
        states=states,
        time=[0, 0, 0, 0],
        tags=[],
        parent="",
        schema_hash=schema_hash(schema, states),
    )
    bare = Info(id="m", schema={}, states=[], time=[], tags=[], parent="")
    return [
        InfoMsg({PEER: {0: full, 7: by_hash}, PEER_B: {3: bare}}, {PEER: {0: 8}}),
        InfoMsg({PEER: {}}, {}),
        InfoMsg({}, {}),
        InfoMsg({PEER: {0: by_hash}}, {}, pull=True, again=True),
        UpdatesMsg({PEER: {0: [1, 2, 3], 1: [MAX_TICK]}, PEER_B: {5: []}}),
        UpdatesMsg({}),
        GossipMsg({PEER: {0: 0, 2: MAX_TICK}, PEER_B: {}}),
        GossipMsg({}),
        ReqInfoMsg([PEER, PEER_B]),
        ReqInfoMsg([]),
        ReqUpdatesMsg([PEER]),
        ReqUpdatesMsg([]),
        ByeMsg({0: ByeMach(True, "m0", [1, 1]), 4: ByeMach(False, "", [])}),
        ByeMsg({}),
    ]


@pytest.mark.parametrize("msg", roundtrip_cases(), ids=lambda m: type(m).__name__)
def test_roundtrip(msg: Message) -> None:
    data = encode(msg)
    assert unpack(data)["Type"] == msg.TYPE
    assert decode(data) == msg


def test_hello_flags_are_written_only_when_set() -> None:
    # Go's layout has neither: a first hello of a peer that can't pull
    # looks to Go exactly as Go's own
    plain = unpack(encode(InfoMsg({PEER: {}}, {})))
    assert "Pull" not in plain and "Again" not in plain
    again = unpack(encode(InfoMsg({PEER: {}}, {}, again=True)))
    assert again["Again"] is True and "Pull" not in again


def test_decoded_schema_follows_states_order() -> None:
    schema = valid_schema()
    wire = go_info(
        Schema={n: schema[n].to_dict() for n in reversed(schema)},
        States=list(schema),
        MTime=[0] * len(schema),
    )
    info = decode(info_payload(wire)).peer_info[PEER][0]  # type: ignore[union-attr]
    assert info.schema is not None
    assert list(info.schema) == list(schema)
    assert info.schema == schema


def test_every_type_has_its_wire_name() -> None:
    assert [m.TYPE for m in (InfoMsg, UpdatesMsg, GossipMsg)] == [
        "info",
        "updates",
        "gossip",
    ]
    assert (ReqInfoMsg.TYPE, ReqUpdatesMsg.TYPE, ByeMsg.TYPE) == (
        "reqinfo",
        "requpdates",
        "bye",
    )


# --- Go's decoding rules ----------------------------------------------------


def test_missing_keys_read_as_empty() -> None:
    assert decode(pack({"Type": "updates"})) == UpdatesMsg({})
    assert decode(pack({"Type": "info"})) == InfoMsg({}, {})
    assert decode(pack({"Type": "reqinfo"})) == ReqInfoMsg([])
    assert decode(pack({"Type": "bye"})) == ByeMsg({})
    msg = decode(info_payload({}))
    assert msg == InfoMsg({PEER: {0: Info("", None, None, [], [], "")}}, {})


def test_nil_values_read_as_empty() -> None:
    data = pack({"Type": "gossip", "PeerGossips": {PEER: None}})
    assert decode(data) == GossipMsg({PEER: {}})
    wire = go_info(Schema={"A": None, "B": {}}, Id=None, Parent=None)
    info = decode(info_payload(wire)).peer_info[PEER][0]  # type: ignore[union-attr]
    assert info.schema == {"A": State(), "B": State()}
    assert (info.id, info.parent) == ("", "")
    bye = pack({"Type": "bye", "Machs": {0: {"PeerBye": None, "MTime": None}}})
    assert decode(bye) == ByeMsg({0: ByeMach(False, "", [])})


def test_unknown_keys_are_ignored() -> None:
    state = {**State(multi=True).to_dict(), "Future": [1, {"x": None}]}
    wire = go_info(Schema={"A": state, "B": state}, States=["A", "B"], Extra=b"\x00")
    data = pack(
        {
            "Type": "info",
            "PeerInfo": {PEER: {0: wire}},
            "PeerGossips": None,
            "Sig": b"\x01" * 64,
            "V": 99,
        }
    )
    info = decode(data).peer_info[PEER][0]  # type: ignore[union-attr]
    assert info.schema == {"A": State(multi=True), "B": State(multi=True)}


def test_uint64_ticks_up_to_max_tick() -> None:
    raw = b"\x82\xa4Type\xa6gossip\xabPeerGossips\x81\xa1P\x81\x00\xcf"
    assert decode(raw + MAX_TICK.to_bytes(8, "big")) == GossipMsg({"P": {0: MAX_TICK}})
    reject(raw + (MAX_TICK + 1).to_bytes(8, "big"), "tick", "PeerGossips['P'][0]")
    reject(raw + b"\xff" * 8, "tick", "PeerGossips['P'][0]")


def test_relation_check_can_be_relaxed() -> None:
    wire = go_info(Schema={"A": State(require=["Z"]).to_dict(), "B": {}})
    reject(info_payload(wire), "schema", "Schema['A'].Require", "'Z'")
    msg = decode(info_payload(wire), strict_relations=False)
    info = msg.peer_info[PEER][0]  # type: ignore[union-attr]
    assert info.schema is not None
    assert info.schema["A"].require == ("Z",)


def test_helpers() -> None:
    assert time_sum([1, 2, 3]) == 6
    assert time_sum([]) == 0
    schema = valid_schema()
    states = list(schema)
    h = schema_hash(schema, states)
    assert len(h) == 16
    int(h, 16)
    assert schema_hash(dict(reversed(schema.items())), states) == h
    assert schema_hash(valid_schema(), list(states)) == h
    changed = {**schema, "Tick": schema["Tick"].replace(multi=False)}
    assert schema_hash(changed, states) != h
    assert schema_hash(schema, states[::-1]) != h
    with pytest.raises(ProtocolError) as err:
        schema_hash(schema, states[:-1])
    assert err.value.reason == "schema"
    assert "'Exception'" in str(err.value)


# --- rejections, one or more per reason -------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        GOLDEN["updates1"][:-3],
        GOLDEN["reqinfo"] + b"\x00",  # trailing bytes
        pack({"Type": "reqinfo"})[:-1],
        b"\x81\xa4Type\xa2\xff\xfe",  # invalid utf-8
        b"\x81\x91\x01\x02",  # array as map key
        b"\x81\x80\x01",  # map as map key
        b"\x91" * 5000 + b"\x01",  # nesting bomb
        b"\xc7\x03\xff\x00\x00\x01",  # malformed timestamp ext
    ],
)
def test_reject_msgpack(data: bytes) -> None:
    reject(data, "msgpack", "payload")


def test_reject_length_header_bomb() -> None:
    # a 5-byte array header claiming 4 G items must not allocate
    reject(b"\xdd\xff\xff\xff\xff", "limit", "payload")
    reject(b"\xdf\xff\xff\xff\xff", "limit", "payload")


@pytest.mark.parametrize("obj", [[1, 2], "info", None, 5, ["info"], b"\x00"])
def test_reject_not_a_map(obj: Any) -> None:
    reject(pack(obj), "not_a_map", "payload")


def test_reject_unknown_type() -> None:
    reject(pack({"Type": "hello"}), "unknown_type", "Type", "'hello'")
    reject(pack({"Type": "Info"}), "unknown_type", "'Info'")  # case-sensitive
    reject(pack({"type": "info", "Type": ""}), "unknown_type", "Type")


def test_reject_missing_type() -> None:
    reject(pack({"type": "info"}), "missing_field", "Type")
    reject(pack({"Type": None, "PeerIds": []}), "missing_field", "Type")
    reject(pack({}), "missing_field", "Type")


@pytest.mark.parametrize(
    ("obj", "culprit"),
    [
        ({"Type": 1}, "Type"),
        ({"Type": b"info"}, "Type"),
        ({"Type": "reqinfo", "V": "1"}, "V"),
        ({"Type": "reqinfo", "V": True}, "V"),
        ({"Type": "updates", "PeerClocks": [1]}, "PeerClocks"),
        ({"Type": "updates", "PeerClocks": {5: {}}}, "PeerClocks key"),
        ({"Type": "updates", "PeerClocks": {PEER: []}}, "PeerClocks['12D3KooWPeerA']"),
        ({"Type": "updates", "PeerClocks": {PEER: {"0": []}}}, "['12D3KooWPeerA'] key"),
        ({"Type": "updates", "PeerClocks": {PEER: {0: {}}}}, "['12D3KooWPeerA'][0]"),
        ({"Type": "updates", "PeerClocks": {PEER: {0: [1, True]}}}, "[0][1]"),
        ({"Type": "updates", "PeerClocks": {PEER: {0: [1.0]}}}, "[0][0]"),
        ({"Type": "updates", "PeerClocks": {PEER: {0: ["1"]}}}, "[0][0]"),
        ({"Type": "updates", "PeerClocks": {PEER: {True: [1]}}}, "key"),
        ({"Type": "gossip", "PeerGossips": {PEER: {0: False}}}, "PeerGossips"),
        ({"Type": "gossip", "PeerGossips": {PEER: {0: None}}}, "PeerGossips"),
        ({"Type": "reqinfo", "PeerIds": PEER}, "PeerIds"),
        ({"Type": "requpdates", "PeerIds": [PEER, 1]}, "PeerIds[1]"),
        ({"Type": "requpdates", "PeerIds": [b"raw"]}, "PeerIds[0]"),
        ({"Type": "bye", "Machs": {0: None}}, "Machs[0]"),
        ({"Type": "bye", "Machs": {0: {"PeerBye": 1}}}, "Machs[0].PeerBye"),
        ({"Type": "bye", "Machs": {0: {"Id": 7}}}, "Machs[0].Id"),
        (
            {"Type": "info", "PeerInfo": {PEER: {0: None}}},
            "PeerInfo['12D3KooWPeerA'][0]",
        ),
        ({"Type": "info", "PeerGossips": {PEER: {0: -0.5}}}, "PeerGossips"),
        ({"Type": "info", "Pull": 1}, "Pull"),
        ({"Type": "info", "Again": "yes"}, "Again"),
    ],
)
def test_reject_field_type(obj: dict[str, Any], culprit: str) -> None:
    reject(pack(obj), "field_type", culprit)


@pytest.mark.parametrize(
    ("fields", "culprit"),
    [
        ({"Id": 1}, ".Id"),
        ({"Parent": ["p"]}, ".Parent"),
        ({"Tags": "t"}, ".Tags"),
        ({"Tags": ["t", None]}, ".Tags[1]"),
        ({"States": {"A": 1}}, ".States"),
        ({"States": ["A", 2]}, ".States[1]"),
        ({"Schema": ["A", "B"]}, ".Schema"),
        ({"Schema": {"A": [], "B": {}}}, ".Schema['A']"),
        ({"Schema": {"A": {"Auto": 1}, "B": {}}}, ".Schema['A'].Auto"),
        ({"Schema": {"A": {"Multi": "yes"}, "B": {}}}, ".Schema['A'].Multi"),
        ({"Schema": {"A": {"Require": "B"}, "B": {}}}, ".Schema['A'].Require"),
        ({"Schema": {"A": {"After": [1]}, "B": {}}}, ".Schema['A'].After[0]"),
        ({"Schema": {"A": {"Tags": [True]}, "B": {}}}, ".Schema['A'].Tags[0]"),
        ({"Schema": {"A": {}, 1: {}}}, ".Schema key"),
        ({"MTime": [1, "0"]}, ".MTime[1]"),
        ({"MTime": {0: 1}}, ".MTime"),
        ({"SchemaHash": 5}, ".SchemaHash"),
    ],
)
def test_reject_info_field_type(fields: dict[str, Any], culprit: str) -> None:
    reject(info_payload(go_info(**fields)), "field_type", culprit)


def test_reject_too_large_before_unpacking() -> None:
    # invalid msgpack, but the size check comes first
    err = reject(b"\xc1" * (MAX_PAYLOAD + 1), "too_large", "payload")
    assert str(MAX_PAYLOAD + 1) in str(err)
    # a well-formed payload just over the limit too
    big = pack({"Type": "reqinfo", "Pad": "x" * MAX_PAYLOAD})
    reject(big, "too_large", "payload")
    reject(bytearray(big), "too_large", "payload")  # type: ignore[arg-type]


def test_encode_too_large() -> None:
    tags = [f"{i:03d}" + "t" * 252 for i in range(p.MAX_TAGS)]
    info = Info("m", None, None, [1], tags, "")
    msg = InfoMsg({PEER: {i: info for i in range(20)}}, {})
    with pytest.raises(ProtocolError) as err:
        encode(msg)
    assert err.value.reason == "too_large"
    assert "InfoMsg" in str(err.value)


def many(n: int, width: int = 6) -> list[str]:
    return [f"p{i:0{width}d}" for i in range(n)]


@pytest.mark.parametrize(
    ("obj", "culprit"),
    [
        ({"Type": "reqinfo", "PeerIds": many(p.MAX_PEERS_PER_MSG + 1)}, "PeerIds"),
        ({"Type": "reqinfo", "PeerIds": ["x" * (p.MAX_ID_LEN + 1)]}, "PeerIds[0]"),
        ({"Type": "reqinfo", "PeerIds": [PEER, ""]}, "PeerIds[1]"),
        (
            {
                "Type": "gossip",
                "PeerGossips": {i: {0: 1} for i in many(p.MAX_PEERS_PER_MSG + 1)},
            },
            "PeerGossips",
        ),
        ({"Type": "gossip", "PeerGossips": {"": {0: 1}}}, "PeerGossips key"),
        (
            {
                "Type": "updates",
                "PeerClocks": {
                    PEER: {i: [] for i in range(p.MAX_MACHINES_PER_PEER + 1)}
                },
            },
            "PeerClocks['12D3KooWPeerA']",
        ),
        ({"Type": "updates", "PeerClocks": {PEER: {-1: [1]}}}, "key"),
        (
            {"Type": "updates", "PeerClocks": {PEER: {0: [0] * (p.MAX_STATES + 1)}}},
            "PeerClocks['12D3KooWPeerA'][0]",
        ),
        (
            {
                "Type": "bye",
                "Machs": {i: {} for i in range(p.MAX_MACHINES_PER_PEER + 1)},
            },
            "Machs",
        ),
        (
            {"Type": "bye", "Machs": {0: {"Id": "i" * (p.MAX_ID_LEN + 1)}}},
            "Machs[0].Id",
        ),
    ],
)
def test_reject_limit(obj: dict[str, Any], culprit: str) -> None:
    reject(pack(obj), "limit", culprit)


@pytest.mark.parametrize(
    ("fields", "culprit"),
    [
        ({"Id": "i" * (p.MAX_ID_LEN + 1)}, ".Id"),
        ({"Parent": "i" * (p.MAX_ID_LEN + 1)}, ".Parent"),
        ({"Tags": many(p.MAX_TAGS + 1)}, ".Tags"),
        ({"Tags": ["t" * (p.MAX_ID_LEN + 1)]}, ".Tags[0]"),
        ({"States": many(p.MAX_STATES + 1), "Schema": None}, ".States"),
        ({"States": ["A", ""], "Schema": None}, ".States[1]"),
        ({"Schema": {"A": {}, "": {}}}, ".Schema key"),
        ({"Schema": {"A": {"Tags": many(p.MAX_TAGS + 1)}, "B": {}}}, "['A'].Tags"),
        ({"SchemaHash": "h" * (p.MAX_ID_LEN + 1)}, ".SchemaHash"),
    ],
)
def test_reject_info_limit(fields: dict[str, Any], culprit: str) -> None:
    reject(info_payload(go_info(**fields)), "limit", culprit)


def test_reject_states_limit_on_encode() -> None:
    names = many(p.MAX_STATES + 1)
    info = Info("m", None, names, [0] * len(names), [], "")
    with pytest.raises(ProtocolError) as err:
        encode(InfoMsg({PEER: {0: info}}, {}))
    assert err.value.reason == "limit"
    assert ".States" in str(err.value)


@pytest.mark.parametrize(
    ("obj", "culprit"),
    [
        ({"Type": "updates", "PeerClocks": {PEER: {0: [1, -1]}}}, "[0][1]"),
        ({"Type": "updates", "PeerClocks": {PEER: {0: [2**64 - 1]}}}, "[0][0]"),
        ({"Type": "updates", "PeerClocks": {PEER: {0: [MAX_TICK, 1]}}}, "sum"),
        ({"Type": "gossip", "PeerGossips": {PEER: {3: -5}}}, "PeerGossips"),
        ({"Type": "gossip", "PeerGossips": {PEER: {3: MAX_TICK + 1}}}, "[3]"),
        ({"Type": "bye", "Machs": {0: {"MTime": [-1]}}}, "Machs[0].MTime[0]"),
        ({"Type": "info", "PeerGossips": {PEER: {0: -1}}}, "PeerGossips"),
    ],
)
def test_reject_tick(obj: dict[str, Any], culprit: str) -> None:
    reject(pack(obj), "tick", culprit)


def test_reject_info_tick() -> None:
    reject(info_payload(go_info(MTime=[1, -2])), "tick", ".MTime[1]")


def test_reject_vector_length() -> None:
    reject(info_payload(go_info(MTime=[1])), "vector_length", ".MTime", "2 States")
    reject(info_payload(go_info(MTime=[1, 2, 3])), "vector_length", ".MTime")
    reject(
        info_payload(go_info(MTime=None)), "vector_length", "PeerInfo['12D3KooWPeerA']"
    )
    # without States, MTime cannot be checked (Go's test-schema mode)
    decode(info_payload(go_info(States=None, Schema=None, MTime=[1, 2, 3])))


@pytest.mark.parametrize(
    ("fields", "culprits"),
    [
        ({"States": ["A", "C"], "MTime": [0, 0]}, ["Schema", "'B'"]),
        ({"States": ["A"], "MTime": [0]}, ["Schema", "'B'"]),
        ({"States": ["A", "B", "C"], "MTime": [0] * 3}, ["Schema", "'C'"]),
        ({"States": ["A", "A"]}, [".States", "'A' twice"]),
        ({"States": ["A", "A"], "Schema": None}, [".States", "twice"]),
        ({"States": ["A", "B", "A"], "MTime": [0] * 3}, [".States", "twice"]),
        ({"States": None}, ["States", "nil"]),
        (
            {"Schema": {"A": {"Add": ["B", "X"]}, "B": {}}},
            ["Schema['A'].Add", "'X'"],
        ),
        ({"Schema": {"A": {}, "B": {"Remove": ["Q"]}}}, ["Schema['B'].Remove"]),
        ({"Schema": {"A": {}, "B": {"After": ["Q"]}}}, ["Schema['B'].After"]),
        ({"SchemaHash": "0123456789abcdef"}, ["SchemaHash", "'0123456789abcdef'"]),
    ],
)
def test_reject_schema(fields: dict[str, Any], culprits: list[str]) -> None:
    reject(info_payload(go_info(**fields)), "schema", *culprits)


def test_schema_hash_is_checked_when_schema_is_sent() -> None:
    schema = valid_schema()
    states = list(schema)
    good = schema_hash(schema, states)
    wire = go_info(
        Schema={n: s.to_dict() for n, s in schema.items()},
        States=states,
        MTime=[0] * len(states),
        SchemaHash=good,
    )
    info = decode(info_payload(wire)).peer_info[PEER][0]  # type: ignore[union-attr]
    assert info.schema_hash == good
    # without a schema, the hash is a reference: nothing to check it against
    decode(info_payload(go_info(Schema=None, SchemaHash="feedfacefeedface")))


# --- encode refuses what decode would --------------------------------------


@pytest.mark.parametrize(
    ("msg", "reason", "culprit"),
    [
        (UpdatesMsg({PEER: {0: [1, -1]}}), "tick", "PeerClocks['12D3KooWPeerA'][0][1]"),
        (UpdatesMsg({PEER: {0: [True]}}), "field_type", "[0][0]"),
        (UpdatesMsg({PEER: {0: 5}}), "field_type", "UpdatesMsg"),  # type: ignore[dict-item]
        (GossipMsg({"": {0: 1}}), "limit", "PeerGossips key"),
        (ReqInfoMsg([PEER, 3]), "field_type", "PeerIds[1]"),  # type: ignore[list-item]
        (ReqUpdatesMsg(["\ud800"]), "field_type", "ReqUpdatesMsg"),
        (ByeMsg({-1: ByeMach(False, "m", [])}), "limit", "Machs key"),
        (
            InfoMsg({PEER: {0: Info("m", None, ["A"], [1, 2], [], "")}}, {}),
            "vector_length",
            ".MTime",
        ),
        (
            InfoMsg({PEER: {0: Info("m", {"A": State()}, None, [], [], "")}}, {}),
            "schema",
            ".States",
        ),
        (
            InfoMsg(
                {PEER: {0: Info("m", {"A": {}}, ["A"], [0], [], "")}},  # type: ignore[dict-item]
                {},
            ),
            "field_type",
            "InfoMsg",
        ),
    ],
)
def test_encode_rejects(msg: Message, reason: str, culprit: str) -> None:
    with pytest.raises(ProtocolError) as err:
        encode(msg)
    assert err.value.reason == reason, str(err.value)
    assert culprit in str(err.value), str(err.value)


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(ProtocolError) as err:
        encode({"Type": "info"})  # type: ignore[arg-type]
    assert err.value.reason == "field_type"


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(ProtocolError) as err:
        decode("\x82")  # type: ignore[arg-type]
    assert err.value.reason == "field_type"
    assert "payload" in str(err.value)


def test_every_reason_is_listed() -> None:
    assert set(p.REASONS) == {
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
    }
    assert issubclass(ProtocolError, ValueError)
