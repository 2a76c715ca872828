"""Varint-prefixed pubsub RPC frames, read from a stream in chunks.

py-libp2p's ``read_varint_prefixed_bytes_limited`` reads the length prefix
one byte at a time: ~3 stream reads per RPC for the prefix and one or more
for the body, each a trip through the muxer's locks and channels (about 14
``MplexStream._do_read`` calls per one-message RPC, measured). Under a flood
that is most of what a message costs before we can look at it. Here the
stream is read in chunks of up to :data:`READ_CHUNK` bytes and frames are
cut from a local buffer, so a burst of small RPCs costs one read.

Rules (the same as py-libp2p's reader): a prefix over 10 bytes is a
``ParseError``, a length over ``limit`` a ``MessageTooLarge`` (raised before
the body is read), and a stream that ends inside a frame an
``IncompleteReadError``; at a frame boundary it ends with ``StreamEOF``
(what the stream raises) or an ``IncompleteReadError`` (an empty read).
"""

from __future__ import annotations

from libp2p.abc import INetStream
from libp2p.exceptions import ParseError
from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge

#: Bytes asked of the stream per read.
READ_CHUNK = 64 * 1024


class FrameReader:
    """Cuts varint-prefixed frames out of a stream's bytes."""

    __slots__ = ("_buf", "_limit", "_stream")

    def __init__(self, stream: INetStream, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be greater than 0")
        self._stream = stream
        self._limit = limit
        self._buf = bytearray()

    def _frame(self) -> bytes | None:
        """The next complete frame from the buffer, or None (need more)."""
        buf = self._buf
        length = shift = used = 0
        while True:
            if used == len(buf):
                return None
            if used == 10:
                raise ParseError("varint length prefix over 64 bits")
            byte = buf[used]
            used += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if length > self._limit:
            raise MessageTooLarge(
                f"Message length {length} exceeds maximum allowed {self._limit}"
            )
        end = used + length
        if len(buf) < end:
            return None
        frame = bytes(buf[used:end])
        del buf[:end]
        return frame

    async def next(self) -> bytes:
        """The next frame; reads the stream only when the buffer has none."""
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            chunk = await self._stream.read(READ_CHUNK)
            if not chunk:
                raise IncompleteReadError(
                    "stream ended inside a frame" if self._buf else "stream ended",
                    expected_bytes=1,
                    received_bytes=0,
                )
            self._buf.extend(chunk)
