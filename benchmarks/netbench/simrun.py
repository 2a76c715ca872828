"""The simulation mode of the CLI: one child process per (size, start), a table.

Each run gets a fresh process so its CPU seconds and peak RSS are its own;
the child prints one ``RESULT`` JSON line (the same convention as the
single-process network runs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from .common import HERE, RESULT_PREFIX
from .growth import fitted_exponent, pairwise_exponents
from .report import fmt
from .sim import STARTS, SimSettings, simulate

#: figures whose growth with N is reported, and where they are in a result
GROWTH_FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sync s", ("sync_s",)),
    ("sync s after last join", ("sync_after_last_join_s",)),
    ("tx msgs/peer until synced", ("until_synced", "tx_msgs_per_peer")),
    ("tx bytes/peer until synced", ("until_synced", "tx_bytes_per_peer")),
    ("rx msgs/peer until synced", ("until_synced", "rx_msgs_per_peer")),
    ("idle rx msgs/peer/s @15s", ("idle_15s", "rx_msgs_per_peer_s")),
    ("idle rx msgs/peer/s after sync", ("idle_after_sync", "rx_msgs_per_peer_s")),
    ("CPU s", ("cpu_s",)),
    ("max RSS MB", ("max_rss_mb",)),
)


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simulation (virtual time, sans-IO core)")
    g.add_argument(
        "--sim",
        metavar="SIZES",
        help="run the simulation instead of the network runs, at these peer "
        "counts (e.g. 100,300,1000); --machines applies",
    )
    g.add_argument(
        "--sim-starts",
        default=",".join(STARTS),
        help="start patterns: staggered,simultaneous (both)",
    )
    defaults = SimSettings(peers=2)
    g.add_argument(
        "--stagger",
        type=float,
        default=defaults.stagger,
        help=f"s between joins when staggered ({defaults.stagger})",
    )
    g.add_argument(
        "--latency",
        type=float,
        default=defaults.latency,
        help=f"delivery latency, s ({defaults.latency})",
    )
    g.add_argument(
        "--jitter",
        type=float,
        default=defaults.jitter,
        help=f"uniform extra latency per publish, s ({defaults.jitter})",
    )
    g.add_argument(
        "--rx-cost",
        type=float,
        default=defaults.rx_cost,
        help=f"receiver's processing time per reception, s ({defaults.rx_cost})",
    )
    g.add_argument(
        "--tx-cost",
        type=float,
        default=defaults.tx_cost,
        help=f"publisher's processing time per message, s ({defaults.tx_cost})",
    )
    g.add_argument(
        "--cpus",
        type=int,
        default=defaults.cpus,
        help="processors the peers share (peer i on i %% K); 0: one per peer (0)",
    )
    g.add_argument(
        "--sim-loss",
        type=float,
        default=defaults.loss,
        help="each delivery of a publish to one receiver is lost with this "
        "probability (pulls are never lost)",
    )
    g.add_argument(
        "--sim-broadcast",
        action="store_true",
        help="newcomers get their snapshot, and peers the introductions they "
        "miss, broadcast instead of pulled from one neighbour",
    )
    g.add_argument(
        "--idle-at",
        type=float,
        default=defaults.idle_at,
        help=f"idle window starts after the last join, s ({defaults.idle_at})",
    )
    g.add_argument(
        "--sim-idle",
        type=float,
        default=defaults.idle_window,
        help=f"length of each idle window, virtual s ({defaults.idle_window})",
    )
    g.add_argument(
        "--check-every",
        type=float,
        default=defaults.check_every,
        help=f"sync check period, virtual s: the resolution of 'sync s' "
        f"({defaults.check_every})",
    )
    g.add_argument(
        "--horizon",
        type=float,
        default=defaults.horizon,
        help=f"stop a run at this virtual time, s ({defaults.horizon:.0f})",
    )
    g.add_argument(
        "--cpu-budget",
        type=float,
        default=defaults.cpu_budget,
        help=f"stop a run after this much CPU, s ({defaults.cpu_budget:.0f})",
    )
    g.add_argument(
        "--wall-bound",
        type=float,
        default=3600.0,
        help="kill a simulation child after this much wall time, s; a loaded "
        "machine gives it a fraction of a core (3600)",
    )
    g.add_argument(
        "--json",
        action="store_true",
        help="print the results as one JSON document on stdout (no tables)",
    )
    g.add_argument("--_sim-child", dest="sim_child", help=argparse.SUPPRESS)


def settings_from(a: argparse.Namespace, peers: int, start: str) -> SimSettings:
    return SimSettings(
        peers=peers,
        machines=a.machines,
        start=start,
        stagger=a.stagger,
        latency=a.latency,
        jitter=a.jitter,
        rx_cost=a.rx_cost,
        tx_cost=a.tx_cost,
        cpus=a.cpus,
        pull=not a.sim_broadcast,
        loss=a.sim_loss,
        idle_at=a.idle_at,
        idle_window=a.sim_idle,
        check_every=a.check_every,
        horizon=a.horizon,
        cpu_budget=a.cpu_budget,
        seed=a.seed,
    )


def sim_child_entry(spec: str) -> int:
    """Run one simulation from its JSON settings; print its RESULT line."""
    known = {f.name for f in fields(SimSettings)}
    raw = json.loads(spec)
    unknown = set(raw) - known
    if unknown:
        raise SystemExit(f"unknown simulation settings: {sorted(unknown)}")
    res = simulate(SimSettings(**raw))
    sys.stdout.write(RESULT_PREFIX + json.dumps(res) + "\n")
    return 0


def run_child(settings: SimSettings, wall_bound: float) -> dict[str, Any]:
    """One simulation in a fresh process: its CPU budget, and ``wall_bound``."""
    settings.validate()
    cmd = [sys.executable, str(HERE), "--_sim-child", json.dumps(asdict(settings))]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=wall_bound,
        )
    except subprocess.TimeoutExpired:
        return {
            "mode": "sim",
            "peers": settings.peers,
            "start": settings.start,
            "phase": "timeout",
            "error": f"child exceeded the wall bound ({wall_bound:.0f} s)",
        }
    res: dict[str, Any] | None = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            res = json.loads(line[len(RESULT_PREFIX) :])
    if res is None:
        tail = " | ".join(proc.stderr.splitlines()[-5:])
        return {
            "mode": "sim",
            "peers": settings.peers,
            "start": settings.start,
            "phase": "crashed",
            "error": f"exit {proc.returncode}: {tail}",
        }
    res["wall_s"] = time.monotonic() - started
    return res


def _dig(r: dict[str, Any], path: tuple[str, ...]) -> float | None:
    v: Any = r
    for key in path:
        if not isinstance(v, dict) or key not in v:
            return None
        v = v[key]
    return float(v) if isinstance(v, int | float) else None


def growth(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per start pattern and figure: exponents between sizes, and the fit."""
    out: dict[str, dict[str, Any]] = {}
    for start in sorted({r["start"] for r in results}):
        rows = sorted(
            (r for r in results if r["start"] == start and r.get("synced")),
            key=lambda r: r["peers"],
        )
        if len(rows) < 2:
            continue
        sizes = [float(r["peers"]) for r in rows]
        per: dict[str, Any] = {"sizes": [r["peers"] for r in rows]}
        for name, path in GROWTH_FIGURES:
            values = [_dig(r, path) for r in rows]
            per[name] = {
                "pairwise": pairwise_exponents(sizes, values),
                "fit": fitted_exponent(sizes, values),
            }
        out[start] = per
    return out


