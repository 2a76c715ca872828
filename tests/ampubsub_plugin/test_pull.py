"""Pulled snapshots on the wire: what a neighbour's reply may and may not be."""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped]
import pytest

from ampubsub_plugin._pull import MAX_MESSAGES, decode_reply, encode_reply
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
