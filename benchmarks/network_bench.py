#!/usr/bin/env python
"""Network benchmark: ampubsub over py-libp2p on 127.0.0.1, next to raw gossipsub.

For each size in ``--peers`` (one OS process per size, so memory and CPU
figures don't leak from one size into the next) it measures, side by side in
the same run:

* start-up: every peer is a ``Topic`` on a ``Libp2pTransport`` exporting
  ``--machines`` machines and bootstrapping from up to 4 earlier peers (peer 0
  plus 3 random earlier ones; never a star). Peers start concurrently, each as
  soon as its bootstrap peers listen. Reported: first start -> last ``Joined``,
  last ``Joined`` -> full discovery (every peer lists every other peer's
  machines, from the ``ampubsub_machine_discovered`` hook), and first start ->
  discovered *and* synced (every remote clock equals its owner's);
* idle traffic: ``out_*`` counters of all topics (messages the protocol
  handed to the transport) per peer per second over ``--idle`` s with no
  change, and the process CPU used meanwhile;
* memory: RSS (``/proc/self/status`` VmRSS) after the ampubsub network is
  synced minus RSS before it, per peer; the same for the raw network;
* clock-update latency: an owner toggles one state of one machine; for every
  other peer, ``time.monotonic()`` from just before the transition to the
  ``ampubsub_machine_updated`` hook showing the new clock there. p50/p99 over
  all (update, receiver) pairs;
* raw gossipsub latency, the transport's floor: a second set of bare
  ``Libp2pTransport`` s with the same topology on another topic; a random peer
  publishes a payload of the size of an ampubsub ``updates`` message through
  ``Libp2pTransport.publish`` and every other peer timestamps it in
  ``on_message``. Raw and ampubsub events alternate, paced at ``--rate`` events
  per second in total; an event starts only after the previous one reached
  everybody (or timed out), so neither sees the other's backlog. The ratio
  ours/raw is printed next to both.

Then ``--procs-peers`` peers split over ``--procs`` OS processes (peer i lives
in process i % procs, so most links cross processes), coordinated by this
process over pipes (JSON lines). Latency there uses ``time.time()`` (one clock
for all processes): the owner's process records when it changed a machine to
a known time sum, every receiving process when its view reached that sum.

Every wait is bounded; a timeout prints the phase that timed out.

Usage:
  python benchmarks/network_bench.py                    # full default run
  python benchmarks/network_bench.py --quick            # smoke run (~1 min)
  python benchmarks/network_bench.py --peers 10 --no-multiproc --profile
  python benchmarks/network_bench.py --json-out /tmp/r.json --format markdown
  python benchmarks/network_bench.py --render /tmp/r.json --format markdown

``--profile`` runs cProfile over the latency phase of each single-process
size, separately for ampubsub events and raw events, and prints the top
functions and the CPU split by package (ampubsub / asyncmachine / libp2p /
trio / other).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import math
import os
import pstats
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # run from a checkout without install

from ampubsub_plugin.hooks import hookimpl  # noqa: E402  (after the path tweak)

TOPIC = "network-bench"
RAW_TOPIC = "network-bench-raw"
STATES = ("A", "B", "C")
RESULT_PREFIX = "RESULT "
TARGET_RATIO = 1.2  # ours p50 / raw p50
TARGET_P50_10 = 60.0  # ms, ours p50 at 10 peers
TARGET_SYNC_30 = 10.0  # s, 30 peers x 3 machines discovered and synced


class PhaseTimeout(Exception):
    """A bounded wait ran out; the message names the phase."""

    def __init__(self, phase: str, detail: str = "") -> None:
        super().__init__(f"{phase}: timed out" + (f" ({detail})" if detail else ""))
        self.phase = phase


# ---------------------------------------------------------------------------
# small helpers shared by every mode
# ---------------------------------------------------------------------------


def quiet_logging() -> None:
    logging.getLogger().setLevel(logging.ERROR)
    lib = logging.getLogger("libp2p")
    lib.addHandler(logging.NullHandler())
    lib.setLevel(logging.CRITICAL)


def proc_status_kb(key: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM); 0 when unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def topology(n: int, rng: random.Random) -> list[list[int]]:
    """Peer 0 plus 3 random earlier peers for each peer (all earlier ones at first)."""
    boots: list[list[int]] = []
    for i in range(n):
        if i <= 4:
            boots.append(list(range(i)))
        else:
            boots.append([0, *sorted(rng.sample(range(1, i), 3))])
    return boots


def make_schema() -> dict[str, Any]:
    from asyncmachine import State

    return {name: State() for name in STATES}


def pct(values: list[float], q: float) -> float | None:
    """Percentile q (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def lat_summary(values_s: list[float], expected: int) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "expected": expected,
        "lost": expected - len(ms),
        "p50": pct(ms, 50),
        "p90": pct(ms, 90),
        "p99": pct(ms, 99),
        "max": max(ms) if ms else None,
        "mean": statistics.fmean(ms) if ms else None,
    }


