"""Clean shutdown: the last update and the bye go out, waiters learn the owner left.

Three things, checked where they matter from outside:

- a program (threads, asyncio or trio) that changes its machine, calls
  ``topic.dispose()`` and exits at once still delivers that change and its
  bye: a watcher here sees the final clock and the machine disconnected
  (``shutdown_program.py`` runs in a fresh interpreter over py-libp2p);
- SIGTERM to ``ampubsub peer`` or to a program using ``bye_on_signals``
  sends the bye before the process ends as SIGTERM's default would;
- a pending waiter on a remote machine ends within 1 s of its owner's bye,
  with ``OwnerGone`` (``await`` raises it, ``wait()`` returns False and
  ``waiter.outcome`` is ``CANCELLED``), in threads, asyncio and trio.

Every wait is bounded and waits on the watcher's topic machine (remote
machines change only in its handlers), on a waiter, or on a line from a
process; nothing sleeps to synchronise. Processes are killed at the end.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from ampubsub_plugin import (
    GossipConfig,
    Libp2pTransport,
    MemoryNetwork,
    OwnerGone,
    RemoteMachine,
    Topic,
    bye_on_signals,
)
from ampubsub_plugin._runtime import EXIT_TIMEOUT, SharedRuntime
from ampubsub_plugin._signals import DEFAULT_TIMEOUT as SIGNAL_BYE_TIMEOUT
from asyncmachine import Machine, Outcome, State

from .netutil import run, start_network, until, worker
from .procutil import Process

HERE = Path(__file__).parent
PROGRAM = HERE / "shutdown_program.py"
#: a process's start, join and discovery (imports of py-libp2p included)
TIMEOUT = 20
#: from the owner's last step (dispose, or the signal) to the watcher's view
SHOWN_WITHIN = 5.0
#: from a signal to the process's end, by design: bye_on_signals waits for
#: the disposal up to its timeout, then the exit waits for it up to
#: EXIT_TIMEOUT (a loaded machine's slow transport close uses both), plus
#: the interpreter's own exit
EXITS_WITHIN = SIGNAL_BYE_TIMEOUT + EXIT_TIMEOUT + 2.0

pytestmark = pytest.mark.timeout(60)


# -- processes --------------------------------------------------------------------


@pytest.fixture
def watcher() -> Iterator[Topic]:
    """A sync topic on 127.0.0.1 with a fresh name; the programs bootstrap from it."""
    topic = Topic(f"shutdown-{secrets.token_hex(4)}", transport=Libp2pTransport())
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    yield topic
    assert topic.dispose().wait(TIMEOUT)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def program(processes: list[Process], *args: str, cwd: Path | None = None) -> Process:
    process = Process([sys.executable, *args], cwd=cwd)
    processes.append(process)
    return process


def connected_owner(watcher: Topic) -> RemoteMachine:
    """Wait until the watcher shows the program's machine ``owner`` connected."""
    shown = watcher.mach.when_query(
        lambda _: any(r.is_connected for r in watcher.list_machines(id="owner"))
    )
    assert shown.wait(TIMEOUT), watcher.list_machines()
    (remote,) = watcher.list_machines(id="owner", connected=True)
    return remote


def assert_gone(
    watcher: Topic, remote: RemoteMachine, since: float, owner: Process
) -> None:
    gone = watcher.mach.when_query(lambda _: not remote.is_connected)
    left = SHOWN_WITHIN - (time.monotonic() - since)
    if gone.wait(max(0.0, left)):
        return
    code = owner.proc.poll()
    counters = {k: v for k, v in watcher.counters.items() if v}
    raise AssertionError(
        f"{remote!r} still connected {SHOWN_WITHIN} s after the owner's last step;"
        f" owner's exit code {code}; watcher's counters {counters};"
        f" owner's stderr:\n{owner.stderr()}"
    )


# -- a program that exits right after dispose() -------------------------------------


