"""The gossipsub router as we run it, and a Pubsub that reports to us.

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

py-libp2p drops silently: payloads over about 1 MiB (hence
:data:`MAX_PAYLOAD`) and RPCs beyond its outbound queue per peer and link
(ours holds :data:`OUTBOUND_QUEUE_SIZE`). :class:`EventPubsub` replaces the
only other silent drop, the 32-slot subscription channel per topic, and
puts received messages through :class:`~.shedding.Admission`
(per-connection budgets and fair queues) before py-libp2p's expensive
checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import multiaddr  # type: ignore[import-untyped]
import trio
from google.protobuf.message import DecodeError
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.exceptions import ParseError
from libp2p.host.exceptions import StreamFailure
from libp2p.io.exceptions import IOException, MessageTooLarge
from libp2p.network.config import ConnectionConfig
from libp2p.network.connection.exceptions import RawConnError
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import RpcQueue

from . import records
from .addresses import expand_unspecified
from .frames import FrameReader
from .logs import log
from .muxer import muxer_options
from .shedding import Admission

#: Largest payload ``publish`` accepts. py-libp2p's outbound RPC queue drops
#: RPCs over 1 MiB without an error; the signed envelope adds ~300-400 bytes.
MAX_PAYLOAD = 1_000_000

#: RPCs queued per peer for sending; beyond it py-libp2p drops them silently
#: (counted here as ``drop_out_queue_full``). py-libp2p's own is 32
#: (``OutBoundQueueSize``): at 100 peers over 5 processes it dropped ~82,000
#: RPCs in one run, which the protocol then had to repair. Ours holds 128
#: (at most 128 x MAX_PAYLOAD for a peer that stops reading; our messages
#: are far smaller).
OUTBOUND_QUEUE_SIZE = 128

MUXERS: dict[str, Literal["MPLEX", "YAMUX"]] = {"mplex": "MPLEX", "yamux": "YAMUX"}


@dataclass(frozen=True, slots=True, eq=False)
class HostConfig:
    """What a host and its router are built from (validated by the transport)."""

    listen: list[multiaddr.Multiaddr]
    key_pair: KeyPair
    muxer: Literal["MPLEX", "YAMUX"]
    degree: int
    degree_low: int
    degree_high: int
    heartbeat_interval: float
    #: the private-network key (32 bytes), or None for an open network
    psk: bytes | None = None


def new_libp2p_host(config: HostConfig) -> IHost:
    """A host with our identity, muxer and one connection per peer (and pnet key).

    It announces this host's interface addresses for ``0.0.0.0`` / ``::``.
    """
    return new_host(
        addrs_factory=expand_unspecified,
        key_pair=config.key_pair,
        psk=None if config.psk is None else config.psk.hex(),
        listen_addrs=config.listen,
        muxer_opt=muxer_options(config.muxer),  # one bad link can't stop the host
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


class BudgetedGossipSub(GossipSub):
    """GossipSub that forwards at most an honest peer's rate per author, and
    sends our own messages to ``degree`` peers even before the mesh formed.

    ``publish`` is the router's forwarding step, called once a received
    message passed every check (and for our own publishes, always
    forwarded); an author over its forwarding budget (``shedding.py``, rule
    6) is delivered here but not forwarded, nor kept for IHAVE gossip, as
    py-libp2p's own spam protection does.

    py-libp2p sends a message of a topic we joined to our mesh peers only:
    published before the mesh formed (a join takes a heartbeat or more, and
    seconds under load), it reaches nobody until IHAVE gossip repairs it.
    Measured at 60 peers / 4 processes, newcomers' hellos took ~5 s to reach
    everyone. While our mesh is below ``degree_low``, our own messages
    therefore also go to other subscribed peers, up to ``degree`` in all
    (go-libp2p floods its own publishes to every subscribed peer, always);
    forwarding is unchanged.
    """

    admission: Admission | None = None

    async def publish(self, msg_forwarder: ID, pubsub_msg: rpc_pb2.Message) -> None:
        admission, pubsub = self.admission, self.pubsub
        if (
            admission is not None
            and pubsub is not None
            and msg_forwarder != pubsub.my_id
            and not admission.forwards(pubsub_msg.from_id)
        ):
            return
        await super().publish(msg_forwarder, pubsub_msg)

    def _get_peers_to_send(
        self,
        topic_ids: Iterable[str],
        msg_forwarder: ID,
        origin: ID,
        msg_id: bytes | None = None,
    ) -> Iterable[ID]:
        pubsub = self.pubsub
        if pubsub is None or msg_forwarder != pubsub.my_id:  # forwarding
            return super()._get_peers_to_send(topic_ids, msg_forwarder, origin, msg_id)
        topics = list(topic_ids)
        peers = set(super()._get_peers_to_send(topics, msg_forwarder, origin, msg_id))
        for topic in topics:
            mesh = len(self.mesh.get(topic, ()))
            if mesh < self.degree_low and topic in pubsub.peer_topics:
                extra = self._get_in_topic_gossipsub_peers_from_minus(
                    topic, self.degree - mesh, peers | {msg_forwarder, origin}
                )
                peers.update(p for p in extra if self._scored_in(p, topic))
        return peers

    def _scored_in(self, peer: ID, topic: str) -> bool:
        """py-libp2p's gate for the mesh's peers, applied to the extra ones."""
        scorer = self.scorer
        return scorer is None or (
            scorer.allow_gossip(peer, [topic])
            and not scorer.is_graylisted(peer, [topic])
        )

    def _handle_dropped_rpc(self, peer_id: ID, rpc: rpc_pb2.RPC, reason: str) -> None:
        """py-libp2p drops an RPC it can't queue for a peer (its outbound
        queue holds 32): counted, so a lossy link shows (``drop_out_*``)."""
        if self.admission is not None:
            self.admission.counters[f"drop_out_{reason}"] += 1
        super()._handle_dropped_rpc(peer_id, rpc, reason)


def new_gossipsub(config: HostConfig) -> BudgetedGossipSub:
    """The gossipsub router, tuned as the module docstring explains."""
    records.install()  # signed peer records checked once per peer
    return BudgetedGossipSub(
        [PROTOCOL_ID_V11],
        degree=config.degree,
        degree_low=config.degree_low,
        degree_high=config.degree_high,
        heartbeat_initial_delay=0.1,
        # annotated int in py-libp2p, used as trio.sleep(seconds)
        heartbeat_interval=config.heartbeat_interval,  # type: ignore[arg-type]
        prune_back_off=5,
        unsubscribe_back_off=5,
        adaptive_gossip_enabled=False,
        spam_protection_enabled=False,
        eclipse_protection_enabled=False,
    )


def _ignore_topic_event(topic: str, peer: ID) -> None:
    pass


def _ignore_message(msg: rpc_pb2.Message) -> None:
    pass


class _RoomyQueues(dict[ID, RpcQueue]):
    """``Pubsub.peer_queues`` whose new queues hold OUTBOUND_QUEUE_SIZE RPCs.

    py-libp2p builds each peer's queue with its module default and offers
    no parameter; the capacity is a plain attribute of the inner queue.
    """

    def __setitem__(self, peer: ID, queue: RpcQueue) -> None:
        inner = getattr(queue, "_queue", None)
        if inner is not None and hasattr(inner, "max_size"):
            inner.max_size = max(inner.max_size, OUTBOUND_QUEUE_SIZE)
        super().__setitem__(peer, queue)


class EventPubsub(Pubsub):
    """Pubsub that sheds floods early, reports peer join/leave and hands
    messages over directly.

    py-libp2p's read loop starts one ``push_msg`` task per received message;
    ours (:meth:`continuously_read_stream`) offers each message to
    :attr:`admission` instead (see ``shedding.py``), and one worker task
    started by :meth:`run` serves what it admitted, round-robin per
    connection, through py-libp2p's own ``push_msg`` (seen-cache, signature,
    validators, forwarding). Own publishes go straight through.

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

    def __init__(
        self, host: IHost, router: GossipSub, admission: Admission | None = None
    ) -> None:
        super().__init__(host, router)
        self.peer_queues = _RoomyQueues()
        #: set while a dead stream's peer is still connected
        self._keep_subscriptions = False
        #: our streams that died while their peer stayed connected
        self.streams_renewed = 0
        #: the stage before signature checks (``shedding.py``)
        self.admission = admission or Admission()
        if isinstance(router, BudgetedGossipSub):
            router.admission = self.admission

    async def _handle_new_peer(self, peer_id: ID) -> None:
        """py-libp2p's, with a timed-out negotiation retried like a failed open.

        py-libp2p retries opening a neighbour's pubsub stream while connected
        (``SwarmException``, ``StreamClosed``), but takes a protocol
        negotiation that timed out (``StreamFailure``: a busy neighbour
        answered past ``ConnectionConfig``'s 10 s) as final: the neighbour is
        never registered, and nothing we publish reaches it, ever. At 100
        peers over 5 processes on 2 cores a joiner lost all its neighbours
        so and stayed unheard for minutes, though it heard them.
        """
        try:
            await super()._handle_new_peer(peer_id)
        except StreamFailure as error:
            log.debug(
                "%s: pubsub stream negotiation failed, retrying: %s", peer_id, error
            )
            raise SwarmException(f"pubsub stream to {peer_id}: {error}") from error

    async def run(self) -> None:
        self.admission.drop_queued()  # left by an earlier serve(), if any
        self.manager.run_daemon_task(self._serve_admitted)
        await super().run()

    async def continuously_read_stream(self, stream: INetStream) -> None:
        """py-libp2p's read loop, made cheap for what is shed.

        The same steps as ``Pubsub.continuously_read_stream`` (0.8.1), except:
        frames are read in chunks (``frames.py``); a peer's signed peer record,
        which py-libp2p attaches to every RPC it sends, is checked once per
        peer and record (``records.py``); each published message is offered
        to :attr:`admission` here, without a task; a malformed RPC resets the
        stream (as an oversized one does) instead of ending the loop with an
        exception.
        """
        peer_id = stream.muxed_conn.peer_id
        frames = FrameReader(stream, self.max_inbound_rpc_size)
        admission = self.admission
        try:
            while self.manager.is_running:
                incoming = await frames.next()
                rpc = rpc_pb2.RPC()
                rpc.ParseFromString(incoming)
                if not records.consume_once(rpc, self.host, peer_id):
                    log.debug("%s sent an invalid signed record", peer_id)
                    continue
                for msg in rpc.publish:
                    if self._is_subscribed_to_msg(msg):
                        admission.offer(peer_id, msg, self._is_msg_seen(msg))
                if rpc.subscriptions:
                    if len(rpc.subscriptions) > self.max_subscriptions_per_rpc:
                        log.debug("%s sent too many subscriptions", peer_id)
                    else:
                        for sub in rpc.subscriptions:
                            self.handle_subscription(peer_id, sub)
                if rpc.HasField("control"):
                    await self.router.handle_rpc(rpc, peer_id)
        except (MessageTooLarge, ParseError, DecodeError) as error:
            log.debug("%s: bad pubsub RPC, stream reset: %s", peer_id, error)
            with contextlib.suppress(Exception):
                await stream.reset()
            self._handle_dead_peer(peer_id)
        except (StreamEOF, StreamError, IOException, RawConnError) as error:
            log.debug("%s: pubsub stream ended: %r", peer_id, error)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder == self.my_id:  # our own publish
            await super().push_msg(msg_forwarder, msg)
            return
        # (our read loop offers received messages itself; kept for callers)
        self.admission.offer(msg_forwarder, msg, self._is_msg_seen(msg))

    async def _serve_admitted(self) -> None:
        """The one worker: py-libp2p's checks for each admitted message."""
        admission = self.admission
        while self.manager.is_running:
            conn, msg = await admission.take()
            try:
                await super().push_msg(conn, msg)
            except Exception:  # one bad message must not stop the worker
                log.debug("push_msg failed for a message from %s", conn, exc_info=True)
            # push_msg may not yield: let the read loops and the inbox run
            await trio.lowlevel.checkpoint()

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

    def _handle_dead_peer(self, peer_id: ID) -> None:
        """py-libp2p's, except that a neighbour still connected keeps its
        subscriptions (as in go-libp2p).

        py-libp2p calls this when our pubsub stream to a neighbour fails (a
        write to a reset stream, a duplicate connection pruned) and, if the
        neighbour is still connected, opens a new stream; but it first
        forgets what the neighbour subscribed to. The neighbour told us on
        its own stream, which lives on and never says it again: nothing we
        published reached it any more, our bye included.
        """
        self._keep_subscriptions = self._peer_is_connected(peer_id)
        if self._keep_subscriptions and peer_id in self.peers:
            self.streams_renewed += 1
        try:
            super()._handle_dead_peer(peer_id)
        finally:
            self._keep_subscriptions = False

    def _forget_all_subscriptions(self, peer_id: ID) -> None:
        if self._keep_subscriptions:
            return  # only a stream died (``_handle_dead_peer``)
        topics = [t for t, peers in self.peer_topics.items() if peer_id in peers]
        super()._forget_all_subscriptions(peer_id)
        for topic in topics:
            self.on_unsubscribed(topic, peer_id)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        if any(topic in self.topic_ids for topic in publish_message.topicIDs):
            self.on_message(publish_message)
