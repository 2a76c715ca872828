"""Networks of topics for tests, and the checks that run across their peers.

:class:`Network` is for plain (sync) tests: its topics run on the shared
background trio thread and its checks block the test thread.
:class:`AsyncNetwork` is for trio tests: its topics run on the test's own
trio run and its checks are awaited. Both build the same topology (each new
peer dials up to four earlier ones, never a star) and share every check,
written once as a waiting plan (see ``plans``).

Each check is the same "eventually" shape: wait on the waiters of the
machines involved until the condition holds on every peer or the timeout
passes; on timeout, raise an ``AssertionError`` that says what each peer
last saw.
"""

from __future__ import annotations

import collections
import contextlib
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

from asyncmachine import Machine, Waiter, any_of

from . import _settings as settings
from ._plans import Plan, Timeout, met, run_asyncio, run_sync, run_trio
from ._report import Focus, exporters, peer_name, peer_table, protocol_log, ticks
from ._timeline import Timeline

if TYPE_CHECKING:
    from ampubsub_plugin import RemoteMachine, Topic

Machines = int | Callable[[int], Iterable[Machine]] | None
#: which peers a check looks at: indexes into the network, or its topics
Peers = Sequence["int | Topic"]
Check = Callable[[], Any]

#: peers a new peer dials (gossipsub needs degree_low neighbours, not a hub)
BOOTSTRAP_PEERS = 4
#: how often a check with nothing to wake it looks again
POLL = 0.05
#: slack after a consistently-check's duration before it counts as hung
HOLD_GRACE = 5.0


def refuse_blocking(what: str) -> None:
    """Fail clearly where a blocking call would freeze the caller's event loop."""
    from ._trio_guard import in_live_trio_task

    if in_live_trio_task():
        raise RuntimeError(f"{what} blocks; in trio tests use ampubsub_network_trio")
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{what} blocks, which would freeze the running asyncio event loop; "
        "in asyncio tests use ampubsub_network_asyncio and await its checks"
    )


class TopicCrashed(AssertionError):
    """A peer's topic machine entered Exception: waiting longer won't help."""