def _row(r: dict[str, Any]) -> list[str]:
    u = r.get("until_synced") or {}
    i15 = r.get("idle_15s") or {}
    ias = r.get("idle_after_sync") or {}
    return [
        f"{r['peers']} x {r.get('machines', '?')}",
        r["start"],
        "yes" if r.get("synced") else f"NO ({r.get('error', r.get('phase'))})",
        fmt(r.get("sync_s"), ".2f"),
        fmt(r.get("sync_after_last_join_s"), ".2f"),
        fmt(u.get("tx_msgs_per_peer"), ".2f"),
        fmt(u.get("tx_bytes_per_peer"), ",.0f"),
        fmt(u.get("pulled_msgs_per_peer"), ".2f"),
        fmt(u.get("rx_msgs_per_peer"), ".0f"),
        fmt(i15.get("rx_msgs_per_peer_s"), ".2f"),
        fmt(i15.get("tx_msgs_per_peer_s"), ".3f"),
        fmt(ias.get("rx_msgs_per_peer_s"), ".2f"),
        fmt((r.get("inbox_wait_s") or {}).get("max"), ".2f"),
        fmt((r.get("total") or {}).get("lost"), ",d"),
        fmt(r.get("cpu_s"), ".1f"),
        fmt(r.get("max_rss_mb"), ".0f"),
    ]


