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
import time
from collections.abc import Callable

import pytest

from ampubsub_plugin import Topic

from .procutil import Process, SeenFrom, start_owner, trust_program, wait_shown

pytestmark = pytest.mark.timeout(120)


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
        forger = trust_program("forger", watcher.addrs[0], victim)
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
    watcher: Topic, record_property: Callable[[str, object], None]
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
        record_property("restart_shown_s", round(shown_in, 3))
        assert shown_in < 10, f"restart shown after {shown_in:.1f} s"
        assert after is not before and before.is_disposed
        assert len(watcher.list_machines(id="worker")) == 1
    finally:
        owner.kill()