class _Base:
    """What sync and trio networks share: topology, checks, reports."""

    def __init__(self, *, transport: str, name: str | None, config: Any) -> None:
        if transport not in settings.TRANSPORTS:
            raise ValueError(
                f"transport must be one of {', '.join(settings.TRANSPORTS)}, "
                f"not {transport!r}"
            )
        self.transport = transport
        # the first import of the network (py-libp2p) takes a second or more:
        # do it before any timeout starts, which bounds starting, not importing
        _import_network(transport)

        self.name = name or f"ampubsub-test-{secrets.token_hex(4)}"
        self.config = config
        self.topics: list[Topic] = []
        self.logs: dict[str, collections.deque[str]] = {}
        #: every peer's events on one clock, for the full report
        self.timeline = Timeline()
        self._memory: Any = None
        self._last_error: AssertionError | None = None
        self._attempts = 0
        #: what the running check is about: its machine, and who must agree
        self._focus: Focus | None = None
        self._judge: tuple[list[Topic], Callable[[Any], bool]] | None = None
        #: the report as it was when a check failed (read by the pytest plugin)
        self.last_report: str | None = None

    # -- container ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.topics)

    def __getitem__(self, index: int) -> Topic:
        return self.topics[index]

    def __iter__(self) -> Iterator[Topic]:
        return iter(self.topics)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name} {len(self)} peers ({self.transport})>"
        )

    # -- building ------------------------------------------------------------------

    def _new_topic(self, machines: Iterable[Machine]) -> Topic:
        if self.transport == "memory":
            from ampubsub_plugin import MemoryNetwork

            if self._memory is None:
                self._memory = MemoryNetwork()
            transport: Any = self._memory.transport()
        else:
            from ampubsub_plugin import Libp2pTransport

            transport = Libp2pTransport(listen=["/ip4/127.0.0.1/tcp/0"])
        bootstrap = [a for t in self.topics[-BOOTSTRAP_PEERS:] for a in t.addrs]
        traced = _traced_topic_class()(
            self.name,
            transport=transport,
            bootstrap=bootstrap,
            machines=machines,
            config=self.config,
        )
        topic: Topic = traced
        self._record(topic)
        traced.on_export = self.timeline.watch(len(self.topics), topic)
        self.topics.append(topic)
        return topic

    def _record(self, topic: Topic) -> None:
        """Keep the last lines of each topic's protocol activity for reports."""
        log: collections.deque[str] = collections.deque(maxlen=settings.LOG_LINES)
        started = time.monotonic()

        class Recorder:
            def transition_end(self, tx: Any) -> None:
                if not tx.is_accepted or tx.time_after is tx.time_before:
                    return
                args = tx.args
                detail = ""
                if "msg" in args:
                    detail = f" {args['msg'].TYPE} from {str(args.get('peer_id'))[-6:]}"
                elif "type" in args:
                    detail = f" {args['type']} {args.get('size', '?')}B"
                elif "err" in args:
                    detail = f" {args['err']!r}"
                sign = "-" if tx.mutation_type.value == "remove" else "+"
                called = " ".join(tx.called_states)
                log.append(f"{time.monotonic() - started:8.3f}s {sign}{called}{detail}")

        topic.mach.bind_tracer(Recorder())
        self.logs[topic.mach.id] = log

    def _build(self, peers: int, machines: Machines) -> Plan:
        """Start, connect and join ``peers`` new topics (a waiting plan)."""
        for i in range(peers):
            index = len(self.topics)
            topic = self._new_topic(_machines_for(machines, index))
            topic.start()
            met = yield topic.mach.when("Connected")
            if not met:
                raise AssertionError(f"peer {index} never connected")
            topic.join()
            met = yield topic.mach.when("Joined")
            if not met:
                raise AssertionError(f"peer {index} never joined")
            del i
        if len(self.topics) > 1:
            for topic in self.topics:
                yield topic.mach.when("Ready")

    def _closing(self) -> Plan:
        self.timeline.stop()
        for topic in self.topics:
            topic.dispose()
        for topic in self.topics:
            yield topic.mach.when_disposed()

    # -- failure reports -------------------------------------------------------------

    def crashed(self) -> None:
        """Raise at once when a peer's topic machine is in Exception."""
        for i, topic in enumerate(self.topics):
            mach = topic.mach
            if not mach.is_disposed and mach.is_active("Exception"):
                self.last_report = self.report()
                raise TopicCrashed(
                    f"peer {i} ({topic.peer_id[-6:]}) crashed: {mach.err!r}\n"
                    + self._table()
                )

    def report(self) -> str:
        """Per-peer table, counters and recent protocol activity, for failures."""
        lines = [peer_table(self.topics), ""]
        lines.append("timeline (all peers, one clock; newest last):")
        lines.extend("  " + line for line in self.timeline.render())
        lines.append("")
        for i, topic in enumerate(self.topics):
            counters = " ".join(f"{k}={v}" for k, v in sorted(topic.counters.items()))
            lines.append(f"peer {i} {topic.peer_id[-6:]} {topic.mach}")
            lines.append(f"  counters: {counters}")
            lines.extend(
                "  " + line for line in protocol_log(self.logs.get(topic.mach.id, ()))
            )
        return "\n".join(lines)

    def _table(self) -> str:
        """The table for a message: short unless the full report was asked for."""
        full = settings.current.report == "full"
        text = peer_table(self.topics, self._focus, full=full)
        if not full:
            text += "\n(full report: pytest -v or --ampubsub-report=full)"
        return text

    def _why(self) -> str | None:
        """Who disagrees: an unknown machine, or the first peer not seeing it."""
        focus = self._focus
        if focus is None:
            return None
        known = exporters(self.topics)
        if not any(e.rsplit("@", 1)[0] == focus.mach_id for e in known):
            return (
                f"no peer exports {focus.mach_id!r}; exported: "
                + (", ".join(known) or "nothing")
            )
        if self._judge is None:
            return None
        scope, ok = self._judge
        for topic in scope:
            name = peer_name(self.topics, topic)
            remotes = topic.list_machines(id=focus.mach_id)
            if not remotes:
                return f"first to disagree: peer {name} lists no {focus.mach_id}"
            if not ok(remotes[0]):
                remote = remotes[0]
                active = " ".join(remote.active_states) or "nothing"
                return (
                    f"first to disagree: peer {name} sees "
                    f"{ticks(remote, focus.want)} (active: {active})"
                )
        return None

    def _fail(
        self, what: str, started: float, error: BaseException | None, waiter: Any
    ) -> AssertionError:
        elapsed = time.monotonic() - started
        head = f"{what}: not met after {elapsed:.2f}s"
        attempts = getattr(self, "_attempts", 0)
        if attempts:
            head += f" and {attempts} attempts"
        if waiter is not None:
            head += f" (waiting for {waiter.description})"
        why = self._why()
        if why is not None:
            head += f"\n{why}"
        if error is not None and str(error):
            head += f"\n{error}"
        self.last_report = self.report()
        return AssertionError(f"{head}\n{self._table()}")

    # -- the checks, as plans ----------------------------------------------------------

    def _peers(self, peers: Peers | None) -> list[Topic]:
        """``peers`` as topics: indexes into the network or its topics."""
        if peers is None:
            return list(self.topics)
        if isinstance(peers, (int, str)) or not isinstance(peers, Iterable):
            raise TypeError(
                f"peers must be a list of peer indexes or topics, got {peers!r}"
            )
        chosen: list[Topic] = []
        for peer in peers:
            if isinstance(peer, bool) or not isinstance(peer, int):
                topic = next((t for t in self.topics if peer is t), None)
                if topic is not None:
                    chosen.append(topic)
                    continue
                raise TypeError(
                    f"peers must hold peer indexes or topics of this network, "
                    f"got {peer!r}"
                )
            if not -len(self.topics) <= peer < len(self.topics):
                raise IndexError(
                    f"peer index {peer} out of range: the network has "
                    f"{len(self.topics)} peers"
                )
            chosen.append(self.topics[peer])
        return chosen

    def _scope(self, mach_id: str | None, peers: Peers | None) -> list[Topic]:
        owners = [t for t in self.topics if any(m.id == mach_id for m in t.exported)]
        if peers is None:
            return [t for t in self.topics if all(t is not o for o in owners)]
        chosen = self._peers(peers)
        for topic in chosen:
            if any(topic is o for o in owners):
                raise ValueError(
                    f"peer {self.topics.index(topic)} exports {mach_id!r} itself: it "
                    "sees no remote copy; leave it out of peers"
                )
        return chosen

    def _owner_sum(self, mach_id: str) -> int | None:
        for topic in self.topics:
            for machine in topic.exported:
                if machine.id == mach_id:
                    return sum(machine.time())
        return None

    def _remote(self, topic: Topic, mach_id: str) -> Plan:
        """Wait until ``topic`` lists a remote machine ``mach_id``; return it."""
        remotes = topic.list_machines(id=mach_id)
        if not remotes:
            waiter = topic.mach.when_query(
                lambda _: bool(topic.list_machines(id=mach_id))
            )
            waiter.description = f"peer {self._name(topic)} to discover {mach_id}"
            met(waiter, (yield waiter))
            remotes = topic.list_machines(id=mach_id)
        return remotes[0]

    def _name(self, topic: Topic) -> str:
        return f"{self.topics.index(topic)}:{topic.peer_id[-6:]}"

    def _plan_active(
        self, mach_id: str, states: Any, peers: Peers | None, active: bool
    ) -> Plan:
        __tracebackhide__ = True
        target = self._owner_sum(mach_id)
        scope = self._scope(mach_id, peers)
        self._focus = Focus(mach_id)
        self._judge = (
            scope,
            (lambda r: r.is_active(states))
            if active
            else (lambda r: not any(r.is_active(n) for n in _names(states))),
        )
        for topic in scope:
            remote: RemoteMachine = yield from self._remote(topic, mach_id)
            if target is not None:
                # first catch up with the owner's clock as it was when asked:
                # a stale view must not pass (or fail) the check by accident
                caught_up = remote.when_query(_sum_at_least(target))
                caught_up.description = (
                    f"peer {self._name(topic)} to catch up with {mach_id}'s owner"
                )
                met(caught_up, (yield caught_up))
            waiter = remote.when(states) if active else remote.when_not(states)
            what = "active" if active else "inactive"
            waiter.description = f"{states} {what} on peer {self._name(topic)}"
            met(waiter, (yield waiter))

    def _plan_clock(
        self, mach_id: str, clock: Mapping[str, int], peers: Peers | None
    ) -> Plan:
        __tracebackhide__ = True
        wanted = dict(clock)
        scope = self._scope(mach_id, peers)
        self._focus = Focus(mach_id, wanted)
        self._judge = (scope, lambda r: _clock_is(wanted)(r.clock()))
        for topic in scope:
            remote: RemoteMachine = yield from self._remote(topic, mach_id)
            waiter = remote.when_query(_clock_is(wanted))
            waiter.description = (
                f"peer {self._name(topic)} to see {mach_id} at "
                + " ".join(f"{k}={v}" for k, v in wanted.items())
            )
            met(waiter, (yield waiter))

    def _plan_discovered(self, count: int, peers: Peers | None) -> Plan:
        __tracebackhide__ = True
        scope = self._peers(peers)
        for topic in scope:
            waiter = topic.mach.when_query(_lists(topic, count))
            waiter.description = (
                f"peer {self._name(topic)} to list {count} connected machines "
                f"(lists {len(topic.list_machines(connected=True))})"
            )
            met(waiter, (yield waiter))

    def _plan_consistently(
        self,
        mach_id: str,
        states: Any,
        duration: float,
        peers: Peers | None,
    ) -> Plan:
        __tracebackhide__ = True
        scope = self._scope(mach_id, peers)
        self._focus = Focus(mach_id)
        watched = [(topic, topic.list_machines(id=mach_id)[0]) for topic in scope]
        started = time.monotonic()
        #: (seconds into the hold, peer, what it saw then), first break first
        breaks: list[tuple[float, Topic, str]] = []

        def broke(topic: Topic, remote: RemoteMachine) -> Callable[[Any], bool]:
            def check(_clock: Any) -> bool:
                if remote.is_active(states):
                    return False
                active = " ".join(remote.active_states) or "nothing"
                seen = f"active: {active}; {ticks(remote)}"
                breaks.append((time.monotonic() - started, topic, seen))
                return True

            return check

        violated = any_of(*(r.when_query(broke(t, r)) for t, r in watched))
        violated.description = f"{states} to leave on any peer"
        deadline = _Deadline(duration)
        yield any_of(violated, deadline.waiter)
        deadline.cancel()
        if violated.done and violated.result:
            at, topic, seen = breaks[0] if breaks else (0.0, watched[0][0], "?")
            others = sorted(
                {self._name(t) for _, t, _ in breaks[1:]} - {self._name(topic)}
            )
            also = f"; also on {', '.join(others)}" if others else ""
            raise AssertionError(
                f"{mach_id} {states} stopped being active {at:.2f}s into the "
                f"{duration}s hold, first on peer {self._name(topic)} "
                f"({seen}){also}\n" + self._table()
            )

    def _plan_eventually(self, check: Check, watched: Sequence[Machine]) -> Plan:
        """Retry ``check`` (plain asserts) each time a watched machine changes."""
        attempts = 0
        while True:
            machines = list(watched) or [t.mach for t in self.topics]
            # a disconnected remote won't change until it reconnects (and
            # the topic machine changes then): waiting on it would spin
            live = [
                m
                for m in machines
                if not m.is_disposed
                and getattr(m, "is_connected", True)  # (remote machines only)
            ]
            changed = (
                any_of(*(next_change(m) for m in live))
                if live
                else _Deadline(POLL).waiter  # nothing left to wake us: poll
            )
            attempts += 1
            try:
                return check(), attempts
            except AssertionError as error:
                self._last_error = error
                self._attempts = attempts
            yield changed

    def _plan_converged(self, mach_ids: Sequence[str] | None) -> Plan:
        def check() -> None:
            for owner in self.topics:
                for machine in owner.exported:
                    if mach_ids is not None and machine.id not in mach_ids:
                        continue
                    expected = machine.time()
                    for topic in self.topics:
                        if topic is owner:
                            continue
                        seen = topic.list_machines(id=machine.id, peer_id=owner.peer_id)
                        assert seen, f"peer {topic.peer_id[-6:]} lacks {machine.id}"
                        assert seen[0].time() == expected, (
                            f"peer {topic.peer_id[-6:]} sees {machine.id} at "
                            f"{seen[0].time()}, owner is at {expected}"
                        )

        watched = [t.mach for t in self.topics] + [
            m for t in self.topics for m in t.exported
        ]
        result = yield from self._plan_eventually(check, watched)
        return result


