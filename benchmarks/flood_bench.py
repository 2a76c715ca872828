#!/usr/bin/env python
"""Flood benchmark (issue 11): lag and drain under a ~100 msg/s flood over py-libp2p.

Every peer is its own OS process on 127.0.0.1, coordinated over pipes (JSON
lines on stdout, commands on stdin):

* owner: a ``Topic`` exporting machine ``worker``; once a second it toggles
  ``Foo`` and prints the new clock's sum with ``time.time()``;
* ``--watchers`` watchers: a ``Topic`` each (bootstrap: the owner and the
  earlier watchers); each prints when its view of the owner's machine reaches
  a new sum (``ampubsub_machine_updated`` hook, ``time.time()``) and, every
  second, its counters (drops, table sizes, ``out_reqinfo``/``out_requpdates``);
* flooder: a raw ``Libp2pTransport`` connected to the owner and every watcher,
  publishing valid-but-junk protocol messages at ``--rate`` msg/s for
  ``--flood`` s: ``gossip`` naming 50 made-up peers with random sums,
  ``reqinfo []`` (snapshot requests), and ``updates`` with forged clocks of
  the owner's machine (no owner signature), in turn.

With ``--newcomer-at S``, a newcomer process (a watcher that bootstraps from
the last peers *and the flooder*) is started S seconds into the flood phase;
reported: seconds from its ``Topic.start()`` until it shows the owner's
machine at the owner's current clock. Run once with the flood and once with
``--rate 0`` (the flooder connected, silent) for the "a poisoning peer slows
a newcomer by at most 2x" ratio.

Phases: warm-up (until every watcher shows the owner's machine), baseline
(``--baseline`` s), flood (``--flood`` s), after (``--after`` s). Reported per
phase: owner-change -> watcher lag p50/p95/max (all watchers pooled), drops,
table sizes at the flood's end and +30 s / +60 s, request messages per second
per watcher, CPU% of each process, and how many flood messages each watcher
handled (a tracer of its topic machine counts ``Msg*`` mutations by sender)
and when the last one was handled. Every wait is bounded; every process
started is killed at the end.

Usage:
  python benchmarks/flood_bench.py      # 3 watchers, 100 msg/s for 60 s
  python benchmarks/flood_bench.py --rate 200 --flood 30 --json-out /tmp/f.json
  python benchmarks/flood_bench.py --newcomer-at 20            # + a newcomer
  python benchmarks/flood_bench.py --newcomer-at 20 --rate 0 --after 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))

TOPIC = "flood-bench"
STATES = ("Foo", "Bar", "Baz")
TIMEOUT = 30
COUNTER_KEYS = (
    "drop_author_budget",
    "drop_conn_budget",
    "drop_conn_queue",
    "dup_early",
    "unforwarded_budget",
    "inbox_shed",
    "missing_peers",
    "missing_updates",
    "pending_updates",
    "out_reqinfo",
    "out_requpdates",
    "drop_unsigned_relay",
    "drop_missing_author_cap",
    "in_total",
    "out_total",
    "drop_total",
)
TABLES = ("missing_peers", "missing_updates", "pending_updates")
TARGET_LAG = 3.0
TARGET_DRAIN = 60.0


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def quiet_logging() -> None:
    logging.getLogger().setLevel(logging.ERROR)
    lib = logging.getLogger("libp2p")
    lib.addHandler(logging.NullHandler())
    lib.setLevel(logging.CRITICAL)


def stdin_lines() -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            q.put(line.strip())
        q.put("exit")

    threading.Thread(target=read, daemon=True).start()
    return q


# ---------------------------------------------------------------------------
# child roles
# ---------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    from asyncmachine import State

    return {name: State() for name in STATES}


def config(args: argparse.Namespace) -> Any:
    """The honest peers' GossipConfig (``--author-rate``/``--author-burst``)."""
    from ampubsub_plugin.gossip import GossipConfig

    if args.author_rate <= 0:
        return None
    return GossipConfig(author_rate=args.author_rate, author_burst=args.author_burst)


