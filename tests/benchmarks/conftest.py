"""Make ``benchmarks/netbench`` importable as ``netbench`` (it is not installed),
and run the benchmark scripts as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))


def run_script(
    name: str, *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python benchmarks/<name> args...``, its output captured as text."""
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
