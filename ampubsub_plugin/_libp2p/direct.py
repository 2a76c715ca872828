"""Direct requests: one request, one reply, over a libp2p stream to one peer.

Rules:

1. Protocol ``/ampubsub/direct/1.0.0``: the caller opens a stream (dialling
   the peer if needed, from the addresses py-libp2p knows), writes one
   frame, reads one frame. Nothing is broadcast.
   The caller negotiates the protocol optimistically: multistream-select's
   header, the protocol and the request go out in one write, and the
   echoes are checked before the reply is read (py-libp2p's own client
   waits for each echo: three round trips where this takes one; a round
   trip behind a busy connection's gossip took seconds, measured at 60
   peers per machine). The server is py-libp2p's unchanged: it reads the
   same bytes in the same order. A peer that doesn't serve the protocol
   answers ``na``: unreachable, as before.
2. A frame is a 4-byte big-endian length and the bytes. A request is at
   most :data:`MAX_REQUEST` bytes, a reply at most :data:`MAX_REPLY`; a
   reply starts with one status byte: :data:`OK` then the handler's bytes,
   or :data:`REFUSED` then a UTF-8 reason. A longer frame is never read:
   the stream is reset.
3. Every wait is bounded: the caller's whole call by its ``timeout``, the
   server's read of the request by :data:`READ_TIMEOUT`, the handler by
   :data:`HANDLER_TIMEOUT`. A server serves at most :data:`MAX_SERVING`
   requests at once; more are refused at once.
4. Requests from peers the transport's filter refuses are refused, as are
   all requests while no handler is set.

The payload is opaque here; the mutation layer puts msgpack in it.
"""

from __future__ import annotations

import contextlib
import struct

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.protocol_muxer.multiselect import (
    MULTISELECT_PROTOCOL_ID,
    PROTOCOL_NOT_FOUND_MSG,
)
from libp2p.utils import encode_delim
from libp2p.utils.varint import read_varint_prefixed_bytes_limited

from ..transport import (
    DIRECT_HANDLER_TIMEOUT,
    DIRECT_MAX_REPLY,
    DIRECT_MAX_REQUEST,
    HANDLER_TIMED_OUT,
    DirectClosed,
    DirectRefused,
    DirectTimeout,
    DirectUnreachable,
    PeerFilter,
    RequestHandler,
)
from .logs import log

PROTOCOL = TProtocol("/ampubsub/direct/1.0.0")
MAX_REQUEST = DIRECT_MAX_REQUEST
MAX_REPLY = DIRECT_MAX_REPLY + 1  # the status byte
READ_TIMEOUT = 5.0
HANDLER_TIMEOUT = DIRECT_HANDLER_TIMEOUT
MAX_SERVING = 32
OK = 0
REFUSED = 1
_LENGTH = struct.Struct(">I")
#: what the caller writes before its request frame (rule 1), and the
#: server's answers to it (each delimited as multistream-select sends it)
_PROPOSAL = encode_delim(MULTISELECT_PROTOCOL_ID.encode()) + encode_delim(
    PROTOCOL.encode()
)
_HEADER = MULTISELECT_PROTOCOL_ID.encode() + b"\n"
_AGREED = PROTOCOL.encode() + b"\n"
_NOT_FOUND = PROTOCOL_NOT_FOUND_MSG.encode() + b"\n"
#: longest echo read (ours are 19 and 23 bytes with their newline)
_MAX_ECHO = 64


class FrameError(Exception):
    """A frame broke rule 2 (too long, or cut short)."""


async def read_exactly(stream: INetStream, size: int) -> bytes:
    chunks: list[bytes] = []
    missing = size
    while missing:
        chunk = await stream.read(missing)
        if not chunk:
            raise FrameError(f"stream ended {missing} bytes short")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


async def read_frame(stream: INetStream, limit: int) -> bytes:
    (size,) = _LENGTH.unpack(await read_exactly(stream, _LENGTH.size))
    if size > limit:
        raise FrameError(f"a frame of {size} bytes is over the {limit}-byte limit")
    return await read_exactly(stream, size)


def frame(body: bytes) -> bytes:
    return _LENGTH.pack(len(body)) + body


async def write_frame(stream: INetStream, body: bytes) -> None:
    await stream.write(frame(body))


