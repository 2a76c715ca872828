"""Running an inner pytest session in a subprocess, and reading what it said.

Every inner session that builds a network starts the shared ampubsub trio
thread (or a trio run), so it runs in a subprocess: a thread left behind by
an in-process run would leak into this session. Inner sessions are strict
(``filterwarnings = error``) and bounded by pytest-timeout.
"""

from __future__ import annotations

import ast
import re
from importlib import metadata

import pytest

#: pytest-timeout inside an inner session
INNER_TIMEOUT = 20
#: the whole inner process (below the outer ``timeout = 60``)
PROCESS_TIMEOUT = 50

#: an inner conftest that prints the threads and open sockets left after
#: the session (pytest_sessionfinish stops the shared trio thread)
LEAK_CONFTEST = """
import os
import sys
import threading


def _sockets():
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def pytest_configure(config):
    config.stash_sockets = _sockets()


def pytest_unconfigure(config):
    names = sorted(t.name for t in threading.enumerate())
    print("AMPUBSUB-THREADS", names, file=sys.__stdout__, flush=True)
    print(
        "AMPUBSUB-SOCKETS", config.stash_sockets, _sockets(),
        file=sys.__stdout__, flush=True,
    )
"""


def write_ini(pytester: pytest.Pytester, *lines: str) -> None:
    """A strict pytest.ini for the inner session, plus ``lines``."""
    pytester.makefile(
        ".ini",
        pytest="\n".join(
            [
                "[pytest]",
                f"timeout = {INNER_TIMEOUT}",
                "filterwarnings = error",
                # pytest-asyncio (a test dependency) warns unless it is set
                "asyncio_default_fixture_loop_scope = function",
                *lines,
                "",
            ]
        ),
    )


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytest -p no:cacheprovider *args`` in a subprocess, in pytester's dir."""
    if not (pytester.path / "pytest.ini").exists():
        write_ini(pytester)
    # (pytest-asyncio, a test dependency, is configured by write_ini)
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *args, timeout=PROCESS_TIMEOUT
    )


def threads_left(result: pytest.RunResult) -> list[str]:
    """Thread names the inner session's pytest_unconfigure printed."""
    found = re.search(r"^AMPUBSUB-THREADS (\[.*\])$", result.stdout.str(), re.M)
    assert found, "the inner session printed no AMPUBSUB-THREADS line"
    names: list[str] = ast.literal_eval(found.group(1))
    return names


def sockets_before_after(result: pytest.RunResult) -> tuple[int, int]:
    """Open sockets at the inner session's configure and at its unconfigure."""
    found = re.search(r"^AMPUBSUB-SOCKETS (\d+) (\d+)$", result.stdout.str(), re.M)
    assert found, "the inner session printed no AMPUBSUB-SOCKETS line"
    return int(found.group(1)), int(found.group(2))


def elapsed(result: pytest.RunResult, label: str) -> float:
    """Seconds an inner test printed as ``ELAPSED <label> <seconds>``."""
    found = re.search(
        rf"^ELAPSED {re.escape(label)} ([0-9.]+)$", result.stdout.str(), re.M
    )
    assert found, f"the inner session printed no 'ELAPSED {label}' line"
    return float(found.group(1))


def version(dist: str) -> str:
    return metadata.version(dist)
