"""Pulls on the wire: what a request and a neighbour's reply may and may not be."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]
import pytest

from ampubsub_plugin._pull import (
    MAX_MESSAGES,
    MAX_PULL_PEERS,
    PULL_PEERS,
    decode_peers_request,
    decode_reply,
    encode_peers_request,
    encode_reply,
)
from ampubsub_plugin.protocol import GossipMsg, ProtocolError, ReqInfoMsg, encode


def test_a_reply_carries_its_messages_in_order() -> None:
    msgs = [ReqInfoMsg(["A"]), GossipMsg({"B": {0: 3}})]
    assert decode_reply(encode_reply(msgs)) == msgs


def test_a_reply_keeps_only_what_fits_its_limit() -> None:
    msgs = [GossipMsg({f"P{i}": {0: i}}) for i in range(50)]
    one = len(encode(msgs[0])) + 8
    kept = decode_reply(encode_reply(msgs, limit=16 + 10 * one))
    assert 1 <= len(kept) <= 10 and kept == msgs[: len(kept)]


@pytest.mark.parametrize(
    "reply",
    [
        b"\xc1",  # not msgpack
        msgpack.packb({"not": "a list"}),
        msgpack.packb(["text, not bytes"]),
        msgpack.packb([b"\x92\x01"]),  # bytes that are no message
        msgpack.packb([b""] * (MAX_MESSAGES + 1), use_bin_type=True),
    ],
    ids=["garbage", "map", "str-items", "bad-message", "too-many"],
)
def test_a_malformed_reply_is_refused_by_name(reply: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"pulled snapshot|payload|Type"):
        decode_reply(reply)


def test_a_peers_request_names_its_ids() -> None:
    payload = encode_peers_request(["A", "B"])
    assert payload.startswith(PULL_PEERS)
    assert decode_peers_request(payload) == ["A", "B"]


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",
        msgpack.packb([]),
        msgpack.packb({"A": 1}),
        msgpack.packb([1]),
        msgpack.packb([""]),
        msgpack.packb(["x" * 257]),
        msgpack.packb(["A"] * (MAX_PULL_PEERS + 1)),
    ],
    ids=["garbage", "empty", "map", "int-id", "empty-id", "long-id", "too-many"],
)
def test_a_malformed_peers_request_is_refused_by_name(body: bytes) -> None:
    with pytest.raises(ProtocolError, match=r"pull-peers request"):
        decode_peers_request(PULL_PEERS + body)
