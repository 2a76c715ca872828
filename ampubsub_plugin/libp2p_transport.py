"""The py-libp2p transport: one gossipsub topic over TCP (or QUIC) with Noise.

Built on py-libp2p 0.8.1 (trio). The library's defaults don't suit a small
state-sync network, so the router is always configured as follows (the
measurements behind each choice are in the py-libp2p study):

- gossipsub v1.1 (``/meshsub/1.1.0``): v1.2+ sends an IDONTWANT per message
  to every mesh peer, which costs more than it saves for small messages;
- ``heartbeat_interval`` 1 s (library default: 120 s) and
  ``adaptive_gossip_enabled=False`` (otherwise the heartbeat silently becomes
  60 s about 30 s after start);
- ``spam_protection_enabled=False`` (otherwise a node forwards at most 10
  messages/s per topic per forwarding peer, its own publishes included);
- ``eclipse_protection_enabled=False`` (a no-op on one host anyway);
- ``prune_back_off`` / ``unsubscribe_back_off`` 5 s (defaults 60 / 10 s: a
  pruned peer would be unreachable for a minute);
- ``ConnectionConfig(max_connections_per_peer=1)`` (otherwise every dial
  waits a fixed 250 ms) and the mplex muxer (2-3x cheaper than yamux).

Things the topic must know:

- Delivery is best effort. Right after ``join`` / ``connect`` the mesh is
  empty; a message published then can be lost for good (py-libp2p has no
  flood-publish). :meth:`Libp2pTransport.wait_mesh` waits for a usable mesh.
- py-libp2p drops silently: payloads over about 1 MiB (so ``publish``
  refuses more than :data:`MAX_PAYLOAD` bytes) and RPCs beyond 32 queued per
  peer and link (``pubsub/rpc_queue.py`` ``OutBoundQueueSize``): a burst of
  more than ~32 publishes without yielding loses the rest; pace publishes.
  (py-libp2p's 32-slot subscription channel is bypassed here: messages go
  to an unbounded inbox drained by one reader task, so none are dropped.)
- Messages and peer events reach the handler in the order py-libp2p saw
  them, through that one reader task, never from inside py-libp2p's code.
- A new subscriber may be sent messages from the last ~3 heartbeats again
  (py-libp2p replays its message cache to a peer whose subscription arrives).
- ``connect`` returning doesn't mean the peer is on the topic yet: the
  subscription exchange follows (``on_peer_joined``, a few ms on loopback),
  then the event-driven GRAFT. After ``leave``, a re-``join`` within the 5-s
  backoff leaves the mesh empty for ~5-10 s (GRAFTs wait for the backoff
  and the next heartbeat); ``wait_mesh`` covers that too.
- py-libp2p's AutoConnector (``network/auto_connector.py``) redials peers it
  knows from its peerstore every 10 s while under 50 connections, so a peer
  that went away may come back (``on_peer_joined``) without ``connect``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any, Literal

import multiaddr  # type: ignore[import-untyped]
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.network.config import ConnectionConfig
from libp2p.network.connection import swarm_connection as _swarm_connection
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import OutBoundQueueSize
from libp2p.tools.anyio_service import background_trio_service

from .transport import Transport, TransportError, TransportHandler

log = logging.getLogger("ampubsub.libp2p")

# libp2p's logger has no handler and doesn't propagate, so its warnings go to
# logging.lastResort (bare lines on stderr). A NullHandler silences that
# without touching the application's root logger. (With LIBP2P_DEBUG set,
# libp2p installs its own handlers, which still work.)
_libp2p_logger = logging.getLogger("libp2p")
if not any(isinstance(h, logging.NullHandler) for h in _libp2p_logger.handlers):
    _libp2p_logger.addHandler(logging.NullHandler())
# One module logs through the root logger (``logging.debug(...)`` at
# libp2p/network/connection/swarm_connection.py:92 and others), and the first
# such call runs logging.basicConfig(): a stderr handler appears on the
# application's root logger. Route that module's calls to its own libp2p
# logger instead (it only uses logging.debug and logging.warning).
if getattr(_swarm_connection, "logging", None) is logging:
    setattr(  # noqa: B010 - a module global, replaced on purpose
        _swarm_connection, "logging", logging.getLogger(_swarm_connection.__name__)
    )

#: Largest payload ``publish`` accepts. py-libp2p's outbound RPC queue drops
#: RPCs over 1 MiB without an error; the signed envelope adds ~300-400 bytes.
MAX_PAYLOAD = 1_000_000

#: py-libp2p's per-peer outbound RPC queue (``pubsub/rpc_queue.py``
#: ``OutBoundQueueSize``); RPCs beyond it are dropped silently.
OUTBOUND_QUEUE_SIZE = OutBoundQueueSize

#: Dials in flight at once in :meth:`Libp2pTransport.connect`.
MAX_PARALLEL_DIALS = 8

#: How often :meth:`Libp2pTransport.wait_mesh` looks at the mesh (py-libp2p
#: has no event for mesh changes).
MESH_POLL_INTERVAL = 0.05

#: Bound on the graceful part of shutdown (unsubscribe, services, host).
SHUTDOWN_TIMEOUT = 10.0

#: Inbox backlog (messages + events) above which a warning is logged.
INBOX_WARN_BACKLOG = 10_000

#: Bound on start-up (host, listeners, services).
STARTUP_TIMEOUT = 30.0

_MUXERS: dict[str, Literal["MPLEX", "YAMUX"]] = {"mplex": "MPLEX", "yamux": "YAMUX"}


_Event = tuple[str, int, str, bytes]  # (kind, generation, peer id, data)


def _ignore_topic_event(topic: str, peer: ID) -> None:
    pass


def _ignore_message(msg: rpc_pb2.Message) -> None:
    pass


class _EventPubsub(Pubsub):
    """Pubsub that reports peer join/leave and hands messages over directly.

    py-libp2p has no topic event handler (as go's ``Topic.EventHandler``);
    ``peer_topics`` changes only in ``handle_subscription`` and
    ``_forget_all_subscriptions``. ``notify_subscriptions`` (called once per
    new, valid message, own publishes included) normally puts the message
    into a 32-slot channel per topic and drops it when full; here it goes to
    ``on_message`` instead. All three hooks are sync and must not raise.
    """

    on_subscribed: Callable[[str, ID], None] = staticmethod(_ignore_topic_event)
    on_unsubscribed: Callable[[str, ID], None] = staticmethod(_ignore_topic_event)
    on_message: Callable[[rpc_pb2.Message], None] = staticmethod(_ignore_message)

    def handle_subscription(
        self, origin_id: ID, sub_message: rpc_pb2.RPC.SubOpts
    ) -> None:
        topic = sub_message.topicid
        before = origin_id in self.peer_topics.get(topic, ())
        super().handle_subscription(origin_id, sub_message)
        after = origin_id in self.peer_topics.get(topic, ())
        if after and not before:
            self.on_subscribed(topic, origin_id)
        elif before and not after:
            self.on_unsubscribed(topic, origin_id)

    def _forget_all_subscriptions(self, peer_id: ID) -> None:
        topics = [t for t, peers in self.peer_topics.items() if peer_id in peers]
        super()._forget_all_subscriptions(peer_id)
        for topic in topics:
            self.on_unsubscribed(topic, peer_id)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        if any(topic in self.topic_ids for topic in publish_message.topicIDs):
            self.on_message(publish_message)


class _Outcome:
    """How the stack task of one ``serve`` call is doing."""

    __slots__ = ("error", "finished", "ready", "started", "stop")

    def __init__(self) -> None:
        self.ready = trio.Event()  # started, or failed to start
        self.stop = trio.Event()  # serve wants the stack down
        self.finished = trio.Event()  # the stack is down
        self.started = False
        self.error: Exception | None = None


class _Running:
    """The libp2p objects of one ``serve`` call."""

    __slots__ = ("gossipsub", "host", "pubsub")

    def __init__(self, host: IHost, pubsub: _EventPubsub, gossipsub: GossipSub) -> None:
        self.host = host
        self.pubsub = pubsub
        self.gossipsub = gossipsub


class Libp2pTransport(Transport):
    """One peer on one gossipsub topic, over py-libp2p.

    ``listen`` takes multiaddrs without ``/p2p/`` (TCP by default; QUIC as
    ``/ip4/127.0.0.1/udp/0/quic-v1``). ``key_seed`` (32 bytes) makes the
    Ed25519 identity, hence the peer id, deterministic; without it a random
    identity is made, once per transport object. ``degree*`` and
    ``heartbeat_interval`` (seconds) configure gossipsub; ``muxer`` is
    ``"mplex"`` or ``"yamux"``. ``connect_timeout`` bounds each dial.
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
    ) -> None:
        if isinstance(listen, str):
            listen = (listen,)
        if not listen:
            raise ValueError("listen needs at least one multiaddr")
        self._listen = [_parse_multiaddr(a) for a in listen]
        if key_seed is not None and len(key_seed) != 32:
            raise ValueError(f"key_seed must be 32 bytes, got {len(key_seed)}")
        if not 0 < degree_low <= degree <= degree_high:
            raise ValueError(
                "need 0 < degree_low <= degree <= degree_high, got "
                f"{degree_low}, {degree}, {degree_high}"
            )
        if not heartbeat_interval > 0:
            raise ValueError(f"heartbeat_interval must be > 0: {heartbeat_interval}")
        if muxer.lower() not in _MUXERS:
            raise ValueError(f"muxer must be 'mplex' or 'yamux', not {muxer!r}")
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0: {connect_timeout}")
        self._key_pair: KeyPair = create_new_key_pair(key_seed)
        self._peer_id = ID.from_pubkey(self._key_pair.public_key)
        self._own = self._peer_id.to_bytes()
        self._degree = degree
        self._degree_low = degree_low
        self._degree_high = degree_high
        self._heartbeat_interval = heartbeat_interval
        self._muxer = _MUXERS[muxer.lower()]
        self._connect_timeout = connect_timeout

        self._run: _Running | None = None
        self._serving = False  # serve() entered and not finished
        self._topic: str | None = None
        # Bumped by join and leave: inbox entries of an older one are dropped.
        self._generation = 0
        self._inbox: trio.MemorySendChannel[_Event] | None = None
        self._backlog_warned = False
        # Peers the handler was told joined (and not yet that they left).
        self._reported: set[str] = set()

    def __repr__(self) -> str:
        state = "serving" if self._run is not None else "idle"
        return f"<Libp2pTransport {self.peer_id} {state} topic={self._topic!r}>"

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
        if self._serving:
            raise TransportError(f"{self!r} is already serving")
        self._serving = True
        outcome = _Outcome()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_stack, handler, outcome)
                try:
                    await outcome.ready.wait()
                    if outcome.error is None:
                        task_status.started()
                        await outcome.finished.wait()
                finally:
                    outcome.stop.set()
        finally:
            self._serving = False
        if outcome.error is not None:
            listen = ", ".join(str(a) for a in self._listen)
            stage = "failed" if outcome.started else "failed to start"
            cause = _innermost(outcome.error)
            raise TransportError(
                f"libp2p on {listen} {stage}: {cause!r}"
            ) from outcome.error

    async def _run_stack(self, handler: TransportHandler, outcome: _Outcome) -> None:
        """Build, run and tear down the libp2p stack; never raises an Exception."""
        try:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + STARTUP_TIMEOUT
                await self._run_shielded(handler, outcome, scope)
            if scope.cancelled_caught:
                stage = "shutdown" if outcome.started else "start-up"
                log.warning("%s: libp2p %s timed out", self.peer_id, stage)
                if not outcome.started:
                    outcome.error = TimeoutError(
                        f"start-up took over {STARTUP_TIMEOUT} s"
                    )
        except Exception as error:
            log.debug("%s: libp2p stack failed", self.peer_id, exc_info=True)
            outcome.error = error
        finally:
            outcome.ready.set()
            outcome.finished.set()

    async def _run_shielded(
        self, handler: TransportHandler, outcome: _Outcome, scope: trio.CancelScope
    ) -> None:
        host = new_host(
            key_pair=self._key_pair,
            listen_addrs=self._listen,
            muxer_preference=self._muxer,
            connection_config=ConnectionConfig(max_connections_per_peer=1),
        )
        gossipsub = GossipSub(
            [PROTOCOL_ID_V11],
            degree=self._degree,
            degree_low=self._degree_low,
            degree_high=self._degree_high,
            heartbeat_initial_delay=0.1,
            # annotated int in py-libp2p, used as trio.sleep(seconds)
            heartbeat_interval=self._heartbeat_interval,  # type: ignore[arg-type]
            prune_back_off=5,
            unsubscribe_back_off=5,
            adaptive_gossip_enabled=False,
            spam_protection_enabled=False,
            eclipse_protection_enabled=False,
        )
        inbox, inbox_out = trio.open_memory_channel[_Event](math.inf)
        # Pubsub() starts a sweeper thread at once (LastSeenCache); it must be
        # stopped explicitly, py-libp2p never does.
        pubsub = _EventPubsub(host, gossipsub)
        pubsub.on_subscribed = self._peer_subscribed
        pubsub.on_unsubscribed = self._peer_unsubscribed
        pubsub.on_message = self._message
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(host.run(self._listen))
                stack.push_async_callback(host.close)
                # host.run() ignores listen failures (Swarm.listen only logs
                # them and returns False), e.g. an address already in use.
                listening = host.get_network().listeners
                missing = [str(m) for m in self._listen if str(m) not in listening]
                if missing:
                    raise OSError(f"could not listen on {', '.join(missing)}")
                await stack.enter_async_context(background_trio_service(pubsub))
                await stack.enter_async_context(background_trio_service(gossipsub))
                await pubsub.wait_until_ready()
                nursery = await stack.enter_async_context(trio.open_nursery())
                nursery.start_soon(self._dispatch, inbox_out, handler)
                self._inbox = inbox
                self._run = _Running(host, pubsub, gossipsub)
                log.debug("%s listening on %s", self.peer_id, self.addrs)
                scope.deadline = math.inf
                outcome.started = True
                outcome.ready.set()
                await outcome.stop.wait()
                scope.deadline = trio.current_time() + SHUTDOWN_TIMEOUT
                await self._unsubscribe()
                self._run = None
                nursery.cancel_scope.cancel()
        finally:
            self._run = None
            self._inbox = None
            self._topic = None
            self._generation += 1
            inbox.close()
            inbox_out.close()
            pubsub.seen_messages.stop()

    def _running(self) -> _Running:
        if self._run is None:
            raise TransportError(f"transport {self.peer_id} is not serving")
        return self._run

    # -- connections --------------------------------------------------------

    async def connect(self, addrs: Sequence[str]) -> int:
        """Dial peers concurrently; return how many peers are now connected.

        Addresses of one peer are dialled together (one connection); this
        peer's own addresses are skipped (an empty list returns 0). Each dial
        is bounded by ``connect_timeout``, at most ``MAX_PARALLEL_DIALS`` at
        once. Raises ``ValueError`` (before dialling anything) for a malformed
        address or one without ``/p2p/``, :class:`TransportError` when not
        serving or when no peer could be reached.
        """
        if isinstance(addrs, str):
            addrs = (addrs,)
        by_peer: dict[ID, list[multiaddr.Multiaddr]] = {}
        texts: dict[ID, list[str]] = {}
        for text in addrs:
            info = _parse_peer_addr(text)
            if info.peer_id != self._peer_id:
                by_peer.setdefault(info.peer_id, []).extend(info.addrs)
                texts.setdefault(info.peer_id, []).append(text)
        run = self._running()
        if not by_peer:
            return 0
        limiter = trio.CapacityLimiter(MAX_PARALLEL_DIALS)
        failures: dict[ID, str] = {}
        connected = 0

        async def dial(peer: ID, peer_addrs: list[multiaddr.Multiaddr]) -> None:
            nonlocal connected
            async with limiter:
                _forget_stale_dial_state(run.host, peer)
                reason = f"timed out after {self._connect_timeout} s"
                with trio.move_on_after(self._connect_timeout):
                    try:
                        await run.host.connect(PeerInfo(peer, peer_addrs))
                    except Exception as error:  # any dial failure is a failure
                        reason = f"{type(error).__name__}: {error}"
                    else:
                        if run.host.get_network().get_connections(peer):
                            connected += 1
                            return
                        reason = "no connection after dial"
                failures[peer] = reason

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for peer, peer_addrs in by_peer.items():
                nursery.start_soon(dial, peer, peer_addrs)
        log.debug(
            "%s connected %d/%d peers in %.3f s",
            self.peer_id,
            connected,
            len(by_peer),
            trio.current_time() - started,
        )
        for peer, reason in failures.items():
            log.info("%s could not dial %s: %s", self.peer_id, peer, reason)
        if not connected:
            detail = "; ".join(
                f"{' '.join(texts[p])}: {r}" for p, r in failures.items()
            )
            raise TransportError(f"could not connect to any peer: {detail}")
        return connected

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
        if self._topic == topic:
            return
        if self._topic is not None:
            raise TransportError(
                f"{self.peer_id} already joined {self._topic!r}; leave it first"
            )
        self._topic = topic
        self._generation += 1
        try:
            await run.pubsub.subscribe(topic)
        except BaseException:
            if self._topic == topic:
                self._topic = None
                self._generation += 1
            raise
        if self._topic != topic:  # left (or stopped) meanwhile
            return
        for peer in sorted(run.pubsub.peer_topics.get(topic, ()), key=str):
            self._peer_subscribed(topic, peer)

    async def leave(self) -> None:
        """Unsubscribe; no more messages or peer events (a no-op if not joined).

        Messages and events still queued for the handler are dropped. Also a
        no-op when not serving (stopping ``serve`` leaves the topic anyway).
        """
        await self._unsubscribe()

    async def _unsubscribe(self) -> None:
        topic, run = self._topic, self._run
        if topic is None or run is None:
            return
        self._topic = None
        self._generation += 1
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
        if self._run is None or self._topic is None:
            return frozenset()
        peers = self._run.pubsub.peer_topics.get(self._topic, ())
        return frozenset(p.to_base58() for p in peers)

    def mesh_peers(self) -> frozenset[str]:
        """Peers in this node's gossipsub mesh for the joined topic."""
        if self._run is None or self._topic is None:
            return frozenset()
        peers = self._run.gossipsub.mesh.get(self._topic, ())
        return frozenset(p.to_base58() for p in peers)

    def outbound_backlog(self) -> int:
        """RPCs waiting in the fullest per-peer outbound queue (0 if none).

        py-libp2p queues at most ``OUTBOUND_QUEUE_SIZE`` (32) RPCs per peer
        and silently drops the rest, so a topic publishing bursts should wait
        while this is high (there is no event for it: poll).
        """
        if self._run is None:
            return 0
        queues = list(self._run.pubsub.peer_queues.values())
        return max((len(q) for q in queues), default=0)

    def mesh_ready(self) -> bool:
        """True when the mesh can carry a publish to the topic's peers.

        That is: some direct peer is on the topic, and the mesh holds at least
        ``min(degree_low, len(topic_peers()))`` of them.
        """
        peers = self.topic_peers()
        if not peers:
            return False
        return len(self.mesh_peers()) >= min(self._degree_low, len(peers))

    async def wait_mesh(self, timeout: float) -> bool:
        """Wait until :meth:`mesh_ready`; False when ``timeout`` s pass first.

        py-libp2p has no event for mesh changes, so this polls the mesh every
        ``MESH_POLL_INTERVAL`` seconds. Raises :class:`TransportError` when not
        serving or not joined; returns False if the topic is left meanwhile.
        """
        self._running()
        topic = self._topic
        if topic is None:
            raise TransportError(f"{self.peer_id} has not joined a topic")
        with trio.move_on_after(timeout):
            while self._topic == topic and self._run is not None:
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
        topic = self._topic
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

    # -- inbound: hooks run inside py-libp2p; they only queue ----------------

    def _queue(self, kind: str, peer: str, data: bytes = b"") -> None:
        inbox = self._inbox
        if inbox is None:
            return
        try:
            inbox.send_nowait((kind, self._generation, peer, data))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return
        backlog = inbox.statistics().current_buffer_used
        if backlog > INBOX_WARN_BACKLOG and not self._backlog_warned:
            self._backlog_warned = True
            log.warning(
                "%s: %d messages/events wait for the handler", self.peer_id, backlog
            )
        elif backlog < INBOX_WARN_BACKLOG // 2:
            self._backlog_warned = False

    def _message(self, msg: rpc_pb2.Message) -> None:
        if self._topic is None or self._topic not in msg.topicIDs:
            return
        if msg.from_id == self._own:
            return
        try:
            sender = ID(msg.from_id).to_base58()
        except Exception:
            log.debug("%s: message with a bad from_id dropped", self.peer_id)
            return
        self._queue("message", sender, msg.data)

    def _peer_subscribed(self, topic: str, peer: ID) -> None:
        if topic == self._topic:
            self._queue("joined", peer.to_base58())

    def _peer_unsubscribed(self, topic: str, peer: ID) -> None:
        if topic == self._topic:
            self._queue("left", peer.to_base58())

    async def _dispatch(
        self, inbox: trio.MemoryReceiveChannel[_Event], handler: TransportHandler
    ) -> None:
        """Hand queued messages and peer events to the handler, in order."""
        generation = -1
        async for kind, event_generation, peer, data in inbox:
            if event_generation != self._generation:
                continue  # queued before a leave or re-join
            if event_generation != generation:
                generation = event_generation
                self._reported.clear()
            try:
                if kind == "message":
                    handler.on_message(peer, data)
                elif kind == "joined":
                    if peer not in self._reported:
                        self._reported.add(peer)
                        handler.on_peer_joined(peer)
                elif peer in self._reported:
                    self._reported.discard(peer)
                    handler.on_peer_left(peer)
            except Exception:
                log.exception(
                    "%s: the handler's %s callback raised", self.peer_id, kind
                )


def _innermost(error: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _forget_stale_dial_state(host: IHost, peer: ID) -> None:
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


def _parse_multiaddr(text: str) -> multiaddr.Multiaddr:
    if not isinstance(text, str):
        raise ValueError(f"a multiaddr must be a str, not {type(text).__name__}")
    try:
        return multiaddr.Multiaddr(text)
    except Exception as error:
        raise ValueError(f"malformed multiaddr {text!r}: {error}") from error


def _parse_peer_addr(text: str) -> PeerInfo:
    addr = _parse_multiaddr(text)
    try:
        return info_from_p2p_addr(addr)
    except Exception as error:
        raise ValueError(
            f"multiaddr {text!r} can't be dialled: it needs a /p2p/<peer id> "
            f"suffix ({error})"
        ) from error
