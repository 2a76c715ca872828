"""Trust, checked from outside: every peer its own OS process over py-libp2p.

The watcher runs here (a sync Topic on 127.0.0.1); the owner and the forger
run as subprocesses of ``trust_program.py``. The forger publishes, as
itself, clocks of the owner's machine that the owner never signed; the
owner is killed with SIGKILL and started again with the same identity and a
lower clock. Every wait is bounded and waits on the watcher's topic machine
(remote machines change only in its handlers) or on a line from a process.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
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

pytestmark = pytest.mark.timeout(120)


class Process:
    """A program whose stdout lines are read with a bound, killed at the end."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(PROGRAM), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def line(self) -> str:
        try:
            return self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            if self.proc.poll() is None:
                self.proc.kill()
            assert self.proc.stderr is not None
            error = self.proc.stderr.read()[-2000:]
            self.kill()
            raise AssertionError(f"no output in {TIMEOUT} s; stderr: {error}") from None

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self._reader.join(TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


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
    owner = Process("owner", watcher.addrs[0], SEED)
    ready, peer = owner.line().split()
    assert ready == "ready"
    return owner, peer


def test_forged_relayed_clocks_change_no_view_and_the_owners_next_change_shows(
    watcher: Topic,
) -> None:
    owner, victim = start_owner(watcher)
    forger: Process | None = None
    try:
        owner.send("add Bar")
        time_ = json.loads(owner.line())
        remote = wait_shown(watcher, victim, time_)
        seen = SeenFrom()
        watcher.mach.bind_tracer(seen)
        forger = Process("forger", watcher.addrs[0], victim)
        forged, forger_id = forger.line().split()
        assert forged == "forged"
        seen.wait(forger_id, 3)  # all three handled by the watcher
        assert remote.time() == time_ and remote.active_states == ["Bar"]
        counters = watcher.counters
        refused = counters["drop_unsigned_relay"] + counters["drop_old_incarnation"]
        assert refused >= 3, counters
        # the owner's next change, with a smaller sum than the forgeries
        owner.send("add Baz")
        wait_shown(watcher, victim, json.loads(owner.line()))
        assert remote.active_states == ["Bar", "Baz"]
    finally:
        for proc in (forger, owner):
            if proc is not None:
                proc.kill()


def test_a_restart_with_the_same_identity_and_a_lower_clock_shows_within_10_s(
    watcher: Topic,
) -> None:
    owner, peer = start_owner(watcher)
    try:
        for state in ("Foo", "Bar", "Baz"):
            owner.send(f"add {state}")
            high = json.loads(owner.line())
        before = wait_shown(watcher, peer, high)
        owner.kill()  # SIGKILL: no bye
        owner, again = start_owner(watcher)
        started = time.monotonic()
        assert again == peer  # the same identity
        owner.send("add Foo")
        low = json.loads(owner.line())
        assert sum(low) < sum(high)
        after = wait_shown(watcher, peer, low)
        shown_in = time.monotonic() - started
        assert shown_in < 10, f"restart shown after {shown_in:.1f} s"
        assert after is not before and before.is_disposed
        assert len(watcher.list_machines(id="worker")) == 1
    finally:
        owner.kill()
