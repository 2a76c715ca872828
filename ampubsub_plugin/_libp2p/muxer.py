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
"""

from __future__ import annotations

import trio
from libp2p.abc import IMuxedConn
from libp2p.custom_types import TMuxerOptions, TProtocol
from libp2p.stream_muxer.mplex.exceptions import MplexUnavailable
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from .logs import log

Entry = tuple[TProtocol, type[IMuxedConn]]


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


def muxer_options(preferred: str) -> TMuxerOptions:
    """py-libp2p's muxer table with :class:`ContainedMplex`, ``preferred`` first."""
    mplex: Entry = (TProtocol(MPLEX_PROTOCOL_ID), ContainedMplex)
    yamux: Entry = (TProtocol(YAMUX_PROTOCOL_ID), Yamux)
    ordered = [mplex, yamux] if preferred == "MPLEX" else [yamux, mplex]
    return dict(ordered)
