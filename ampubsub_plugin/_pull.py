"""Pulled snapshots and pulled introductions, over one direct stream.

A newcomer used to get its snapshot broadcast: every peer received (and
paid the CPU for) a copy of everything, for one reader. Now the newcomer
asks one neighbour over the transport's direct request (``PULL_REQUEST``)
and the reply carries the snapshot's info messages, each encoded as on the
wire, in a msgpack list. The reply comes over an authenticated stream, so
its messages count as sent by that neighbour (relayed introductions still
need their owners' signatures). Anything malformed fails the whole pull;
the newcomer then asks everyone, as before.

Pulled introductions work the same way for the repair room: a peer that
misses some peers' infos (heard of them only through gossip or relays)
asks one neighbour for exactly those (``PULL_PEERS`` and the ids), instead
of a ``reqinfo`` whose request and answers every peer would receive. When
the neighbour doesn't know them, or the pull fails, the next request for
them goes to everyone.

A snapshot pull is *hedged*: when the neighbour asked hasn't answered
within :data:`HEDGE_AFTER` (plus the lag), a second neighbour is asked too,
and the first reply wins (:func:`hedged_fetch`). A neighbour that is busy
or still joining answers in seconds, and the newcomer's view, hence the
whole network's time to sync, waits on the slowest pull; the second ask
costs one more one-to-one reply, never a broadcast. A neighbour that
refuses at once is followed by the second ask at once. The slower attempt is
not cancelled (a write cancelled inside py-libp2p's Noise channel breaks
the connection): it runs out on its own bound and its reply is dropped
undecoded.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import msgpack  # type: ignore[import-untyped]
import trio

from .protocol import MAX_ID_LEN, Message, ProtocolError, decode, encode
from .transport import DIRECT_MAX_REPLY, TransportError

log = logging.getLogger("ampubsub.topic")

#: the direct request that asks for a snapshot (a mutation is a msgpack
#: map, which can't start with a zero byte)
PULL_REQUEST = b"\x00ampubsub/pull-snapshot/1"
#: the direct request that asks for some peers' introductions; a msgpack
#: list of their ids follows
PULL_PEERS = b"\x00ampubsub/pull-peers/1\x00"
#: most messages one reply carries
MAX_MESSAGES = 256
#: most peers one pull asks about
MAX_PULL_PEERS = 64
#: a snapshot pull asks a second neighbour when the first hasn't answered
#: within this many seconds (plus the lag)
HEDGE_AFTER = 1.0
#: a puller waits this many ``snapshot_wait``s (plus its lag) for a reply,
#: and a neighbour still joining holds a snapshot pull half as long before
#: refusing it (at most until the transport's bound on a request's handler,
#: ``DIRECT_HANDLER_TIMEOUT``, less ``HOLD_MARGIN``). A direct stream
#: shares its connection with the gossip, and its round trip is that
#: connection's backlog: at 100 peers over 5 processes on 2 cores a request
#: reached its (busy) server after 3.5 s (median) and good replies came up
#: to 22 s after asking; with 4, 47-68 pulls per run timed out, most with
#: their replies on the way, and the pulls made again cost their servers a
#: snapshot each
PULL_PATIENCE = 8

Request = Callable[[str, bytes, float], Awaitable[bytes]]


def encode_reply(messages: Sequence[Message], limit: int = DIRECT_MAX_REPLY) -> bytes:
    """The messages that fit ``limit`` bytes, in order (the rest is repaired
    later by gossip and requests)."""
    parts: list[bytes] = []
    size = 16  # msgpack's array header, generously
    for msg in messages[:MAX_MESSAGES]:
        data = encode(msg)
        if size + len(data) + 8 > limit:
            break
        parts.append(data)
        size += len(data) + 8
    reply: bytes = msgpack.packb(parts, use_bin_type=True)
    return reply


def decode_reply(data: bytes) -> list[Message]:
    """The messages of a reply; raises ProtocolError naming what is wrong."""
    try:
        parts = msgpack.unpackb(
            data, raw=False, max_array_len=MAX_MESSAGES, max_bin_len=len(data)
        )
    except Exception as exc:
        raise ProtocolError("msgpack", f"pulled snapshot: {exc}") from None
    if type(parts) is not list or any(type(p) is not bytes for p in parts):
        raise ProtocolError("field_type", "pulled snapshot: expected a list of bytes")
    return [decode(part, strict_relations=False) for part in parts]


def encode_peers_request(peers: Sequence[str]) -> bytes:
    """A ``PULL_PEERS`` request for these peers' introductions."""
    ids: bytes = msgpack.packb(list(peers[:MAX_PULL_PEERS]), use_bin_type=True)
    return PULL_PEERS + ids


def decode_peers_request(payload: bytes) -> list[str]:
    """The ids a ``PULL_PEERS`` request names; raises ProtocolError naming
    what is wrong."""
    body = payload[len(PULL_PEERS) :]
    try:
        ids = msgpack.unpackb(body, raw=False, max_array_len=MAX_PULL_PEERS)
    except Exception as exc:
        raise ProtocolError("msgpack", f"pull-peers request: {exc}") from None
    if type(ids) is not list or not ids:
        raise ProtocolError("field_type", "pull-peers request: expected a list of ids")
    for peer in ids:
        if type(peer) is not str or not 0 < len(peer) <= MAX_ID_LEN:
            raise ProtocolError(
                "limit",
                f"pull-peers request: {peer!r} is not a peer id "
                f"of 1..{MAX_ID_LEN} characters",
            )
    return ids


async def hedged_fetch(
    request: Request,
    payload: bytes,
    first: str,
    second: Callable[[], str | None],
    *,
    timeout: float,
    hedge_after: float,
    on_reply: Callable[[str, list[Message]], None],
    on_error: Callable[[str, Exception], None],
) -> bool:
    """Ask ``first``; if it hasn't answered within ``hedge_after``, or failed
    before then, ask ``second()`` too (None: nobody else): after a refusal
    the next pull waited ``PULL_RETRY`` (stretched by the lag), and in a
    bunch of joins that wait was the newcomers' time to sync. ``on_reply``
    gets the first good reply as soon as it arrives, ``on_error`` each
    failure. A reply that arrives after another won is dropped undecoded
    (a snapshot's decoding costs the newcomer as much as its building cost
    the neighbour). Returns once every attempt ended (each within
    ``timeout``): whether one succeeded."""
    won = False
    first_ended = trio.Event()

    async def attempt(peer: str, ended: trio.Event | None) -> None:
        nonlocal won
        try:
            data = await request(peer, payload, timeout)
            if won:
                log.debug("a slower pull reply from %s was dropped", peer)
                return
            messages = decode_reply(data)
        except (TransportError, ProtocolError, ValueError) as err:
            on_error(peer, err)
        else:  # (no checkpoint since ``won`` was read: this one is first)
            won = True
            on_reply(peer, messages)
        finally:
            if ended is not None:
                ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(attempt, first, first_ended)
        with trio.move_on_after(hedge_after):
            await first_ended.wait()
        if not won:  # slow, or it failed already (refused: still joining)
            other = second()
            if other is not None and other != first:
                nursery.start_soon(attempt, other, None)
    return won
