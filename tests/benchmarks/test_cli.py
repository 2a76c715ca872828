"""The command line the lead scripts against: --sim with --json, and refusals."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import BENCHMARKS

SCRIPT = str(BENCHMARKS / "network_bench.py")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_sim_json_has_a_result_per_size_and_start_and_growth() -> None:
    proc = _run(
        "--sim", "8,16", "--machines", "2", "--idle-at", "3", "--sim-idle", "2",
        "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    got = sorted((r["start"], r["peers"]) for r in doc["results"])
    assert got == [
        ("simultaneous", 8),
        ("simultaneous", 16),
        ("staggered", 8),
        ("staggered", 16),
    ]
    assert all(r["phase"] == "done" for r in doc["results"])
    assert all(r["max_rss_mb"] > 0 and r["cpu_s"] > 0 for r in doc["results"])
    for start in ("staggered", "simultaneous"):
        fit = doc["growth"][start]["rx msgs/peer until synced"]["fit"]
        assert fit is not None
    assert "load_before" in doc["meta"] and "cores" in doc["meta"]["machine"]


def test_bad_sim_sizes_and_settings_are_named() -> None:
    proc = _run("--sim", "10,abc")
    assert proc.returncode != 0
    assert "--sim takes peer counts" in proc.stderr
    proc = _run("--sim", "10", "--rx-cost", "-1")
    assert proc.returncode != 0
    assert "rx_cost must be >= 0" in proc.stderr
