"""One size in one child process: ampubsub and raw gossipsub side by side."""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from functools import partial
from typing import Any

from .common import (
    HERE,
    RAW_TOPIC,
    RESULT_PREFIX,
    STATES,
    TOPIC,
    PhaseTimeout,
    lat_summary,
    make_schema,
    proc_status_kb,
    quiet_logging,
    topology,
    updates_payload_size,
    wait_state,
)
from .latency import LatencyTrace
from .metrics import Aggregator, Breakdown, Expectation, Probe, counters_sum
from .raw import RawHandler


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
    trace = LatencyTrace() if a.trace_latency else None
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
        if trace:
            res["latency_trace"] = trace.summary()
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
    if a.trace_latency:
        cmd.append("--trace-latency")
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
        err_out = err.stderr or b""
        text = err_out.decode() if isinstance(err_out, bytes) else err_out
        last = [ln for ln in text.splitlines() if ln.startswith("[")][-1:]
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
