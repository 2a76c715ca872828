"""The benchmarks still run and verify their own work (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_core_benchmark_quick_run_prints_its_ratios() -> None:
    for baseline in ("transitions", "statemachine"):
        pytest.importorskip(baseline, reason="benchmark baselines: the dev extra")
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "core_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 2), result.stdout + result.stderr  # 2: target
    out = result.stdout
    for scenario in ("(a) plain toggle", "(b) toggle + 1 handler", "(c) relations"):
        assert scenario in out
    assert "verified: final states" in out
    assert "am/transitions" in out