def run_owner(args: argparse.Namespace) -> None:
    from ampubsub_plugin import Libp2pTransport, Topic
    from asyncmachine import Machine

    machine = Machine(schema(), id="worker")
    topic = Topic(
        TOPIC, transport=Libp2pTransport(), machines=[machine], config=config(args)
    )
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    emit({"ev": "ready", "peer": topic.peer_id, "addr": topic.addrs[0]})
    commands = stdin_lines()
    next_at = time.monotonic() + 1.0
    while True:
        try:
            cmd = commands.get(timeout=max(0.0, next_at - time.monotonic()))
        except queue.Empty:
            cmd = ""
        if cmd == "exit":
            break
        if time.monotonic() >= next_at:
            next_at += 1.0
            t = time.time()
            machine.toggle("Foo")
            emit({"ev": "change", "t": t, "sum": sum(machine.time())})
    topic.dispose().wait(TIMEOUT)


def run_watcher(args: argparse.Namespace) -> None:
    from ampubsub_plugin import Libp2pTransport, Topic, hooks
    from ampubsub_plugin.hooks import hookimpl

    owner = args.owner_peer

    class Probe:
        def __init__(self) -> None:
            self.best = -1

        @hookimpl
        def ampubsub_machine_updated(self, topic: Any, remote: Any) -> None:
            if remote.peer_id == owner and remote.id == "worker":
                s = remote.time_sum
                if s > self.best:
                    self.best = s
                    emit({"ev": "seen", "t": time.time(), "sum": s})

        @hookimpl
        def ampubsub_machine_discovered(self, topic: Any, remote: Any) -> None:
            self.ampubsub_machine_updated(topic, remote)

    class BySender:
        """Messages handled by sender (a tracer of the topic machine)."""

        def __init__(self) -> None:
            self.seen: dict[str, list[float]] = {}

        def transition_end(self, tx: Any) -> None:
            sender = tx.mutation.args.get("peer_id")
            if sender and any(s.startswith("Msg") for s in tx.mutation.called):
                row = self.seen.setdefault(sender, [0, 0.0])
                row[0] += 1
                row[1] = time.time()

    hooks.register(Probe(), name="flood-bench-probe")
    by_sender = BySender()
    topic = Topic(
        TOPIC,
        transport=Libp2pTransport(),
        bootstrap=args.bootstrap,
        config=config(args),
    )
    topic.mach.bind_tracer(by_sender)
    emit({"ev": "starting", "t": time.time()})
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    emit({"ev": "connected", "t": time.time()})
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    emit(
        {"ev": "ready", "peer": topic.peer_id, "addr": topic.addrs[0], "t": time.time()}
    )
    commands = stdin_lines()
    while True:
        c = topic.counters
        row = {k: c.get(k, 0) for k in COUNTER_KEYS}
        row["in_total"] = sum(v for k, v in c.items() if k.startswith("in_"))
        row["out_total"] = sum(v for k, v in c.items() if k.startswith("out_"))
        row["drop_total"] = sum(v for k, v in c.items() if k.startswith("drop_"))
        # where a backlog waits (private attributes: a benchmark's diagnostics)
        transport: Any = topic.transport
        row["q_admission"] = transport._admission.queued
        row["q_inbox"] = transport._inbox.backlog
        row["q_machine"] = topic.mach.queue_len
        for _ in range(5):
            try:
                row["by_sender"] = {k: list(v) for k, v in by_sender.seen.items()}
                break
            except RuntimeError:  # changed size while copying
                continue
        emit({"ev": "counters", "t": time.time(), **row})
        try:
            if commands.get(timeout=1.0) == "exit":
                break
        except queue.Empty:
            pass
    topic.dispose().wait(TIMEOUT)


