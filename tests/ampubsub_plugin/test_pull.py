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


def _fetch_with(
    delays: dict[str, float | None],
    hedge_after: float = 1.0,
    malformed: frozenset[str] = frozenset(),
) -> tuple[bool, list[str], list[tuple[str, float]], list[str]]:
    """Run ``hedged_fetch`` against peers answering after ``delays`` seconds
    (None: refusing at once; those in ``malformed`` with bytes that don't
    decode), in virtual time; what it reported, and when."""
    import trio
    import trio.testing

    from ampubsub_plugin._pull import hedged_fetch
    from ampubsub_plugin.transport import DirectRefused, DirectTimeout

    asked: list[str] = []
    replies: list[tuple[str, float]] = []
    errors: list[str] = []

    async def request(peer: str, payload: bytes, timeout: float) -> bytes:
        asked.append(peer)
        delay = delays[peer]
        if delay is None:
            raise DirectRefused(peer, "still joining")
        if delay > timeout:  # as the transports bound a request
            await trio.sleep(timeout)
            raise DirectTimeout(peer, "no reply")
        await trio.sleep(delay)
        if peer in malformed:
            return b"\xc1 not msgpack"
        return encode_reply([GossipMsg({peer: {0: 1}})])

    async def main() -> bool:
        return await hedged_fetch(
            request,
            b"pull",
            "A",
            lambda: "B" if "B" in delays else None,
            timeout=6.0,
            hedge_after=hedge_after,
            on_reply=lambda peer, msgs: replies.append((peer, trio.current_time())),
            on_error=lambda peer, err: errors.append(peer),
        )

    ok = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return ok, asked, replies, errors


def test_a_slow_pull_asks_a_second_neighbour_and_the_first_reply_wins() -> None:
    ok, asked, replies, errors = _fetch_with({"A": 5.0, "B": 0.5})
    assert ok and asked == ["A", "B"] and errors == []
    assert replies == [("B", 1.5)]  # A's later reply is dropped


def test_a_reply_that_lost_the_race_is_not_decoded() -> None:
    """The slower snapshot is dropped as it arrives: malformed, it would
    count as a failure if it were decoded."""
    ok, asked, replies, errors = _fetch_with(
        {"A": 5.0, "B": 0.5}, malformed=frozenset({"A"})
    )
    assert ok and asked == ["A", "B"] and replies == [("B", 1.5)]
    assert errors == []
    ok, _, replies, errors = _fetch_with({"A": 0.5}, malformed=frozenset({"A"}))
    assert not ok and replies == [] and errors == ["A"]  # the winner is checked


def test_a_quick_pull_asks_nobody_else() -> None:
    ok, asked, replies, _ = _fetch_with({"A": 0.2, "B": 0.1})
    assert ok and asked == ["A"] and replies == [("A", 0.2)]


def test_a_refused_pull_asks_the_second_neighbour_at_once() -> None:
    """Not after ``hedge_after``, nor after a ``PULL_RETRY`` for the next
    pull: a neighbour still joining refuses in one round trip."""
    ok, asked, replies, errors = _fetch_with({"A": None, "B": 0.1})
    assert ok and asked == ["A", "B"] and errors == ["A"]
    assert replies == [("B", 0.1)]


def test_a_refused_pull_with_nobody_else_to_ask_fails() -> None:
    ok, asked, replies, errors = _fetch_with({"A": None})
    assert not ok and asked == ["A"] and replies == [] and errors == ["A"]


def test_a_pull_refused_twice_fails() -> None:
    ok, asked, replies, errors = _fetch_with({"A": None, "B": None})
    assert not ok and asked == ["A", "B"] and replies == []
    assert errors == ["A", "B"]


def test_a_pull_fails_only_when_both_neighbours_failed() -> None:
    ok, asked, replies, errors = _fetch_with({"A": 9.0, "B": None})
    assert not ok and asked == ["A", "B"] and replies == []
    assert sorted(errors) == ["A", "B"]
