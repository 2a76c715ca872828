"""The ``ampubsub`` command as a real subprocess, for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

from .procutil import Process

COMMAND = [sys.executable, "-m", "ampubsub_plugin.cli"]


@dataclass
class Ran:
    code: int
    out: str
    err: str
    seconds: float


def run(*args: str, timeout: float = 60, ns: str | None = None) -> Ran:
    """Run the command to its end; its exit code, output and wall time."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    started = time.monotonic()
    done = subprocess.run(
        [*prefix, *COMMAND, *args], capture_output=True, text=True, timeout=timeout
    )
    return Ran(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@dataclass
class Peer:
    proc: Process
    addrs: list[str]
    metrics: str | None  # the /metrics URL, with --metrics-port


def start_peer(*args: str, ns: str | None = None) -> Peer:
    """``ampubsub peer ARGS`` running, with what it printed on start."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    proc = Process([*prefix, *COMMAND, "peer", *args])
    addrs: list[str] = []
    metrics = None
    while True:
        line = proc.line()
        if line.startswith("metrics: "):
            metrics = line.split(" ", 1)[1]
        if line.startswith("/"):
            addrs.append(line)
        if line.startswith("exporting"):
            return Peer(proc, addrs, metrics)