def run_flooder(args: argparse.Namespace) -> None:
    import trio

    from ampubsub_plugin import Libp2pTransport
    from ampubsub_plugin.protocol import GossipMsg, ReqInfoMsg, UpdatesMsg, encode

    victim = args.owner_peer
    ghosts = [f"12D3KooWghost{i:04d}{random.getrandbits(64):016x}" for i in range(500)]
    n_states = len(STATES) + 1  # Exception

    class Deaf:
        def on_message(self, sender: str, data: bytes) -> None:
            pass

        def on_peer_joined(self, peer_id: str) -> None:
            pass

        def on_peer_left(self, peer_id: str) -> None:
            pass

    def junk(i: int) -> bytes:
        kind = i % 3
        if kind == 0:
            names = random.sample(ghosts, 50)
            return encode(GossipMsg({p: {0: random.randint(1, 10**6)} for p in names}))
        if kind == 1:
            return encode(ReqInfoMsg([]))
        ticks = [random.randint(1, 10**9) for _ in range(n_states)]
        return encode(UpdatesMsg({victim: {0: ticks}}))

    async def main() -> None:
        transport = Libp2pTransport()
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.serve, Deaf())
            await transport.connect(args.bootstrap)
            await transport.join(TOPIC)
            await transport.wait_mesh(TIMEOUT)
            emit({"ev": "ready", "peer": transport.peer_id, "addr": transport.addrs[0]})
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if line.strip() != "go":
                nursery.cancel_scope.cancel()
                return
            start = time.monotonic()
            emit({"ev": "flood_start", "t": time.time()})
            sent = 0
            lag_max = 0.0
            while args.rate <= 0:  # connected but silent (--rate 0)
                await trio.sleep(max(0.0, start + args.flood - time.monotonic()))
                if time.monotonic() - start >= args.flood:
                    break
            while args.rate > 0:
                due = start + sent / args.rate
                now = time.monotonic()
                if now - start >= args.flood:
                    break
                if due > now:
                    await trio.sleep(due - now)
                else:
                    lag_max = max(lag_max, now - due)
                await transport.publish(junk(sent))
                sent += 1
            took = time.monotonic() - start
            emit(
                {
                    "ev": "flood_end",
                    "t": time.time(),
                    "sent": sent,
                    "secs": max(took, 1e-9),
                    "behind_max": lag_max,
                }
            )
            await trio.to_thread.run_sync(sys.stdin.readline)
            nursery.cancel_scope.cancel()

    trio.run(main)


# ---------------------------------------------------------------------------
# coordinator
# ---------------------------------------------------------------------------


