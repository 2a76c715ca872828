"""Child processes of the multi-process run, and their JSON-line pipes."""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from typing import Any

from .common import HERE, PhaseTimeout


class Children:
    """P child processes; their JSON lines arrive in one queue."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.q: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self.procs: list[subprocess.Popen[str]] = []
        self.finished: set[int] = set()  # children that sent their final report
        self.stderr_tail: list[list[str]] = []
        for k in range(a.procs):
            cmd = [
                sys.executable,
                str(HERE),
                "--_mp-child",
                str(k),
                "--procs",
                str(a.procs),
                "--procs-peers",
                str(a.procs_peers),
                "--machines",
                str(a.machines),
                "--connect-attempts",
                str(a.connect_attempts),
                "--mp-progress",
                str(a.mp_progress),
                "--mp-profile",
                a.mp_profile,
                "--mp-timeline",
                a.mp_timeline,
            ]
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            self.procs.append(proc)
            self.stderr_tail.append([])
            threading.Thread(target=self._read, args=(k, proc), daemon=True).start()
            threading.Thread(target=self._read_err, args=(k, proc), daemon=True).start()

    def _read(self, k: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    self.q.put((k, json.loads(line)))
        self.q.put((k, None))

    def _read_err(self, k: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail = self.stderr_tail[k]
            tail.append(line.rstrip())
            del tail[:-20]

    def send(self, k: int, obj: dict[str, Any]) -> None:
        proc = self.procs[k]
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(obj) + "\n")
        proc.stdin.flush()

    def broadcast(self, obj: dict[str, Any]) -> None:
        for k in range(len(self.procs)):
            self.send(k, obj)

    def get(self, deadline: float, phase: str) -> tuple[int, dict[str, Any]]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhaseTimeout(phase)
            try:
                k, msg = self.q.get(timeout=left)
            except queue.Empty:
                raise PhaseTimeout(phase) from None
            if msg is None and k in self.finished:
                continue  # it said its last word and exited, as asked
            break
        if msg is None:
            tail = " | ".join(self.stderr_tail[k][-3:])
            raise RuntimeError(f"{phase}: child {k} exited ({tail})")
        if msg.get("ev") == "error":
            raise RuntimeError(f"{phase}: child {k}: {msg.get('error')}")
        return k, msg

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.wait(5)
