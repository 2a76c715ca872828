"""The ``ampubsub`` command: a demo network, a long-lived peer, a live watcher.

Only this module prints (through rich); the library logs. Bad arguments end
with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from asyncmachine import Machine, State

from . import hooks
from ._runtime import SharedRuntime
from ._signals import bye_on_signals
from .remote import RemoteMachine
from .topic import Topic

TOPIC = "ampubsub-demo"
DEMO_SCHEMA = {
    "Idle": State(remove=["Working"]),
    "Working": State(remove=["Idle"]),
    "Healthy": State(),
    "Busy": State(auto=True, require=["Working"]),
}

console = Console(soft_wrap=True)  # ids and addresses stay on one line
errors = Console(stderr=True, soft_wrap=True)  # one error, one line


class UsageFailure(Exception):
    """A bad argument: printed as one line, exit status 2."""


# -- shared helpers ----------------------------------------------------------------


def make_transport(
    kind: str, listen: Sequence[str], memory: Any = None, psk_file: str | None = None
) -> Any:
    if psk_file is not None and kind == "memory":
        raise UsageFailure("--psk-file needs --transport libp2p")
    if kind == "memory":
        from .memory_transport import MemoryNetwork

        return (memory or MemoryNetwork()).transport()
    from .libp2p_transport import Libp2pTransport

    try:
        return Libp2pTransport(listen=list(listen), psk=psk_file)
    except ValueError as err:
        raise UsageFailure(str(err)) from None


def check_addrs(addrs: Iterable[str], what: str) -> list[str]:
    """Parse multiaddrs up front, so a typo is one clear line."""
    import multiaddr  # type: ignore[import-untyped]

    result = []
    for addr in addrs:
        try:
            parsed = multiaddr.Multiaddr(addr)
        except Exception as err:  # multiaddr raises several types
            raise UsageFailure(f"{what}: not a multiaddr: {addr!r} ({err})") from None
        if what == "--bootstrap" and "/p2p/" not in str(parsed):
            raise UsageFailure(f"{what}: {addr!r} lacks the /p2p/<peer id> part")
        result.append(str(parsed))
    return result


def load_factory(spec: str) -> Callable[[], Iterable[Machine] | Machine]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageFailure(f"--expose wants module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the user's modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UsageFailure(f"--expose: can't import {module_name!r}: {err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageFailure(f"--expose: {module_name} has no function {attr!r}")
    return factory  # type: ignore[no-any-return]


def wait_state(topic: Topic, state: str, timeout: float, what: str) -> None:
    waiter = topic.mach.when([state])
    failed = topic.mach.when_err()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if waiter.wait(0.1):
            return
        if failed.done:
            raise UsageFailure(f"{what} failed: {topic.mach.err}")
    raise UsageFailure(f"{what} took longer than {timeout:g}s")


def start(topic: Topic, timeout: float) -> None:
    topic.start()
    wait_state(topic, "Connected", timeout, "connecting")
    topic.join()
    wait_state(topic, "Joined", timeout, "joining")


def remotes_table(topic: Topic, title: str) -> Table:
    table = Table(title=title, expand=False)
    for column in ("peer", "machine", "tags", "active states", "ticks", "conn"):
        table.add_column(column)
    for remote in sorted(topic.list_machines(), key=lambda r: (r.peer_id, r.index)):
        table.add_row(
            remote.peer_id[-8:],
            remote.id,
            " ".join(remote.tags),
            " ".join(remote.active_states) or "-",
            str(sum(remote.time())),
            "yes" if remote.is_connected else "[red]no[/]",
        )
    return table


#: what ends a long-lived peer besides Ctrl-C: docker stop and systemd send
#: SIGTERM, a closed terminal SIGHUP (each says bye first, then ends as usual)
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def run_until_interrupted(stop: threading.Event) -> None:
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            pass
    finally:
        signal.signal(signal.SIGINT, previous)


# -- demo ---------------------------------------------------------------------------


class LatencyProbe:
    """Times each owner transition until every other peer shows it."""

    def __init__(self, peers: int) -> None:
        self.peers = peers
        self.lock = threading.Lock()
        self.sent: dict[tuple[str, int], float] = {}
        self.seen: dict[tuple[str, int], int] = {}
        self.latencies: list[float] = []

    def owner_changed(self, machine: Machine) -> None:
        with self.lock:
            self.sent[(machine.id, sum(machine.time()))] = time.monotonic()

    @hooks.hookimpl
    def ampubsub_machine_updated(self, topic: Topic, remote: RemoteMachine) -> None:
        key = (remote.id, remote.time_sum)
        now = time.monotonic()
        with self.lock:
            started = self.sent.get(key)
            if started is not None:
                self.latencies.append(now - started)


def demo(args: argparse.Namespace) -> int:
    if args.peers < 2:
        raise UsageFailure("--peers must be at least 2")
    if args.machines < 1:
        raise UsageFailure("--machines must be at least 1")
    if args.seconds <= 0:
        raise UsageFailure("--seconds must be > 0")
    probe = LatencyProbe(args.peers)
    hooks.register(probe, name="ampubsub-demo-probe")
    memory = None
    if args.transport == "memory":
        from .memory_transport import MemoryNetwork

        memory = MemoryNetwork(latency=0.005)
    topics: list[Topic] = []
    started = time.monotonic()
    try:
        for i in range(args.peers):
            machines = []
            for j in range(args.machines):
                m = Machine(DEMO_SCHEMA, id=f"p{i}-worker{j}", tags=[f"peer:{i}"])
                m.add(["Idle", "Healthy"])
                machines.append(m)
            boot = [a for t in topics[-4:] for a in t.addrs]
            topic = Topic(
                TOPIC,
                transport=make_transport(
                    args.transport, ["/ip4/127.0.0.1/tcp/0"], memory
                ),
                bootstrap=boot,
                machines=machines,
            )
            start(topic, 30)
            topics.append(topic)
        expected = (args.peers - 1) * args.machines
        discovered_at: float | None = None
        deadline = time.monotonic() + args.seconds
        next_change = time.monotonic() + 1.0
        tick = 0
        with Live(console=console, refresh_per_second=4) as live:
            while time.monotonic() < deadline:
                now = time.monotonic()
                counts = [len(t.list_machines(connected=True)) for t in topics]
                if discovered_at is None and min(counts) >= expected:
                    discovered_at = now - started
                if discovered_at is not None and now >= next_change:
                    # mutate a few machines on a couple of peers
                    tick += 1
                    for topic in topics[: max(1, args.peers // 2)]:
                        m = topic.exported[tick % args.machines]
                        m.add("Idle" if m.is_active("Working") else "Working")
                        probe.owner_changed(m)
                    next_change = now + 0.5
                live.update(demo_view(topics, counts, expected, discovered_at, probe))
                time.sleep(0.25)
        summary(topics, expected, discovered_at, probe)
    finally:
        for topic in topics:
            topic.dispose()
        for topic in topics:
            topic.mach.when_disposed().wait(10)
        hooks.unregister(probe)
    return 0


def demo_view(
    topics: Sequence[Topic],
    counts: Sequence[int],
    expected: int,
    discovered_at: float | None,
    probe: LatencyProbe,
) -> Group:
    table = Table(title=f"ampubsub demo: {len(topics)} peers on topic {TOPIC!r}")
    for column in ("peer", "sees", "in sync", "sent", "received", "state"):
        table.add_column(column)
    owners = {m.id: m for t in topics for m in t.exported}
    for i, (topic, count) in enumerate(zip(topics, counts)):
        synced = sum(
            1
            for r in topic.list_machines()
            if r.id in owners and r.time() == owners[r.id].time()
        )
        c = topic.counters
        sent = sum(v for k, v in c.items() if k.startswith("out_"))
        received = sum(v for k, v in c.items() if k.startswith("in_"))
        style = "green" if count >= expected else "yellow"
        table.add_row(
            f"{i}:{topic.peer_id[-6:]}",
            Text(f"{count}/{expected}", style=style),
            f"{synced}/{expected}",
            str(sent),
            str(received),
            "Ready" if topic.mach.is_active("Ready") else "joining",
        )
    status = (
        f"discovered everything in {discovered_at:.2f}s"
        if discovered_at is not None
        else "discovering..."
    )
    with probe.lock:
        n = len(probe.latencies)
    return Group(table, Text(f"{status}; {n} remote updates timed"))


def summary(
    topics: Sequence[Topic],
    expected: int,
    discovered_at: float | None,
    probe: LatencyProbe,
) -> None:
    with probe.lock:
        latencies = sorted(probe.latencies)
    sent = sum(v for t in topics for k, v in t.counters.items() if k.startswith("out_"))
    console.print()
    console.print("[bold]summary[/]")
    if discovered_at is None:
        console.print(f"  discovery: not complete ({expected} machines per peer)")
    else:
        console.print(
            f"  discovery: {expected} remote machines per peer in {discovered_at:.2f}s"
        )
    if latencies:
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        console.print(
            f"  update latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"over {len(latencies)} remote updates"
        )
    console.print(
        f"  messages sent: {sent} ({sent / max(1, len(topics)):.1f} per peer)"
    )


# -- peer and watch --------------------------------------------------------------


def peer(args: argparse.Namespace) -> int:
    listen = check_addrs(args.listen, "--listen")
    bootstrap = check_addrs(args.bootstrap, "--bootstrap")
    machines: list[Machine] = []
    for spec in args.expose:
        made = load_factory(spec)()
        machines.extend([made] if isinstance(made, Machine) else list(made))
    topic = Topic(
        args.topic,
        transport=make_transport(args.transport, listen, psk_file=args.psk_file),
        bootstrap=bootstrap,
        machines=machines,
    )
    start(topic, args.timeout)
    console.print(f"peer [bold]{topic.peer_id}[/] on topic {args.topic!r}")
    for addr in topic.addrs:
        console.print(f"  {addr}")
    console.print(f"exporting {len(machines)} machine(s); Ctrl-C to leave")
    stop = threading.Event()
    try:
        with bye_on_signals(topic, signals=STOP_SIGNALS):
            run_until_interrupted(stop)
    finally:
        topic.dispose()
        topic.mach.when_disposed().wait(10)
        console.print("bye sent, disposed")
    return 0


def watch(args: argparse.Namespace) -> int:
    bootstrap = check_addrs(args.bootstrap, "--bootstrap")
    if not bootstrap:
        raise UsageFailure("watch needs at least one --bootstrap address")
    topic = Topic(
        args.topic,
        transport=make_transport(
            args.transport, ["/ip4/127.0.0.1/tcp/0"], psk_file=args.psk_file
        ),
        bootstrap=bootstrap,
    )
    start(topic, args.timeout)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        with (
            bye_on_signals(topic, signals=STOP_SIGNALS),
            Live(console=console, refresh_per_second=4) as live,
        ):
            while not stop.wait(0.25):
                live.update(remotes_table(topic, f"topic {args.topic!r}"))
                if deadline is not None and time.monotonic() > deadline:
                    break
    finally:
        signal.signal(signal.SIGINT, previous)
        topic.dispose()
        topic.mach.when_disposed().wait(10)
    return 0


# -- entry point ----------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ampubsub",
        description="State machines shared over a libp2p gossip network.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run a local network and watch it converge")
    d.add_argument("--peers", type=int, default=5, help="peers in this process (5)")
    d.add_argument("--machines", type=int, default=3, help="machines per peer (3)")
    d.add_argument("--seconds", type=float, default=10.0, help="how long to run (10)")
    d.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
    d.set_defaults(run=demo)

    for name, fn, text in (
        ("peer", peer, "run one long-lived peer"),
        ("watch", watch, "join a topic and show every machine live"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--topic", default=TOPIC, help=f"topic name ({TOPIC})")
        s.add_argument(
            "--bootstrap", action="append", default=[], help="a peer's full multiaddr"
        )
        s.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
        s.add_argument("--timeout", type=float, default=30.0, help="connect timeout")
        s.add_argument("--psk-file", help="private network: a libp2p swarm key file")
        s.set_defaults(run=fn)
        if name == "peer":
            s.add_argument(
                "--listen",
                action="append",
                default=None,
                help="listen multiaddr (/ip4/127.0.0.1/tcp/0)",
            )
            s.add_argument(
                "--expose",
                action="append",
                default=[],
                help="module:function returning machines to export",
            )
        else:
            s.add_argument(
                "--seconds",
                type=float,
                default=0,
                help="stop after this long (0: never)",
            )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "listen", "absent") is None:
        args.listen = ["/ip4/127.0.0.1/tcp/0"]
    try:
        code: int = args.run(args)
        return code
    except UsageFailure as err:
        errors.print(f"ampubsub {args.command}: {err}", highlight=False)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        SharedRuntime.shutdown()


if __name__ == "__main__":
    sys.exit(main())
