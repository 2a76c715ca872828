"""A network notifee that ignores every event: subclasses override the
ones they watch (py-libp2p's ``INotifee`` makes all six abstract)."""

from __future__ import annotations

from typing import Any

from libp2p.abc import INetConn, INetStream, INetwork, INotifee


class Notifee(INotifee):
    async def connected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        pass
