"""``ampubsub demo``: a local network of peers converging in front of you.

Every peer runs in this process (libp2p on loopback, or the in-memory
network); half of them change a machine every half second, and the table
shows how many remote machines each peer sees and how many are in sync.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Sequence

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from asyncmachine import Machine

from .. import hooks
from ..remote import RemoteMachine
from ..topic import Topic
from .network import make_transport, start
from .output import Exit, console, usage
from .workload import DEMO_SCHEMA, TOPIC


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
    """Run the demo network for ``--seconds``; print a summary."""
    if args.peers < 2:
        raise usage("--peers must be at least 2")
    if args.machines < 1:
        raise usage("--machines must be at least 1")
    if args.seconds <= 0:
        raise usage("--seconds must be > 0")
    probe = LatencyProbe(args.peers)
    hooks.register(probe, name="ampubsub-demo-probe")
    memory = None
    if args.transport == "memory":
        from ..memory_transport import MemoryNetwork

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
                    args.transport, ["/ip4/127.0.0.1/tcp/0"], timeout=30, memory=memory
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
    return Exit.OK


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
