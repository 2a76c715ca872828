"""Libp2pTransport: one peer on one gossipsub topic, behind our Transport.

The facade of this package: it checks its options, owns the identity, and
answers the :class:`Transport` interface by handing the work to the rooms:
``serve`` to a :class:`Stack`, ``connect`` to a :class:`DialPlan`, ``join``
and ``leave`` and everything inbound to the :class:`Inbox`. It reads the
router's live state (``topic_peers``, ``mesh_peers``, the outbound queues)
directly.

Things the topic must know:

- Delivery is best effort. Right after ``join`` / ``connect`` no subscribed
  peer is known yet; a message published then is lost for good.
  :meth:`Libp2pTransport.wait_mesh` waits for one. (py-libp2p sends to the
  mesh only, which forms a heartbeat or more later; our router sends our
  own messages to subscribed peers until then.)
- py-libp2p drops silently: payloads over about 1 MiB (so ``publish``
  refuses more than :data:`MAX_PAYLOAD` bytes) and RPCs beyond 32 queued per
  peer and link (``pubsub/rpc_queue.py`` ``OutBoundQueueSize``): a burst of
  more than ~32 publishes without yielding loses the rest; pace publishes.
  (py-libp2p's 32-slot subscription channel is bypassed here: messages go
  to an inbox with one lane per author, drained by one reader task.)
- Received messages pass a stage before py-libp2p's signature check
  (``shedding.py``): per-connection budgets and fair queues, configured by
  ``shedding`` (:class:`ShedConfig`). What it and the inbox shed is counted
  (``drop_conn_budget``, ``drop_conn_queue``, ``inbox_shed``).
- Messages and peer events reach the handler in the order py-libp2p saw
  them, through that one reader task, never from inside py-libp2p's code.
- A new subscriber may be sent messages from the last ~3 heartbeats again
  (py-libp2p replays its message cache to a peer whose subscription arrives).
- ``connect`` returning doesn't mean the peer is on the topic yet: the
  subscription exchange follows (``on_peer_joined``, a few ms on loopback),
  then the event-driven GRAFT. After ``leave``, a re-``join`` within the 5-s
  backoff leaves the mesh empty for ~5-10 s (GRAFTs wait for the backoff
  and the next heartbeat); ``wait_mesh`` covers that too.
- The peers given to ``connect`` are redialled whenever they have no
  connection (``links.py``); py-libp2p's AutoConnector
  (``network/auto_connector.py``) also redials peers it knows from its
  peerstore every 10 s while under 50 connections (but a peer only a minute
  after it disconnected), so a peer that went away may come back
  (``on_peer_joined``) without ``connect``.
- Our pubsub stream to a neighbour that dies while the neighbour stays
  connected is opened again, and the neighbour's subscriptions are kept
  (py-libp2p forgot them; counted as ``streams_renewed``, per serve()).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from ..transport import (
    MESH_POLL_INTERVAL,
    PeerFilter,
    RequestHandler,
    Transport,
    TransportError,
    TransportHandler,
)
from .dial import DialPlan, parse_multiaddr
from .direct import DirectServer
from .direct import request as direct_request
from .errors import explain
from .gate import PeerGate
from .inbox import Inbox
from .keys import PublicKeys
from .links import Links
from .logs import log
from .mdns import run_mdns
from .peer_ids import peer_text
from .psk import load_psk, psk_fingerprint
from .pubsub import MAX_PAYLOAD, MUXERS, HostConfig
from .shedding import Admission, ShedConfig
from .stack import Running, Stack

#: Peers whose last message time :meth:`Libp2pTransport.last_heard` keeps.
HEARD_LIMIT = 10_000


class Libp2pTransport(Transport):
    """One peer on one gossipsub topic, over py-libp2p.

    ``listen`` takes multiaddrs without ``/p2p/`` (TCP by default; QUIC as
    ``/ip4/127.0.0.1/udp/0/quic-v1``). ``key_seed`` (32 bytes) makes the
    Ed25519 identity, hence the peer id, deterministic; without it a random
    identity is made, once per transport object. ``degree*`` and
    ``heartbeat_interval`` (seconds) configure gossipsub; ``muxer`` is
    ``"mplex"`` or ``"yamux"``. ``connect_timeout`` bounds each dial.
    ``psk`` makes a private network (32 bytes, or the path of a swarm key
    file; see ``psk.py``): only peers with the same key can connect (TCP
    only; py-libp2p's pnet doesn't cover QUIC, so QUIC listen addresses are
    refused with a key). A dial that opens but never completes its
    handshake under the key raises :class:`PskMismatchError`.
    ``mdns`` announces this peer on the LAN and dials the peers found there
    (``_libp2p/mdns.py``). ``shedding`` sets the per-connection budgets
    applied before signature checks (``_libp2p/shedding.py``).
    """

    def __init__(
        self,
        listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
        *,
        key_seed: bytes | None = None,
        degree: int = 6,
        degree_low: int = 4,
        degree_high: int = 12,
        heartbeat_interval: float = 1.0,
        muxer: str = "mplex",
        connect_timeout: float = 5.0,
        psk: bytes | str | os.PathLike[str] | None = None,
        mdns: bool = False,
        shedding: ShedConfig | None = None,
    ) -> None:
        if isinstance(listen, str):
            listen = (listen,)
        if not listen:
            raise ValueError("listen needs at least one multiaddr")
        listen_addrs = [parse_multiaddr(a) for a in listen]
        if psk is not None:
            quic = [str(a) for a in listen_addrs if "/quic" in str(a)]
            if quic:
                raise ValueError(
                    "a private network (psk) works over TCP only; py-libp2p's pnet "
                    f"does not protect QUIC: {', '.join(quic)}"
                )
        if key_seed is not None and len(key_seed) != 32:
            raise ValueError(f"key_seed must be 32 bytes, got {len(key_seed)}")
        if not 0 < degree_low <= degree <= degree_high:
            raise ValueError(
                "need 0 < degree_low <= degree <= degree_high, got "
                f"{degree_low}, {degree}, {degree_high}"
            )
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0: {heartbeat_interval}")
        if muxer.lower() not in MUXERS:
            raise ValueError(f"muxer must be 'mplex' or 'yamux', not {muxer!r}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0: {connect_timeout}")
        self._psk = None if psk is None else load_psk(psk)
        key_pair = create_new_key_pair(key_seed)
        self._config = HostConfig(
            listen=listen_addrs,
            key_pair=key_pair,
            muxer=MUXERS[muxer.lower()],
            degree=degree,
            degree_low=degree_low,
            degree_high=degree_high,
            heartbeat_interval=heartbeat_interval,
            psk=self._psk,
        )
        self._peer_id = ID.from_pubkey(key_pair.public_key)
        self._public_keys = PublicKeys()
        #: the handler's validator (see AcceptingHandler), while serving
        self._accept: Callable[[str, bytes], bool] | None = None
        self._connect_timeout = connect_timeout
        self._mdns = bool(mdns)
        #: originator peer id -> when its last accepted message arrived
        self._heard: dict[str, float] = {}
        # The stack of the serve() call entered and not finished, if any.
        self._stack: Stack | None = None
        # The joined topic (inbox.topic) and the entries on their way in.
        self._inbox = Inbox(self._peer_id)
        # received messages before py-libp2p's checks (budgets, fair queues)
        self._admission = Admission(shedding)
        # direct requests (direct.py) and who may connect (gate.py)
        self._direct = DirectServer(self.peer_id)
        self._gate = PeerGate(self.peer_id)
        # the peers connect() dialled, kept connected (links.py)
        self._links = Links(self.peer_id, self._gate.allows)
        # serve()'s nursery: dials that outlive connect() run there
        self._nursery: trio.Nursery | None = None

    def _validator(
        self, accept: Callable[[str, bytes], bool]
    ) -> Callable[[ID, rpc_pb2.Message], bool]:
        """gossipsub's topic validator: what the handler refuses isn't forwarded."""
        own = self._peer_id.to_bytes()

        heard = self._heard

        def validate(forwarder: ID, msg: rpc_pb2.Message) -> bool:
            if msg.from_id == own:
                return True
            try:
                sender = peer_text(msg.from_id)
                accepted = bool(accept(sender, msg.data))
            except Exception:  # a validator must not break py-libp2p's loop
                log.debug("%s: validator failed", self.peer_id, exc_info=True)
                return False
            if accepted:  # most recent last; the least recent go past the cap
                heard.pop(sender, None)
                heard[sender] = time.monotonic()
                if len(heard) > HEARD_LIMIT:
                    del heard[next(iter(heard))]
            return accepted

        return validate

    def counters(self) -> dict[str, int]:
        counts = {"inbox_shed": self._inbox.shed}
        # direct requests and the gate: shown once they happened
        extra = {
            "direct_served": self._direct.served,
            "direct_refused": self._direct.refused,
            "conn_refused_peer": self._gate.closed,
            "redials": self._links.redials,
            # since serve() started (a new pubsub each time)
            "streams_renewed": self._run.pubsub.streams_renewed if self._run else 0,
            **self._admission.counters,
        }
        counts.update((name, n) for name, n in extra.items() if n)
        return counts

    def sign(self, data: bytes) -> bytes | None:
        signature: bytes = self._config.key_pair.private_key.sign(data)
        return signature

    def verify(self, peer_id: str, data: bytes, signature: bytes) -> bool:
        return self._public_keys.verify(peer_id, data, signature)

    def __repr__(self) -> str:
        state = "serving" if self._run is not None else "idle"
        return f"<Libp2pTransport {self.peer_id} {state} topic={self._inbox.topic!r}>"

    # -- identity -----------------------------------------------------------

    @property
    def peer_id(self) -> str:
        """This peer's id in base58; fixed when the transport is made."""
        return self._peer_id.to_base58()

    @property
    def addrs(self) -> list[str]:
        """Dialable addresses with ``/p2p/<peer_id>``; empty unless serving."""
        if self._run is None:
            return []
        return [str(a) for a in self._run.host.get_addrs()]

    # -- serving ------------------------------------------------------------

    async def serve(
        self,
        handler: TransportHandler,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and run until cancelled; ``task_status.started()`` once listening.

        The libp2p stack runs in a child task shielded from the cancellation
        of ``serve``; its start-up is bounded by ``STARTUP_TIMEOUT`` and its
        shutdown by ``SHUTDOWN_TIMEOUT``. So even a cancelled ``serve``
        unsubscribes, stops the services, closes the host and stops
        py-libp2p's cache thread before it returns. A failure of py-libp2p
        (at start-up or later) is raised as :class:`TransportError`.
        """
        if task_status is None:
            task_status = trio.TASK_STATUS_IGNORED
        if self._stack is not None:
            raise TransportError(f"{self!r} is already serving")
        stack = self._stack = Stack(
            self._config, self._inbox, self.peer_id, self._admission
        )
        self._accept = getattr(handler, "accept", None)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stack.run, handler, self._unsubscribe)
                discovery = trio.CancelScope()
                try:
                    await stack.ready.wait()
                    running = stack.running
                    if stack.error is None and running is not None:
                        self._direct.attach(running.host)
                        self._gate.attach(running.host, nursery)
                        self._nursery = nursery
                        nursery.start_soon(self._links.run, running.host, nursery)
                        if self._mdns:
                            nursery.start_soon(self._run_mdns, running, discovery)
                        task_status.started()
                        await stack.finished.wait()
                finally:
                    discovery.cancel()
                    stack.stop.set()
        finally:
            self._stack = None
            self._nursery = None
            self._gate.detach()
        if stack.error is not None:
            listen = ", ".join(str(a) for a in self._config.listen)
            stage = "failed" if stack.started else "could not start"
            raise TransportError(
                explain(stack.error, f"libp2p on {listen} {stage}")
            ) from stack.error

    async def _run_mdns(self, run: Running, scope: trio.CancelScope) -> None:
        with scope:
            await run_mdns(run.host, self._connect_timeout, self.peer_id)

    @property
    def _run(self) -> Running | None:
        """The libp2p objects while the stack is up, else None."""
        stack = self._stack
        return None if stack is None else stack.running

    def _running(self) -> Running:
        run = self._run
        if run is None:
            raise TransportError(f"transport {self.peer_id} is not serving")
        return run

    # -- point to point and gating -------------------------------------------

    async def request(self, peer_id: str, payload: bytes, timeout: float) -> bytes:
        """One request, one reply, over a stream to ``peer_id`` (see direct.py)."""
        return await direct_request(self._running().host, peer_id, payload, timeout)

    def serve_requests(self, handler: RequestHandler | None) -> None:
        self._direct.handler = handler

    def set_peer_filter(self, allows: PeerFilter | None) -> None:
        self._direct.allows = allows
        self._gate.set_filter(allows)

    # -- connections --------------------------------------------------------

    async def connect(self, addrs: Sequence[str]) -> int:
        """Dial peers concurrently; return how many peers are now connected.

        Addresses of one peer are dialled together (one connection); this
        peer's own addresses are skipped (an empty list returns 0). Each dial
        is waited for up to ``connect_timeout``, at most
        ``MAX_PARALLEL_DIALS`` at once; a dial not done by then goes on in
        the background. Raises ``ValueError`` (before dialling anything) for
        a malformed address or one without ``/p2p/``, :class:`TransportError`
        when not serving or when no peer could be reached. The peers dialled
        are kept connected while serving: redialled with backoff when their
        dial failed or their connection closed (``_libp2p/links.py``).
        """
        if isinstance(addrs, str):
            addrs = (addrs,)
        plan = DialPlan(addrs, self._peer_id)
        run = self._running()
        if not plan.addrs:
            return 0
        fingerprint = "none" if self._psk is None else psk_fingerprint(self._psk)
        background = self._nursery
        if background is None:  # (the stack is up, serve() not started yet)
            raise TransportError(f"transport {self.peer_id} is not serving yet")
        try:
            return await plan.dial(
                run.host,
                self._connect_timeout,
                self.peer_id,
                background=background,
                psk=fingerprint,
            )
        finally:
            self._links.keep(plan.addrs, plan.attempts)

    def connection_count(self) -> int:
        """Open connections to other peers (0 unless serving)."""
        if self._run is None:
            return 0
        return len(self._run.host.get_network().get_connections())

    # -- topic --------------------------------------------------------------

    async def join(self, topic: str) -> None:
        """Subscribe to ``topic``; peers already on it are reported as joined.

        One topic at a time: joining another one without leaving first raises
        :class:`TransportError`; joining the same one again is a no-op.
        """
        run = self._running()
        if not topic:
            raise ValueError("topic must be a non-empty string")
        inbox = self._inbox
        if inbox.topic == topic:
            return
        if inbox.topic is not None:
            raise TransportError(
                f"{self.peer_id} already joined {inbox.topic!r}; leave it first"
            )
        inbox.follow(topic)
        if self._accept is not None:
            run.pubsub.set_topic_validator(topic, self._validator(self._accept), False)
        try:
            await run.pubsub.subscribe(topic)
        except BaseException:
            if inbox.topic == topic:
                inbox.follow(None)
            raise
        if inbox.topic != topic:  # left (or stopped) meanwhile
            return
        for peer in sorted(run.pubsub.peer_topics.get(topic, ()), key=str):
            inbox.on_subscribed(topic, peer)

    async def leave(self) -> None:
        """Unsubscribe; no more messages or peer events (a no-op if not joined).

        Messages and events still queued for the handler are dropped. Also a
        no-op when not serving (stopping ``serve`` leaves the topic anyway).
        """
        await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        topic, run = self._inbox.topic, self._run
        if topic is None or run is None:
            return
        self._inbox.follow(None)
        try:
            await run.pubsub.unsubscribe(topic)
        except Exception:
            log.warning(
                "%s: unsubscribe from %r failed", self.peer_id, topic, exc_info=True
            )

    def topic_peers(self) -> frozenset[str]:
        """Directly connected peers subscribed to the joined topic.

        This is py-libp2p's live view; the handler's join/leave callbacks may
        lag it by the events still queued for the handler.
        """
        topic = self._inbox.topic
        if self._run is None or topic is None:
            return frozenset()
        peers = self._run.pubsub.peer_topics.get(topic, ())
        return frozenset(p.to_base58() for p in peers)

    def last_heard(self) -> dict[str, float]:
        """Peer id -> seconds since its last accepted message (relayed or not)."""
        now = time.monotonic()
        return {peer: now - at for peer, at in list(self._heard.items())}

    def network_topics(self) -> dict[str, int]:
        """Topics the connected peers are on -> how many (a wrong-topic hint)."""
        if self._run is None:
            return {}
        return {t: len(p) for t, p in self._run.pubsub.peer_topics.items() if p}

    def peer_address(self, peer_id: str) -> str | None:
        """The remote address of our connection to ``peer_id``, if connected."""
        run = self._run
        if run is None:
            return None
        try:
            conns = run.host.get_network().get_connections(ID.from_base58(peer_id))
        except Exception:  # not a peer id we can parse: not connected either
            return None
        for conn in conns:
            addrs: list[object] = list(getattr(conn, "get_transport_addresses", list)())
            if addrs:
                return str(addrs[0])
        return None

    def mesh_peers(self) -> frozenset[str]:
        """Peers in this node's gossipsub mesh for the joined topic."""
        topic = self._inbox.topic
        if self._run is None or topic is None:
            return frozenset()
        peers = self._run.gossipsub.mesh.get(topic, ())
        return frozenset(p.to_base58() for p in peers)

    def outbound_backlog(self) -> int:
        """RPCs waiting in the fullest per-peer outbound queue (0 if none).

        py-libp2p queues at most ``OUTBOUND_QUEUE_SIZE`` (128 here) RPCs per
        peer and silently drops the rest, so a topic publishing bursts should wait
        while this is high (there is no event for it: poll).
        """
        if self._run is None:
            return 0
        queues = list(self._run.pubsub.peer_queues.values())
        return max((len(q) for q in queues), default=0)

    def mesh_ready(self) -> bool:
        """True when a publish of ours reaches the topic's peers: some direct
        peer is on the topic (our router sends our own messages to subscribed
        peers while the mesh is short: ``BudgetedGossipSub``)."""
        return bool(self.topic_peers())

    async def wait_mesh(self, timeout: float) -> bool:
        """Wait until :meth:`mesh_ready`; False when ``timeout`` s pass first.

        py-libp2p has no event for mesh changes, so this polls the mesh every
        ``MESH_POLL_INTERVAL`` seconds. Raises :class:`TransportError` when not
        serving or not joined; returns False if the topic is left meanwhile.
        """
        self._running()
        topic = self._inbox.topic
        if topic is None:
            raise TransportError(f"{self.peer_id} has not joined a topic")
        with trio.move_on_after(timeout):
            while self._inbox.topic == topic and self._run is not None:
                if self.mesh_ready():
                    return True
                await trio.sleep(MESH_POLL_INTERVAL)
        return False

    async def publish(self, data: bytes) -> None:
        """Sign and broadcast ``data`` on the joined topic (best effort).

        Raises :class:`TransportError` when not serving or not joined, and
        ``ValueError`` for a payload over :data:`MAX_PAYLOAD` bytes (py-libp2p
        would drop it silently).
        """
        run = self._running()
        topic = self._inbox.topic
        if topic is None:
            raise TransportError(f"{self.peer_id} has not joined a topic")
        payload = bytes(data)
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(
                f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD}-byte "
                "limit (py-libp2p drops larger messages silently)"
            )
        try:
            await run.pubsub.publish(topic, payload)
        except Exception as error:
            raise TransportError(
                f"{self.peer_id} could not publish on {topic!r}: {error!r}"
            ) from error