@pytest.mark.parametrize("wait", [False, True], ids=["exits-at-once", "waits"])
@pytest.mark.parametrize("kind", ["threads", "asyncio", "trio"])
def test_a_program_that_exits_after_dispose_delivers_its_last_update_and_bye(
    watcher: Topic,
    processes: list[Process],
    kind: str,
    wait: bool,
) -> None:
    args = [str(PROGRAM), kind, watcher.name, watcher.addrs[0]]
    owner = program(processes, *args, *(["--wait"] if wait else []))
    assert owner.line_with("ready") == "ready"
    remote = connected_owner(watcher)
    received = dict(watcher.counters)
    owner.send("go")
    final = json.loads(owner.line())
    since = time.monotonic()
    # it changed, disposed and exited: at once, or once disposed
    assert owner.wait(SHOWN_WITHIN) == 0, owner.stderr()
    shown = remote.when_time(remote.state_names, final)
    assert shown.wait(max(0.0, SHOWN_WITHIN - (time.monotonic() - since))), remote
    assert remote.time() == final
    assert_gone(watcher, remote, since, owner)
    counters = watcher.counters
    # the change travelled as an update, then the bye followed
    assert counters["in_updates"] > received.get("in_updates", 0)
    assert counters["in_bye"] == received.get("in_bye", 0) + 1


# -- SIGTERM -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["threads", "asyncio", "trio"])
def test_sigterm_to_a_program_using_bye_on_signals_sends_the_bye(
    watcher: Topic, processes: list[Process], kind: str
) -> None:
    args = [str(PROGRAM), kind, watcher.name, watcher.addrs[0]]
    owner = program(processes, *args)
    assert owner.line_with("ready") == "ready"
    remote = connected_owner(watcher)
    owner.send("block")
    assert owner.line() == "blocking"  # blocked with the handlers installed
    owner.proc.send_signal(signal.SIGTERM)
    since = time.monotonic()
    assert_gone(watcher, remote, since, owner)
    # then the signal is handled as before: SIGTERM's default ends the process
    assert owner.wait(EXITS_WITHIN) == -signal.SIGTERM, owner.stderr()


def test_sigint_to_sync_code_sends_the_bye_then_raises_keyboard_interrupt(
    watcher: Topic, processes: list[Process]
) -> None:
    args = [str(PROGRAM), "threads", watcher.name, watcher.addrs[0]]
    owner = program(processes, *args)
    assert owner.line_with("ready") == "ready"
    remote = connected_owner(watcher)
    owner.send("block")
    assert owner.line() == "blocking"
    owner.proc.send_signal(signal.SIGINT)
    since = time.monotonic()
    assert_gone(watcher, remote, since, owner)
    code = owner.wait(EXITS_WITHIN)
    assert code != 0
    assert "KeyboardInterrupt" in owner.stderr()


def test_sigterm_to_the_peer_command_sends_the_bye(
    watcher: Topic, processes: list[Process]
) -> None:
    args = ["-m", "ampubsub_plugin.cli", "peer", "--topic", watcher.name]
    args += ["--bootstrap", watcher.addrs[0], "--expose", "shutdown_program:owner"]
    peer = program(processes, *args, cwd=HERE)
    peer.line_with("Ctrl-C to leave")
    remote = connected_owner(watcher)
    peer.proc.send_signal(signal.SIGTERM)
    since = time.monotonic()
    assert_gone(watcher, remote, since, peer)
    assert peer.wait(EXITS_WITHIN) == -signal.SIGTERM, peer.stderr()


# -- bye_on_signals in this process ------------------------------------------------


def test_bye_on_signals_disposes_then_calls_the_previous_handler() -> None:
    net = MemoryNetwork()
    topic = Topic("t", transport=net.transport(), machines=[worker("a")])
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT)
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT)
    handled = threading.Event()
    seen: list[tuple[int, bool]] = []

    def previous(signum: int, frame: Any) -> None:
        seen.append((signum, topic.mach.is_disposed))
        handled.set()

    original = signal.signal(signal.SIGUSR1, previous)
    try:
        with bye_on_signals(topic, signals=[signal.SIGUSR1]) as installed:
            assert signal.getsignal(signal.SIGUSR1) != previous
            signal.raise_signal(signal.SIGUSR1)
            # the bye first; then the signal goes to the previous handler
            assert handled.wait(TIMEOUT)
            assert installed.received is signal.SIGUSR1
        assert seen == [(signal.SIGUSR1, True)]
        assert signal.getsignal(signal.SIGUSR1) == previous  # restored
    finally:
        signal.signal(signal.SIGUSR1, original)