class DirectServer:
    """The stream handler of one host: runs the request handler per stream."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.handler: RequestHandler | None = None
        self.allows: PeerFilter | None = None
        self._serving = 0
        self.served = 0
        self.refused = 0

    def attach(self, host: IHost) -> None:
        host.set_stream_handler(PROTOCOL, self.handle)

    async def handle(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id.to_base58()
        try:
            if self._serving >= MAX_SERVING:
                await self._refuse(stream, "busy: too many requests at once")
                return
            self._serving += 1
            try:
                await self._serve(stream, peer)
            finally:
                self._serving -= 1
        except Exception as error:  # a bad caller must not hurt the host
            log.debug("%s: direct request from %s failed: %r", self._name, peer, error)
            await _reset(stream)
        else:
            await _close(stream)

    async def _serve(self, stream: INetStream, peer: str) -> None:
        handler, allows = self.handler, self.allows
        with trio.fail_after(READ_TIMEOUT):
            request = await read_frame(stream, MAX_REQUEST)
        if handler is None:
            await self._refuse(stream, "this peer serves no direct requests")
            return
        if allows is not None and not allows(peer):
            await self._refuse(stream, "not allowed on this network")
            return
        try:
            with trio.fail_after(HANDLER_TIMEOUT):
                reply = await handler(peer, request)
        except trio.TooSlowError:
            await self._refuse(stream, HANDLER_TIMED_OUT)
            return
        except Exception as error:
            await self._refuse(stream, str(error) or type(error).__name__)
            return
        if len(reply) + 1 > MAX_REPLY:
            await self._refuse(stream, f"reply of {len(reply)} bytes is over the limit")
            return
        await write_frame(stream, bytes([OK]) + reply)
        self.served += 1

    async def _refuse(self, stream: INetStream, reason: str) -> None:
        self.refused += 1
        text = reason.encode("utf-8", "replace")[: MAX_REPLY - 1]
        await write_frame(stream, bytes([REFUSED]) + text)


async def request(host: IHost, peer_id: str, payload: bytes, timeout: float) -> bytes:
    """Rule 1 from the caller's side; errors as ``Transport.request`` names them."""
    if len(payload) > MAX_REQUEST:
        raise ValueError(
            f"a direct request of {len(payload)} bytes is over the "
            f"{MAX_REQUEST}-byte limit"
        )
    try:
        peer = ID.from_base58(peer_id)
    except Exception as error:
        raise ValueError(f"not a peer id: {peer_id!r} ({error})") from error
    stream: INetStream | None = None
    with trio.move_on_after(timeout) as scope:
        try:
            stream = await host.get_network().new_stream(peer)
        except Exception as error:
            raise DirectUnreachable(
                peer_id, f"can't open a stream: {type(error).__name__}: {error}"
            ) from error
        stream.set_protocol(PROTOCOL)
        try:
            await stream.write(_PROPOSAL + frame(payload))
            agreed = await _read_echoes(stream)
            reply = await read_frame(stream, MAX_REPLY) if agreed else b""
        except Exception as error:
            await _reset(stream)
            raise DirectClosed(
                peer_id, f"the stream broke mid-request: {error!r}"
            ) from error
        if not agreed:
            await _reset(stream)
            raise DirectUnreachable(peer_id, f"it doesn't serve {PROTOCOL}")
        await _close(stream)
        if not reply:
            raise DirectClosed(peer_id, "an empty reply")
        if reply[0] == REFUSED:
            raise DirectRefused(peer_id, reply[1:].decode("utf-8", "replace"))
        return reply[1:]
    assert scope.cancelled_caught
    if stream is not None:
        await _reset(stream)
    raise DirectTimeout(peer_id, f"no reply within {timeout:g} s")


async def _read_echoes(stream: INetStream) -> bool:
    """Whether the server took our proposal: it echoes the header, then the
    protocol or ``na`` (anything else is a broken stream)."""
    header = await read_varint_prefixed_bytes_limited(stream, _MAX_ECHO)
    if header != _HEADER:
        raise FrameError(f"not a multistream-select header: {header!r}")
    answer = await read_varint_prefixed_bytes_limited(stream, _MAX_ECHO)
    if answer == _AGREED:
        return True
    if answer == _NOT_FOUND:
        return False
    raise FrameError(f"not an answer to our proposal: {answer!r}")


async def _close(stream: INetStream) -> None:
    with trio.move_on_after(1.0), contextlib.suppress(Exception):
        await stream.close()


async def _reset(stream: INetStream) -> None:
    with trio.move_on_after(1.0), contextlib.suppress(Exception):
        await stream.reset()
