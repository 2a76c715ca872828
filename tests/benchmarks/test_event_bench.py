"""benchmarks/event_bench.py runs, checks its own counts and prints its figures."""

from __future__ import annotations

import subprocess
import sys

from .conftest import BENCHMARKS


def test_the_event_bench_prints_min_median_max() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "event_bench.py"),
            "--repeat",
            "3",
            "--number",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for part in ("min ", "median ", "max ", "(3 x 200)"):
        assert part in done.stdout, done.stdout
