"""A muxer whose connection, not the whole host, ends when its channel fails.

py-libp2p 0.8's mplex read loop turns only a closed or short read into "this
connection is gone"; any other error of the secure channel below it -- a
frame that fails Noise's authentication, as one bad or out-of-order frame
from a peer does -- escapes the loop and ends the host's service: every
connection and the topic with them (measured: one 48-byte frame of zeros
from a connected peer stopped the receiving transport with "Failed
authentication of message"; yamux closes only that connection). Here such
an error ends only that connection, as a closed one does, and py-libp2p's
own clean-up and redials take it from there.

A write is never cancelled half-way: py-libp2p's Noise channel numbers a
frame when it encrypts it, before it waits for the connection's write lock,
so a write cancelled while it waited (a request's timeout on a busy link)
used up a number the other end still expects, and every later frame
failed authentication there (``NoiseInvalidMessage``: the connection
dropped). Here a write finishes once started (within :data:`WRITE_BOUND`;
past it the link is stuck anyway, and is closed) and the cancellation
takes effect after it. Measured at 100 peers over 5 processes: up to 4 links a
run broke so, and their far ends noticed only 20-40 s later.

It also delivers frames without a scheduling pass each. py-libp2p's read
loop, one per connection, takes two locks (each a trio checkpoint) and then
waits on a one-slot channel for every frame, so a stream's frames reach it
one scheduler pass or more apart, and every stream of the connection waits
behind the slowest reader. In a busy process a pass takes tens of
milliseconds: at 60 peers on 2 cores a 37 KB snapshot pulled over a direct
stream (ten 4 KB frames behind the connection's gossip) took 2-8 s to come
back from a peer that built it in 50 ms. Here a frame of at most
``BUFFER_SIZE`` bytes goes straight into its stream's channel, which holds
``STREAM_FRAMES`` of them (64 KiB; a stream opened past ``FAST_STREAMS``
on one connection holds one, as in py-libp2p); a full channel, a larger
frame or anything unusual takes py-libp2p's own path, with its
back-pressure, slicing and timeout.

And a stream writes in frames of up to :data:`WRITE_CHUNK` bytes, where
py-libp2p cuts every write into 4 KB ones: each frame is a Noise message
and a socket write at the sender and a read at the receiver, each a pass
of the scheduler, and in a busy process a pass takes tenths of a second
(0.3-0.5 s at the median at the peak of the joins). Traced at 100 peers
over 5 processes, a pulled snapshot's reply (ten 4 KB frames) took 1.25 s
to write at the median and its frames reached the puller 3.2 s after the
protocol's echo. An incoming frame of up to ``WRITE_CHUNK`` bytes goes
into its stream's channel whole when the channel is empty and has
``STREAM_FRAMES`` slots (so such a stream buffers at most one of them
beside its small frames, and the others still one small frame). Every
mplex reader takes frames of up to 1 MiB (py-libp2p's and go-mplex's
limit); 4 KB is go-mplex's own write size, not a limit.
"""

from __future__ import annotations

import trio
from libp2p.abc import IMuxedConn
from libp2p.custom_types import TMuxerOptions, TProtocol
from libp2p.stream_muxer.mplex.constants import BUFFER_SIZE
from libp2p.stream_muxer.mplex.datastructures import StreamID
from libp2p.stream_muxer.mplex.exceptions import MplexStreamClosed, MplexUnavailable
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.stream_muxer.mplex.mplex_stream import MplexStream
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from .logs import log

Entry = tuple[TProtocol, type[IMuxedConn]]

#: a write that takes longer than this (s) means the link is stuck: closed
WRITE_BOUND = 10.0
#: largest frame a stream writes: with mplex's header it fits one Noise
#: message (65,519 bytes of plaintext)
WRITE_CHUNK = 65_000
#: frames of up to ``BUFFER_SIZE`` bytes a stream holds before its
#: connection's read loop waits for the stream's reader (py-libp2p: 1)
STREAM_FRAMES = 16
#: streams opened on a connection that has this many get py-libp2p's one
#: slot: a peer opening streams it never lets us read can't buffer 64 KiB
#: in each
FAST_STREAMS = 32


