"""examples/test_network_*.py pass as copied into a strict project of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import LEAK_CONFTEST, run, threads_left

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_pass_on_their_own(pytester: pytest.Pytester) -> None:
    names = ("test_network_sync.py", "test_network_trio.py", "test_network_asyncio.py")
    for name in names:
        (pytester.path / name).write_text((EXAMPLES / name).read_text())
    pytester.makeconftest(LEAK_CONFTEST)
    result = run(pytester, "--strict-markers", "--strict-config")
    result.assert_outcomes(passed=9)
    assert threads_left(result) == ["MainThread"]


def test_readme_pytest_snippet_runs_as_copied(pytester: pytest.Pytester) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text()
    section = readme.split("## Testing with pytest", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    (pytester.path / "test_readme.py").write_text(snippet)
    run(pytester, "--strict-markers").assert_outcomes(passed=1)