class Child:
    """A child process; stdout JSON lines are collected with their arrival."""

    #: options every child gets (set by run_bench)
    common: tuple[str, ...] = ()

    def __init__(self, name: str, role: str, *extra: str) -> None:
        self.name = name
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--role", role, *Child.common, *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self.new: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lock = threading.Lock()
        self.stderr_tail: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(ev)
            self.new.put(ev)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_tail = [*self.stderr_tail, line][-30:]

    def wait_for(self, ev: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and self.new.empty()):
                raise RuntimeError(
                    f"{self.name}: no {ev!r} in {timeout} s; stderr: "
                    + "".join(self.stderr_tail)[-2000:]
                )
            try:
                got = self.new.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if got.get("ev") == ev:
                return got

    def send(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def of(self, ev: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e.get("ev") == ev]

    def stop(self) -> None:
        self.send("exit")
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(TIMEOUT)


def cpu_seconds(pid: int) -> float:
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:  # no psutil, or the process is gone: read /proc
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def machine_info() -> dict[str, Any]:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10)
        for line in out.stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load": os.getloadavg()[0]}


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info()
    info["author_rate"] = args.author_rate
    Child.common = (
        (
            "--author-rate",
            str(args.author_rate),
            "--author-burst",
            str(args.author_burst),
        )
        if args.author_rate > 0
        else ()
    )
    children: list[Child] = []
    marks: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}

    def mark(name: str) -> None:
        marks[name] = time.time()
        cpu[name] = {c.name: cpu_seconds(c.proc.pid) for c in children}

    newcomer: Child | None = None
    try:
        owner = Child("owner", "owner")
        children.append(owner)
        ready = owner.wait_for("ready")
        owner_peer, addrs = ready["peer"], [ready["addr"]]
        watchers: list[Child] = []
        for i in range(args.watchers):
            w = Child(
                f"watcher{i}",
                "watcher",
                "--owner-peer",
                owner_peer,
                "--bootstrap",
                *addrs[-4:],
            )
            children.append(w)
            watchers.append(w)
            addrs.append(w.wait_for("ready")["addr"])
        flooder = Child(
            "flooder",
            "flooder",
            "--owner-peer",
            owner_peer,
            "--rate",
            str(args.rate),
            "--flood",
            str(args.flood),
            "--bootstrap",
            *addrs,
        )
        children.append(flooder)
        flooder_addr = flooder.wait_for("ready", 60)["addr"]
        # warm-up: every watcher shows the owner's machine
        end = time.monotonic() + 60
        while not all(w.of("seen") for w in watchers):
            if time.monotonic() > end:
                raise RuntimeError("warm-up: not every watcher saw the owner in 60 s")
            time.sleep(0.2)
        mark("baseline")
        print(f"warm-up done; baseline {args.baseline} s", file=sys.stderr, flush=True)
        time.sleep(args.baseline)
        mark("flood")
        flooder.send("go")
        print(
            f"flood {args.rate} msg/s for {args.flood} s", file=sys.stderr, flush=True
        )
        if args.newcomer_at >= 0:
            time.sleep(args.newcomer_at)
            newcomer = Child(
                "newcomer",
                "watcher",
                "--owner-peer",
                owner_peer,
                "--bootstrap",
                *addrs[-3:],
                *([flooder_addr] if args.newcomer_dials_flooder else []),
            )
            children.append(newcomer)
        fe = flooder.wait_for("flood_end", args.flood + 60)
        mark("after")
        print(
            f"flood done ({fe['sent']} sent); after {args.after} s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(args.after)
        mark("end")
    finally:
        for c in children:
            c.stop()
    info["load_after"] = os.getloadavg()[0]
    res = analyse(args, info, marks, cpu, owner, watchers, flooder)
    if newcomer is not None:
        res["newcomer"] = newcomer_join(owner, newcomer)
        if args.raw:
            res["raw"]["newcomer"] = newcomer.events
    return res


def newcomer_join(owner: Child, newcomer: Child) -> dict[str, Any]:
    """When the newcomer showed the owner's machine, and at the current clock.

    ``caught_up_s``: from its ``Topic.start()`` to the first view whose sum
    is at least the owner's sum at that moment (the owner's current clock);
    ``first_seen_s``: to the first view of the machine at all.
    """
    starting = newcomer.of("starting")
    if not starting:
        return {"caught_up_s": None, "first_seen_s": None}
    t0 = starting[0]["t"]
    changes = owner.of("change")
    seen = newcomer.of("seen")
    caught = None
    for ev in seen:
        current = max((c["sum"] for c in changes if c["t"] <= ev["t"]), default=0)
        if ev["sum"] >= current:
            caught = ev["t"] - t0
            break
    steps = {
        f"{ev}_s": got[0]["t"] - t0
        for ev in ("connected", "ready")
        if (got := newcomer.of(ev)) and "t" in got[0]
    }
    return {
        "caught_up_s": caught,
        "first_seen_s": seen[0]["t"] - t0 if seen else None,
        "views": len(seen),
        **steps,
    }


def analyse(
    args: argparse.Namespace,
    info: dict[str, Any],
    marks: dict[str, float],
    cpu: dict[str, dict[str, float]],
    owner: Child,
    watchers: list[Child],
    flooder: Child,
) -> dict[str, Any]:
    phases = [("baseline", "flood"), ("flood", "after"), ("after", "end")]
    changes = owner.of("change")
    res: dict[str, Any] = {"machine": info, "phases": {}}
    fs, fe = flooder.of("flood_start"), flooder.of("flood_end")
    if fe:
        res["flood_sent"] = fe[0]["sent"]
        res["flood_rate"] = fe[0]["sent"] / fe[0]["secs"]
        res["flood_behind_max"] = fe[0]["behind_max"]
    flood_end_t = fe[0]["t"] if fe else marks["after"]
    res["flood_start_t"] = fs[0]["t"] if fs else marks["flood"]
    for a, b in phases:
        t0, t1 = marks[a], marks[b]
        lags: list[float] = []
        unseen = 0
        for ch in changes:
            if not t0 <= ch["t"] < t1:
                continue
            for w in watchers:
                seen = [e["t"] for e in w.of("seen") if e["sum"] >= ch["sum"]]
                if seen:
                    lags.append(max(0.0, min(seen) - ch["t"]))
                else:
                    unseen += 1
        req_rates, drops = [], 0
        for w in watchers:
            rows = [r for r in w.of("counters") if t0 <= r["t"] <= t1]
            if len(rows) >= 2:
                d = (rows[-1]["out_reqinfo"] + rows[-1]["out_requpdates"]) - (
                    rows[0]["out_reqinfo"] + rows[0]["out_requpdates"]
                )
                req_rates.append(d / (rows[-1]["t"] - rows[0]["t"]))
                drops += rows[-1]["drop_author_budget"] - rows[0]["drop_author_budget"]
        wall = t1 - t0
        cpu_pct = {name: 100 * (cpu[b][name] - cpu[a][name]) / wall for name in cpu[a]}
        res["phases"][a] = {
            "secs": wall,
            "lag_n": len(lags),
            "unseen": unseen,
            "lag_p50": pct(lags, 0.5),
            "lag_p95": pct(lags, 0.95),
            "lag_max": max(lags) if lags else float("nan"),
            "req_per_s_mean": statistics.mean(req_rates) if req_rates else float("nan"),
            "req_per_s_max": max(req_rates) if req_rates else float("nan"),
            "drop_author_budget": drops,
            "cpu_pct": cpu_pct,
        }
    # tables at flood end, +30, +60 (max over watchers of the row nearest)
    tables: dict[str, dict[str, int]] = {}
    for label, off in (("flood_end", 0.0), ("+30s", 30.0), ("+60s", 60.0)):
        want = flood_end_t + off
        agg = {k: 0 for k in TABLES}
        for w in watchers:
            rows = w.of("counters")
            if not rows:
                continue
            row = min(rows, key=lambda r: abs(r["t"] - want))
            for k in TABLES:
                agg[k] = max(agg[k], row[k])
        tables[label] = agg
    res["tables_max_over_watchers"] = tables
    # drained at: the first time after the flood from which all tables stay 0
    drained, last_req = [], []
    for w in watchers:
        rows = [r for r in w.of("counters") if r["t"] >= flood_end_t]
        at = None
        for r in rows:
            if all(r[k] == 0 for k in TABLES):
                if at is None:
                    at = r["t"] - flood_end_t
            else:
                at = None
        drained.append(at)
        prev, last = None, 0.0
        for r in rows:
            n = r["out_reqinfo"] + r["out_requpdates"]
            if prev is not None and n > prev:
                last = r["t"] - flood_end_t
            prev = n
        last_req.append(last)
    res["drained_after_s"] = drained
    res["last_request_after_s"] = last_req
    # requests in the last 30 s of the after phase, per watcher per s
    tail = []
    for w in watchers:
        rows = [
            r for r in w.of("counters") if flood_end_t + 30 <= r["t"] <= marks["end"]
        ]
        if len(rows) >= 2:
            d = (rows[-1]["out_reqinfo"] + rows[-1]["out_requpdates"]) - (
                rows[0]["out_reqinfo"] + rows[0]["out_requpdates"]
            )
            tail.append(d / (rows[-1]["t"] - rows[0]["t"]))
    res["req_per_s_after_30_60"] = statistics.mean(tail) if tail else float("nan")
    res["watcher_totals_end"] = [
        w.of("counters")[-1] for w in watchers if w.of("counters")
    ]
    fpeer = flooder.of("ready")[0]["peer"] if flooder.of("ready") else ""
    handled, last_in = [], []
    for w in watchers:
        rows = w.of("counters")
        got = rows[-1].get("by_sender", {}).get(fpeer, [0, 0.0]) if rows else [0, 0.0]
        handled.append(got[0])
        last_in.append(got[1] - flood_end_t if got[0] else None)
    res["flood_handled_per_watcher"] = handled
    res["queues_max_during_flood_and_after"] = {
        k: max(
            (
                r.get(k, 0)
                for w in watchers
                for r in w.of("counters")
                if r["t"] >= marks["flood"]
            ),
            default=0,
        )
        for k in ("q_admission", "q_inbox", "q_machine")
    }
    res["last_flood_msg_after_s"] = last_in
    res["marks"] = marks
    if args.raw:
        res["raw"] = {c.name: c.events for c in (owner, *watchers, flooder)}
    return res


def render(res: dict[str, Any]) -> str:
    out = []
    m = res["machine"]
    out.append(
        f"machine: {m['cpu']}, {m['cores']} cores, "
        f"load {m['load']:.2f} -> {m['load_after']:.2f}"
    )
    if "flood_sent" in res:
        out.append(
            f"flood: {res['flood_sent']} msgs sent, {res['flood_rate']:.1f} msg/s "
            f"(publisher behind schedule at most {res['flood_behind_max']:.2f} s)"
        )
    out.append(
        "| phase | s | lag p50 s | lag p95 s | lag max s | samples (unseen) | "
        "budget drops | req/s/watcher mean (max) | "
        "CPU% owner | CPU% watchers | CPU% flooder |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, p in res["phases"].items():
        c = p["cpu_pct"]
        ws = "/".join(f"{v:.0f}" for k, v in c.items() if k.startswith("watcher"))
        out.append(
            f"| {name} | {p['secs']:.0f} | {p['lag_p50']:.3f} | {p['lag_p95']:.3f} | "
            f"{p['lag_max']:.3f} | {p['lag_n']} ({p['unseen']}) | "
            f"{p['drop_author_budget']} | "
            f"{p['req_per_s_mean']:.3f} ({p['req_per_s_max']:.3f}) | "
            f"{c.get('owner', 0):.0f} | "
            f"{ws} | {c.get('flooder', 0):.0f} |"
        )
    out.append(
        f"flood msgs handled per watcher (passed budget and decode): "
        f"{res['flood_handled_per_watcher']}; last one handled at flood end + "
        + ", ".join(
            f"{x:.1f}" if x is not None else "-" for x in res["last_flood_msg_after_s"]
        )
        + " s"
    )
    out.append(
        "queues, max over watchers from the flood on: "
        + ", ".join(
            f"{k} {v}" for k, v in res["queues_max_during_flood_and_after"].items()
        )
    )
    out.append(
        "tables (max over watchers: missing_peers / missing_updates / pending_updates):"
    )
    for label, t in res["tables_max_over_watchers"].items():
        out.append(f"  {label}: " + " / ".join(str(t[k]) for k in TABLES))

    def secs(xs: list[float | None]) -> str:
        return ", ".join(f"{x:.1f}" if x is not None else "never" for x in xs)

    out.append(
        "tables 0 for good at flood end + (s, per watcher): "
        + secs(res["drained_after_s"])
    )
    out.append(
        "last request at flood end + (s, per watcher): "
        + secs(res["last_request_after_s"])
    )
    out.append(
        f"requests/s/watcher from +30 s to +60 s: {res['req_per_s_after_30_60']:.3f}"
    )
    shed = {
        k: sum(r.get(k, 0) for r in res["watcher_totals_end"])
        for k in (
            "drop_author_budget",
            "drop_conn_budget",
            "drop_conn_queue",
            "dup_early",
            "unforwarded_budget",
            "inbox_shed",
        )
    }
    out.append(
        "shed, sum over watchers at the end: "
        + ", ".join(f"{k} {v}" for k, v in shed.items())
    )
    if "newcomer" in res:
        n = res["newcomer"]

        def opt(x: float | None) -> str:
            return "never" if x is None else f"{x:.2f} s"

        out.append(
            f"newcomer: caught up with the owner's current clock after "
            f"{opt(n['caught_up_s'])} (first view {opt(n['first_seen_s'])})"
        )
    lag_ok = (
        res["phases"]["flood"]["lag_max"] <= TARGET_LAG
        and res["phases"]["flood"]["unseen"] == 0
    )
    drain_ok = all(d is not None and d <= TARGET_DRAIN for d in res["drained_after_s"])
    req_ok = all(x <= TARGET_DRAIN for x in res["last_request_after_s"])
    out.append(
        f"targets: lag <= {TARGET_LAG} s during flood: "
        f"{'met' if lag_ok else 'MISSED'}; "
        f"tables drained within {TARGET_DRAIN:.0f} s: "
        f"{'met' if drain_ok else 'MISSED'}; "
        f"requests idle within {TARGET_DRAIN:.0f} s: {'met' if req_ok else 'MISSED'}"
    )
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--role", choices=("bench", "owner", "watcher", "flooder"), default="bench"
    )
    ap.add_argument("--watchers", type=int, default=3)
    ap.add_argument("--rate", type=float, default=100.0, help="flood msg/s")
    ap.add_argument("--flood", type=float, default=60.0, help="flood seconds")
    ap.add_argument("--baseline", type=float, default=10.0)
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument(
        "--newcomer-at",
        type=float,
        default=-1.0,
        help="start a newcomer this many s into the flood (default: none)",
    )
    ap.add_argument("--json-out", default="")
    ap.add_argument("--raw", action="store_true", help="keep every event in --json-out")
    ap.add_argument(
        "--newcomer-honest-only",
        dest="newcomer_dials_flooder",
        action="store_false",
        help="the newcomer bootstraps from honest peers only (default: +flooder)",
    )
    ap.add_argument(
        "--author-rate",
        type=float,
        default=0.0,
        help="honest peers' GossipConfig.author_rate (default: the library's)",
    )
    ap.add_argument("--author-burst", type=int, default=60)
    ap.add_argument("--owner-peer", default="")
    ap.add_argument("--bootstrap", nargs="*", default=[])
    args = ap.parse_args()
    quiet_logging()
    if args.role == "owner":
        run_owner(args)
        return
    if args.role == "watcher":
        run_watcher(args)
        return
    if args.role == "flooder":
        run_flooder(args)
        return
    results = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
        res = run_bench(args)
        results.append(res)
        print(render(res), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
