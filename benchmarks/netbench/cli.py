"""Command line of ``benchmarks/network_bench.py``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .common import load_average, run_meta
from .mp_child import mp_child_entry
from .multiproc import multiproc
from .report import render
from .simrun import add_sim_arguments, render_sim, run_sims, sim_child_entry
from .single import run_single, single_entry

#: clock updates per size in one process. Each update's receptions move
#: together, so the p50 rests on about this many independent draws: at 30
#: the ratio to raw moved by 0.3x between runs of the same code; at 120 by
#: 0.1-0.15x (RESULTS.md, "Flushes that found nothing due").
UPDATES = 120


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Network benchmark: ampubsub over py-libp2p on 127.0.0.1, "
        "next to raw gossipsub."
    )
    p.add_argument(
        "--peers", default="10,20,30", help="sizes in one process (10,20,30)"
    )
    p.add_argument(
        "--machines", type=int, default=3, help="machines exported per peer (3)"
    )
    p.add_argument(
        "--updates",
        type=int,
        default=UPDATES,
        help=f"clock updates per size ({UPDATES}: fewer make the p50 ratio noisy)",
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
        default=150.0,
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
        "--mp-progress",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="multi-process run: print each process's discovery progress this often "
        "(machines seen per peer, lag, requests; diagnostic, 0 = off)",
    )
    p.add_argument(
        "--mp-profile",
        metavar="DIR",
        default="",
        help="multi-process run: cProfile each process, stats to DIR/proc-K.prof "
        "(diagnostic; slows every process down)",
    )
    p.add_argument(
        "--mp-timeline",
        metavar="DIR",
        default="",
        help="multi-process run: when each peer joined, met a neighbour, said "
        "hello, pulled, settled and saw everyone, and every direct request "
        "timed at both ends, to DIR/proc-K.json (diagnostic: it samples "
        "every peer every 0.1 s, which at 100 peers over 5 processes costs "
        "about a quarter more CPU and slows the sync, so take no target "
        "figures with it; print with python benchmarks/netbench/timeline.py DIR)",
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
        "--trace-latency",
        action="store_true",
        help="single-process sizes: where an update's time goes (the owner's "
        "steps, publish to arrival, to the handler, to shown; ours next to "
        "raw); diagnostic, costs CPU",
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
    p.add_argument(
        "--raw-bound",
        type=float,
        default=120.0,
        help="multi-process: bound on the raw all-to-all baseline, s (120)",
    )
    p.add_argument(
        "--raw-spread",
        type=float,
        default=0.0,
        help="multi-process: spread the raw publishes uniformly over this many "
        "s (0: all at once)",
    )
    p.add_argument(
        "--no-raw",
        action="store_true",
        help="multi-process: skip the raw all-to-all baseline",
    )
    p.add_argument(
        "--loss-bound",
        type=float,
        default=30.0,
        help="multi-process: every owner updates once; receptions missing "
        "after this many s are lost (30)",
    )
    p.add_argument(
        "--connect-attempts",
        type=int,
        default=5,
        help="multi-process: Topic(connect_attempts=...) of each peer; raise it "
        "when a loaded machine times dials out (5, the Topic's default)",
    )
    p.add_argument(
        "--no-single",
        action="store_true",
        help="skip the single-process sizes (--peers); multi-process run only",
    )
    add_sim_arguments(p)
    a = p.parse_args(argv)
    if a.render:
        data = json.loads(Path(a.render).read_text())
        if "growth" in data:
            render_sim(data, a.format)
        else:
            render(data["results"], data["meta"], a.format)
        return 0
    if a.single is not None:
        return single_entry(a)
    if a.mp_child is not None:
        return mp_child_entry(a)
    if a.sim_child is not None:
        return sim_child_entry(a.sim_child)
    if a.machines < 1:
        p.error(f"--machines must be >= 1, got {a.machines}")
    if a.sim:
        meta = run_meta(argv)
        t0 = time.monotonic()
        doc = run_sims(a, meta, a.json_out)
        meta["total_s"] = time.monotonic() - t0
        meta["load_after"] = load_average()
        if a.json_out:
            Path(a.json_out).write_text(json.dumps(doc, indent=1))
        if a.json:
            print(json.dumps(doc, indent=1))
        else:
            render_sim(doc, a.format)
        return 0 if all(r.get("phase") == "done" for r in doc["results"]) else 1
    if a.quick:
        if a.peers == "10,20,30":
            a.peers = "10"
        if a.updates == UPDATES:
            a.updates = 8
        if a.idle == 10.0:
            a.idle = 3.0
        if a.procs == 4 and a.procs_peers == 60:
            a.procs, a.procs_peers = 2, 10
    sizes = [int(x) for x in a.peers.split(",") if x.strip()]
    if any(s < 2 for s in sizes) or a.updates < 1 or a.machines < 1 or a.rate <= 0:
        p.error("need peers >= 2, updates >= 1, machines >= 1, rate > 0")
    meta = run_meta(argv)
    results = []
    t0 = time.monotonic()
    for n in [] if a.no_single else sizes:
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
    meta["load_after"] = load_average()
    doc = {"meta": meta, "results": results}
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(doc, indent=1))
    if a.json:
        print(json.dumps(doc, indent=1))
    else:
        render(results, meta, a.format)
        print(f"total {meta['total_s']:.0f} s")
    return 0 if all(r.get("phase") == "done" for r in results) else 1
