"""benchmarks/event_bench.py runs, checks its own counts and prints its figures."""

from __future__ import annotations

from .conftest import run_script


def test_the_event_bench_prints_min_median_max() -> None:
    done = run_script("event_bench.py", "--repeat", "3", "--number", "200", timeout=120)
    assert done.returncode == 0, done.stderr
    for part in ("min ", "median ", "max ", "(3 x 200)"):
        assert part in done.stdout, done.stdout
