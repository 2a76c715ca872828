"""Separate processes for fault tests: an owner program driven by stdin lines.

``Process`` runs a program and reads its lines with a bound (``trust_program``
starts ``trust_program.py``);
``watcher`` is a sync Topic in the test process (the first peer); the
waits look at the watcher's topic machine, in whose handlers remote machines
change.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ampubsub_plugin import Libp2pTransport, RemoteMachine, Topic
from asyncmachine import Transition

PROGRAM = Path(__file__).with_name("trust_program.py")
TIMEOUT = 30
SEED = bytes(range(32)).hex()


class Process:
    """A child whose stdout lines are read with a bound; killed at the end.

    Its stderr goes to a file of its own, quoted when a wait fails.
    """

    def __init__(self, args: list[str], *, cwd: Path | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix="ampubsub-", suffix=".stderr")
        self._stderr_path = Path(name)
        self._stderr = os.fdopen(fd, "w")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=cwd,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def stderr(self, limit: int = 3000) -> str:
        return self._stderr_path.read_text()[-limit:]

    def line(self, timeout: float = TIMEOUT) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no output in {timeout} s; stderr: {self.stderr()}"
            ) from None

    def line_with(self, text: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(0.0, deadline - time.monotonic()))
            if text in line:
                return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # programs that register faulthandler on SIGUSR1 show where
            # every thread is (shutdown_program.py does)
            with contextlib.suppress(OSError):
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(1.0)  # the dump is written asynchronously
            raise AssertionError(
                f"still running after {timeout} s; stderr: {self.stderr(12000)}"
            ) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()
        self._stderr_path.unlink(missing_ok=True)


def trust_program(*args: str) -> Process:
    """``trust_program.py`` with these arguments (an owner or a forger)."""
    return Process([sys.executable, str(PROGRAM), *args])


class SeenFrom:
    """A tracer of the watcher's topic machine: messages by sender, as handled."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.changed = threading.Condition()

    def transition_end(self, tx: Transition) -> None:
        sender = tx.mutation.args.get("peer_id")
        if "MsgUpdates" in tx.mutation.called and sender:
            with self.changed:
                self.counts[sender] = self.counts.get(sender, 0) + 1
                self.changed.notify_all()

    def wait(self, sender: str, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(
                lambda: self.counts.get(sender, 0) >= count, TIMEOUT
            ), f"{count} updates from {sender} not handled in {TIMEOUT} s"


@pytest.fixture
def watcher() -> Iterator[Topic]:
    topic = Topic("trust-test", transport=Libp2pTransport())
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    yield topic
    assert topic.dispose().wait(TIMEOUT)


def shows(watcher: Topic, peer: str, time_: list[int]) -> bool:
    found = watcher.list_machines(id="worker", peer_id=peer, connected=True)
    return len(found) == 1 and found[0].time() == time_


def wait_shown(watcher: Topic, peer: str, time_: list[int]) -> RemoteMachine:
    assert watcher.mach.when_query(lambda _: shows(watcher, peer, time_)).wait(
        TIMEOUT
    ), (time_, [(r.peer_id, r.time()) for r in watcher.list_machines()])
    (remote,) = watcher.list_machines(id="worker", peer_id=peer)
    return remote


def start_owner(watcher: Topic) -> tuple[Process, str]:
    owner = trust_program("owner", watcher.addrs[0], SEED)
    ready, peer = owner.line().split()
    assert ready == "ready"
    return owner, peer


def second_watcher(first: Topic) -> Topic:
    """A watcher connected to ``first`` only (so not to later owners)."""
    topic = Topic("trust-test", transport=Libp2pTransport(), bootstrap=first.addrs)
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    return topic
