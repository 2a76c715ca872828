"""Topic: one peer of one gossip network, driven by its own state machine.

Theory of operation. ``topic.mach`` has asyncmachine-go's topic schema, and
its handlers (``_Handlers``) do the work: ``Start`` serves the transport,
``Connecting`` dials the bootstrap peers, ``Joining`` subscribes, ``Joined``
runs the send loop and the heartbeat; inbound messages and peer events
arrive as multi states (``MsgInfo``, ``PeerJoined``, ...) whose handlers hand
them to the sans-IO :class:`~ampubsub_plugin.gossip.GossipCore` and apply the
events it returns to the remote machines (``_views.RemoteViews``) and the
plugins (``hooks.TopicHooks``). The send loop asks for what is due through
``Flush``, whose handler runs the core's ``collect``.

Threads: the core and the remote machines are touched only inside the topic
machine's handlers, which run one at a time in whichever thread runs the
machine's queue (usually the trio thread, sometimes a user's thread that
mutates ``topic.mach``). Exports are the exception: exported machines change
on any thread, so the export table inside the core has its own small lock.

Handlers never block: anything that waits (dialling, publishing, timers) is
forked as a task on the topic's trio runtime, under the context of the state
that forked it, and is cancelled when that state ends. The runtime is the
caller's trio run when ``start()`` is called from trio, else the process's
shared background trio thread.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from asyncmachine import Event, Machine, Result, Waiter

from ._allow import AllowPeers, PeerAllowList
from ._gossip import INTENT_STATES, GossipConfig, GossipCore
from ._gossip import Event as CoreEvent
from ._inbound import ExportTracer, Inbound
from ._pull import (
    HEDGE_AFTER,
    PULL_PATIENCE,
    PULL_PEERS,
    PULL_REQUEST,
    decode_peers_request,
    encode_peers_request,
    encode_reply,
    hedged_fetch,
)
from ._runtime import Runtime, Task, run_is_ending, runtime_for_caller
from ._views import RemoteViews
from .hooks import TopicHooks
from .mutations import MutableBy, MutationClient, MutationPolicy, MutationServer
from .protocol import ByeMsg, Message, ProtocolError, encode
from .remote import RemoteMachine
from .states import MSG_STATES, TOPIC_SCHEMA
from .transport import (
    DIRECT_HANDLER_TIMEOUT,
    PskMismatchError,
    Transport,
    TransportError,
)

if TYPE_CHECKING:
    from asyncmachine import StateContext

log = logging.getLogger("ampubsub.topic")

DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)
#: publish only while the slowest peer's outbound queue is below this
OUTBOUND_BACKLOG = 16
#: how a snapshot pull is answered (None: refused, we are still joining)
PullReply = Callable[[list[Message] | None], None]
#: snapshot pulls held while we are joining (more are refused at once)
MAX_HELD_PULLS = 32
#: a held pull is refused this many seconds before the transport's bound
#: on a request's handler would cut it (its refusal says "still joining")
HOLD_MARGIN = 1.0
#: how long ``dispose()`` may spend sending the last updates and the bye
BYE_TIMEOUT = 2.0
#: ... and then waiting for the transport to write out what it queued
DRAIN_TIMEOUT = 0.5


class Topic:
    """A peer of the network ``name``: exports local machines, shows remote ones."""

    def __init__(
        self,
        name: str,
        *,
        listen: Sequence[str] = DEFAULT_LISTEN,
        bootstrap: Iterable[str] = (),
        machines: Iterable[Machine] = (),
        transport: Transport | None = None,
        config: GossipConfig | None = None,
        id: str | None = None,
        ready_peers: int = 1,
        connect_attempts: int = 5,
        psk: bytes | str | os.PathLike[str] | None = None,
        allow_peers: AllowPeers = None,
        mdns: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a topic name must be a non-empty str, got {name!r}")
        if isinstance(bootstrap, str):
            bootstrap = [bootstrap]
        self.name = name
        self.bootstrap = [str(a) for a in bootstrap]
        if transport is None:
            from .libp2p_transport import Libp2pTransport

            transport = Libp2pTransport(listen=list(listen), psk=psk, mdns=mdns)
        elif psk is not None:
            raise ValueError("psk is a Libp2pTransport option; pass it there")
        elif mdns:
            raise ValueError("mdns=True makes its own transport: pass one or the other")
        self.transport = transport
        self.config = config or GossipConfig()
        self.ready_peers = ready_peers
        self.connect_attempts = max(1, connect_attempts)
        self.runtime: Runtime | None = None
        self._serve_task: Task | None = None
        self._wake_event: trio.Event | None = None
        #: a wake asked for a ``Flush`` (not only for an earlier timer)
        self._flush_wanted = False
        self.core = GossipCore("", config=self.config)
        self._views = RemoteViews(self.core, on_built=self._attach_remote)
        # remote mutations (mutations.py): ours to answer, theirs to ask
        self._mutation_server = MutationServer(self._now)
        self._mutation_client = MutationClient(
            self.transport.request, self._spawn_request, self._on_runtime_thread
        )
        self.transport.serve_requests(self._serve_request)
        self._hooks = TopicHooks(self, self.core.counters)
        #: what the last ``Flush`` collected, and when the core wants the next
        self._outbox: deque[Message] = deque()
        self._due: float | None = None
        #: snapshot pulls that came while we were joining, answered once we
        #: settle: (reply, the moment the puller stops waiting)
        self._held_pulls: list[tuple[PullReply, float]] = []
        #: held by the send loop while it sends a round; the goodbye takes it
        self._sending = trio.Lock()
        #: dispose() was called: the goodbye sends from now on, the send loop stops
        self._leaving = False
        self._tracers: dict[int, ExportTracer] = {}
        #: who may connect, publish and be shown (_allow.py); one predicate
        #: for the transport, the inbound path and the core
        self.allows = PeerAllowList(
            allow_peers, own=lambda: self.core.peer_id, hook=self._hooks.accept_peer
        )
        self.core.accept_peers(self.allows)
        self.transport.set_peer_filter(self.allows)
        self.mach = Machine(
            TOPIC_SCHEMA,
            id=id or f"ps-{name}-{secrets.token_hex(2)}",
            tags=["ampubsub:topic", f"topic:{name}"],
        )
        self._inbound = Inbound(
            self.mach, self.config, self.core.counters, self._now, self.allows
        )
        self.mach.bind(_Handlers(self))
        for machine in machines:
            self.export(machine)

    def __repr__(self) -> str:
        peer = self.core.peer_id[-6:] if self.core.peer_id else "-"
        return f"<Topic {self.name} peer={peer} {self.mach}>"

    # -- public API ------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        """This peer's id; empty until ``Started``."""
        return self.core.peer_id

    @property
    def addrs(self) -> list[str]:
        """Full multiaddrs (``.../p2p/<id>``) other peers can bootstrap from."""
        if not self.mach.is_active("Started"):
            return []
        return self.transport.addrs

    def start(self) -> None:
        """Start -> Started -> Connecting -> Connected (returns at once)."""
        self.mach.add("Start")

    def join(self) -> None:
        """Joining -> Joined (returns at once; wait on ``mach.when("Joined")``)."""
        self.mach.add("Joining")

    def dispose(self) -> Waiter:
        """Send the last updates and the bye, leave, release sockets and tasks.

        Returns at once; the work goes on in the background and ends in
        ``Disposed``. The returned waiter (``mach.when_disposed()``) is done
        then: ``topic.dispose().wait(5)`` in threads, ``await
        topic.dispose()`` under asyncio and trio. Calling it again returns
        another such waiter. A program may also just exit: the last updates
        and the bye still go out (bounded by ``BYE_TIMEOUT``; see
        docs/api.md, "Shutting down").
        """
        done = self.mach.when_disposed()
        if done.done or self._leaving:
            return done
        if self.mach.any_active("Disposing", "Disposed"):
            return done
        runtime = self.runtime
        if self.mach.is_active("Joined") and runtime is not None:
            self._leaving = True
            if self._fork("Start", self._goodbye) is None:
                self.mach.add("Disposing")
        else:
            self.mach.add("Disposing")
        if runtime is not None:
            runtime.delay_exit(done)
        return done

    def export(
        self,
        machine: Machine,
        *,
        mutable_by: MutableBy | None = None,
        mutable_states: Iterable[str] | None = None,
    ) -> int:
        """Share a local machine with the network; returns its index on the wire.

        ``mutable_by`` (``"*"``, peer ids, or ``(peer_id, mutation) -> bool``)
        lets those peers mutate it remotely, ``mutable_states`` only those
        states (see mutations.py); without it the machine is read-only to
        others. Exporting again replaces the permission.
        """
        if isinstance(machine, RemoteMachine):
            raise TypeError(f"{machine!r} is remote; only local machines are exported")
        if not isinstance(machine, Machine):
            raise TypeError(f"only asyncmachine Machines are exported, not {machine!r}")
        if machine.is_disposed:
            raise ValueError(f"machine {machine.id!r} is disposed")
        policy = MutationPolicy.build(machine, mutable_by, mutable_states)
        if not self._hooks.accept_export(machine):
            raise PermissionError(
                f"a plugin refused exporting machine {machine.id!r} to {self.name!r}"
            )
        index = self.core.export(machine)
        self._mutation_server.permit(index, machine, policy)
        self._wake()
        if index not in self._tracers:
            tracer = ExportTracer(
                index, self.core.mark_dirty, self._wake, self.unexport
            )
            self._tracers[index] = tracer
            machine.bind_tracer(tracer)
        return index

    def unexport(self, machine: Machine) -> bool:
        """Stop sharing a machine; others get a ``bye`` for it."""
        index = self.core.unexport(machine)
        if index is None:
            return False
        self._mutation_server.forget(index)
        self._wake()
        self._detach_tracer(index, machine)
        return True

    def _detach_tracer(self, index: int, machine: Machine) -> None:
        tracer = self._tracers.pop(index, None)
        if tracer is not None and not machine.is_disposed:
            machine.unbind_tracer(tracer)

    @property
    def exported(self) -> list[Machine]:
        return self.core.exported()

    def list_machines(
        self,
        id: str | None = None,
        id_partial: str | None = None,
        id_regex: str | re.Pattern[str] | None = None,
        peer_id: str | None = None,
        parent: str | None = None,
        tag: str | None = None,
        *,
        connected: bool | None = None,
    ) -> list[RemoteMachine]:
        """Remote machines known here, filtered (all filters must match).

        ``tag`` matches a tag equal to it or a ``key:value`` tag with it as key.
        """
        return self._views.find(
            id=id,
            id_partial=id_partial,
            id_regex=id_regex,
            peer_id=peer_id,
            parent=parent,
            tag=tag,
            connected=connected,
        )

    @property
    def counters(self) -> dict[str, int]:
        """Messages in/out and drops by reason, plus table sizes."""
        merged = dict(self.core.counters)
        merged.update(self.core.stats())
        merged.update(self.transport.counters())
        merged.update(self._mutation_server.counters)
        return merged

    # -- remote mutations ------------------------------------------------------

    async def _serve_request(self, caller: str, payload: bytes) -> bytes:
        """A direct request: a newcomer's snapshot (``_pull``), or a mutation
        of one of our machines (sans-IO server)."""
        if payload == PULL_REQUEST:
            return await self._serve_pull(caller, None)
        if payload.startswith(PULL_PEERS):
            return await self._serve_pull(caller, decode_peers_request(payload))
        if not self._mutation_server.active:
            raise PermissionError("no machine here is exported as mutable")
        return self._mutation_server.handle(caller, payload)

    async def _serve_pull(self, caller: str, peers: list[str] | None) -> bytes:
        """Our snapshot (``peers`` None) or what we know of ``peers``, built
        inside the topic machine (where the core runs)."""
        runtime = self.runtime
        if runtime is None:
            raise PermissionError("not serving")
        lag = self.core.lag
        if lag > self.config.snapshot_wait:
            # our queue is longer than the puller waits: it had better ask
            # another neighbour now than time out behind our backlog
            self.core.counters["pull_refused_busy"] += 1
            raise PermissionError(f"busy: {lag:.1f} s behind")
        done = trio.Event()
        built: list[list[Message] | None] = []

        def reply(messages: list[Message] | None) -> None:
            built.append(messages)
            if runtime.in_thread:
                done.set()
            else:
                runtime.call_soon(done.set)

        wait = min(
            PULL_PATIENCE / 2 * self.config.snapshot_wait,
            DIRECT_HANDLER_TIMEOUT - HOLD_MARGIN,
        )
        args = {
            "reply": reply,
            "peers": peers,
            "caller": caller,
            "until": self._now() + wait,
        }
        if self.mach.add("ServePull", args) == 1:
            self.core.counters["pull_refused_not_joined"] += 1
            raise PermissionError("not joined")
        with trio.move_on_after(wait):
            await done.wait()
        if not built:
            self.core.counters["pull_refused_held_out"] += 1
        if not built or built[0] is None:
            raise PermissionError("still joining: no complete view to send")
        log.debug("%s: %s pulled by %s", self.name, peers or "snapshot", caller)
        return encode_reply(built[0])

    def _start_pull(self, payload: bytes, hint: str | None = None) -> None:
        """Fetch a snapshot or some peers' infos from one neighbour (see
        ``_pull``): ``hint`` if it is one, else any."""
        runtime = self.runtime
        peers = sorted(self.transport.topic_peers())
        if runtime is None or not peers:
            self.core.counters["pull_no_peer"] += 1
            if payload == PULL_REQUEST:  # called inside the topic machine
                self.core.pull_failed(self._now(), no_neighbour=True)
            return  # the requests to everyone cover the others
        peer = hint if hint in peers else self.core.discovery.pick(peers)
        runtime.spawn(self._pull, peer, payload, name=f"{self.name}:pull")

    async def _pull(self, peer: str, payload: bytes) -> None:
        counters = self.core.counters
        # a busy neighbour answers late, not never: give it our lag, too
        config, lag = self.config, self.core.lag
        snapshot = payload == PULL_REQUEST

        def another() -> str | None:
            """A second neighbour for a snapshot pull (none for infos)."""
            others = [p for p in self.transport.topic_peers() if p != peer]
            if not snapshot or not others:
                return None
            counters["pull_hedged"] += 1
            return secrets.choice(others)

        def failed(peer: str, err: Exception) -> None:
            counters["pull_failed"] += 1
            counters[f"pull_failed_{type(err).__name__}"] += 1
            log.debug("%s: pulling from %s failed: %s", self.name, peer, err)

        def arrived(peer: str, messages: list[Message]) -> None:
            counters["pull_ok"] += 1
            now = self._now()
            for msg in messages:
                args = {"peer_id": peer, "msg": msg, "arrived": now}
                self.mach.add(MSG_STATES[msg.TYPE], args)
            if snapshot:
                self.mach.add("Pulled", {"peer_id": peer})

        ok = await hedged_fetch(
            self.transport.request,
            payload,
            peer,
            another,
            timeout=PULL_PATIENCE * config.snapshot_wait + config.back_pressure * lag,
            hedge_after=HEDGE_AFTER + config.back_pressure * lag,
            on_reply=arrived,
            on_error=failed,
        )
        if not ok and snapshot:  # another neighbour later, or ask everyone
            self.mach.add("PullFailed")
        # (missing peers' infos: the requests to everyone cover them)

    def _attach_remote(self, remote: RemoteMachine) -> None:
        remote._mutations = self._mutation_client

    def _spawn_request(self, fn: Callable[..., Any], *args: Any) -> bool:
        runtime = self.runtime
        if runtime is None or not self.mach.is_active("Started"):
            return False
        runtime.spawn(fn, *args, name=f"{self.name}:mutation")
        return True

    def _on_runtime_thread(self) -> bool:
        runtime = self.runtime
        return runtime is not None and runtime.in_thread

    # -- runtime plumbing ------------------------------------------------------

    def _now(self) -> float:
        """The core's clock: the runtime's, read from whichever thread."""
        runtime = self.runtime
        if runtime is not None:
            return runtime.now()
        return time.monotonic()

    def _fork(self, state: str, fn: Callable[..., Any], *args: Any) -> Task | None:
        """Run ``fn`` on the runtime until ``state``'s current activation ends."""
        runtime = self.runtime
        if runtime is None:
            return None
        ctx: StateContext = self.mach.new_state_ctx(state)
        if ctx.expired:
            return None
        task = runtime.spawn(
            fn, *args, name=f"{self.name}:{fn.__name__}", on_error=self._task_failed
        )
        ctx.on_expire(task.cancel)
        return task

    def _task_failed(self, error: BaseException) -> None:
        state = "ErrNetwork" if isinstance(error, TransportError | OSError) else None
        exc = error if isinstance(error, Exception) else RuntimeError(repr(error))
        if state is not None:
            self.mach.add_err_state(state, exc)
        else:
            self.mach.add_err(exc)

    def _in_runtime(self, fn: Callable[..., None], *args: Any) -> None:
        """Call ``fn`` on the runtime thread (now, if already there)."""
        runtime = self.runtime
        if runtime is None:
            return
        if runtime.in_thread:
            fn(*args)
        else:
            runtime.call_soon(fn, *args)

    def _wake(self) -> None:
        """Something new to send: the send loop runs a ``Flush`` (any thread)."""
        self._in_runtime(self._set_wake, True)

    def _rearm(self) -> None:
        """The next due moved earlier: the send loop's timer follows it."""
        self._in_runtime(self._set_wake, False)

    def _set_wake(self, flush: bool) -> None:
        if flush:
            self._flush_wanted = True
        if self._wake_event is not None:
            self._wake_event.set()

    # -- tasks ------------------------------------------------------------------

    async def _serve(self, previous: Task | None) -> None:
        if previous is not None:
            await previous.wait()  # a restart: the old transport must be closed
        async with trio.open_nursery() as nursery:
            await nursery.start(_serve_transport, self.transport, self._inbound)
            # every start is a new run (incarnation): others replace what they
            # knew of an earlier one, even when our clocks are now lower
            # (a restart of this object in one process keeps its run: its
            # clocks went on growing)
            incarnation = self.core.incarnation or time.time_ns() // 1000
            self.core.start(self.transport.peer_id, self.transport, incarnation)
            self.core.pull_snapshots(self.config.pull_snapshots)
            self.mach.add("Started")
            self.mach.add("Connecting" if self.bootstrap else "Connected")

    async def _connect(self) -> None:
        delay = 0.25
        error: Exception | None = None
        for attempt in range(1, self.connect_attempts + 1):
            try:
                made = await self.transport.connect(self.bootstrap)
            except ValueError as err:  # a malformed address won't get better
                self.mach.add_err_state("ErrConnecting", err)
                return
            except PskMismatchError as err:
                if err.fingerprint != "none":  # another key won't get better
                    self.mach.add_err_state("ErrConnecting", err)
                    return
                # without a key of our own, a stalled handshake is as likely a
                # busy peer (seen at 100 peers on 2 cores) as a private one
                error = err
                log.debug("%s: connect attempt %d stalled: %s", self, attempt, err)
                if attempt < self.connect_attempts:
                    await trio.sleep(delay)
                    delay *= 2
                continue
            except TransportError as err:
                error = err
                log.debug("%s: connect attempt %d failed: %s", self, attempt, err)
                if attempt < self.connect_attempts:
                    await trio.sleep(delay)
                    delay *= 2
                continue
            log.debug("%s: %d connection(s)", self, made)
            self.mach.add("Connected")
            return
        assert error is not None
        self.mach.add_err_state("ErrConnecting", error)

    async def _join(self) -> None:
        try:
            await self.transport.join(self.name)
        except TransportError as err:
            self.mach.add_err_state("ErrJoining", err)
            return
        self.mach.add("Joined")

    async def _leave(self) -> None:
        try:
            await self.transport.leave()
        except TransportError as err:
            log.debug("%s: leave failed: %s", self, err)

    async def _heartbeat(self) -> None:
        while True:
            await trio.sleep(self.config.heartbeat)
            self.mach.add("Heartbeat")

    async def _send_loop(self) -> None:
        while True:
            self._wake_event = trio.Event()
            self._flush_wanted = False
            if self._leaving:  # dispose(): the goodbye sends from now on
                return
            if not self.transport.mesh_ready():
                await self._hold_until_mesh()
                continue
            await self._acquire_sending()
            try:
                if self._leaving:
                    return
                self.mach.add("Flush")  # its handler fills the outbox, sets _due
                sent = bool(self._outbox)
                while self._outbox:
                    await self._publish(self._outbox.popleft())
            finally:
                self._sending.release()
            due = self._due
            if due is not None and due <= self._now():
                if not sent:  # not due after all (rate limit): don't spin
                    await trio.sleep(self.config.update_interval / 4)
                continue
            await self._until_asked_or_due()

    async def _until_asked_or_due(self) -> None:
        """Wait until something is due or a ``Flush`` is asked for.

        A due that only moved earlier re-arms the timer: the core's windows
        stretch with its lag, so the next hello or keepalive drifts a little
        earlier on almost every reception, and an empty ``Flush`` is a whole
        transition (ten peers in one process ran 1.6 per update received).
        """
        wake = self._wake_event
        while wake is not None:
            due = self._due
            deadline = math.inf
            if due is not None:
                deadline = trio.current_time() + (due - self._now())
            with trio.move_on_at(deadline):
                await wake.wait()
            if self._flush_wanted or self._leaving or not wake.is_set():
                return  # asked for, leaving, or the timer ran out
            due = self._due
            if due is not None and due <= self._now():
                return
            wake = self._wake_event = trio.Event()

    async def _acquire_sending(self) -> None:
        """Take the send lock, with no scheduling round when it is free.

        ``trio.Lock.acquire`` yields even uncontended, and every task ready
        in the process (each peer's, in a busy one) runs first: a change
        would wait that long to be published, and a goodbye at the end of a
        trio run could find py-libp2p's listener closed by then.
        """
        if self._sending.locked():
            await self._sending.acquire()  # the other side holds it
        else:
            self._sending.acquire_nowait()

    async def _hold_until_mesh(self) -> None:
        """Nothing we publish now would reach anyone: no neighbour is on the
        topic yet (a loaded process learns their subscriptions seconds after
        joining) or any more. The core keeps what it would send until one is
        (its intents coalesce; our hello goes first): a hello published into
        nothing was seen by nobody, and was repeated only once our snapshot
        pull, itself waiting on the same neighbours, had succeeded."""
        self.core.counters["send_held_no_mesh"] += 1
        try:
            await self.transport.wait_mesh(self.config.heartbeat)
        except TransportError:  # not serving or not joined: we are stopping
            await trio.sleep(self.config.heartbeat)

    def _step(self, events: list[CoreEvent], now: float) -> None:
        """After the core ran (in a handler): apply its events, wake the sender."""
        if events:
            self._views.apply(events, self._hooks)
        if self._held_pulls:
            self._answer_held_pulls(now)
        due = self.core.next_due(now)
        self._sync_intents()
        if due is not None and (self._due is None or due < self._due):
            self._due = due
            self._rearm()

    def _answer_held_pulls(self, now: float) -> None:
        """Answer the snapshot pulls held while we were joining, once settled
        (those whose pullers stopped waiting are dropped)."""
        if not self.core.discovery.is_settled(now):
            self._held_pulls = [(r, t) for r, t in self._held_pulls if t > now]
            return
        held, self._held_pulls = self._held_pulls, []
        for reply, until in held:
            if until > now:
                reply(self.core.pulled_snapshot(now))

    async def _publish(self, msg: Message) -> None:
        try:
            data = encode(msg)
        except ProtocolError as err:
            self.core.counters[f"drop_out_{err.reason}"] += 1
            log.warning("%s: can't send a %s message: %s", self, msg.TYPE, err)
            return
        # py-libp2p drops past 32 queued messages per peer: pace, don't lose
        if self.transport.outbound_backlog() > OUTBOUND_BACKLOG:
            with trio.move_on_after(self.config.heartbeat):
                while self.transport.outbound_backlog() > OUTBOUND_BACKLOG:
                    await trio.sleep(0.005)
        try:
            await self.transport.publish(data)
        except TransportError as err:
            self.core.publish_failed(msg)
            self.mach.add_err_state("ErrNetwork", err)
            await trio.sleep(self.config.heartbeat)
            return
        self.mach.add("SendMsg", {"type": msg.TYPE, "size": len(data)})

    async def _goodbye(self) -> None:
        """The last updates, then the bye, then dispose (bounded).

        Shielded, so it finishes even when the trio run hosting the topic is
        ending (a trio program that returned right after ``dispose()``), and
        bounded by ``BYE_TIMEOUT`` (plus ``DRAIN_TIMEOUT``). The send loop
        stops first (after the round it may be sending), so nothing follows
        the bye.
        """
        with trio.CancelScope(shield=True):
            with trio.move_on_after(BYE_TIMEOUT):
                # no checkpoint before the first publish when the send loop
                # is idle: a trio run that is ending closes py-libp2p's
                # listener (a system task) within a few scheduling rounds,
                # and a publish fails once it is closed
                await self._acquire_sending()  # after the round it may send
                try:
                    # an owner that keeps changing must not keep the bye back
                    with trio.move_on_after(BYE_TIMEOUT / 2):
                        await self._send_last_updates()
                    await self._send_bye()
                finally:
                    self._sending.release()
            # py-libp2p writes what it queued in the background
            with trio.move_on_after(DRAIN_TIMEOUT):
                while self.transport.outbound_backlog() > 0:
                    await trio.sleep(0.01)  # no event for it: poll
        self.mach.add("Disposing")

    async def _send_last_updates(self) -> None:
        """Publish what the core has due until no own machine is left dirty.

        A change held back by the update pacing (``update_interval``) is
        waited for, unless the trio run is ending: then the bye, which
        carries every machine's clock, goes at once.
        """
        while await self._collect():
            sent = bool(self._outbox)
            while self._outbox:
                await self._publish(self._outbox.popleft())
            if not self.core.exports.has_dirty or run_is_ending():
                return
            await self._until_due(sent)

    async def _send_bye(self) -> None:
        """Publish the bye for every own machine, and nothing after it."""
        self.core.bye_all()
        while await self._collect():
            # the core puts byes first; whatever it collected after them stays
            bye = next((m for m in self._outbox if isinstance(m, ByeMsg)), None)
            self._outbox.clear()
            if bye is not None:
                await self._publish(bye)
                return
            await self._until_due(False)  # the rate limit: soon

    async def _collect(self) -> bool:
        """Run the ``Flush`` handler (the core fills the outbox); False: not joined."""
        if self.mach.add("Flush") is Result.QUEUED:
            await self.mach.when_queue_end()  # another thread runs the machine
        return self.mach.is_active("Joined")

    async def _until_due(self, sent: bool) -> None:
        """Sleep until the core has something due again (the send loop's pace)."""
        due = self._due
        wait = self.config.update_interval / 4 if due is None else due - self._now()
        if wait <= 0 and not sent:
            wait = self.config.update_interval / 4  # not due after all: don't spin
        await trio.sleep(max(wait, 0))

    async def _finish_disposal(self, serving: Task | None) -> None:
        if serving is not None:
            with trio.move_on_after(5.0):
                await serving.wait()
        self.mach.add("Disposed")

    def _sync_intents(self) -> None:
        """``Send*``/``Req*`` are active while such a message waits to be sent."""
        wanted = self.core.intents()
        for state in INTENT_STATES:
            active = self.mach.is_active(state)
            if state in wanted and not active:
                self.mach.add(state)
            elif state not in wanted and active:
                self.mach.remove(state)


