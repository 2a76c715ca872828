"""The libp2p stack of one ``serve`` call: built, run and torn down.

Rules:

1. The stack runs in a child task of ``serve``, shielded from its
   cancellation, so even a cancelled ``serve`` unsubscribes, stops the
   services, closes the host and stops py-libp2p's cache thread before it
   returns.
2. Start-up (host, listeners, services) is bounded by
   :data:`STARTUP_TIMEOUT`, the graceful part of shutdown (unsubscribe,
   services, host) by :data:`SHUTDOWN_TIMEOUT`. A timeout is logged; at
   start-up it is the stack's error.
3. :meth:`Stack.run` never raises an Exception: a failure of py-libp2p, at
   start-up or later, is kept in :attr:`Stack.error` for ``serve`` to raise
   as ``TransportError``.
4. :attr:`Stack.running` holds the libp2p objects from the moment all of
   them are up until shutdown starts. The inbox takes entries from that
   moment until the stack is down, and then follows no topic.

Two py-libp2p habits are worked around here: ``host.run()`` ignores listen
failures, and ``Pubsub()`` starts a sweeper thread that py-libp2p never
stops.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import trio
from libp2p.abc import IHost
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.tools.anyio_service import background_trio_service

from ..transport import TransportHandler
from .addresses import check_can_listen
from .inbox import Inbox
from .logs import log
from .pubsub import EventPubsub, HostConfig, new_gossipsub, new_libp2p_host
from .shedding import Admission

#: Bound on the graceful part of shutdown (unsubscribe, services, host).
SHUTDOWN_TIMEOUT = 10.0

#: Bound on start-up (host, listeners, services).
STARTUP_TIMEOUT = 30.0


class Running:
    """The libp2p objects of one ``serve`` call."""

    __slots__ = ("gossipsub", "host", "pubsub")

    def __init__(self, host: IHost, pubsub: EventPubsub, gossipsub: GossipSub) -> None:
        self.host = host
        self.pubsub = pubsub
        self.gossipsub = gossipsub


class Stack:
    """The libp2p stack of one ``serve`` call, and how it is doing.

    ``inbox`` gets py-libp2p's hooks and the reader task, ``admission`` the
    messages received, before py-libp2p checks them; ``name`` (the peer id)
    labels the log lines.
    """

    __slots__ = (
        "_admission",
        "_config",
        "_inbox",
        "_name",
        "error",
        "finished",
        "ready",
        "running",
        "started",
        "stop",
    )

    def __init__(
        self, config: HostConfig, inbox: Inbox, name: str, admission: Admission
    ) -> None:
        self._admission = admission
        self._config = config
        self._inbox = inbox
        self._name = name
        self.ready = trio.Event()  # started, or failed to start
        self.stop = trio.Event()  # serve wants the stack down
        self.finished = trio.Event()  # the stack is down
        self.started = False
        self.error: Exception | None = None
        self.running: Running | None = None

    async def run(
        self, handler: TransportHandler, unsubscribe: Callable[[], Awaitable[None]]
    ) -> None:
        """Build, run and tear down the libp2p stack; never raises an Exception.

        ``unsubscribe`` leaves the topic, first thing at shutdown.
        """
        try:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + STARTUP_TIMEOUT
                await self._run_shielded(handler, unsubscribe, scope)
            if scope.cancelled_caught:
                stage = "shutdown" if self.started else "start-up"
                log.warning("%s: libp2p %s timed out", self._name, stage)
                if not self.started:
                    self.error = TimeoutError(f"start-up took over {STARTUP_TIMEOUT} s")
        except Exception as error:
            log.debug("%s: libp2p stack failed", self._name, exc_info=True)
            self.error = error
        finally:
            self.ready.set()
            self.finished.set()

    async def _run_shielded(
        self,
        handler: TransportHandler,
        unsubscribe: Callable[[], Awaitable[None]],
        scope: trio.CancelScope,
    ) -> None:
        config, inbox = self._config, self._inbox
        check_can_listen(config.listen)  # py-libp2p's SO_REUSEPORT hides a taken port
        host = new_libp2p_host(config)
        gossipsub = new_gossipsub(config)
        # Pubsub() starts a sweeper thread at once (LastSeenCache); it must be
        # stopped explicitly, py-libp2p never does.
        pubsub = EventPubsub(host, gossipsub, self._admission)
        pubsub.on_subscribed = inbox.on_subscribed
        pubsub.on_unsubscribed = inbox.on_unsubscribed
        pubsub.on_message = inbox.on_message
        try:
            async with AsyncExitStack() as exits:
                await exits.enter_async_context(host.run(config.listen))
                exits.push_async_callback(host.close)
                # host.run() ignores listen failures (Swarm.listen only logs
                # them and returns False), e.g. an address already in use.
                listening = host.get_network().listeners
                missing = [str(m) for m in config.listen if str(m) not in listening]
                if missing:
                    raise OSError(f"could not listen on {', '.join(missing)}")
                await exits.enter_async_context(background_trio_service(pubsub))
                await exits.enter_async_context(background_trio_service(gossipsub))
                await pubsub.wait_until_ready()
                nursery = await exits.enter_async_context(trio.open_nursery())
                nursery.start_soon(inbox.dispatch, handler)
                inbox.attach()
                self.running = Running(host, pubsub, gossipsub)
                log.debug(
                    "%s listening on %s", self._name, [str(a) for a in host.get_addrs()]
                )
                scope.deadline = math.inf
                self.started = True
                self.ready.set()
                await self.stop.wait()
                scope.deadline = trio.current_time() + SHUTDOWN_TIMEOUT
                await unsubscribe()
                self.running = None
                nursery.cancel_scope.cancel()
        finally:
            self.running = None
            inbox.detach()
            inbox.follow(None)
            pubsub.seen_messages.stop()
