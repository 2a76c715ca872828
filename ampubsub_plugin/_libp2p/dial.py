"""Multiaddrs in, connections out: parsing addresses and dialing peers.

Rules:

1. Addresses are checked before anything is dialled: a malformed multiaddr,
   or one to dial without ``/p2p/<peer id>``, is a ``ValueError`` naming it.
2. One dial per peer: the addresses of one peer are dialled together (one
   connection); this peer's own addresses are skipped.
3. Dials run concurrently, at most :data:`MAX_PARALLEL_DIALS` at once, each
   bounded by the transport's ``connect_timeout``. A failed dial is logged;
   only when no peer could be reached is :class:`TransportError` raised,
   naming every failure by the addresses given, in our words
   (:mod:`.errors`: what failed and what to try, one line).
4. An explicit dial uses exactly the addresses it was given: py-libp2p's
   memory of earlier dials is reset first (:func:`forget_stale_dial_state`).

Peers may also come back without a dial: py-libp2p's AutoConnector
(``network/auto_connector.py``) redials peers it knows from its peerstore
every 10 s while under 50 connections.
"""

from __future__ import annotations

from collections.abc import Iterable

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from ..transport import TransportError
from .errors import Problem, explain
from .logs import log

#: Dials in flight at once in :meth:`Libp2pTransport.connect`.
MAX_PARALLEL_DIALS = 8


class DialPlan:
    """The peers one ``connect`` call dials, addresses grouped per peer.

    Made from the address texts (raising ``ValueError`` for a bad one) before
    anything is dialled; :meth:`dial` then dials them all.
    """

    __slots__ = ("addrs", "texts")

    def __init__(self, addrs: Iterable[str], own: ID) -> None:
        #: Multiaddrs to dial per peer; empty when there is nobody to dial.
        self.addrs: dict[ID, list[multiaddr.Multiaddr]] = {}
        # The texts given per peer, to name a peer that could not be reached.
        self.texts: dict[ID, list[str]] = {}
        for text in addrs:
            info = parse_peer_addr(text)
            if info.peer_id != own:
                self.addrs.setdefault(info.peer_id, []).extend(info.addrs)
                self.texts.setdefault(info.peer_id, []).append(text)

    async def dial(
        self, host: IHost, timeout: float, name: str, *, psk: bool = False
    ) -> int:
        """Dial every peer; return how many peers are now connected.

        Raises :class:`TransportError` naming every failure when none is, in
        our words (:func:`errors.explain`; ``psk``: a key is configured, so a
        hang or a failed handshake is reported as a likely key mismatch).
        ``name`` (this peer's id) labels the log lines.
        """
        limiter = trio.CapacityLimiter(MAX_PARALLEL_DIALS)
        failures: dict[ID, str] = {}
        connected = 0

        async def dial(peer: ID, peer_addrs: list[multiaddr.Multiaddr]) -> None:
            nonlocal connected
            async with limiter:
                forget_stale_dial_state(host, peer)
                target = " ".join(self.texts[peer])
                reason = explain(
                    None,
                    f"{target} (after {timeout:g} s)",
                    problem=Problem.PSK_MISMATCH if psk else Problem.TIMEOUT,
                )
                with trio.move_on_after(timeout):
                    try:
                        await host.connect(PeerInfo(peer, peer_addrs))
                    except Exception as error:  # any dial failure is a failure
                        reason = explain(error, target, psk=psk)
                    else:
                        if host.get_network().get_connections(peer):
                            connected += 1
                            return
                        reason = f"{target}: no connection after the dial"
                failures[peer] = reason

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for peer, peer_addrs in self.addrs.items():
                nursery.start_soon(dial, peer, peer_addrs)
        log.debug(
            "%s connected %d/%d peers in %.3f s",
            name,
            connected,
            len(self.addrs),
            trio.current_time() - started,
        )
        for peer, reason in failures.items():
            log.info("%s could not dial %s: %s", name, peer, reason)
        if not connected:
            detail = " | ".join(failures.values())
            raise TransportError(f"could not connect to any peer: {detail}")
        return connected


def forget_stale_dial_state(host: IHost, peer: ID) -> None:
    """Make an explicit dial use exactly the addresses it was given.

    py-libp2p's swarm dials addresses from the peerstore (kept 120 s), at most
    one per transport class (``network/swarm.py`` ``dial_peer``, "Smart
    Address Selection"), so a stale address of a restarted peer wins over the
    new one and the dial fails. A failed dial also puts the peer in a 60-s
    negative cache (``_NegativePeerCache``) that refuses even good addresses.
    Both are reset here unless the peer is connected.
    """
    network = host.get_network()
    if network.get_connections(peer):
        return
    host.get_peerstore().clear_addrs(peer)
    unblock = getattr(network, "unblock_peer", None)
    if callable(unblock):
        unblock(peer)


def parse_multiaddr(text: str) -> multiaddr.Multiaddr:
    """``text`` as a multiaddr; ``ValueError`` naming it if malformed."""
    if not isinstance(text, str):
        raise ValueError(f"a multiaddr must be a str, not {type(text).__name__}")
    try:
        return multiaddr.Multiaddr(text)
    except Exception as error:
        raise ValueError(f"malformed multiaddr {text!r}: {error}") from error


def parse_peer_addr(text: str) -> PeerInfo:
    """A dialable ``text``: a multiaddr ending in ``/p2p/<peer id>``."""
    addr = parse_multiaddr(text)
    try:
        return info_from_p2p_addr(addr)
    except Exception as error:
        raise ValueError(
            f"multiaddr {text!r} can't be dialled: it needs a /p2p/<peer id> "
            f"suffix ({error})"
        ) from error