def updates_payload_size(machines: int) -> int:
    """Bytes of a typical ampubsub ``updates`` message (one machine, 4 ticks)."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    from ampubsub_plugin.protocol import UpdatesMsg, encode

    pid = ID.from_pubkey(create_new_key_pair(b"\x01" * 32).public_key).to_base58()
    return len(encode(UpdatesMsg(peer_clocks={pid: {machines - 1: [3, 2, 1, 0]}})))


async def wait_state(topic: Any, state: str, timeout: float, phase: str) -> None:
    """Wait for a topic state; raise PhaseTimeout, or RuntimeError on an error state."""
    import trio

    from asyncmachine import any_of

    mach = topic.mach
    if not mach.is_active(state):
        with trio.move_on_after(timeout) as scope:
            await any_of(mach.when(state), mach.when_err())
        if scope.cancelled_caught:
            raise PhaseTimeout(phase, f"{topic!r} not {state}")
    if not mach.is_active(state):
        raise RuntimeError(f"{phase}: {topic!r} failed: {mach.err!r}")


class Aggregator:
    """cProfile stats, split by package, and the top functions."""

    AREAS = (
        ("ampubsub", "/ampubsub_plugin/"),
        ("asyncmachine", "/asyncmachine/"),
        ("libp2p", "/libp2p/"),
        ("trio", "/trio/"),
        ("crypto", "/nacl/"),
        ("crypto", "/cryptography/"),
        ("crypto", "/Crypto/"),
        ("protobuf", "/google/protobuf/"),
        ("multiaddr", "/multiaddr/"),
        ("msgpack", "msgpack"),
        ("pluggy", "/pluggy/"),
    )

    @classmethod
    def area(cls, filename: str) -> str:
        for name, marker in cls.AREAS:
            if marker in filename:
                return name
        if filename.startswith("~") or filename.startswith("<"):
            return "builtins"
        return "other"

    @classmethod
    def summary(cls, prof: cProfile.Profile, events: int, top: int = 18) -> str:
        stats = pstats.Stats(prof)
        by_area: Counter[str] = Counter()
        rows = []
        total = 0.0
        for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if "select.epoll" in func or "select.select" in func:
                continue  # waiting for I/O, not work
            by_area[cls.area(filename)] += tt
            total += tt
            rows.append((tt, ct, nc, f"{_short(filename)}:{line}({func})"))
        rows.sort(reverse=True)
        out = io.StringIO()
        per = 1000 * total / max(events, 1)
        out.write(
            f"  profiled time (I/O wait excluded) {total:.2f} s over {events} events"
            f" = {per:.1f} ms/event (cProfile overhead included)\n"
        )
        out.write(
            "  by package (tottime): "
            + ", ".join(
                f"{a} {100 * t / total:.0f}%" for a, t in by_area.most_common() if total
            )
            + "\n"
        )
        out.write("  top functions by tottime (ms/event, calls/event):\n")
        for tt, _ct, nc, name in rows[:top]:
            ms, calls = 1000 * tt / max(events, 1), nc / max(events, 1)
            out.write(f"    {ms:7.2f} ms {calls:8.1f}  {name}\n")
        # our own code by cumulative time (what it costs including callees)
        ours = [
            r for r in rows if "ampubsub_plugin" in r[3] or "/asyncmachine/" in r[3]
        ]
        ours.sort(key=lambda r: r[1], reverse=True)
        out.write("  ampubsub/asyncmachine functions by cumtime (ms/event):\n")
        for _tt, ct, nc, name in ours[:12]:
            ms, calls = 1000 * ct / max(events, 1), nc / max(events, 1)
            out.write(f"    {ms:7.2f} ms {calls:8.1f}  {name}\n")
        return out.getvalue()


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class Breakdown:
    """``--breakdown``: which builder of the core's outbox sent what (messages, bytes).

    Wraps the private builders of ``ampubsub_plugin._gossip.outbox.Outbox`` in
    this process (a diagnostic that reaches into the library; it encodes every
    message once more to weigh it, so it costs CPU: not for timing runs).
    """

    BUILDERS = (
        "_byes",
        "_updates",
        "_introductions",
        "_hello",
        "_requests",
        "_gossip",
    )

    def __init__(self) -> None:
        from ampubsub_plugin import protocol
        from ampubsub_plugin._gossip import answers, outbox

        self.count: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        box = outbox.Outbox
        for name in self.BUILDERS:
            setattr(box, name, self._wrap(getattr(box, name), name, protocol.encode))
        intros = box._introductions
        box._introductions = self._why(intros)
        acks = answers.Answers.collect_acks
        answers.Answers.collect_acks = self._wrap(acks, "_acks", protocol.encode)

    def _wrap(
        self, fn: Callable[..., Any], name: str, encode: Callable[[Any], bytes]
    ) -> Callable[..., Any]:
        def wrapped(room: Any, now: float, *rest: Any) -> Any:
            out = fn(room, now, *rest)
            for msg in out:
                key = f"{name.lstrip('_')}:{msg.TYPE}"
                self.count[key] += 1
                self.bytes[key] += len(encode(msg))
            return out

        return wrapped

    def _why(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(box: Any, now: float) -> Any:
            due = box._discovery.snapshot_due
            if due is not None and due <= now:
                self.reasons["snapshot (reqinfo [])"] += 1
            if any(t <= now for t in box._answers.info.values()):
                self.reasons["answer_info (reqinfo [peers])"] += 1
            if any(t <= now for t in box._answers.updates.values()):
                self.reasons["answer_updates"] += 1
            return fn(box, now)

        return wrapped

    def snapshot(self) -> dict[str, Any]:
        return {k: [self.count[k], self.bytes[k]] for k in self.count} | {
            "why answers": dict(self.reasons)
        }


# ---------------------------------------------------------------------------
# single-process measurement (runs in a child process per size)
# ---------------------------------------------------------------------------


@dataclass
class Expectation:
    sent_at: float
    receivers: int
    got: dict[int, float] = field(default_factory=dict)
    done: Any = None  # trio.Event


class Probe:
    """The ampubsub hooks: discovery per topic, clock updates per receiver."""

    def __init__(self, expected_machines: int, clock: Callable[[], float]) -> None:
        import trio

        self.clock = clock
        self.expected = expected_machines
        self.index: dict[int, int] = {}  # id(topic) -> peer index
        self.discovered: dict[int, set[str]] = defaultdict(set)
        self.complete_at: dict[int, float] = {}
        self.all_discovered = trio.Event()
        self.peers = 0
        self.waiting: dict[tuple[str, int], Expectation] = {}
        self.late = 0

    def add_topic(self, topic: Any, peer: int) -> None:
        self.index[id(topic)] = peer
        self.peers += 1

    @hookimpl
    def ampubsub_machine_discovered(self, topic: Any, remote: Any) -> None:
        peer = self.index.get(id(topic))
        if peer is None:
            return
        seen = self.discovered[peer]
        seen.add(remote.id)
        if len(seen) >= self.expected and peer not in self.complete_at:
            self.complete_at[peer] = self.clock()
            if len(self.complete_at) == self.peers:
                self.all_discovered.set()

    @hookimpl
    def ampubsub_machine_updated(self, topic: Any, remote: Any) -> None:
        now = self.clock()
        exp = self.waiting.get((remote.id, remote.time_sum))
        if exp is None:
            return
        peer = self.index.get(id(topic), -1)
        if peer in exp.got:
            return
        exp.got[peer] = now - exp.sent_at
        if exp.done is not None and len(exp.got) >= exp.receivers:
            exp.done.set()

    def expect(
        self, key: tuple[str, int], sent_at: float, receivers: int
    ) -> Expectation:
        import trio

        exp = Expectation(sent_at, receivers, done=trio.Event())
        self.waiting[key] = exp
        return exp


class RawHandler:
    """TransportHandler of a bare Libp2pTransport: timestamps payloads."""

    def __init__(self, peer: int, waiting: dict[int, Expectation]) -> None:
        self.peer = peer
        self.waiting = waiting

    def on_message(self, sender: str, data: bytes) -> None:
        now = time.monotonic()
        try:
            seq = int(data[4:12])
        except ValueError:
            return
        exp = self.waiting.get(seq)
        if exp is None or self.peer in exp.got:
            return
        exp.got[self.peer] = now - exp.sent_at
        if len(exp.got) >= exp.receivers:
            exp.done.set()

    def on_peer_joined(self, peer_id: str) -> None:
        pass

    def on_peer_left(self, peer_id: str) -> None:
        pass


def counters_sum(topics: list[Any], prefix: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for t in topics:
        for k, v in t.core.counters.items():
            if k.startswith(prefix):
                total[k] += v
    return total


async def single_main(a: argparse.Namespace) -> dict[str, Any]:
    import trio

    from ampubsub_plugin import Libp2pTransport, Topic, hooks
    from asyncmachine import Machine

    quiet_logging()
    if a.debug_log:
        handler = logging.FileHandler(a.debug_log, mode="w")
        handler.setFormatter(
            logging.Formatter("%(relativeCreated)8.0f %(name)s %(message)s")
        )
        logging.getLogger("ampubsub").addHandler(handler)
        logging.getLogger("ampubsub").setLevel(logging.DEBUG)
    n, m_per = a.single, a.machines
    res: dict[str, Any] = {"peers": n, "procs": 1, "machines": m_per, "phase": "start"}
    rng = random.Random(a.seed)
    boots = topology(n, rng)
    res["edges"] = sum(len(b) for b in boots)
    schema = make_schema()
    probe = Probe(m_per * (n - 1), time.monotonic)
    hooks.register(probe, name="network-bench-probe")
    breakdown = Breakdown() if a.breakdown else None
    t_run = time.monotonic()

    def progress(msg: str) -> None:
        res["phase"] = msg
        print(
            f"[{n} peers] {msg} (t={time.monotonic() - t_run:.1f}s)",
            file=sys.stderr,
            flush=True,
        )

    profs: dict[str, cProfile.Profile] = {}

    def profiler(kind: str) -> cProfile.Profile | None:
        if not a.profile:
            return None
        # wall-clock timer (a CPU-time timer costs a syscall per call and
        # distorts); the event loop's epoll wait is left out of the totals
        return profs.setdefault(kind, cProfile.Profile())

    async with trio.open_nursery() as raw_nursery:
        # --- 1. raw gossipsub network (the floor), measured alone first ---------
        progress("raw: start+connect+join")
        rss_base = proc_status_kb("VmRSS")
        raw_waiting: dict[int, Expectation] = {}
        raw = [Libp2pTransport() for _ in range(n)]
        with trio.move_on_after(60 + 2 * n) as scope:
            for i, tr in enumerate(raw):
                await raw_nursery.start(partial(tr.serve, RawHandler(i, raw_waiting)))

            async def raw_connect(i: int) -> None:
                if boots[i]:
                    await raw[i].connect([ad for j in boots[i] for ad in raw[j].addrs])

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(raw_connect, i)
            for tr in raw:
                await tr.join(RAW_TOPIC)
            for tr in raw:
                await tr.wait_mesh(5.0)
        if scope.cancelled_caught:
            raise PhaseTimeout("raw: start+connect+join")
        payload_size = updates_payload_size(m_per)
        res["payload_bytes"] = payload_size
        seq = 0

        def raw_payload(s: int) -> bytes:
            head = b"raw:%08d:" % s
            return head + b"x" * max(0, payload_size - len(head))

        # warm-up: the last host probes until one probe has reached everybody
        progress("raw: warm-up")
        warm_deadline = time.monotonic() + 30
        probes: list[Expectation] = []
        while not any(x.done.is_set() for x in probes):
            if time.monotonic() > warm_deadline:
                best = max(len(x.got) for x in probes)
                raise PhaseTimeout("raw: warm-up", f"best probe reached {best}/{n - 1}")
            seq += 1
            exp = Expectation(time.monotonic(), n - 1, done=trio.Event())
            raw_waiting[seq] = exp
            probes.append(exp)
            await raw[-1].publish(raw_payload(seq))
            with trio.move_on_after(0.5):
                await exp.done.wait()
        res["raw_warmup_probes"] = len(probes)
        await trio.sleep(1.0)
        res["mem_mb_per_peer_raw"] = (proc_status_kb("VmRSS") - rss_base) / 1024 / n

        machines: list[list[Any]] = [[] for _ in range(n)]

        async def ours_event() -> Expectation:
            p = rng.randrange(n)
            mach = machines[p][rng.randrange(m_per)]
            state = rng.choice(STATES)
            sent_at = time.monotonic()
            if mach.is_active(state):
                mach.remove(state)
            else:
                mach.add(state)
            return probe.expect((mach.id, sum(mach.time())), sent_at, n - 1)

        async def raw_event() -> Expectation:
            nonlocal seq
            p = rng.randrange(n)
            seq += 1
            exp = Expectation(time.monotonic(), n - 1, done=trio.Event())
            raw_waiting[seq] = exp
            await raw[p].publish(raw_payload(seq))
            return exp

        makers = {"ours": ours_event, "raw": raw_event}

        async def run_events(
            kinds: list[str], interval: float, tag: str
        ) -> dict[str, Any]:
            """Paced events; each waits for everybody (bounded), all within a budget."""
            exps: dict[str, list[Expectation]] = defaultdict(list)
            cpu: dict[str, list[float]] = defaultdict(list)
            timeouts: Counter[str] = Counter()
            next_at = t0 = time.monotonic()
            for kind in kinds:
                if time.monotonic() - t0 > a.latency_budget:
                    break
                await trio.sleep(max(0.0, next_at - time.monotonic()))
                prof = profiler(f"{kind} ({tag})")
                c0 = time.process_time()
                if prof:
                    prof.enable()
                exp = await makers[kind]()
                with trio.move_on_after(a.event_timeout):
                    await exp.done.wait()
                if prof:
                    prof.disable()
                cpu[kind].append(time.process_time() - c0)
                exps[kind].append(exp)
                if not exp.done.is_set():
                    timeouts[kind] += 1
                next_at = max(next_at + interval, time.monotonic() + 0.05)
            elapsed = time.monotonic() - t0
            await trio.sleep(1.0)  # stragglers still count (they arrived, late)
            out: dict[str, Any] = {
                "elapsed": elapsed,
                "events_per_s": sum(map(len, exps.values())) / elapsed,
            }
            for kind, got in exps.items():
                out[kind] = {
                    "lat": lat_summary(
                        [v for x in got for v in x.got.values()], len(got) * (n - 1)
                    ),
                    "allrecv": lat_summary(
                        [max(x.got.values()) for x in got if x.done.is_set()], len(got)
                    ),
                    "cpu_ms": 1000 * statistics.fmean(cpu[kind]),
                    "timeouts": timeouts[kind],
                    "events": len(got),
                    "budget_cut": len(got) < kinds.count(kind),
                }
            return out

        progress("raw: latency alone")
        alone = await run_events(["raw"] * a.updates, 2.0 / a.rate, "alone")
        res["lat_raw_alone"] = alone["raw"]["lat"]
        res["allrecv_raw_alone"] = alone["raw"]["allrecv"]
        res["cpu_ms_raw_alone"] = alone["raw"]["cpu_ms"]

        # --- 2. ampubsub network: start, join, discover, sync --------------------
        topics: list[Any] = [None] * n
        started = [trio.Event() for _ in range(n)]
        joined_at: list[float | None] = [None] * n

        async def launch(i: int) -> None:
            for j in boots[i]:
                await started[j].wait()
            bootstrap = [addr for j in boots[i] for addr in topics[j].addrs]
            ms = [
                Machine(schema, id=f"p{i}-m{k}", tags=[f"peer:{i}"])
                for k in range(m_per)
            ]
            for mach in ms:
                mach.add("A")
            machines[i] = ms
            topic = Topic(
                TOPIC, transport=Libp2pTransport(), bootstrap=bootstrap, machines=ms
            )
            topics[i] = topic
            probe.add_topic(topic, i)
            topic.start()
            await wait_state(topic, "Started", 20, "ours: start")
            started[i].set()
            await wait_state(topic, "Connected", 30 + n, "ours: connect")
            topic.join()
            await wait_state(topic, "Joined", 30, "ours: join")
            joined_at[i] = time.monotonic()

        progress("ours: start+connect+join")
        rss_before_ours = proc_status_kb("VmRSS")
        t_start = time.monotonic()
        cpu_start = time.process_time()
        prof_disc = profiler("discovery (per second)")
        if prof_disc:
            prof_disc.enable()
        with trio.move_on_after(60 + 2 * n) as scope:
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(launch, i)
        if scope.cancelled_caught:
            missing = [i for i in range(n) if joined_at[i] is None]
            raise PhaseTimeout(
                "ours: start+connect+join", f"not joined: {missing[:10]}"
            )
        last_join = max(t for t in joined_at if t is not None)
        res["join_s"] = last_join - t_start
        progress("ours: discovery")
        with trio.move_on_after(a.discovery_timeout) as scope:
            await probe.all_discovered.wait()
        if scope.cancelled_caught:
            counts = [len(probe.discovered[i]) for i in range(n)]
            raise PhaseTimeout(
                "ours: discovery",
                f"after {a.discovery_timeout:.0f} s, machines seen per peer: "
                f"min {min(counts)} max {max(counts)} of {probe.expected}; "
                "messages sent so far "
                f"{dict(counters_sum(topics, 'out_'))}",
            )
        discovered_at = max(probe.complete_at.values())
        res["discovery_s"] = discovered_at - last_join
        res["discovered_from_start_s"] = discovered_at - t_start
        owners = {mach.id: mach for ms in machines for mach in ms}

        def synced() -> bool:
            for t in topics:
                remotes = t.list_machines(connected=True)
                if len(remotes) < probe.expected:
                    return False
                for r in remotes:
                    if r.time() != owners[r.id].time():
                        return False
            return True

        with trio.move_on_after(30) as scope:
            while not synced():
                await trio.sleep(0.02)
        if scope.cancelled_caught:
            raise PhaseTimeout("ours: sync after discovery")
        t_synced = time.monotonic()
        if prof_disc:
            prof_disc.disable()
        res["synced_from_start_s"] = t_synced - t_start
        res["setup_cpu_s"] = time.process_time() - cpu_start
        rss_ours = proc_status_kb("VmRSS")
        res["mem_mb_per_peer"] = (rss_ours - rss_before_ours) / 1024 / n
        res["discovery_out_by_type"] = dict(counters_sum(topics, "out_"))
        if breakdown:
            res["breakdown_until_synced"] = breakdown.snapshot()
        res["discovery_in_per_peer"] = sum(counters_sum(topics, "in_").values()) / n

        # --- 3. wait until the discovery traffic is processed, then idle --------
        # Quiet: for 2 windows of 1 s, no info/reqinfo went out and each peer
        # received at most about what steady gossip brings (n/15 + 1 per s).
        progress("ours: settle")
        await trio.sleep(a.settle)
        calm = 0
        while calm < 2 and time.monotonic() - t_synced < a.settle + a.quiet_timeout:
            o0, i0 = counters_sum(topics, "out_"), counters_sum(topics, "in_")
            await trio.sleep(1.0)
            o1, i1 = counters_sum(topics, "out_"), counters_sum(topics, "in_")
            busy = (o1 - o0)["out_info"] + (o1 - o0)["out_reqinfo"]
            inbound = sum((i1 - i0).values()) / n
            calm = calm + 1 if busy == 0 and inbound <= n / 15 + 1 else 0
        res["quiet_after_synced_s"] = time.monotonic() - t_synced
        res["quiet"] = calm >= 2

        progress("ours: idle")
        out0, in0 = counters_sum(topics, "out_"), counters_sum(topics, "in_")
        cpu0, w0 = time.process_time(), time.monotonic()
        prof = profiler("idle (per second)")
        if prof:
            prof.enable()
        await trio.sleep(a.idle)
        if prof:
            prof.disable()
        out1, in1 = counters_sum(topics, "out_"), counters_sum(topics, "in_")
        wall = time.monotonic() - w0
        d_out = out1 - out0
        res["idle_s"] = wall
        res["idle_out_per_peer_s"] = sum(d_out.values()) / n / wall
        res["idle_in_per_peer_s"] = sum((in1 - in0).values()) / n / wall
        res["idle_out_by_type"] = dict(d_out)
        res["idle_cpu_cores"] = (time.process_time() - cpu0) / wall

        # --- 4. clock updates, interleaved with raw publishes ----------------------
        progress("latency: ours and raw interleaved")
        both = await run_events(
            ["ours", "raw"] * a.updates, 1.0 / a.rate, "interleaved"
        )
        for kind in ("ours", "raw"):
            part = both.get(kind)
            if part is None:
                continue
            res[f"lat_{kind}"] = part["lat"]
            res[f"allrecv_{kind}"] = part["allrecv"]
            res[f"cpu_ms_{kind}"] = part["cpu_ms"]
            res[f"timeouts_{kind}"] = part["timeouts"]
            res[f"budget_cut_{kind}"] = part["budget_cut"]
        res["events_per_s"] = both["events_per_s"]
        res["rss_peak_mb"] = proc_status_kb("VmHWM") / 1024
        counters = counters_sum(topics, "")
        res["drops"] = {k: v for k, v in counters.items() if k.startswith("drop_")}
        res["ours_out_total"] = dict(counters_sum(topics, "out_"))
        if breakdown:
            res["breakdown_total"] = breakdown.snapshot()
        if profs:
            events = {
                "idle (per second)": max(1, round(a.idle)),
                "discovery (per second)": max(1, round(t_synced - t_start)),
            }
            res["profile"] = {
                kind: Aggregator.summary(prof, events.get(kind, a.updates))
                for kind, prof in profs.items()
            }
        res["phase"] = "done"
        raw_nursery.cancel_scope.cancel()
    return res


def _find_timeout(err: BaseException) -> PhaseTimeout | None:
    """The PhaseTimeout in (nested) exception groups, if any."""
    if isinstance(err, PhaseTimeout):
        return err
    if isinstance(err, BaseExceptionGroup):
        for sub in err.exceptions:
            found = _find_timeout(sub)
            if found is not None:
                return found
    return None


def single_entry(a: argparse.Namespace) -> int:
    import trio

    try:
        res = trio.run(single_main, a)
    except BaseException as err:  # report, never hang
        timeout = _find_timeout(err)
        if timeout is not None:
            res = {
                "peers": a.single,
                "procs": 1,
                "error": str(timeout),
                "phase": timeout.phase,
            }
        else:
            import traceback

            traceback.print_exc(file=sys.stderr)
            res = {
                "peers": a.single,
                "procs": 1,
                "error": f"{type(err).__name__}: {err}",
            }
    sys.stdout.write(RESULT_PREFIX + json.dumps(res) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip the graceful teardown of n hosts (byes cost CPU; not measured)


# ---------------------------------------------------------------------------
# multi-process: a child (peers i with i % procs == k) ...
# ---------------------------------------------------------------------------


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def mp_child_main(a: argparse.Namespace) -> None:
    import trio

    from ampubsub_plugin import Libp2pTransport, Topic, hooks
    from asyncmachine import Machine

    quiet_logging()
    n, m_per, k = a.procs_peers, a.machines, a.mp_child
    schema = make_schema()
    rss_base = proc_status_kb("VmRSS")
    topics: dict[int, Any] = {}
    machines: dict[int, list[Any]] = {}
    local_count = len(range(k, n, a.procs))
    expected = m_per * (n - 1)
    measuring = False

    class MPProbe:
        def __init__(self) -> None:
            self.index: dict[int, int] = {}
            self.seen: dict[int, set[str]] = defaultdict(set)
            self.complete: set[int] = set()

        @hooks.hookimpl
        def ampubsub_machine_discovered(self, topic: Any, remote: Any) -> None:
            peer = self.index.get(id(topic))
            if peer is None:
                return
            s = self.seen[peer]
            s.add(remote.id)
            if len(s) >= expected and peer not in self.complete:
                self.complete.add(peer)
                if len(self.complete) == local_count:
                    emit({"ev": "discovered", "t": time.time()})

        @hooks.hookimpl
        def ampubsub_machine_updated(self, topic: Any, remote: Any) -> None:
            if measuring:
                emit(
                    {
                        "ev": "applied",
                        "id": remote.id,
                        "sum": remote.time_sum,
                        "rx": self.index.get(id(topic), -1),
                        "t": time.time(),
                    }
                )

    probe = MPProbe()
    hooks.register(probe, name="network-bench-mp-probe")

    async def start_peer(i: int, bootstrap: list[str]) -> None:
        try:
            ms = [
                Machine(schema, id=f"p{i}-m{j}", tags=[f"peer:{i}"])
                for j in range(m_per)
            ]
            for mach in ms:
                mach.add("A")
            machines[i] = ms
            topic = Topic(
                TOPIC, transport=Libp2pTransport(), bootstrap=bootstrap, machines=ms
            )
            topics[i] = topic
            probe.index[id(topic)] = i
            topic.start()
            await wait_state(topic, "Started", 20, "mp: start")
            emit({"ev": "started", "i": i, "addrs": topic.addrs})
            await wait_state(topic, "Connected", 60, "mp: connect")
            topic.join()
            await wait_state(topic, "Joined", 30, "mp: join")
            emit({"ev": "joined", "i": i, "t": time.time()})
        except Exception as err:
            emit({"ev": "error", "i": i, "error": str(err)})

    async def watch_sync() -> None:
        initial = None
        while True:
            await trio.sleep(0.05)
            if len(probe.complete) < local_count:
                continue
            if initial is None:
                initial = machines[min(machines)][0].time()
            ok = all(
                r.time() == initial
                for t in topics.values()
                for r in t.list_machines(connected=True)
            )
            if ok:
                emit({"ev": "synced", "t": time.time()})
                return

    def totals() -> dict[str, Any]:
        out = counters_sum(list(topics.values()), "out_")
        inbound = counters_sum(list(topics.values()), "in_")
        seen = [len(t.list_machines()) for t in topics.values()] or [0]
        return {
            "out": sum(out.values()),
            "in": sum(inbound.values()),
            "cpu": time.process_time(),
            "t": time.time(),
            "by_type": dict(out),
            "seen_min": min(seen),
            "seen_max": max(seen),
        }

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_sync)
        emit({"ev": "ready", "k": k})
        while True:
            line = await trio.to_thread.run_sync(
                sys.stdin.readline, abandon_on_cancel=True
            )
            if not line:
                os._exit(0)  # the coordinator is gone
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "start":
                nursery.start_soon(start_peer, cmd["i"], cmd["boot"])
            elif op == "totals":
                emit({"ev": "totals", **totals()})
            elif op == "measure":
                measuring = bool(cmd["on"])
                emit({"ev": "measuring", "on": measuring})
            elif op == "change":
                mach = machines[cmd["i"]][cmd["j"]]
                state = cmd["s"]
                t0 = time.time()
                if mach.is_active(state):
                    mach.remove(state)
                else:
                    mach.add(state)
                emit({"ev": "changed", "id": mach.id, "sum": sum(mach.time()), "t": t0})
            elif op == "stop":
                counters = counters_sum(list(topics.values()), "")
                emit(
                    {
                        "ev": "final",
                        "rss_mb": proc_status_kb("VmRSS") / 1024,
                        "rss_base_mb": rss_base / 1024,
                        "hwm_mb": proc_status_kb("VmHWM") / 1024,
                        "cpu": time.process_time(),
                        "drops": {
                            k2: v
                            for k2, v in counters.items()
                            if k2.startswith("drop_")
                        },
                    }
                )
                os._exit(0)


def mp_child_entry(a: argparse.Namespace) -> int:
    import trio

    try:
        trio.run(mp_child_main, a)
    except BaseException as err:
        import traceback

        traceback.print_exc(file=sys.stderr)
        emit({"ev": "error", "error": f"{type(err).__name__}: {err}"})
    os._exit(1)


# ---------------------------------------------------------------------------
# ... and the coordinator (this process)
# ---------------------------------------------------------------------------


class Children:
    """P child processes; their JSON lines arrive in one queue."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.q: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self.procs: list[subprocess.Popen[str]] = []
        self.finished: set[int] = set()  # children that sent their final report
        self.stderr_tail: list[list[str]] = []
        for k in range(a.procs):
            cmd = [
                sys.executable,
                str(HERE),
                "--_mp-child",
                str(k),
                "--procs",
                str(a.procs),
                "--procs-peers",
                str(a.procs_peers),
                "--machines",
                str(a.machines),
            ]
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            self.procs.append(proc)
            self.stderr_tail.append([])
            threading.Thread(target=self._read, args=(k, proc), daemon=True).start()
            threading.Thread(target=self._read_err, args=(k, proc), daemon=True).start()

    def _read(self, k: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    self.q.put((k, json.loads(line)))
        self.q.put((k, None))

    def _read_err(self, k: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail = self.stderr_tail[k]
            tail.append(line.rstrip())
            del tail[:-20]

    def send(self, k: int, obj: dict[str, Any]) -> None:
        proc = self.procs[k]
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(obj) + "\n")
        proc.stdin.flush()

    def broadcast(self, obj: dict[str, Any]) -> None:
        for k in range(len(self.procs)):
            self.send(k, obj)

    def get(self, deadline: float, phase: str) -> tuple[int, dict[str, Any]]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhaseTimeout(phase)
            try:
                k, msg = self.q.get(timeout=left)
            except queue.Empty:
                raise PhaseTimeout(phase) from None
            if msg is None and k in self.finished:
                continue  # it said its last word and exited, as asked
            break
        if msg is None:
            tail = " | ".join(self.stderr_tail[k][-3:])
            raise RuntimeError(f"{phase}: child {k} exited ({tail})")
        if msg.get("ev") == "error":
            raise RuntimeError(f"{phase}: child {k}: {msg.get('error')}")
        return k, msg

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.wait(5)


def multiproc(a: argparse.Namespace) -> dict[str, Any]:
    n, procs, m_per = a.procs_peers, a.procs, a.machines
    res: dict[str, Any] = {"peers": n, "procs": procs, "machines": m_per}
    rng = random.Random(a.seed + 1)
    boots = topology(n, rng)
    res["edges"] = sum(len(b) for b in boots)
    say = partial(print, file=sys.stderr, flush=True)
    children = Children(a)
    phase = "mp: spawn"
    try:
        deadline = time.monotonic() + 60
        ready = 0
        while ready < procs:
            _, msg = children.get(deadline, phase)
            ready += msg.get("ev") == "ready"
        # --- start peers as soon as their bootstrap peers listen ----------------
        phase = "mp: start+connect+join"
        say(f"[{n} peers / {procs} procs] {phase}")
        t_start = time.time()
        addrs: dict[int, list[str]] = {}
        sent: set[int] = set()
        joined: dict[int, float] = {}
        discovered: dict[int, float] = {}
        synced: dict[int, float] = {}
        deadline = time.monotonic() + 60 + 2 * n

        def launch_ready() -> None:
            for i in range(n):
                if i not in sent and all(j in addrs for j in boots[i]):
                    sent.add(i)
                    children.send(
                        i % procs,
                        {
                            "cmd": "start",
                            "i": i,
                            "boot": [x for j in boots[i] for x in addrs[j]],
                        },
                    )

        def handle(k: int, msg: dict[str, Any]) -> None:
            ev = msg.get("ev")
            if ev == "started":
                addrs[msg["i"]] = msg["addrs"]
                launch_ready()
            elif ev == "joined":
                joined[msg["i"]] = msg["t"]
            elif ev == "discovered":
                discovered[k] = msg["t"]
            elif ev == "synced":
                synced[k] = msg["t"]

        launch_ready()
        while len(joined) < n:
            handle(*children.get(deadline, f"{phase} ({len(joined)}/{n} joined)"))
        last_join = max(joined.values())
        res["join_s"] = last_join - t_start
        phase = "mp: discovery+sync"
        say(f"[{n} peers / {procs} procs] {phase}")
        deadline = time.monotonic() + a.mp_discovery_timeout
        try:
            while len(synced) < procs:
                handle(*children.get(deadline, phase))
        except PhaseTimeout:
            children.broadcast({"cmd": "totals"})
            got: dict[int, dict[str, Any]] = {}
            with contextlib.suppress(PhaseTimeout):
                dl = time.monotonic() + 15
                while len(got) < procs:
                    k, msg = children.get(dl, phase)
                    if msg.get("ev") == "totals":
                        got[k] = msg
            seen = [(x["seen_min"], x["seen_max"]) for x in got.values()]
            sent: Counter[str] = sum(
                (Counter(x["by_type"]) for x in got.values()), Counter()
            )
            raise PhaseTimeout(
                phase,
                f"after {a.mp_discovery_timeout:.0f} s: {len(discovered)}/{procs} "
                f"processes complete; machines seen per peer (min, max) by process "
                f"{seen} of {m_per * (n - 1)}; "
                f"messages sent so far {dict(sent)}",
            ) from None
        res["discovery_s"] = max(discovered.values()) - last_join
        res["discovered_from_start_s"] = max(discovered.values()) - t_start
        res["synced_from_start_s"] = max(synced.values()) - t_start

        # --- idle traffic ----------------------------------------------------
        phase = "mp: settle"
        say(f"[{n} peers / {procs} procs] {phase}")

        def totals() -> list[dict[str, Any]]:
            children.broadcast({"cmd": "totals"})
            got: dict[int, dict[str, Any]] = {}
            dl = time.monotonic() + 10
            while len(got) < procs:
                k, msg = children.get(dl, phase)
                if msg.get("ev") == "totals":
                    got[k] = msg
            return [got[k] for k in range(procs)]

        first = totals()
        res["discovery_out_by_type"] = dict(
            sum((Counter(x["by_type"]) for x in first), Counter())
        )
        res["discovery_in_per_peer"] = sum(x["in"] for x in first) / n
        t_synced = time.monotonic()
        time.sleep(a.settle)
        calm = 0
        while calm < 2 and time.monotonic() - t_synced < a.settle + a.quiet_timeout:
            x0 = totals()
            time.sleep(1.0)
            x1 = totals()
            busy = sum(
                Counter(y["by_type"])["out_info"] + Counter(y["by_type"])["out_reqinfo"]
                for y in x1
            ) - sum(
                Counter(y["by_type"])["out_info"] + Counter(y["by_type"])["out_reqinfo"]
                for y in x0
            )
            inbound = (sum(y["in"] for y in x1) - sum(y["in"] for y in x0)) / n
            calm = calm + 1 if busy == 0 and inbound <= n / 15 + 1 else 0
        res["quiet_after_synced_s"] = time.monotonic() - t_synced
        res["quiet"] = calm >= 2
        phase = "mp: idle"
        say(f"[{n} peers / {procs} procs] {phase}")
        before = totals()
        time.sleep(a.idle)
        after = totals()
        wall = statistics.fmean(x["t"] for x in after) - statistics.fmean(
            x["t"] for x in before
        )
        res["idle_s"] = wall
        res["idle_out_per_peer_s"] = sum(x["out"] for x in after) - sum(
            x["out"] for x in before
        )
        res["idle_out_per_peer_s"] /= n * wall
        by_type: Counter[str] = Counter()
        for x, y in zip(before, after):
            by_type.update(Counter(y["by_type"]) - Counter(x["by_type"]))
        res["idle_out_by_type"] = dict(by_type)
        res["idle_cpu_cores"] = (
            sum(x["cpu"] for x in after) - sum(x["cpu"] for x in before)
        ) / wall

        # --- latency -----------------------------------------------------------
        phase = "mp: latency"
        say(f"[{n} peers / {procs} procs] {phase}")
        children.broadcast({"cmd": "measure", "on": True})
        dl = time.monotonic() + 10
        acks = 0
        while acks < procs:
            acks += children.get(dl, phase)[1].get("ev") == "measuring"
        applied: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
        changes: list[tuple[tuple[str, int], float]] = []
        allrecv: list[float] = []
        timeouts = 0
        interval = 1.0 / a.mp_rate
        next_at = time.monotonic()
        cpu0 = totals()
        t_lat0 = time.monotonic()
        for _ in range(a.updates):
            if time.monotonic() - t_lat0 > a.latency_budget:
                break
            time.sleep(max(0.0, next_at - time.monotonic()))
            p = rng.randrange(n)
            children.send(
                p % procs,
                {
                    "cmd": "change",
                    "i": p,
                    "j": rng.randrange(m_per),
                    "s": rng.choice(STATES),
                },
            )
            key = None
            t0 = 0.0
            dl = time.monotonic() + a.event_timeout
            while True:
                try:
                    k, msg = children.get(dl, phase)
                except PhaseTimeout:
                    timeouts += 1
                    break
                ev = msg.get("ev")
                if ev == "changed":
                    key, t0 = (msg["id"], msg["sum"]), msg["t"]
                    changes.append((key, t0))
                elif ev == "applied":
                    applied[(msg["id"], msg["sum"])].setdefault(msg["rx"], msg["t"])
                if key is not None and len(applied[key]) >= n - 1:
                    allrecv.append(max(applied[key].values()) - t0)
                    break
            next_at = max(next_at + interval, time.monotonic() + 0.05)
        elapsed = time.monotonic() - t_lat0
        # stragglers
        dl = time.monotonic() + 1.0
        with contextlib.suppress(PhaseTimeout):
            while True:
                k, msg = children.get(dl, phase)
                if msg.get("ev") == "applied":
                    applied[(msg["id"], msg["sum"])].setdefault(msg["rx"], msg["t"])
        children.broadcast({"cmd": "measure", "on": False})
        cpu1 = totals()
        lat = [t - t0 for key, t0 in changes for t in applied[key].values()]
        res["lat_ours"] = lat_summary(lat, len(changes) * (n - 1))
        res["allrecv_ours"] = lat_summary(allrecv, len(changes))
        res["timeouts_ours"] = timeouts
        res["events_per_s"] = len(changes) / elapsed
        res["cpu_ms_ours"] = (
            1000
            * (sum(x["cpu"] for x in cpu1) - sum(x["cpu"] for x in cpu0))
            / max(1, a.updates)
        )
        phase = "mp: stop"
        children.broadcast({"cmd": "stop"})
        finals: dict[int, dict[str, Any]] = {}
        dl = time.monotonic() + 20
        while len(finals) < procs:
            k, msg = children.get(dl, phase)
            if msg.get("ev") == "final":
                finals[k] = msg
                children.finished.add(k)
        res["mem_mb_per_peer"] = (
            sum(f["rss_mb"] - f["rss_base_mb"] for f in finals.values()) / n
        )
        res["rss_mb_per_proc"] = [round(finals[k]["rss_mb"], 1) for k in range(procs)]
        drops: Counter[str] = Counter()
        for f in finals.values():
            drops.update(f["drops"])
        res["drops"] = dict(drops)
        res["phase"] = "done"
    except PhaseTimeout as err:
        res["error"] = str(err)
        res["phase"] = err.phase
    except RuntimeError as err:
        res["error"] = str(err)
        res["phase"] = phase
    finally:
        children.kill()
    return res


# ---------------------------------------------------------------------------
# coordinator of the whole run, and output
# ---------------------------------------------------------------------------


def run_single(a: argparse.Namespace, n: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(HERE),
        "--_single",
        str(n),
        "--updates",
        str(a.updates),
        "--rate",
        str(a.rate),
        "--idle",
        str(a.idle),
        "--settle",
        str(a.settle),
        "--seed",
        str(a.seed),
        "--machines",
        str(a.machines),
        "--event-timeout",
        str(a.event_timeout),
        "--quiet-timeout",
        str(a.quiet_timeout),
        "--latency-budget",
        str(a.latency_budget),
        "--discovery-timeout",
        str(a.discovery_timeout),
    ]
    if a.profile:
        cmd.append("--profile")
    if a.breakdown:
        cmd.append("--breakdown")
    if a.debug_log:
        cmd.extend(["--debug-log", f"{a.debug_log}.{n}"])
    budget = (
        2 * (60 + 2 * n)
        + 30
        + 2 * (a.latency_budget + a.event_timeout + 2)
        + a.discovery_timeout
        + 30
        + a.settle
        + a.quiet_timeout
        + a.idle
        + 60
    )
    load = os.getloadavg()[0]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired as err:
        tail = err.stderr or b""
        tail = tail.decode() if isinstance(tail, bytes) else tail
        last = [ln for ln in tail.splitlines() if ln.startswith("[")][-1:]
        return {
            "peers": n,
            "procs": 1,
            "error": f"whole run over {budget:.0f} s; last phase: {last}",
        }
    res: dict[str, Any] | None = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            res = json.loads(line[len(RESULT_PREFIX) :])
    if res is None:
        tail = " | ".join(proc.stderr.splitlines()[-5:])
        res = {
            "peers": n,
            "procs": 1,
            "error": f"no result (exit {proc.returncode}): {tail}",
        }
    if "error" in res:
        res["stderr_tail"] = proc.stderr.splitlines()[-25:]
    res["load_before"] = load
    res["load_after"] = os.getloadavg()[0]
    res["wall_s"] = time.monotonic() - started
    return res


def fmt(v: Any, spec: str = ".0f") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def rows_for(
    results: list[dict[str, Any]],
) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    head1 = [
        "peers x procs",
        "join s (1st start->last joined)",
        "discovery s (last join->all seen)",
        "discovered+synced s (from 1st start)",
        "msgs sent per peer until synced",
        "quiet s after synced",
        "idle msgs/peer/s",
        "idle CPU cores",
        "MB/peer ours (raw)",
        "load 1m",
    ]
    head2 = [
        "peers x procs",
        "updates",
        "ours p50 / p99 ms",
        "raw interleaved p50 / p99 ms",
        "ratio p50 (p99) vs interleaved",
        "raw alone p50 / p99 ms",
        "ratio p50 vs alone",
        "all-recv p50 ms ours / raw / alone",
        "lost ours / raw",
        "CPU ms/msg ours / raw / alone",
    ]
    r1, r2 = [], []
    for r in results:
        tag = f"{r['peers']} x {r.get('procs', 1)}"
        load = (
            f"{r.get('load_before', 0):.1f}->{r.get('load_after', 0):.1f}"
            if "load_before" in r
            else "-"
        )
        if r.get("phase") != "done":
            r1.append(
                [tag, f"FAILED in {r.get('phase')} (see below)"]
                + ["-"] * (len(head1) - 3)
                + [load]
            )
        else:
            raw_mem = r.get("mem_mb_per_peer_raw")
            r1.append(
                [
                    tag,
                    fmt(r.get("join_s"), ".2f"),
                    fmt(r.get("discovery_s"), ".2f"),
                    fmt(r.get("synced_from_start_s"), ".2f"),
                    fmt(
                        sum((r.get("discovery_out_by_type") or {}).values())
                        / r["peers"],
                        ".1f",
                    ),
                    fmt(r.get("quiet_after_synced_s"), ".1f")
                    + ("" if r.get("quiet", True) else " (never quiet)"),
                    fmt(r.get("idle_out_per_peer_s"), ".3f"),
                    fmt(r.get("idle_cpu_cores"), ".2f"),
                    fmt(r.get("mem_mb_per_peer"), ".2f")
                    + (f" ({raw_mem:.2f})" if raw_mem is not None else ""),
                    load,
                ]
            )
        lo, lr, la = (
            r.get("lat_ours") or {},
            r.get("lat_raw") or {},
            r.get("lat_raw_alone") or {},
        )
        if not (lo or la):
            continue

        def pair(d: dict[str, Any]) -> str:
            return f"{fmt(d.get('p50'))} / {fmt(d.get('p99'))}" if d else "-"

        def ratio(x: dict[str, Any], y: dict[str, Any], key: str) -> float | None:
            if x.get(key) and y.get(key):
                return float(x[key]) / float(y[key])
            return None

        rat, rat99, rat_alone = (
            ratio(lo, lr, "p50"),
            ratio(lo, lr, "p99"),
            ratio(lo, la, "p50"),
        )
        events = (lo.get("expected", 0) // max(1, r["peers"] - 1)) if lo else 0
        cut = " (budget cut)" if r.get("budget_cut_ours") else ""
        allrecv = " / ".join(
            fmt((r.get(k) or {}).get("p50"))
            for k in ("allrecv_ours", "allrecv_raw", "allrecv_raw_alone")
        )
        r2.append(
            [
                tag,
                f"{events}{cut}",
                pair(lo),
                pair(lr),
                f"{rat:.2f} ({rat99:.2f})" if rat and rat99 else "-",
                pair(la),
                f"{rat_alone:.2f}" if rat_alone else "-",
                allrecv,
                (f"{lo.get('lost')}/{lo.get('expected')}" if lo else "-")
                + (f" / {lr.get('lost')}/{lr.get('expected')}" if lr else ""),
                " / ".join(
                    fmt(r.get(k))
                    for k in ("cpu_ms_ours", "cpu_ms_raw", "cpu_ms_raw_alone")
                ),
            ]
        )
    return head1, r1, head2, r2


def targets(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        if r.get("procs", 1) != 1:
            continue
        lo, lr = r.get("lat_ours") or {}, r.get("lat_raw") or {}
        la = r.get("lat_raw_alone") or {}
        if lo.get("p50") and lr.get("p50"):
            ratio = lo["p50"] / lr["p50"]
            alone = f", {lo['p50'] / la['p50']:.2f}x raw alone" if la.get("p50") else ""
            verdict = "MET" if ratio <= TARGET_RATIO else "NOT MET"
            out.append(
                f"{r['peers']} peers: ours p50 {lo['p50']:.0f} ms = {ratio:.2f}x raw "
                f"interleaved{alone} (target <= {TARGET_RATIO}x): {verdict}"
            )
        if r["peers"] == 10 and lo.get("p50"):
            ok = lo["p50"] <= TARGET_P50_10
            out.append(
                f"10 peers: ours p50 {lo['p50']:.0f} ms "
                f"(target <= {TARGET_P50_10:.0f} ms): {'MET' if ok else 'NOT MET'}"
            )
        if r["peers"] == 30 and r.get("machines") == 3:
            s = r.get("synced_from_start_s")
            if s is None:
                out.append(
                    "30 peers x 3 machines discovered+synced "
                    f"<= {TARGET_SYNC_30:.0f} s: NOT MET ({r.get('error')})"
                )
            else:
                verdict = "MET" if s <= TARGET_SYNC_30 else "NOT MET"
                out.append(
                    f"30 peers x 3 machines discovered+synced in {s:.2f} s from the "
                    f"first start (target <= {TARGET_SYNC_30:.0f} s): {verdict}"
                )
    return out


def notes(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        tag = f"{r['peers']} x {r.get('procs', 1)}"
        if r.get("phase") != "done":
            out.append(f"{tag}: FAILED: {r.get('error')}")
            continue
        by = ", ".join(
            f"{k[4:]} {v}" for k, v in sorted((r.get("idle_out_by_type") or {}).items())
        )
        idle_s = r.get("idle_s", 0)
        out.append(f"{tag}: idle messages over {idle_s:.1f} s by type: {by or 'none'}")
        disc = ", ".join(
            f"{k[4:]} {v}"
            for k, v in sorted((r.get("discovery_out_by_type") or {}).items())
        )
        out.append(
            f"{tag}: messages sent from start until synced: {disc}; received per peer "
            f"{r.get('discovery_in_per_peer', 0):.0f}"
        )
        if r.get("drops"):
            out.append(f"{tag}: drops {r['drops']}")
        if r.get("rss_mb_per_proc"):
            out.append(f"{tag}: RSS per process MB {r['rss_mb_per_proc']}")
        if r.get("timeouts_ours") or r.get("timeouts_raw"):
            out.append(
                f"{tag}: events not complete within the event timeout: ours "
                f"{r.get('timeouts_ours', 0)}, raw {r.get('timeouts_raw', 0)}"
            )
    return out


def render(results: list[dict[str, Any]], meta: dict[str, Any], form: str) -> None:
    h1, r1, h2, r2 = rows_for(results)
    if form == "markdown":
        for head, rows in ((h1, r1), (h2, r2)):
            print("| " + " | ".join(head) + " |")
            print("|" + "---|" * len(head))
            for row in rows:
                print("| " + " | ".join(row) + " |")
            print()
        for line in targets(results) + notes(results):
            print(f"- {line}")
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=max(160, Console().width))
        for title, head, rows in (
            ("start-up, discovery, idle, memory", h1, r1),
            ("clock-update latency vs raw gossipsub (same run)", h2, r2),
        ):
            table = Table(title=title)
            for col in head:
                table.add_column(col, overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print(table)
        for line in targets(results) + notes(results):
            console.print(f"  {line}", highlight=False)
    when, machine = meta.get("when", ""), meta.get("machine", "")
    print(f"\n{meta.get('command', '')}  ({when}; {machine})")
    for r in results:
        for key in ("breakdown_until_synced", "breakdown_total"):
            b = r.get(key)
            if not b:
                continue
            why = b.pop("why answers", {})
            span = key[10:].replace("_", " ")
            print(f"\n{r['peers']} peers, messages by builder ({span}):")
            for name, (count, size) in sorted(b.items(), key=lambda kv: -kv[1][1]):
                kib, avg = size / 1024, size / count
                print(f"  {name:22s} {count:6d} msgs  {kib:9.1f} KiB  avg {avg:7.0f} B")
            print(f"  answers built because of: {why}")
        for kind, text in (r.get("profile") or {}).items():
            print(f"\ncProfile, {r['peers']} peers, {kind} events:\n{text}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--peers", default="10,20,30", help="sizes in one process (10,20,30)"
    )
    p.add_argument(
        "--machines", type=int, default=3, help="machines exported per peer (3)"
    )
    p.add_argument(
        "--updates", type=int, default=30, help="clock updates per size (30)"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=4.0,
        help="events/s, ours and raw alternating (4: 2 updates/s + 2 raw/s)",
    )
    p.add_argument("--idle", type=float, default=10.0, help="idle window, s (10)")
    p.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="minimum pause after sync, then wait (<= 30 s) until quiet, s",
    )
    p.add_argument(
        "--event-timeout", type=float, default=5.0, help="bound per event, s"
    )
    p.add_argument(
        "--discovery-timeout", type=float, default=120.0, help="bound on discovery, s"
    )
    p.add_argument(
        "--quiet-timeout",
        type=float,
        default=30.0,
        help="bound on waiting for quiet after sync (then measure anyway), s",
    )
    p.add_argument(
        "--latency-budget",
        type=float,
        default=45.0,
        help="bound on each latency phase, s (events left are skipped)",
    )
    p.add_argument(
        "--procs", type=int, default=4, help="processes of the multi-process run"
    )
    p.add_argument(
        "--procs-peers", type=int, default=60, help="peers over --procs processes"
    )
    p.add_argument(
        "--mp-rate", type=float, default=2.0, help="updates/s in the multi-process run"
    )
    p.add_argument(
        "--mp-discovery-timeout",
        type=float,
        default=90.0,
        help="bound on discovery in the multi-process run, s",
    )
    p.add_argument(
        "--no-multiproc", action="store_true", help="skip the multi-process run"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 10 peers, 8 updates, 3 s idle; multi-process 10 peers x 2",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="cProfile discovery, idle and latency phases (single-process sizes)",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="count messages and bytes per protocol builder (diagnostic; costs CPU)",
    )
    p.add_argument(
        "--debug-log",
        help="write ampubsub's debug log of the single-process sizes here "
        "(PATH.<peers>; diagnostic, costs CPU)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--format", choices=("rich", "markdown"), default="rich")
    p.add_argument("--json-out", help="also write the raw results here")
    p.add_argument("--render", help="print the tables of a --json-out file and exit")
    p.add_argument("--_single", dest="single", type=int, help=argparse.SUPPRESS)
    p.add_argument("--_mp-child", dest="mp_child", type=int, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.render:
        data = json.loads(Path(a.render).read_text())
        render(data["results"], data["meta"], a.format)
        return 0
    if a.single is not None:
        return single_entry(a)
    if a.mp_child is not None:
        return mp_child_entry(a)
    if a.quick:
        if a.peers == "10,20,30":
            a.peers = "10"
        if a.updates == 30:
            a.updates = 8
        if a.idle == 10.0:
            a.idle = 3.0
        if a.procs == 4 and a.procs_peers == 60:
            a.procs, a.procs_peers = 2, 10
    sizes = [int(x) for x in a.peers.split(",") if x.strip()]
    if any(s < 2 for s in sizes) or a.updates < 1 or a.machines < 1 or a.rate <= 0:
        p.error("need peers >= 2, updates >= 1, machines >= 1, rate > 0")
    meta = {
        "command": "python "
        + " ".join([os.path.relpath(HERE, Path.cwd()), *(argv or sys.argv[1:])]),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
    }
    results = []
    t0 = time.monotonic()
    for n in sizes:
        results.append(run_single(a, n))
        r = results[-1]
        print(
            f"[{n} peers] finished in {r.get('wall_s', 0):.0f} s"
            + (f": {r['error']}" if "error" in r else ""),
            file=sys.stderr,
            flush=True,
        )
        for line in r.get("stderr_tail", []):
            print(f"    {line}", file=sys.stderr)
    if not a.no_multiproc:
        load = os.getloadavg()[0]
        start = time.monotonic()
        r = multiproc(a)
        r["load_before"], r["load_after"] = load, os.getloadavg()[0]
        r["wall_s"] = time.monotonic() - start
        results.append(r)
        print(
            f"[{a.procs_peers} peers / {a.procs} procs] finished in {r['wall_s']:.0f} s"
            + (f": {r['error']}" if "error" in r else ""),
            file=sys.stderr,
            flush=True,
        )
    meta["total_s"] = time.monotonic() - t0
    if a.json_out:
        Path(a.json_out).write_text(
            json.dumps({"meta": meta, "results": results}, indent=1)
        )
    render(results, meta, a.format)
    print(f"total {meta['total_s']:.0f} s")
    return 0 if all(r.get("phase") == "done" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
