"""N peers x M machines in virtual time, driving the sans-IO GossipCore directly.

No Topic, no Machine copies of remote machines, no sockets, no sleeping: one
event queue ordered by a simulated clock, and each peer's core driven the way
the topic drives it (``joined``, ``receive`` then ``next_due``, ``heartbeat``
every ``config.heartbeat`` s, ``collect`` when due). Messages go through the
real wire format (``encode`` once per publish, ``decode`` once per fan-out),
so sizes are the real ones.

Delivery model, gossipsub seen from outside:

* a publish reaches every other joined peer (broadcast to all), after
  ``latency`` plus a uniform ``jitter`` drawn per publish; with ``loss``,
  each delivery to one receiver is dropped with that probability (gossipsub
  loses the odd message when a mesh is being built);
* with ``pull`` (the default, as the topic does), a newcomer's snapshot and
  a peer's missing introductions are fetched from one direct neighbour: the
  request and the reply take ``latency`` each, the neighbour answers at
  once (a neighbour still joining refuses, and the puller tries again
  later), and the reply's messages are handled like receptions;
* receptions are handled one at a time per processor, each costing
  ``rx_cost`` virtual seconds (py-libp2p's signature checks, locks and reads
  are ~4 ms per reception on the reference machine); they wait in the
  processor's FIFO inbox meanwhile, and the core sees them late, with the
  time at which they are handled. That lag is the back-pressure the core must
  cope with. Publishing costs ``tx_cost`` per message to the publisher.
  ``cpus`` = 0 gives every peer its own processor; ``cpus`` = K puts peer i
  on processor i % K, as when N peers share the K cores of a machine (the
  multi-process runs: 100 peers in 5 processes on 2 cores).

Starts: ``staggered`` (peer i joins at i * stagger, peer 0 alone) or
``simultaneous`` (all join at 0, nobody alone, as when a cluster restarts).
Each joining peer is a direct neighbour of up to 4 earlier peers (the same
topology as the network runs), for ``peer_joined``.

Reported (per peer = divided by N): messages and bytes sent and received
until synced (every peer lists every other peer's machines with the owners'
clocks), idle traffic in a window starting ``idle_at`` s after the last
start and in one after sync, CPU seconds and peak RSS of the process.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import resource
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any

from ampubsub_plugin._gossip import GossipConfig, GossipCore
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.protocol import Message, decode, encode
from asyncmachine import Machine

from .common import make_schema, topology

log = logging.getLogger("netbench.sim")

STARTS = ("staggered", "simultaneous")

# event kinds, in the order they run when due at the same moment
_JOIN, _FANOUT, _DRAIN, _HEARTBEAT, _WAKE, _CHECK, _MARK, _PULL = range(8)


class BudgetExceeded(Exception):
    """The run used more CPU than allowed; the message says how far it got."""


@dataclass
class SimSettings:
    """One simulated run; every figure it prints depends only on these and the core."""

    peers: int
    machines: int = 3
    start: str = "staggered"
    stagger: float = 0.05
    latency: float = 0.005
    jitter: float = 0.005
    rx_cost: float = 0.004
    tx_cost: float = 0.0
    cpus: int = 0
    idle_at: float = 15.0
    idle_window: float = 10.0
    settle: float = 5.0
    check_every: float = 0.5
    horizon: float = 600.0
    cpu_budget: float = 600.0
    seed: int = 7
    #: newcomers pull their snapshot, and peers missing infos pull them,
    #: from one direct neighbour (as the topic does over either transport);
    #: False: snapshots and introductions are broadcast
    pull: bool = True
    #: each delivery of a publish to one receiver is lost with this
    #: probability (pulls are never lost: they are streams)
    loss: float = 0.0

    def validate(self) -> None:
        """Raise ValueError naming the first setting that makes no sense."""
        if self.peers < 2:
            raise ValueError(f"peers must be >= 2, got {self.peers}")
        if self.machines < 1:
            raise ValueError(f"machines must be >= 1, got {self.machines}")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {self.start!r}")
        for name in ("stagger", "latency", "jitter", "rx_cost", "tx_cost", "settle"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.loss < 1:
            raise ValueError(f"loss must be in [0, 1), got {self.loss}")
        if self.cpus < 0:
            raise ValueError(f"cpus must be >= 0 (0: one per peer), got {self.cpus}")
        for name in ("idle_window", "check_every", "horizon", "cpu_budget"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class SimPeer:
    """One peer: its core, its own machines, its inbox and its timers."""

    __slots__ = ("core", "cpu", "id", "index", "joined", "machines", "wake_at")

    def __init__(
        self, index: int, core: GossipCore, machines: list[Machine], cpu: int
    ) -> None:
        self.index = index
        self.core = core
        self.id = core.peer_id
        self.machines = machines
        self.cpu = cpu
        self.joined = False
        self.wake_at = math.inf


class Processor:
    """Where receptions wait and are handled, one at a time."""

    __slots__ = ("busy_until", "draining", "inbox", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        #: (receiver, sender id, message, encoded size, arrival time)
        #: (a None message: the end of a pulled snapshot)
        self.inbox: deque[tuple[SimPeer, str, Message | None, int, float]] = deque()
        self.busy_until = 0.0
        self.draining = False


class Traffic:
    """Network-wide message and byte counts, by direction and type."""

    __slots__ = (
        "by_type",
        "lost",
        "pull_bytes",
        "pulled_msgs",
        "rx_bytes",
        "rx_msgs",
        "tx_bytes",
        "tx_msgs",
    )

    def __init__(self) -> None:
        #: messages and bytes of pulled replies (one-to-one: not in the
        #: publishes; their handling is in the receptions)
        self.pulled_msgs = 0
        self.pull_bytes = 0
        #: deliveries of a publish to one receiver dropped (``loss``)
        self.lost = 0
        self.tx_msgs = 0
        self.tx_bytes = 0
        self.rx_msgs = 0
        self.rx_bytes = 0
        self.by_type: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        return {
            "tx_msgs": self.tx_msgs,
            "tx_bytes": self.tx_bytes,
            "rx_msgs": self.rx_msgs,
            "rx_bytes": self.rx_bytes,
            "pulled_msgs": self.pulled_msgs,
            "pull_bytes": self.pull_bytes,
            "lost": self.lost,
            "by_type": dict(self.by_type),
        }


def _window(
    a: dict[str, Any], b: dict[str, Any], n: int, seconds: float
) -> dict[str, Any]:
    """Per-peer rates between two traffic snapshots."""
    by_type = Counter(b["by_type"])
    by_type.subtract(a["by_type"])
    return {
        "seconds": seconds,
        "tx_msgs_per_peer_s": (b["tx_msgs"] - a["tx_msgs"]) / n / seconds,
        "rx_msgs_per_peer_s": (b["rx_msgs"] - a["rx_msgs"]) / n / seconds,
        "rx_bytes_per_peer_s": (b["rx_bytes"] - a["rx_bytes"]) / n / seconds,
        "tx_by_type": {k: v for k, v in sorted(by_type.items()) if v},
    }


class Simulation:
    """The event loop of one run; ``run()`` returns the figures."""

    def __init__(self, settings: SimSettings) -> None:
        settings.validate()
        self.s = settings
        self.rng = random.Random(settings.seed)
        #: its own stream, so that a run without loss draws as before
        self.loss_rng = random.Random(settings.seed + 2)
        self.queue: list[tuple[float, int, int, int, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.traffic = Traffic()
        self.events = 0
        #: time receptions waited in an inbox before being handled, s
        self.lag_max = 0.0
        self.lag_sum = 0.0
        self.marks: dict[str, dict[str, Any]] = {}
        self.mark_times: dict[str, float] = {}
        self.synced_at: float | None = None
        self.unsynced: set[int] = set()
        network = MemoryNetwork(seed=settings.seed)
        schema = make_schema()
        config = GossipConfig()
        self.heartbeat = config.heartbeat
        self.peers: list[SimPeer] = []
        cpus = settings.cpus or settings.peers
        self.cpus = [Processor(c) for c in range(cpus)]
        self.owner_clock: dict[tuple[str, int], list[int]] = {}
        for i in range(settings.peers):
            signer = network.transport()
            core = GossipCore(
                signer.peer_id,
                config=config,
                rng=random.Random(settings.seed * 100_003 + i),
                signer=signer,
                incarnation=1_700_000_000_000_000 + i,
            )
            core.pull_snapshots(settings.pull)
            machines = []
            for j in range(settings.machines):
                mach = Machine(schema, id=f"p{i}-m{j}", tags=[f"peer:{i}"])
                mach.add("A")
                index = core.export(mach)
                self.owner_clock[(core.peer_id, index)] = list(mach.time())
                machines.append(mach)
            self.peers.append(SimPeer(i, core, machines, i % cpus))
        self.expected = settings.machines * (settings.peers - 1)
        self.boots = topology(settings.peers, random.Random(settings.seed + 1))
        #: each peer's joined direct neighbours (whom it can pull from)
        self.neighbours: list[set[int]] = [set() for _ in range(settings.peers)]

    # -- the queue ----------------------------------------------------------------

    def _push(self, at: float, kind: int, peer: int, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, kind, self.seq, peer, payload))

    def _plan_wake(self, p: SimPeer, now: float) -> None:
        due = p.core.next_due(now)
        if due is None:
            return
        due = max(due, now)
        if due < p.wake_at:
            p.wake_at = due
            self._push(due, _WAKE, p.index)

    # -- handlers -------------------------------------------------------------------

    def _join(self, p: SimPeer, now: float) -> None:
        alone = self.s.start == "staggered" and p.index == 0
        p.joined = True
        self.unsynced.add(p.index)
        p.core.joined(now, alone=alone)
        for j in self.boots[p.index]:
            other = self.peers[j]
            if other.joined:
                p.core.peer_joined(other.id, now)
                other.core.peer_joined(p.id, now)
                self.neighbours[p.index].add(j)
                self.neighbours[j].add(p.index)
        self._plan_wake(p, now)
        self._push(now + self.rng.uniform(0, self.heartbeat), _HEARTBEAT, p.index)

    def _wake(self, p: SimPeer, now: float) -> None:
        if now != p.wake_at:
            return  # superseded by an earlier wake
        p.wake_at = math.inf
        msgs = p.core.collect(now)
        traffic = self.traffic
        for msg in msgs:
            data = encode(msg)
            traffic.tx_msgs += 1
            traffic.tx_bytes += len(data)
            traffic.by_type[msg.TYPE] += 1
            arrive = now + self.s.latency + self.rng.uniform(0, self.s.jitter)
            self._push(arrive, _FANOUT, p.index, (decode(data), len(data)))
        if msgs and self.s.tx_cost:
            cpu = self.cpus[p.cpu]
            cpu.busy_until = max(cpu.busy_until, now) + self.s.tx_cost * len(msgs)
        if self.s.pull:
            self._start_pulls(p, now)
        due = p.core.next_due(now)
        if due is not None:
            # a core that says "now" again right after collecting is polled
            # no faster than every millisecond (the topic's loop would spin)
            due = max(due, now + 0.001)
            p.wake_at = due
            self._push(due, _WAKE, p.index)

    def _fanout(self, sender: SimPeer, msg: Message, size: int, now: float) -> None:
        cpus, sid = self.cpus, sender.id
        loss, draw = self.s.loss, self.loss_rng.random
        for r in self.peers:
            if r is sender or not r.joined:
                continue
            if loss and draw() < loss:
                self.traffic.lost += 1
                continue
            cpu = cpus[r.cpu]
            cpu.inbox.append((r, sid, msg, size, now))
            if not cpu.draining:
                cpu.draining = True
                self._push(max(now, cpu.busy_until), _DRAIN, cpu.index)

    def _start_pulls(self, p: SimPeer, now: float) -> None:
        """What the topic's flush does after ``collect``: a snapshot pull, and
        a pull of missing peers' infos, each from one direct neighbour."""
        ids = {self.peers[j].id: j for j in self.neighbours[p.index]}
        if p.core.pull_now(now):
            if not ids:
                p.core.pull_failed(now, no_neighbour=True)
            else:
                j = ids[p.core.discovery.pick(sorted(ids))]
                self._push(now + self.s.latency, _PULL, j, ("ask", p.index, None))
        wanted = p.core.peers_to_pull()
        if wanted is not None and ids:  # (none: the requests to everyone cover it)
            hint = wanted[1]
            j = ids[hint] if hint in ids else ids[p.core.discovery.pick(sorted(ids))]
            self._push(now + self.s.latency, _PULL, j, ("ask", p.index, wanted[0]))

    def _pull_event(self, p: SimPeer, payload: Any, now: float) -> None:
        """One step of a pull: the neighbour ``p`` is asked, or the puller
        ``p`` gets the reply (or the refusal)."""
        step, other, body = payload
        if step == "ask":  # body: the ids wanted (None: a snapshot)
            puller = self.peers[other]
            if body is None:
                msgs = p.core.pulled_snapshot(now)
            else:
                msgs = p.core.pulled_infos(body)
            reply = (
                ("refused", p.index, None)
                if msgs is None
                else ("reply", p.index, (msgs, body is None))
            )
            self._push(now + self.s.latency, _PULL, puller.index, reply)
            return
        if step == "refused":  # a neighbour still joining: another later
            p.core.pull_failed(now)
            self._plan_wake(p, now)
            return
        msgs, snapshot = body
        sender = self.peers[other].id
        cpu = self.cpus[p.cpu]
        for msg in msgs:
            data = encode(msg)
            self.traffic.pulled_msgs += 1
            self.traffic.pull_bytes += len(data)
            cpu.inbox.append((p, sender, decode(data), len(data), now))
        if snapshot:  # its end: ``pulled`` once its messages were handled
            cpu.inbox.append((p, sender, None, 0, now))
        if cpu.inbox and not cpu.draining:
            cpu.draining = True
            self._push(max(now, cpu.busy_until), _DRAIN, cpu.index)

    def _drain(self, cpu: Processor, now: float) -> None:
        p, sender, msg, size, arrived = cpu.inbox.popleft()
        if msg is None:  # a pulled snapshot was handed over whole
            p.core.pulled(sender, now)
            self._plan_wake(p, now)
            if cpu.inbox:
                self._push(max(now, cpu.busy_until), _DRAIN, cpu.index)
            else:
                cpu.draining = False
            return
        lag = now - arrived
        self.lag_sum += lag
        if lag > self.lag_max:
            self.lag_max = lag
        self.traffic.rx_msgs += 1
        self.traffic.rx_bytes += size
        p.core.receive(sender, msg, now, arrived=arrived)
        cpu.busy_until = now + self.s.rx_cost
        self._plan_wake(p, now)
        if cpu.inbox:
            self._push(cpu.busy_until, _DRAIN, cpu.index)
        else:
            cpu.draining = False

    def _heartbeat(self, p: SimPeer, now: float) -> None:
        p.core.heartbeat(now)
        self._plan_wake(p, now)
        self._push(now + self.heartbeat, _HEARTBEAT, p.index)

    def _is_synced(self, p: SimPeer) -> bool:
        roster = p.core.roster
        count = sum(len(v.machines) for v in roster.peers.values())
        if count != self.expected:
            return False
        owner = self.owner_clock
        return all(
            owner.get((peer, index)) == list(record.time)
            for peer, index, record in roster.machines()
        )

    def _check(self, now: float) -> None:
        if self.synced_at is not None:
            return
        done = {i for i in self.unsynced if self._is_synced(self.peers[i])}
        self.unsynced -= done
        if not self.unsynced and all(p.joined for p in self.peers):
            self.synced_at = now
            self.marks["synced"] = self.traffic.snapshot()
            self.mark_times["synced"] = now
            settle = now + self.s.settle
            self._push(settle, _MARK, -1, "idle_after_sync_0")
            self._push(settle + self.s.idle_window, _MARK, -1, "idle_after_sync_1")
        else:
            self._push(now + self.s.check_every, _CHECK, -1)

    # -- the run --------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        s = self.s
        cpu0 = time.process_time()
        last_join = 0.0
        for i in range(s.peers):
            at = i * s.stagger if s.start == "staggered" else 0.0
            last_join = max(last_join, at)
            self._push(at, _JOIN, i)
        self._push(last_join + s.idle_at, _MARK, -1, "idle_15s_0")
        self._push(last_join + s.idle_at + s.idle_window, _MARK, -1, "idle_15s_1")
        self._push(s.check_every, _CHECK, -1)
        peers, queue = self.peers, self.queue
        pop = heapq.heappop
        error: str | None = None
        while queue:
            at, kind, _, index, payload = pop(queue)
            if at > s.horizon:
                error = f"virtual horizon {s.horizon:.0f} s reached"
                break
            self.now = at
            self.events += 1
            if kind == _DRAIN:
                self._drain(self.cpus[index], at)
            elif kind == _WAKE:
                self._wake(peers[index], at)
            elif kind == _FANOUT:
                self._fanout(peers[index], payload[0], payload[1], at)
            elif kind == _HEARTBEAT:
                self._heartbeat(peers[index], at)
            elif kind == _JOIN:
                self._join(peers[index], at)
            elif kind == _CHECK:
                self._check(at)
            elif kind == _PULL:
                self._pull_event(peers[index], payload, at)
            elif kind == _MARK:
                self.marks[payload] = self.traffic.snapshot()
                self.mark_times[payload] = at
                if self._finished():
                    break
            if self.events % 20_000 == 0:
                used = time.process_time() - cpu0
                if used > s.cpu_budget:
                    error = (
                        f"CPU budget {s.cpu_budget:.0f} s used at virtual "
                        f"{at:.1f} s ({len(self.unsynced)} peers not synced)"
                    )
                    break
        return self._report(last_join, time.process_time() - cpu0, error)

    def _finished(self) -> bool:
        return "idle_15s_1" in self.marks and "idle_after_sync_1" in self.marks

    def _report(
        self, last_join: float, cpu_s: float, error: str | None
    ) -> dict[str, Any]:
        s, n, marks, times = self.s, self.s.peers, self.marks, self.mark_times
        res: dict[str, Any] = {
            "mode": "sim",
            "settings": asdict(s),
            "peers": n,
            "machines": s.machines,
            "start": s.start,
            "last_join_s": last_join,
            "virtual_end_s": self.now,
            "events": self.events,
            "cpu_s": cpu_s,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "synced": self.synced_at is not None,
            "unsynced_peers": len(self.unsynced)
            + sum(not p.joined for p in self.peers),
        }
        if self.synced_at is not None:
            at = marks["synced"]
            res["sync_s"] = self.synced_at
            res["sync_after_last_join_s"] = self.synced_at - last_join
            res["until_synced"] = {
                "tx_msgs_per_peer": at["tx_msgs"] / n,
                "tx_bytes_per_peer": at["tx_bytes"] / n,
                "rx_msgs_per_peer": at["rx_msgs"] / n,
                "rx_bytes_per_peer": at["rx_bytes"] / n,
                "pulled_msgs_per_peer": at["pulled_msgs"] / n,
                "tx_by_type": at["by_type"],
            }
        for name in ("idle_15s", "idle_after_sync"):
            a, b = marks.get(f"{name}_0"), marks.get(f"{name}_1")
            if a is not None and b is not None:
                seconds = times[f"{name}_1"] - times[f"{name}_0"]
                res[name] = _window(a, b, n, seconds)
        res["total"] = self.traffic.snapshot()
        res["backlog_at_end"] = {
            "inbox_max": max(len(c.inbox) for c in self.cpus),
            "lag_max_s": max(max(0.0, c.busy_until - self.now) for c in self.cpus),
        }
        res["inbox_wait_s"] = {
            "max": self.lag_max,
            "mean": self.lag_sum / max(1, self.traffic.rx_msgs),
        }
        if error is not None:
            res["error"] = error
        res["phase"] = "done" if error is None and res["synced"] else "incomplete"
        return res


def simulate(settings: SimSettings) -> dict[str, Any]:
    """Run one simulation in this process (its RSS is this process's)."""
    return Simulation(settings).run()