def test_bye_on_signals_restores_the_handlers_without_a_signal() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    handle = bye_on_signals(signals=[signal.SIGUSR2])
    assert signal.getsignal(signal.SIGUSR2) != before
    handle.close()
    assert signal.getsignal(signal.SIGUSR2) == before
    handle._helper.join(TIMEOUT)
    assert not handle._helper.is_alive()


def test_bye_on_signals_needs_the_main_thread() -> None:
    errors: list[BaseException] = []

    def install() -> None:
        try:
            bye_on_signals(signals=[signal.SIGUSR2])
        except ValueError as error:
            errors.append(error)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join(TIMEOUT)
    assert errors and "main thread" in str(errors[0])


# -- dispose() can be waited on -----------------------------------------------------


def joined_pair() -> tuple[Topic, Topic]:
    net = MemoryNetwork()
    cfg = GossipConfig(snapshot_wait=0.5)  # real time: discover without delay
    a = Topic("t", transport=net.transport(), machines=[worker("a")], config=cfg)
    b = Topic("t", transport=net.transport(), config=cfg)
    a.start()
    assert a.mach.when("Connected").wait(TIMEOUT)
    b.bootstrap = a.addrs
    b.start()
    assert b.mach.when("Connected").wait(TIMEOUT)
    a.join()
    b.join()
    assert b.mach.when_query(lambda _: bool(b.list_machines(id="a"))).wait(TIMEOUT)
    return a, b


def test_dispose_returns_a_waiter_threads_can_wait_on() -> None:
    a, b = joined_pair()
    done = a.dispose()
    assert done.wait(TIMEOUT)
    assert a.mach.is_disposed
    assert a.dispose().wait(0)  # again: done at once
    assert b.dispose().wait(TIMEOUT)
    assert SharedRuntime.wait_leaving(TIMEOUT)


def test_dispose_of_a_topic_never_started_is_done_at_once() -> None:
    topic = Topic("t", transport=MemoryNetwork().transport())
    assert topic.dispose().done


def test_dispose_is_awaited_under_asyncio() -> None:
    async def main() -> None:
        a, b = joined_pair()
        assert await asyncio.wait_for(a.dispose(), TIMEOUT)
        assert await asyncio.wait_for(a.dispose(), TIMEOUT)
        assert await asyncio.wait_for(b.dispose(), TIMEOUT)

    asyncio.run(main())


def test_dispose_is_awaited_under_trio() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.01)
        a, b = await start_network(net, 2, 1)
        await until([a, b], lambda t: len(t.list_machines(connected=True)) == 1)
        with trio.fail_after(TIMEOUT):
            assert await a.dispose()
            assert await a.dispose()
            assert await b.dispose()

    run(main)


# -- a waiter on a remote machine ends when its owner is gone --------------------


def test_a_remote_waiter_ends_with_owner_gone_within_1s_in_threads() -> None:
    a, b = joined_pair()
    (remote,) = b.list_machines(id="a")
    waiter = remote.when("Baz")
    met: list[bool] = []
    waiting = threading.Thread(target=lambda: met.append(waiter.wait(TIMEOUT)))
    waiting.start()
    since = time.monotonic()
    a.dispose()
    waiting.join(TIMEOUT)
    assert time.monotonic() - since < 1.0
    assert met == [False]
    assert waiter.outcome is Outcome.CANCELLED
    assert isinstance(waiter.reason, OwnerGone)
    assert waiter.reason.machine_id == "a" and waiter.reason.peer_id == a.peer_id
    assert not remote.is_connected
    # made on the disconnected view: ends at once the same way ...
    late = remote.when("Baz")
    assert late.done and late.outcome is Outcome.CANCELLED
    # ... unless the last clock shown already meets it
    assert remote.when_not("Baz").wait(0)
    assert b.dispose().wait(TIMEOUT)


def test_a_remote_waiter_raises_owner_gone_within_1s_under_asyncio() -> None:
    async def main() -> None:
        a, b = joined_pair()
        (remote,) = b.list_machines(id="a")
        waiter = remote.when("Baz")
        since = time.monotonic()
        a.dispose()
        with pytest.raises(OwnerGone):
            await asyncio.wait_for(waiter, 1.0)
        assert time.monotonic() - since < 1.0
        with pytest.raises(OwnerGone):
            await remote.when("Baz")  # made afterwards: at once
        assert await asyncio.wait_for(b.dispose(), TIMEOUT)

    asyncio.run(main())


