"""The Transport interface: all the topic needs from a network.

A transport is one peer's access to one broadcast channel (a gossipsub
topic). The topic's protocol code never touches libp2p: it calls these few
methods and receives three callbacks, so the same protocol runs over
py-libp2p (``libp2p_transport``) and over an in-process network with
latency, loss and partitions (``memory_transport``).

Rules every implementation keeps:

- Everything runs on a trio run: ``serve`` is one long-lived task that owns
  the transport's resources; cancelling it releases them (sockets, tasks).
- Callbacks are plain functions called in that trio thread; they must not
  block (the topic turns them into mutations of its machine).
- ``publish`` never blocks for long and never raises for a slow network: it
  raises :class:`TransportError` only when the transport can't publish at all
  (not serving, not joined). Delivery is best effort, as in gossipsub; the
  protocol repairs losses.
- Messages from this peer itself are never delivered back to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

#: Serves one direct request: (the caller's peer id, the payload) -> the
#: reply. Raising refuses the request; the caller gets :class:`DirectRefused`.
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]

#: Largest direct request and reply payloads, on every transport.
DIRECT_MAX_REQUEST = 64 * 1024
#: (a pulled snapshot is a reply: several info messages of up to MAX_PAYLOAD)
DIRECT_MAX_REPLY = 4 * 1024 * 1024 - 1
#: Seconds a server's handler has for one direct request, on every
#: transport; past it the request is refused (:data:`HANDLER_TIMED_OUT`).
DIRECT_HANDLER_TIMEOUT = 10.0
#: The reason a request whose handler ran out of time is refused with.
HANDLER_TIMED_OUT = f"no reply within {DIRECT_HANDLER_TIMEOUT:g} s"

#: How often a transport's ``wait_mesh`` looks (gossipsub has no event for
#: mesh changes).
MESH_POLL_INTERVAL = 0.05

#: Decides whether a peer may connect (see :meth:`Transport.set_peer_filter`).
PeerFilter = Callable[[str], bool]


class TransportError(Exception):
    """The network refused an operation; the message names what and where."""


class PskMismatchError(TransportError):
    """A peer's connection opened, but the private-network handshake didn't finish.

    Its private-network key differs from ours, or it has none (or it is no
    libp2p peer at all). ``addrs`` are the addresses that were dialled.
    """

    def __init__(self, addrs: list[str], timeout: float, fingerprint: str) -> None:
        self.addrs = addrs
        self.timeout = timeout
        #: our key's fingerprint, "none" without one: then a busy peer whose
        #: handshake timed out looks the same, so the topic retries
        self.fingerprint = fingerprint
        where = " ".join(addrs)
        if fingerprint == "none":
            text = (
                f"{where} accepted the connection but the handshake timed out "
                f"after {timeout:g} s: it may be on a private network (a key we "
                "lack), or it is no libp2p peer"
            )
        else:
            text = (
                f"private-network key mismatch: {where} accepted the connection "
                f"but the handshake under our key ({fingerprint}) timed out after "
                f"{timeout:g} s; the peer has another key or none"
            )
        super().__init__(text)


class DirectError(TransportError):
    """A direct request failed; ``peer_id`` names the peer it was for."""

    def __init__(self, peer_id: str, message: str) -> None:
        super().__init__(f"direct request to {peer_id}: {message}")
        self.peer_id = peer_id


class DirectUnreachable(DirectError):
    """No stream to the peer: it is gone, unknown here, or serves no requests."""


class DirectTimeout(DirectError):
    """No reply within the request's timeout."""


class DirectClosed(DirectError):
    """The peer's side closed mid-request (it died or dropped us)."""


class DirectRefused(DirectError):
    """The peer's request handler failed or refused; the text is the peer's."""


class TransportHandler(Protocol):
    """What a transport reports, from its trio thread."""

    def on_message(self, sender: str, data: bytes) -> None:
        """A payload published on the joined topic by ``sender`` (a peer id)."""

    def on_peer_joined(self, peer_id: str) -> None:
        """A directly connected peer subscribed to the joined topic."""

    def on_peer_left(self, peer_id: str) -> None:
        """A directly connected peer unsubscribed or disconnected."""


