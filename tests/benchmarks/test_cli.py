"""The command line the lead scripts against: --sim with --json, and refusals."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .conftest import run_script


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_script("network_bench.py", *args)


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


def test_trace_latency_places_every_update_reception(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    proc = _run(
        "--quick", "--no-multiproc", "--trace-latency", "--json-out", str(out)
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(out.read_text())["results"]
    trace = result["latency_trace"]
    receptions = result["lat_ours"]["n"]
    assert receptions > 0
    ours, raw = trace["ours"], trace["raw"]
    # [median, mean, count]: each of our update receptions is placed at each
    # stage, and a reception passes the stages in order
    for stage in ("arrived", "dispatched", "shown"):
        assert ours[stage][2] == receptions, stage
    assert 0 < ours["arrived"][0] <= ours["dispatched"][0] <= ours["shown"][0]
    assert raw["dispatched"][2] == result["lat_raw"]["n"]
    assert 0 < raw["arrived"][0] <= raw["dispatched"][0]
    owner = trace["owner"]
    assert owner["changed -> published"][2] > 0
    assert 0 < owner["flush_start -> flush_end"][0] < owner["changed -> published"][0]
    assert trace["cpu_us_per_reception"]["handler"][2] == receptions
    assert "where an update's time goes" in proc.stdout
