#!/usr/bin/env python
"""Min / median / max over runs of ``flood_bench.py --json-out`` files.

Usage:
  python benchmarks/flood_summary.py /tmp/with1.json /tmp/with2.json ...
  python benchmarks/flood_summary.py --newcomer-ratio FLOOD.json... -- QUIET.json...
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from typing import Any


def load(paths: list[str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for path in paths:
        with open(path) as f:
            runs.extend(json.load(f))
    return runs


def mmm(values: list[float | None], fmt: str = "{:.3f}") -> str:
    real = [v for v in values if v is not None and not math.isnan(v)]
    missing = len(values) - len(real)
    if not real:
        return "never" if missing else "-"
    text = " / ".join(
        fmt.format(v) for v in (min(real), statistics.median(real), max(real))
    )
    return text + (f" ({missing} never)" if missing else "")


def worst(values: list[float | None]) -> float | None:
    """The slowest watcher of a run (None when one never got there)."""
    if any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def summary(runs: list[dict[str, Any]]) -> str:
    rows = []
    for phase in ("baseline", "flood", "after"):
        ps = [r["phases"][phase] for r in runs]
        for key in ("lag_p50", "lag_p95", "lag_max"):
            rows.append((f"{phase}: {key} s", mmm([p[key] for p in ps])))
        rows.append((f"{phase}: unseen changes", mmm([p["unseen"] for p in ps], "{}")))
        rows.append(
            (
                f"{phase}: requests/s per watcher (mean)",
                mmm([p["req_per_s_mean"] for p in ps]),
            )
        )
        for who in ("owner", "flooder"):
            rows.append(
                (
                    f"{phase}: CPU % {who}",
                    mmm([p["cpu_pct"].get(who, math.nan) for p in ps], "{:.0f}"),
                )
            )
        rows.append(
            (
                f"{phase}: CPU % per watcher (mean)",
                mmm(
                    [
                        statistics.mean(
                            v for k, v in p["cpu_pct"].items() if k.startswith("watch")
                        )
                        for p in ps
                    ],
                    "{:.0f}",
                ),
            )
        )
    rows.append(
        (
            "tables 0 for good, s after flood end (slowest watcher)",
            mmm([worst(r["drained_after_s"]) for r in runs], "{:.1f}"),
        )
    )
    rows.append(
        (
            "last request, s after flood end (slowest watcher)",
            mmm([max(r["last_request_after_s"]) for r in runs], "{:.1f}"),
        )
    )
    rows.append(
        (
            "requests/s per watcher, flood end +30..+60 s",
            mmm([r["req_per_s_after_30_60"] for r in runs]),
        )
    )
    rows.append(
        (
            "flood msgs handled per watcher (min over watchers)",
            mmm([min(r["flood_handled_per_watcher"]) for r in runs], "{}"),
        )
    )
    rows.append(
        (
            "last flood msg handled, s after flood end (max)",
            mmm(
                [
                    max(
                        (x for x in r["last_flood_msg_after_s"] if x is not None),
                        default=None,
                    )
                    for r in runs
                ],
                "{:.1f}",
            ),
        )
    )
    for key in (
        "drop_author_budget",
        "drop_conn_budget",
        "drop_conn_queue",
        "dup_early",
        "unforwarded_budget",
        "inbox_shed",
    ):
        rows.append(
            (
                f"{key}, sum over watchers",
                mmm(
                    [sum(w.get(key, 0) for w in r["watcher_totals_end"]) for r in runs],
                    "{}",
                ),
            )
        )
    if all("newcomer" in r for r in runs):
        rows.append(
            (
                "newcomer caught up, s",
                mmm([r["newcomer"]["caught_up_s"] for r in runs], "{:.2f}"),
            )
        )
    loads = ", ".join(
        f"{r['machine']['load']:.2f} -> {r['machine']['load_after']:.2f}" for r in runs
    )
    out = [f"runs: {len(runs)}; load (1 min) before -> after: {loads}", ""]
    out.append("| figure | min / median / max |")
    out.append("|---|---|")
    out.extend(f"| {name} | {value} |" for name, value in rows)
    return "\n".join(out)


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--newcomer-ratio":
        split = args.index("--")
        flood, quiet = load(args[1:split]), load(args[split + 1 :])
        f = [r["newcomer"]["caught_up_s"] for r in flood]
        q = [r["newcomer"]["caught_up_s"] for r in quiet]
        print(f"with flood: {mmm(f, '{:.2f}')} s ({len(f)} runs)")
        print(f"without:    {mmm(q, '{:.2f}')} s ({len(q)} runs)")
        fm = [v for v in f if v is not None]
        qm = [v for v in q if v is not None]
        if fm and qm:
            print(
                "ratio of medians: "
                f"{statistics.median(fm) / statistics.median(qm):.2f}; "
                f"worst with flood / best without: {max(fm) / min(qm):.2f}"
            )
        return
    print(summary(load(args)))


if __name__ == "__main__":
    main()