def test_a_remote_waiter_raises_owner_gone_within_1s_under_trio() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.01)
        a, b = await start_network(net, 2, 1)
        await until([a, b], lambda t: len(t.list_machines(connected=True)) == 1)
        (remote,) = b.list_machines(peer_id=a.peer_id)
        waiter = remote.when("Baz")
        since = trio.current_time()
        a.dispose()
        with pytest.raises(OwnerGone), trio.fail_after(1.0):
            await waiter
        assert trio.current_time() - since < 1.0
        assert await b.dispose()

    trio.run(main)  # the real clock: "within 1 s" is wall time


def test_a_silent_owner_ends_waiters_and_revived_it_waits_again() -> None:
    async def main() -> None:
        cfg = GossipConfig(peer_ttl=5, gone_ttl=600, keepalive=1)
        net = MemoryNetwork(latency=0.01, seed=3)
        a, b = await start_network(net, 2, 1, config=cfg)
        await until([a, b], lambda t: len(t.list_machines(connected=True)) == 1)
        (remote,) = b.list_machines(peer_id=a.peer_id)
        pending = remote.when("Baz")
        net.partition([a.transport])  # no bye: silence shows it disconnected
        with pytest.raises(OwnerGone), trio.fail_after(60):
            await pending
        assert not remote.is_connected
        net.heal()  # it speaks again: revived
        await until([b], lambda _: remote.is_connected, timeout=60)
        again = remote.when("Baz")
        assert not again.done
        a.exported[0].add("Baz")
        with trio.fail_after(60):
            assert await again
        assert again.outcome is Outcome.MET
        with trio.fail_after(60):
            assert await a.dispose()
            assert await b.dispose()

    run(main)


def test_our_own_dispose_releases_remote_waiters_without_owner_gone() -> None:
    a, b = joined_pair()
    (remote,) = b.list_machines(id="a")
    waiter = remote.when("Baz")
    assert b.dispose().wait(TIMEOUT)
    # disposal releases (False), as for any machine; the owner is not gone
    assert waiter.done and not waiter.wait(0)
    assert waiter.outcome is Outcome.RELEASED
    assert a.dispose().wait(TIMEOUT)


def test_the_last_update_before_dispose_goes_out_before_the_bye() -> None:
    async def main() -> None:
        net = MemoryNetwork()  # no latency: delivered in the order sent
        a, b = await start_network(net, 2, 1)
        await until([a, b], lambda t: len(t.list_machines(connected=True)) == 1)
        (remote,) = b.list_machines(peer_id=a.peer_id)
        order: list[tuple[str, list[int]]] = []
        tracer = _Order(b, order)
        b.mach.bind_tracer(tracer)
        source = a.exported[0]
        source.add("Baz")
        final = source.time()
        a.dispose()  # at once, no wait in between
        with trio.fail_after(10):
            await b.mach.when_query(lambda _: not remote.is_connected)
        assert remote.time() == final
        kinds = [kind for kind, _ in order]
        assert kinds[-2:] == ["MsgUpdates", "MsgBye"], kinds
        assert order[-2][1] == final  # the update carried the final clock
        assert await b.dispose()

    run(main)


class _Order:
    """A tracer of the watcher's topic machine: which messages came, in order."""

    def __init__(self, topic: Topic, order: list[tuple[str, list[int]]]) -> None:
        self.topic = topic
        self.order = order

    def transition_end(self, tx: Any) -> None:
        for state in ("MsgUpdates", "MsgBye"):
            if (
                state in tx.called_states
                and tx.args.get("peer_id") != self.topic.peer_id
            ):
                self.order.append((state, self._time(tx.args["msg"])))

    @staticmethod
    def _time(msg: Any) -> list[int]:
        clocks = getattr(msg, "peer_clocks", None)
        if clocks:
            return next(iter(next(iter(clocks.values())).values()))
        machs = getattr(msg, "machs", None) or {}
        return next(iter(machs.values())).time if machs else []


def test_a_machine_waits_like_before_for_everything_else() -> None:
    machine = Machine({"Foo": State()}, id="m")
    waiter = machine.when("Foo")
    machine.add("Foo")
    assert waiter.wait(0) and waiter.outcome is Outcome.MET
