"""Who may stay connected: closing connections of peers a filter refuses.

Rules:

1. py-libp2p's own gate filters by IP address only, so peers are judged
   once their connection is up (the peer id is known after the security
   handshake): :class:`PeerGate` is a network notifee whose ``connected``
   closes, in a task of its own, the connection of a refused peer.
2. Setting a filter closes the open connections it refuses at once.
3. Closed connections are counted (``conn_refused_peer``); the filter is
   called on trio's thread and must not block.
"""

from __future__ import annotations

import trio
from libp2p.abc import IHost, INetConn, INetwork
from libp2p.peer.id import ID

from ..transport import PeerFilter
from .logs import log
from .notifee import Notifee


class PeerGate(Notifee):
    """Closes connections of refused peers (rule 1), on the serving host."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._allows: PeerFilter | None = None
        self._host: IHost | None = None
        self._nursery: trio.Nursery | None = None
        self.closed = 0

    def attach(self, host: IHost, nursery: trio.Nursery) -> None:
        self._host, self._nursery = host, nursery
        host.get_network().register_notifee(self)
        self._sweep()

    def detach(self) -> None:
        self._host = self._nursery = None

    def set_filter(self, allows: PeerFilter | None) -> None:
        self._allows = allows
        self._sweep()

    def _sweep(self) -> None:
        host = self._host
        if host is None or self._allows is None:
            return
        for peer in list(host.get_network().connections):
            self._judge(peer)

    def allows(self, peer: ID) -> bool:
        """Whether the filter lets ``peer`` stay connected (no filter: yes)."""
        allows = self._allows
        if allows is None:
            return True
        try:
            return bool(allows(peer.to_base58()))
        except Exception:
            log.warning("%s: the peer filter raised", self._name, exc_info=True)
            return False

    def _judge(self, peer: ID) -> None:
        nursery = self._nursery
        if self._allows is None or nursery is None:
            return
        if not self.allows(peer):
            nursery.start_soon(self._close, peer)

    async def _close(self, peer: ID) -> None:
        host = self._host
        if host is None:
            return
        self.closed += 1
        log.debug("%s: closing the connection of refused peer %s", self._name, peer)
        try:
            await host.get_network().close_peer(peer)
        except Exception:
            log.debug("%s: closing %s failed", self._name, peer, exc_info=True)

    # -- the notifee events it watches ----------------------------------------

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._judge(conn.muxed_conn.peer_id)
