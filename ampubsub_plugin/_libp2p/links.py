"""Links: the peers ``connect`` was asked to reach stay connected.

Rules:

1. Every peer given to ``connect`` is *kept* while the transport serves (at
   most :data:`KEPT` of them, the first given; a later ``connect`` with
   other addresses for a kept peer replaces them).
2. A kept peer found without a connection (its dial failed or timed out,
   its connection closed) is dialled again after a pause that starts at
   :data:`REDIAL_FIRST` and doubles up to :data:`REDIAL_MAX`; it starts over
   once the peer stayed connected for :data:`STABLE` (a peer that closes
   every connection at once is not dialled faster and faster). One dial of
   a peer at a time. Peers are looked at every :data:`CHECK_EVERY` seconds,
   and at once when a connection closes.
3. A peer the gate refuses (``allows``) is not dialled again.

Why: py-libp2p's AutoConnector redials a lost peer only 60 s after the
disconnect and looks every 10 s, and a failed dial puts a peer in a 60-s
negative cache. Measured at 100 peers over 5 processes on 2 cores:
newcomers whose bootstrap links were torn down while they were being set
up (``dial.py`` rule 5) stayed on one link for 50-70 s, heard few of the
topic's messages and kept the whole network from being in sync.
"""

from __future__ import annotations

from collections.abc import Callable

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost, INetConn, INetwork
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from .dial import Attempt, forget_stale_dial_state
from .logs import log
from .notifee import Notifee

#: peers kept connected (rule 1)
KEPT = 64
#: first pause before a kept peer is dialled again, s (rule 2) ...
REDIAL_FIRST = 1.0
#: ... doubling up to this
REDIAL_MAX = 30.0
#: a peer connected this long gets the first pause again, s
STABLE = 10.0
#: how often kept peers are looked at, s
CHECK_EVERY = 1.0


class _Kept:
    __slots__ = ("addrs", "attempt", "due", "pause", "since")

    def __init__(self, addrs: list[multiaddr.Multiaddr]) -> None:
        self.addrs = addrs
        #: when to dial it if it is still not connected (None: connected)
        self.due: float | None = None
        self.pause = REDIAL_FIRST
        #: since when it is connected (None: it isn't)
        self.since: float | None = None
        #: the last dial (ours or ``connect``'s, which may go on in the
        #: background): no other starts before it ended
        self.attempt: Attempt | None = None

    @property
    def dialling(self) -> bool:
        return self.attempt is not None and not self.attempt.done.is_set()


class Links(Notifee):
    """Redials the kept peers of the serving host (rules 1-3)."""

    def __init__(self, name: str, allows: Callable[[ID], bool]) -> None:
        self._name = name
        self._allows = allows
        self._kept: dict[ID, _Kept] = {}
        self._host: IHost | None = None
        self._wake = trio.Event()
        #: dials made here (``redials`` in the transport's counters)
        self.redials = 0

    def keep(
        self,
        addrs: dict[ID, list[multiaddr.Multiaddr]],
        attempts: dict[ID, Attempt],
    ) -> None:
        """Rule 1: these peers (and their addresses) are kept from now on;
        ``attempts``: ``connect``'s dials of them, perhaps still going on."""
        for peer, peer_addrs in addrs.items():
            kept = self._kept.get(peer)
            if kept is None:
                if len(self._kept) >= KEPT:
                    continue
                kept = self._kept[peer] = _Kept(list(peer_addrs))
            else:
                kept.addrs = list(peer_addrs)
            kept.attempt = attempts.get(peer, kept.attempt)
        self._wake.set()

    async def run(self, host: IHost, nursery: trio.Nursery) -> None:
        """Keep the peers connected until cancelled (the host stops)."""
        self._host = host
        network = host.get_network()
        network.register_notifee(self)
        try:
            while True:
                self._check(network, nursery)
                self._wake = trio.Event()
                with trio.move_on_after(CHECK_EVERY):
                    await self._wake.wait()
        finally:
            self._host = None
            self._kept.clear()  # a new serve() dials afresh

    def _check(self, network: INetwork, nursery: trio.Nursery) -> None:
        now = trio.current_time()
        for peer, kept in list(self._kept.items()):
            if network.get_connections(peer):
                kept.due = None
                if kept.since is None:
                    kept.since = now
                elif now - kept.since >= STABLE:
                    kept.pause = REDIAL_FIRST
                continue
            kept.since = None
            if not self._allows(peer):
                del self._kept[peer]  # rule 3
                continue
            if kept.dialling:
                continue
            if kept.due is None:
                kept.due = now + kept.pause
            elif now >= kept.due:
                kept.due = now + kept.pause  # until the dial ends, at least
                kept.pause = min(kept.pause * 2, REDIAL_MAX)
                nursery.start_soon(self._redial, peer, kept)

    async def _redial(self, peer: ID, kept: _Kept) -> None:
        host = self._host
        if host is None:
            return
        self.redials += 1
        log.debug("%s: redialling %s", self._name, peer)
        forget_stale_dial_state(host, peer)
        attempt = kept.attempt = Attempt(host, PeerInfo(peer, kept.addrs))
        await attempt.run()
        if attempt.error is not None:
            log.debug("%s: redial of %s failed: %s", self._name, peer, attempt.error)
        self._wake.set()

    # -- the notifee event it watches (a closed connection: look now) ----------

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._wake.set()
