"""examples/test_network_*.py pass as copied into a strict project of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import LEAK_CONFTEST, run, threads_left

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_pass_on_their_own(pytester: pytest.Pytester) -> None:
    for name in ("test_network_sync.py", "test_network_trio.py"):
        (pytester.path / name).write_text((EXAMPLES / name).read_text())
    pytester.makeconftest(LEAK_CONFTEST)
    result = run(pytester, "--strict-markers", "--strict-config")
    result.assert_outcomes(passed=7)
    assert threads_left(result) == ["MainThread"]