class BulkMplexStream(MplexStream):
    """An mplex stream that writes in frames of up to ``WRITE_CHUNK`` bytes."""

    async def _do_write(self, data: bytes) -> None:
        async with self.rw_lock.write_lock():
            if self.event_local_closed.is_set():
                raise MplexStreamClosed(f"cannot write to closed stream {self.name}")
            flag = self._get_header_flag("message")
            view = memoryview(data)
            for start in range(0, max(len(data), 1), WRITE_CHUNK):
                chunk = bytes(view[start : start + WRITE_CHUNK])
                await self.muxed_conn.send_message(flag, chunk, self.stream_id)


class ContainedMplex(Mplex):
    """Mplex that treats a failing secure channel as a closed connection."""

    async def read_message(self) -> tuple[int, int, bytes]:
        try:
            return await super().read_message()
        except (MplexUnavailable, trio.Cancelled):
            raise
        except Exception as error:  # the channel below failed: this link only
            log.debug("%s: connection dropped: %r", self.peer_id, error)
            raise MplexUnavailable(f"the secure channel failed: {error!r}") from error

    async def write_to_stream(self, _bytes: bytes) -> None:
        deadline = trio.current_time() + WRITE_BOUND
        with trio.CancelScope(deadline=deadline, shield=True) as bound:
            await super().write_to_stream(_bytes)
        if bound.cancelled_caught:
            log.debug("%s: a write took over %g s", self.peer_id, WRITE_BOUND)
            with trio.CancelScope(deadline=trio.current_time() + 1.0, shield=True):
                await self.close()
            raise MplexUnavailable(f"a write took over {WRITE_BOUND:g} s")
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancel waits until now

    async def _initialize_stream(self, stream_id: StreamID, name: str) -> MplexStream:
        async with self.streams_lock:
            slots = STREAM_FRAMES if len(self.streams) < FAST_STREAMS else 1
            send, receive = trio.open_memory_channel[bytes](slots)
            stream = BulkMplexStream(name, stream_id, self, receive)
            self.streams[stream_id] = stream
            self.streams_msg_channels[stream_id] = send
        return stream

    async def _handle_message(self, stream_id: StreamID, message: bytes) -> None:
        # no await between the look-up and the hand-over: nothing can close
        # or remove the stream in between (the locks guard across awaits)
        stream = self.streams.get(stream_id)
        channel = self.streams_msg_channels.get(stream_id)
        if (
            stream is not None
            and channel is not None
            and _takes_whole(channel, len(message))
            and not stream.event_remote_closed.is_set()
        ):
            try:
                channel.send_nowait(message)
                return
            except trio.WouldBlock:
                pass  # the reader is behind: wait for it, as py-libp2p does
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # py-libp2p's path decides what that means
        await super()._handle_message(stream_id, message)


def _takes_whole(channel: trio.MemorySendChannel[bytes], size: int) -> bool:
    """Does a frame of ``size`` bytes go into this stream's buffer as it is?

    A small one does (while there is room); a large one only into an empty
    buffer of a stream with ``STREAM_FRAMES`` slots: the streams past
    ``FAST_STREAMS``, which a peer may open without letting us read them,
    keep py-libp2p's bound of one small frame each.
    """
    if size <= BUFFER_SIZE:
        return size > 0
    if size > WRITE_CHUNK:
        return False
    held = channel.statistics()
    return held.current_buffer_used == 0 and held.max_buffer_size > 1


def muxer_options(preferred: str) -> TMuxerOptions:
    """py-libp2p's muxer table with :class:`ContainedMplex`, ``preferred`` first."""
    mplex: Entry = (TProtocol(MPLEX_PROTOCOL_ID), ContainedMplex)
    yamux: Entry = (TProtocol(YAMUX_PROTOCOL_ID), Yamux)
    ordered = [mplex, yamux] if preferred == "MPLEX" else [yamux, mplex]
    return dict(ordered)