class AcceptingHandler(TransportHandler, Protocol):
    """A handler that also judges payloads before they are taken or forwarded.

    Transports that relay (gossipsub) call ``accept`` as a validator: False
    drops the payload unseen by ``on_message`` and keeps it from being
    forwarded to other peers. Transports look for it with ``getattr``.
    """

    def accept(self, sender: str, data: bytes) -> bool:
        """Whether ``sender``'s payload is well-formed and within its budget."""


class Transport(ABC):
    """One peer on one broadcast topic."""

    @property
    @abstractmethod
    def peer_id(self) -> str:
        """This peer's id (libp2p's base58 form), known once serving."""

    @property
    @abstractmethod
    def addrs(self) -> list[str]:
        """Full addresses others can dial, each ending in ``/p2p/<peer_id>``."""

    @abstractmethod
    async def serve(
        self, handler: TransportHandler, *, task_status: Any = None
    ) -> None:
        """Listen and run until cancelled; ``task_status.started()`` once listening.

        Leaving this coroutine (by cancellation or error) releases everything.
        """

    @abstractmethod
    async def connect(self, addrs: Sequence[str]) -> int:
        """Dial peers; return how many connections were made.

        Raises :class:`TransportError` naming the addresses when none worked,
        and ``ValueError`` for an address that can't be parsed.
        """

    @abstractmethod
    async def join(self, topic: str) -> None:
        """Subscribe to ``topic``; messages and peer events flow from now on."""

    @abstractmethod
    async def leave(self) -> None:
        """Unsubscribe; no more messages or peer events."""

    @abstractmethod
    async def publish(self, data: bytes) -> None:
        """Broadcast ``data`` on the joined topic (best effort)."""

    @abstractmethod
    def topic_peers(self) -> frozenset[str]:
        """Directly connected peers subscribed to the joined topic."""

    @abstractmethod
    def connection_count(self) -> int:
        """Open connections to other peers."""

    def mesh_ready(self) -> bool:
        """Would a publish now reach the joined topic's peers?

        Gossipsub keeps nothing for peers that subscribe later: a message
        published while no subscribed neighbour is known reaches nobody. A
        transport without a mesh is always ready.
        """
        return True

    async def wait_mesh(self, timeout: float) -> bool:
        """Wait until :meth:`mesh_ready`; False when ``timeout`` s pass first."""
        return True

    def outbound_backlog(self) -> int:
        """Messages waiting to go out to the slowest peer (0 when unknown)."""
        return 0

    def counters(self) -> dict[str, int]:
        """The transport's own counts (what it shed, say); shown in topic.counters."""
        return {}

    def sign(self, data: bytes) -> bytes | None:
        """This peer's signature of ``data`` (None: this transport can't sign).

        Owners sign their clocks so that relays can forward them and nobody
        else can forge them; without signatures only clocks a peer sends
        itself are believed.
        """
        return None

    def verify(self, peer_id: str, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is ``peer_id``'s over ``data`` (False if unknown)."""
        return False

    # -- point to point ------------------------------------------------------

    @abstractmethod
    async def request(self, peer_id: str, payload: bytes, timeout: float) -> bytes:
        """Send ``payload`` to ``peer_id`` alone and return its reply.

        Never broadcast: one stream to that peer, dialled on demand. Raises
        :class:`DirectUnreachable`, :class:`DirectTimeout` (``timeout``
        seconds bound the whole call), :class:`DirectClosed`,
        :class:`DirectRefused`, or ``ValueError`` for a payload over the
        transport's limit.
        """

    @abstractmethod
    def serve_requests(self, handler: RequestHandler | None) -> None:
        """Answer direct requests with ``handler`` (None: refuse them all)."""

    @abstractmethod
    def set_peer_filter(self, allows: PeerFilter | None) -> None:
        """Accept connections only from peers ``allows`` accepts (None: all).

        Connections already open to refused peers are closed; new ones are
        closed as soon as they open, and their direct requests refused.
        """