class Network(_Base):
    """Topics for a plain (sync) test; checks block this thread."""

    def __init__(
        self,
        peers: int = 3,
        *,
        transport: str | None = None,
        machines: Machines = None,
        name: str | None = None,
        config: Any = None,
        timeout: float | None = None,
        track: list[Any] | None = None,
    ) -> None:
        super().__init__(
            transport=transport or settings.current.transport, name=name, config=config
        )
        if track is not None:
            track.append(self)  # closed by its owner even if starting fails
        self._run(self._build(peers, machines), timeout, "starting the network")

    def add_peer(
        self, machines: Iterable[Machine] = (), timeout: float | None = None
    ) -> Topic:
        """One more started, connected and joined peer."""
        items = list(machines)
        self._run(self._build(1, lambda _: items), timeout, "adding a peer")
        return self.topics[-1]

    def close(self, timeout: float | None = None) -> None:
        """Dispose every topic (bye sent) and wait until each is Disposed."""
        self._run(self._closing(), timeout, "closing the network", check_crash=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def isolated(self, timeout: float | None = None) -> Iterator[Self]:
        """One test's share of a long-lived network; cleaned up at the end.

        On exit, machines exported inside the block are unexported, peers
        added inside it leave, and this waits until no peer lists those
        machines any more, so the next test starts from the same network.
        Machines exported before the block stay (and keep their state).
        """
        exported = {id(m) for t in self.topics for m in t.exported}
        peers = len(self.topics)
        try:
            yield self
        finally:
            self._isolate(exported, peers, timeout)

    def _isolate(self, exported: set[int], peers: int, timeout: float | None) -> None:
        added, self.topics = self.topics[peers:], self.topics[:peers]
        leaving = [t.dispose() for t in added]
        gone: list[tuple[str, str]] = []
        for topic in self.topics:
            for machine in list(topic.exported):
                if id(machine) not in exported:
                    topic.unexport(machine)
                    gone.append((machine.id, topic.peer_id))

        def nobody_lists_them() -> None:
            for topic in self.topics:
                for mach_id, owner in gone:
                    assert not topic.list_machines(id=mach_id, peer_id=owner), (
                        f"peer {self._name(topic)} still lists {mach_id}"
                    )

        def plan() -> Plan:
            for waiter in leaving:
                _left = yield waiter  # disposed either way; nothing to check
            watched = [t.mach for t in self.topics]
            result = yield from self._plan_eventually(nobody_lists_them, watched)
            return result

        self._run(plan(), timeout, "isolating the next test", check_crash=False)

    def _run(
        self,
        plan: Plan,
        timeout: float | None,
        what: str,
        *,
        check_crash: bool = True,
    ) -> Any:
        __tracebackhide__ = True
        refuse_blocking(f"{type(self).__name__}: {what}")
        started = time.monotonic()
        deadline = started + settings.timeout(timeout)
        self._last_error = None
        self._attempts = 0
        self._focus = self._judge = None
        crashed = self.crashed if check_crash else _never
        try:
            return run_sync(plan, deadline, crashed)
        except Timeout as timed_out:
            raise self._fail(what, started, self._last_error, timed_out.waiter) from (
                self._last_error
            )

    # checks ---------------------------------------------------------------------------

    def assert_eventually_active(
        self,
        mach_id: str,
        states: Any,
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        """Every peer in ``peers`` (default: all but the owner) sees ``states``."""
        __tracebackhide__ = True
        self._run(
            self._plan_active(mach_id, states, peers, True),
            timeout,
            f"{mach_id} {states} active",
        )

    def assert_eventually_inactive(
        self,
        mach_id: str,
        states: Any,
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        __tracebackhide__ = True
        self._run(
            self._plan_active(mach_id, states, peers, False),
            timeout,
            f"{mach_id} {states} inactive",
        )

    def assert_eventually_clock(
        self,
        mach_id: str,
        clock: Mapping[str, int],
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        """Every peer sees exactly these ticks for these states."""
        __tracebackhide__ = True
        self._run(
            self._plan_clock(mach_id, clock, peers),
            timeout,
            f"{mach_id} clock {dict(clock)}",
        )

    def assert_eventually_discovered(
        self,
        count: int,
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        """Each peer lists at least ``count`` connected remote machines."""
        __tracebackhide__ = True
        self._run(
            self._plan_discovered(count, peers), timeout, f"{count} machines discovered"
        )

    def assert_consistently_active(
        self,
        mach_id: str,
        states: Any,
        duration: float,
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        """``states`` stay active everywhere for ``duration``; fails at once if not."""
        __tracebackhide__ = True
        what = f"{mach_id} {states} consistently active"
        # first active everywhere (within timeout), then held for duration
        self._run(self._plan_active(mach_id, states, peers, True), timeout, what)
        self._run(
            self._plan_consistently(mach_id, states, duration, peers),
            duration + HOLD_GRACE,
            what,
        )

    def assert_converged(
        self, mach_ids: Sequence[str] | None = None, timeout: float | None = None
    ) -> None:
        """Every peer sees every exported machine at its owner's current clock."""
        __tracebackhide__ = True
        self._run(self._plan_converged(mach_ids), timeout, "converged")

    def eventually(
        self,
        check: Check,
        timeout: float | None = None,
        watch: Sequence[Machine] = (),
    ) -> Any:
        """Retry ``check`` (a callable with plain asserts) on every change."""
        __tracebackhide__ = True
        value, _ = self._run(self._plan_eventually(check, watch), timeout, "eventually")
        return value


class AsyncNetwork(_Base):
    """Topics on the calling trio run; every check is awaited."""

    @classmethod
    async def open(
        cls,
        peers: int = 3,
        *,
        transport: str | None = None,
        machines: Machines = None,
        name: str | None = None,
        config: Any = None,
        timeout: float | None = None,
        track: list[Any] | None = None,
    ) -> Self:
        net = cls(
            transport=transport or settings.current.transport, name=name, config=config
        )
        if track is not None:
            track.append(net)  # closed by its owner even if starting fails
        await net._run(net._build(peers, machines), timeout, "starting the network")
        return net

    async def add_peer(
        self, machines: Iterable[Machine] = (), timeout: float | None = None
    ) -> Topic:
        items = list(machines)
        await self._run(self._build(1, lambda _: items), timeout, "adding a peer")
        return self.topics[-1]

    async def close(self, timeout: float | None = None) -> None:
        await self._run(
            self._closing(), timeout, "closing the network", check_crash=False
        )

    async def _run(
        self, plan: Plan, timeout: float | None, what: str, *, check_crash: bool = True
    ) -> Any:
        __tracebackhide__ = True
        started = time.monotonic()
        deadline = started + settings.timeout(timeout)
        self._last_error = None
        self._attempts = 0
        self._focus = self._judge = None
        crashed = self.crashed if check_crash else _never
        try:
            return await run_trio(plan, deadline, crashed)
        except Timeout as timed_out:
            raise self._fail(what, started, self._last_error, timed_out.waiter) from (
                self._last_error
            )

    async def assert_eventually_active(
        self,
        mach_id: str,
        states: Any,
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        __tracebackhide__ = True
        await self._run(
            self._plan_active(mach_id, states, peers, True),
            timeout,
            f"{mach_id} {states} active",
        )

    async def assert_eventually_inactive(
        self,
        mach_id: str,
        states: Any,
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        __tracebackhide__ = True
        await self._run(
            self._plan_active(mach_id, states, peers, False),
            timeout,
            f"{mach_id} {states} inactive",
        )

    async def assert_eventually_clock(
        self,
        mach_id: str,
        clock: Mapping[str, int],
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        __tracebackhide__ = True
        await self._run(
            self._plan_clock(mach_id, clock, peers),
            timeout,
            f"{mach_id} clock {dict(clock)}",
        )

    async def assert_eventually_discovered(
        self,
        count: int,
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        __tracebackhide__ = True
        await self._run(
            self._plan_discovered(count, peers), timeout, f"{count} machines discovered"
        )

    async def assert_consistently_active(
        self,
        mach_id: str,
        states: Any,
        duration: float,
        peers: Peers | None = None,
        timeout: float | None = None,
    ) -> None:
        __tracebackhide__ = True
        what = f"{mach_id} {states} consistently active"
        await self._run(self._plan_active(mach_id, states, peers, True), timeout, what)
        await self._run(
            self._plan_consistently(mach_id, states, duration, peers),
            duration + HOLD_GRACE,
            what,
        )

    async def assert_converged(
        self, mach_ids: Sequence[str] | None = None, timeout: float | None = None
    ) -> None:
        __tracebackhide__ = True
        await self._run(self._plan_converged(mach_ids), timeout, "converged")

    async def eventually(
        self,
        check: Check,
        timeout: float | None = None,
        watch: Sequence[Machine] = (),
    ) -> Any:
        __tracebackhide__ = True
        value, _ = await self._run(
            self._plan_eventually(check, watch), timeout, "eventually"
        )
        return value


_TRACED_TOPIC: Any = None


def _traced_topic_class() -> Any:
    """``Topic``, telling the network's timeline about each export at once."""
    global _TRACED_TOPIC
    if _TRACED_TOPIC is None:
        from ampubsub_plugin import Topic

        class TracedTopic(Topic):
            on_export: Callable[[], None] | None = None

            def export(self, machine: Machine, **options: Any) -> int:
                index = super().export(machine, **options)
                if self.on_export is not None:
                    self.on_export()
                return index

        _TRACED_TOPIC = TracedTopic
    return _TRACED_TOPIC


def _import_network(transport: str) -> None:
    """Import what ``_new_topic`` uses for ``transport`` (nothing is started)."""
    import ampubsub_plugin

    ampubsub_plugin.Topic  # noqa: B018 - the names resolve their modules lazily
    if transport == "memory":
        ampubsub_plugin.MemoryNetwork  # noqa: B018
    else:
        ampubsub_plugin.Libp2pTransport  # noqa: B018


def _machines_for(machines: Machines, index: int) -> list[Machine]:
    if machines is None:
        return []
    if isinstance(machines, int):
        from asyncmachine import State

        schema = {"Foo": State(require=["Bar"]), "Bar": State(), "Baz": State()}
        return [Machine(schema, id=f"p{index}-m{j}") for j in range(machines)]
    return list(machines(index))


def next_change(machine: Machine) -> Waiter:
    """A waiter met by the next change of ``machine``'s clock."""
    before = sum(machine.time())
    return machine.when_query(lambda clock: sum(clock.values()) != before)


def _names(states: Any) -> list[str]:
    return [states] if isinstance(states, str) else list(states)


def _lists(topic: Topic, count: int) -> Callable[[dict[str, int]], bool]:
    return lambda _clock: len(topic.list_machines(connected=True)) >= count


def _sum_at_least(target: int) -> Callable[[dict[str, int]], bool]:
    return lambda clock: sum(clock.values()) >= target


def _clock_is(wanted: dict[str, int]) -> Callable[[dict[str, int]], bool]:
    return lambda clock: all(clock.get(k) == v for k, v in wanted.items())


def _never() -> None:
    return None


class _Deadline:
    """A waiter met after ``seconds`` (a timer thread: works for both runners)."""

    def __init__(self, seconds: float) -> None:
        self.waiter = Waiter(f"{seconds}s passed")
        self._timer = threading.Timer(seconds, self.waiter.complete)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
        # the timer thread ends at once now; wait for it, so a test that
        # counts threads right after a check doesn't see it (seen as a flake)
        if self._timer is not threading.current_thread():
            self._timer.join()


class AsyncioNetwork(AsyncNetwork):
    """Topics on the shared trio thread; checks awaited on the caller's asyncio loop.

    For pytest-asyncio and anyio's asyncio backend: the loop never blocks,
    and the network keeps running between awaits.
    """

    async def _run(
        self, plan: Plan, timeout: float | None, what: str, *, check_crash: bool = True
    ) -> Any:
        __tracebackhide__ = True
        started = time.monotonic()
        deadline = started + settings.timeout(timeout)
        self._last_error = None
        self._attempts = 0
        self._focus = self._judge = None
        crashed = self.crashed if check_crash else _never
        try:
            return await run_asyncio(plan, deadline, crashed)
        except Timeout as timed_out:
            raise self._fail(what, started, self._last_error, timed_out.waiter) from (
                self._last_error
            )

    def close_blocking(self, timeout: float | None = None) -> None:
        """Close from outside the loop (fixture teardown): blocks this thread."""
        deadline = time.monotonic() + settings.timeout(timeout)
        try:
            run_sync(self._closing(), deadline, _never)
        except Timeout as timed_out:
            raise self._fail("closing the network", time.monotonic(), None, None) from (
                timed_out
            )