SIM_HEAD = [
    "peers x machines",
    "start",
    "synced",
    "sync s (virtual)",
    "sync s after last join",
    "msgs sent/peer until synced",
    "bytes sent/peer until synced",
    "msgs pulled/peer until synced",
    "msgs recv/peer until synced",
    "idle recv msgs/peer/s @15 s",
    "idle sent msgs/peer/s @15 s",
    "idle recv msgs/peer/s after sync",
    "max inbox wait s",
    "deliveries lost",
    "CPU s",
    "max RSS MB",
]


def render_sim(doc: dict[str, Any], form: str) -> None:
    rows = [_row(r) for r in doc["results"]]
    grow = doc.get("growth", {})
    ghead = ["start", "figure", "pairwise exponents", "fit"]
    grows = [
        [
            start,
            name,
            ", ".join(fmt(x, ".2f") for x in per[name]["pairwise"]),
            fmt(per[name]["fit"], ".2f"),
        ]
        for start, per in grow.items()
        for name, _ in GROWTH_FIGURES
    ]
    if form == "markdown":
        for head, body in ((SIM_HEAD, rows), (ghead, grows)):
            if not body:
                continue
            print("| " + " | ".join(head) + " |")
            print("|" + "---|" * len(head))
            for row in body:
                print("| " + " | ".join(row) + " |")
            print()
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=max(160, Console().width))
        for title, head, body in (
            ("simulation, virtual time", SIM_HEAD, rows),
            ("growth exponents (log-log slope over peers)", ghead, grows),
        ):
            if not body:
                continue
            table = Table(title=title)
            for col in head:
                table.add_column(col, overflow="fold")
            for row in body:
                table.add_row(*row)
            console.print(table)
    meta = doc.get("meta", {})
    print(f"\n{meta.get('command', '')}  ({meta.get('when')}; {meta.get('machine')})")


def run_sims(
    a: argparse.Namespace, meta: dict[str, Any], partial_out: str | None = None
) -> dict[str, Any]:
    try:
        sizes = [int(x) for x in a.sim.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(
            f"--sim takes peer counts like 100,300: got {a.sim!r}"
        ) from None
    starts = [x.strip() for x in a.sim_starts.split(",") if x.strip()]
    if a.wall_bound <= 0:
        raise SystemExit(f"--wall-bound must be > 0, got {a.wall_bound}")
    results: list[dict[str, Any]] = []
    doc = {"meta": meta, "results": results, "growth": {}}
    for n in sizes:  # size-major: every start pattern of a size before the next
        for start in starts:
            settings = settings_from(a, n, start)
            try:
                settings.validate()
            except ValueError as err:
                raise SystemExit(f"bad simulation setting: {err}") from None
            print(f"[sim {n} x {a.machines}, {start}] running", file=sys.stderr)
            r = run_child(settings, a.wall_bound)
            print(
                f"[sim {n} x {a.machines}, {start}] {r.get('phase')}: "
                f"CPU {fmt(r.get('cpu_s'), '.1f')} s, "
                f"RSS {fmt(r.get('max_rss_mb'), '.0f')} MB"
                + (f" ({r['error']})" if "error" in r else ""),
                file=sys.stderr,
                flush=True,
            )
            results.append(r)
            doc["growth"] = growth(results)
            if partial_out is not None:  # what finished survives an interrupted run
                Path(partial_out).write_text(json.dumps(doc, indent=1))
    return doc
