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

5. A dial still under way when ``connect`` stops waiting for it goes on in
   the background (the transport's nursery), for at most
   :data:`DIAL_BOUND`: py-libp2p registers a TCP connection after its
   handshakes, and cancelling the dial during the registration closes the
   connection it just made (``swarm.add_conn``'s clean-up). Measured at 100
   peers over 5 processes on 2 cores: newcomers' links torn down so 0.5-1 s
   after they opened, and py-libp2p redialled them only 60-70 s later.
6. A private-network key mismatch (another key, or a key on one side only)
   doesn't fail, it stalls (py-libp2p's handshake waits for sense in
   noise). When no peer could be reached and a dial stalled or failed in
   its handshake although the peer's TCP port accepts connections (checked
   with a plain socket in the last :data:`PSK_PROBE_SHARE` of the timeout),
   the error is :class:`PskMismatchError`.

``links.py`` keeps the peers dialled here connected.

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
from .psk import PskMismatchError

#: Dials in flight at once in :meth:`Libp2pTransport.connect`.
MAX_PARALLEL_DIALS = 8

#: A dial left to finish in the background (rule 5) ends after this long, s.
DIAL_BOUND = 30.0

#: On a private network, the share of ``connect_timeout`` kept for checking
#: whether a peer that didn't finish its handshake accepts connections.
PSK_PROBE_SHARE = 0.2


class DialPlan:
    """The peers one ``connect`` call dials, addresses grouped per peer.

    Made from the address texts (raising ``ValueError`` for a bad one) before
    anything is dialled; :meth:`dial` then dials them all.
    """

    __slots__ = ("addrs", "attempts", "texts")

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
        #: the dials made by :meth:`dial` (some may go on in the background)
        self.attempts: dict[ID, Attempt] = {}

    async def dial(
        self,
        host: IHost,
        timeout: float,
        name: str,
        *,
        background: trio.Nursery,
        psk: str = "none",
    ) -> int:
        """Dial every peer; return how many peers are now connected.

        Raises :class:`TransportError` naming every failure when none is, in
        our words (:func:`errors.explain`). ``name`` (this peer's id) labels
        the log lines. ``psk`` names our private-network key (its
        fingerprint, or "none") in the :class:`PskMismatchError` of rule 6.
        A dial not done within the timeout goes on in ``background``
        (rule 5).
        """
        limiter = trio.CapacityLimiter(MAX_PARALLEL_DIALS)
        failures: dict[ID, str] = {}
        connected = 0

        # part of the time is kept to tell a key mismatch (the socket
        # opens) from an unreachable peer
        budget = timeout * (1 - PSK_PROBE_SHARE)
        stalled: list[ID] = []

        async def dial(peer: ID, peer_addrs: list[multiaddr.Multiaddr]) -> None:
            nonlocal connected
            async with limiter:
                forget_stale_dial_state(host, peer)
                target = " ".join(self.texts[peer])
                reason = explain(
                    None, f"{target} (after {timeout:g} s)", problem=Problem.TIMEOUT
                )
                stalled.append(peer)
                attempt = self.attempts[peer] = Attempt(
                    host, PeerInfo(peer, peer_addrs)
                )
                background.start_soon(attempt.run)
                with trio.move_on_after(budget):
                    await attempt.done.wait()
                if attempt.finished:
                    error = attempt.error
                    if error is not None:  # any dial failure is a failure
                        reason = explain(error, target, psk=psk != "none")
                        if not _is_handshake_failure(error):
                            stalled.remove(peer)
                    else:
                        stalled.remove(peer)
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
        if not connected and stalled:
            probe = timeout * PSK_PROBE_SHARE
            opened = [p for p in stalled if await _socket_opens(self.addrs[p], probe)]
            if opened:
                texts = [t for p in opened for t in self.texts[p]]
                raise PskMismatchError(texts, timeout, psk)
        if not connected:
            detail = " | ".join(failures.values())
            raise TransportError(f"could not connect to any peer: {detail}")
        return connected


class Attempt:
    """One dial of one peer, which may outlive its caller's wait (rule 5)."""

    __slots__ = ("done", "error", "finished", "host", "info")

    def __init__(self, host: IHost, info: PeerInfo) -> None:
        self.host = host
        self.info = info
        #: set when the dial ended, however (cancelled too)
        self.done = trio.Event()
        #: it ran to its end (not cancelled): connected, or failed with ``error``
        self.finished = False
        self.error: Exception | None = None

    async def run(self) -> None:
        try:
            with trio.move_on_after(DIAL_BOUND) as bound:
                try:
                    await self.host.connect(self.info)
                except Exception as error:
                    self.error = error
            if bound.cancelled_caught:
                self.error = TimeoutError(f"no connection within {DIAL_BOUND:g} s")
            self.finished = True
        finally:
            self.done.set()


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


def _is_handshake_failure(error: BaseException) -> bool:
    """Whether a dial failed after its socket opened (security or muxer).

    py-libp2p wraps the cause in other errors and groups, so the whole chain
    is read.
    """
    texts: list[str] = []
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        texts.append(str(current).lower())
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    words = ("upgrade", "security", "handshake", "negotiate", "multiselect")
    return any(word in text for text in texts for word in words)


async def _socket_opens(addrs: list[multiaddr.Multiaddr], timeout: float) -> bool:
    """Whether a plain TCP connection to one of ``addrs`` opens within ``timeout``."""
    with trio.move_on_after(timeout):
        for addr in addrs:
            try:
                host = addr.value_for_protocol("ip4") or addr.value_for_protocol("ip6")
                port = int(addr.value_for_protocol("tcp"))
            except Exception:
                continue
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError:
                continue
            await stream.aclose()
            return True
    return False