async def _serve_transport(
    transport: Transport, handler: Inbound, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    await transport.serve(handler, task_status=task_status)


def _sorts_first(caller: object, topic: Topic) -> bool:
    """Does ``caller`` (a peer id; anything else counts as first) sort
    before ``topic``'s own id, or equal it?"""
    return not isinstance(caller, str) or caller <= topic.peer_id


class _Handlers:
    """The topic machine's handlers: the protocol's moves, one state each."""

    def __init__(self, topic: Topic) -> None:
        self.t = topic

    # lifecycle

    def Start_enter(self, e: Event) -> bool:
        self.t.runtime = runtime_for_caller()
        return True

    def Start_state(self, e: Event) -> None:
        t = self.t
        t._serve_task = t._fork("Start", t._serve, t._serve_task)

    def Connecting_state(self, e: Event) -> None:
        self.t._fork("Connecting", self.t._connect)

    def Joining_state(self, e: Event) -> None:
        self.t._fork("Joining", self.t._join)

    def Joined_state(self, e: Event) -> None:
        t = self.t
        # nobody else here yet: no snapshot to wait for (we'll send them).
        # py-libp2p learns a neighbour's topics some time after connecting,
        # so any connection means we may not be first: wait for a snapshot
        alone = not (
            t._inbound.early
            or t.transport.topic_peers()
            or t.transport.connection_count()
        )
        now = t._now()
        t.core.joined(now, alone=alone)
        t._due = now
        t._fork("Joined", t._send_loop)
        t._fork("Joined", t._heartbeat)
        t._inbound.replay_early()

    def Joined_end(self, e: Event) -> None:
        t = self.t
        t.core.left()
        t._fork("Start", t._leave)

    def Ready_enter(self, e: Event) -> bool:
        return len(self.t.transport.topic_peers()) >= self.t.ready_peers

    def Heartbeat_state(self, e: Event) -> None:
        t = self.t
        now = t._now()
        t._step(t.core.heartbeat(now), now)
        e.machine.remove("Heartbeat")

    def Flush_state(self, e: Event) -> None:
        """The send loop's turn: hand it what is due, and when to come back."""
        t = self.t
        now = t._now()
        t._outbox.extend(t.core.collect(now))
        if t.core.pull_now(now):
            t._start_pull(PULL_REQUEST)
        pull = t.core.peers_to_pull()
        if pull is not None:
            t._start_pull(encode_peers_request(pull[0]), pull[1])
        t._due = t.core.next_due(now)
        t._sync_intents()
        runtime = t.runtime
        if runtime is not None and not runtime.in_thread:
            t._wake()  # another thread ran it: the send loop is waiting

    def PeerJoined_state(self, e: Event) -> None:
        t, peer = self.t, e.args["peer_id"]
        now = t._now()
        t.core.peer_joined(peer, now)
        t._hooks.peer_joined(peer)
        t._step([], now)  # a pull that waited for a neighbour is due now

    def PeerLeft_state(self, e: Event) -> None:
        t, peer = self.t, e.args["peer_id"]
        t.core.peer_left(peer, t._now())
        t._hooks.peer_left(peer)
        if len(t.transport.topic_peers()) < t.ready_peers:
            e.machine.remove("Ready")

    # inbound messages: one multi state per type, one handler for all

    def _receive(self, e: Event) -> None:
        t = self.t
        now = t._now()
        args = e.args
        events = t.core.receive(
            args["peer_id"], args["msg"], now, arrived=args.get("arrived")
        )
        t._step(events, now)

    MsgInfo_state = _receive
    MsgUpdates_state = _receive
    MsgGossip_state = _receive
    MsgReqInfo_state = _receive
    MsgReqUpdates_state = _receive
    MsgBye_state = _receive

    def ServePull_state(self, e: Event) -> None:
        """A neighbour asked us directly for our snapshot (a newcomer) or
        for some peers' infos (``peers``): ``reply(messages)``."""
        peers, reply = e.args.get("peers"), e.args["reply"]
        t = self.t
        now = t._now()
        if peers is not None:
            reply(t.core.pulled_infos(peers))
            return
        snapshot = t.core.pulled_snapshot(now)
        if snapshot is not None:
            reply(snapshot)
        elif t.core.discovery.pulling and _sorts_first(e.args.get("caller"), t):
            # joining, and our own snapshot is a pull away (planned or on its
            # way). Held every time, pulls waited on each other in rings
            # (four peers started together stalled 9 s in a ring of three);
            # refused every time, a bunch of joins made many pulls fail. A
            # pulling peer holds only the pulls of peers whose ids sort after
            # its own: every wait is on a smaller id, so no ring closes.
            # Refused, the puller asks another neighbour at once
            t.core.counters["pull_refused_pulling"] += 1
            reply(None)
        elif len(t._held_pulls) >= MAX_HELD_PULLS:
            t.core.counters["pull_refused_full"] += 1
            reply(None)
        else:
            # still joining: our snapshot is on its way, and then it has
            # what the puller needs (a refusal would send it elsewhere, or
            # make it ask everyone)
            t._held_pulls.append((reply, e.args.get("until", now)))

    def PullFailed_state(self, e: Event) -> None:
        t = self.t
        now = t._now()
        t.core.pull_failed(now)
        t._step([], now)  # the retry (or the ask) is due at a new moment

    def Pulled_state(self, e: Event) -> None:
        t, peer = self.t, e.args.get("peer_id")
        if not isinstance(peer, str):
            return  # not ours (_pull always names the neighbour)
        now = t._now()
        t.core.pulled(peer, now)
        t._step([], now)  # a repeated hello may be due now

    def ListMachines_state(self, e: Event) -> None:
        """Go-style listing: args ``filters`` (dict) and ``callback(list)``."""
        callback = e.args.get("callback")
        if callable(callback):
            callback(self.t.list_machines(**(e.args.get("filters") or {})))

    # disposal

    def Disposing_state(self, e: Event) -> None:
        t = self.t
        for machine in t.core.exported():
            index = t.core.exports.index_of(machine)
            if index is not None:
                t._detach_tracer(index, machine)
        for remote in t._views.all():
            remote._release_waiters()  # this topic goes, not their owners
        # forgets exports and remotes (the bye already went)
        t._views.apply(t.core.dispose(), t._hooks)
        runtime = t.runtime
        if runtime is None:
            e.machine.add("Disposed")
            return
        runtime.spawn(t._finish_disposal, t._serve_task, name=f"{t.name}:dispose")

    def Disposed_state(self, e: Event) -> None:
        e.machine.dispose()
