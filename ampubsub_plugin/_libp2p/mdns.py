"""mDNS: announce this host on the LAN and dial the peers found there.

Rules:

1. py-libp2p's mDNS (``libp2p.discovery.mdns``, on zeroconf) announces and
   browses; it only fills the peerstore, so every peer it reports is dialled
   here (skipping ourselves and peers already connected), each dial bounded
   by ``connect_timeout``.
2. We announce what ``host.get_addrs()`` says (interface addresses for
   ``0.0.0.0``, see ``addresses``), loopback left out unless it is all we
   have: py-libp2p dials one address per transport, and a peer's loopback
   address is the dialler's own host.
3. py-libp2p reports discoveries to one process-wide handler, from
   zeroconf's thread: :func:`run_mdns` hands them to its trio task through
   the trio token. Several hosts with mDNS in one process each dial what any
   of them found (harmless: one connection per peer pair).
4. Zeroconf's start and stop block (sockets, goodbye packets), so they run
   in a worker thread; stopping is shielded, so a cancelled ``serve`` still
   unregisters.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.peer.peerinfo import PeerInfo

from .errors import explain
from .logs import log


def announced_addrs(host: IHost) -> list[str]:
    """What we announce: the host's addresses, loopback only if nothing else."""
    addrs = [str(a) for a in host.get_addrs()]
    outside = [a for a in addrs if not _is_loopback(a)]
    return outside or addrs


def _is_loopback(addr: str) -> bool:
    parts = addr.split("/")
    if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
        try:
            return ipaddress.ip_address(parts[2]).is_loopback
        except ValueError:
            return False
    return False


async def run_mdns(host: IHost, connect_timeout: float, name: str) -> None:
    """Announce ``host`` and dial discovered peers until cancelled."""
    from libp2p.discovery.events.peerDiscovery import peerDiscovery
    from libp2p.discovery.mdns import MDNSDiscovery

    token = trio.lowlevel.current_trio_token()
    send, receive = trio.open_memory_channel[PeerInfo](math.inf)

    def found(info: PeerInfo) -> None:  # zeroconf's thread
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(_deliver, send, info)

    own = host.get_id()
    addrs = announced_addrs(host)
    port = _first_port(addrs)
    discovery: Any = await trio.to_thread.run_sync(
        lambda: MDNSDiscovery(host.get_network(), port=port, listen_addrs=addrs)
    )
    peerDiscovery.register_peer_discovered_handler(found)
    try:
        await trio.to_thread.run_sync(discovery.broadcaster.register)
        log.debug("%s: mDNS announces %s", name, addrs)
        async with receive:
            async for info in receive:
                if info.peer_id == own:
                    continue
                if host.get_network().get_connections(info.peer_id):
                    continue
                await _dial(host, info, connect_timeout, name)
    finally:
        peerDiscovery.unregister_peer_discovered_handler(found)
        send.close()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(5):
                await trio.to_thread.run_sync(_stop, discovery)


def _deliver(send: trio.MemorySendChannel[PeerInfo], info: PeerInfo) -> None:
    with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
        send.send_nowait(info)


async def _dial(host: IHost, info: PeerInfo, timeout: float, name: str) -> None:
    target = " ".join(f"{a}/p2p/{info.peer_id}" for a in info.addrs)
    with trio.move_on_after(timeout) as scope:
        try:
            await host.connect(info)
        except Exception as error:  # a peer we can't reach is logged, not fatal
            log.info("%s: mDNS peer unreachable: %s", name, explain(error, target))
            return
    if scope.cancelled_caught:
        log.info("%s: mDNS peer %s: no answer in %g s", name, target, timeout)
    else:
        log.debug("%s: connected to mDNS peer %s", name, info.peer_id)


def _first_port(addrs: list[str]) -> int:
    for addr in addrs:
        parts = addr.split("/")
        for proto in ("tcp", "udp"):
            if proto in parts:
                return int(parts[parts.index(proto) + 1])
    return 0


def _stop(discovery: Any) -> None:
    try:
        discovery.stop()
    except Exception:  # zeroconf at exit: nothing left to release
        log.debug("mDNS stop failed", exc_info=True)
