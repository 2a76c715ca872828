"""Phases of the multi-process run that measure everybody at once.

* ``raw_all_to_all``: the baseline. Bare py-libp2p transports, same topology,
  on their own topic; once a probe from peer 0 reaches everybody, every peer
  publishes once and every other peer timestamps it. Figure: time from the
  order to fire until the last reception, and the per-reception latency.
* ``update_burst``: the same pattern through ampubsub. Every owner toggles
  one state of its first machine at once; each other peer's
  ``ampubsub_machine_updated`` hook reports when its view shows the new clock.
  Receptions still missing after the bound are lost updates.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from .common import PhaseTimeout, lat_summary
from .procs import Children

#: pause between warm-up probes (receptions of earlier ones still count), s
PROBE_WAIT = 1.0
#: an update lost within the burst's bound: how much longer to watch for it, s
LATE_BOUND = 30.0


def launch_when_ready(
    children: Children,
    boots: list[list[int]],
    addrs: dict[int, list[str]],
    sent: set[int],
    cmd: str,
) -> None:
    """Start every peer whose bootstrap peers listen (peer i is in child i % P)."""
    procs = len(children.procs)
    for i in range(len(boots)):
        if i not in sent and all(j in addrs for j in boots[i]):
            sent.add(i)
            children.send(
                i % procs,
                {"cmd": cmd, "i": i, "boot": [x for j in boots[i] for x in addrs[j]]},
            )


def raw_all_to_all(
    children: Children,
    boots: list[list[int]],
    bound: float,
    spread: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    n, procs = len(boots), len(children.procs)
    out: dict[str, Any] = {}
    phase = "mp raw: start+connect+join"
    say(phase)
    addrs: dict[int, list[str]] = {}
    sent: set[int] = set()
    joined: dict[int, float] = {}
    failed: dict[int, str] = {}
    t_start = time.time()
    deadline = time.monotonic() + 60 + 2 * n
    launch_when_ready(children, boots, addrs, sent, "raw_start")
    try:
        while len(joined) + len(failed) < n:
            _, msg = children.get(deadline, f"{phase} ({len(joined)}/{n} joined)")
            ev = msg.get("ev")
            if ev == "raw_started":
                addrs[msg["i"]] = msg["addrs"]
                launch_when_ready(children, boots, addrs, sent, "raw_start")
            elif ev == "raw_joined":
                joined[msg["i"]] = msg["t"]
            elif ev == "raw_failed":
                failed[msg["i"]] = msg["error"]
    except PhaseTimeout as err:
        out["error"] = str(err)
    out["joined"] = len(joined)
    out["failed_peers"] = dict(list(failed.items())[:5])
    if joined:
        out["join_s"] = max(joined.values()) - t_start
    failures: list[str] = []
    done: set[int] = set()
    t_fire = time.time()
    if "error" not in out and not failed:
        # warm-up: probes from peer 0 until one reached everybody (bounded; the
        # baseline is fired anyway, and says how far the best probe got)
        phase = "mp raw: warm-up"
        say(phase)
        deadline = time.monotonic() + 60
        seq = 0
        reached: dict[int, int] = defaultdict(int)  # probe -> receptions
        while max(reached.values(), default=0) < n - 1:
            if time.monotonic() >= deadline:
                break
            seq += 1
            children.send(0, {"cmd": "raw_probe", "i": 0, "s": seq})
            wait = min(deadline, time.monotonic() + PROBE_WAIT)
            with contextlib.suppress(PhaseTimeout):
                while max(reached.values(), default=0) < n - 1:
                    _, msg = children.get(wait, phase)
                    if msg.get("ev") == "raw_probe_got":
                        reached[msg["s"]] += 1
        out["warmup_probes"] = seq
        out["warmup_best"] = f"{max(reached.values(), default=0)}/{n - 1}"

        phase = "mp raw: every peer publishes once"
        say(phase)
        t_fire = time.time()
        children.broadcast({"cmd": "raw_fire", "spread": spread})
        deadline = time.monotonic() + bound
        with contextlib.suppress(PhaseTimeout):
            while len(done) < procs:
                k, msg = children.get(deadline, phase)
                ev = msg.get("ev")
                if ev == "raw_done":
                    done.add(k)
                elif ev in ("raw_publish_failed", "raw_transport_failed"):
                    failures.append(msg.get("error", ev))
    out["complete"] = len(done) == procs and "error" not in out
    children.broadcast({"cmd": "raw_report"})
    reports: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 30
    while len(reports) < procs:
        k, msg = children.get(deadline, "mp raw: report")
        if msg.get("ev") == "raw_report":
            reports[k] = msg
    lat = [v for r in reports.values() for v in r["lat"]]
    expected = sum(r["expected"] for r in reports.values())
    out["lat"] = lat_summary(lat, expected)
    last = max(r["last_at"] for r in reports.values())
    out["last_reception_s"] = last - t_fire if last else None
    out["all_received_s"] = last - t_fire if out["complete"] else None
    out["bound_s"] = bound
    out["spread_s"] = spread
    out["failures"] = failures[:10]
    closed = 0
    deadline = time.monotonic() + 30
    with contextlib.suppress(PhaseTimeout):
        while closed < procs:
            closed += children.get(deadline, "mp raw: close")[1].get("ev") == (
                "raw_closed"
            )
    out["closed"] = closed == procs
    return out


def update_burst(
    children: Children,
    n: int,
    state: str,
    bound: float,
    say: Callable[[str], None],
) -> dict[str, Any]:
    procs = len(children.procs)
    phase = "mp: every owner updates once"
    say(phase)
    children.broadcast({"cmd": "measure", "on": True})
    deadline = time.monotonic() + 10
    acks = 0
    while acks < procs:
        acks += children.get(deadline, phase)[1].get("ev") == "measuring"
    changes: dict[tuple[str, int], float] = {}
    applied: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    expected = n * (n - 1)
    t_fire = time.time()
    children.broadcast({"cmd": "change_all", "s": state})
    received = 0
    deadline = time.monotonic() + bound
    with contextlib.suppress(PhaseTimeout):
        while len(changes) < n or received < expected:
            _, msg = children.get(deadline, phase)
            ev = msg.get("ev")
            if ev == "changed_all":
                for mid, total, t0 in msg["changes"]:
                    changes[(mid, total)] = t0
                received = sum(len(applied[key]) for key in changes)
            elif ev == "applied":
                key = (msg["id"], msg["sum"])
                if msg["rx"] not in applied[key]:
                    applied[key][msg["rx"]] = msg["t"]
                    received += key in changes
    lat = [t - changes[key] for key in changes for t in applied[key].values()]
    times = [t for key in changes for t in applied[key].values()]
    lost = expected - len(lat)
    missing = [
        (key[0], rx)
        for key in changes
        for rx in range(n)
        if rx not in applied[key] and not key[0].startswith(f"p{rx}-")
    ]
    # what was lost within the bound: did it come later, or never?
    came_late: dict[str, float] = {}
    if missing:
        deadline = time.monotonic() + LATE_BOUND
        wanted = {key[0]: key for key in changes}
        lost_pairs = set(missing)
        with contextlib.suppress(PhaseTimeout):
            while len(came_late) < len(missing):
                _, msg = children.get(deadline, phase)
                key = wanted.get(msg.get("id", ""))
                if msg.get("ev") == "applied" and key and msg["sum"] >= key[1]:
                    pair = f"{key[0]} at peer {msg['rx']}"
                    if (key[0], msg["rx"]) in lost_pairs and pair not in came_late:
                        came_late[pair] = round(msg["t"] - t_fire, 2)
    children.broadcast({"cmd": "measure", "on": False})
    return {
        "missing": [f"{mid} at peer {rx}" for mid, rx in missing[:10]],
        "came_late_s": came_late,
        "state": state,
        "owners": len(changes),
        "expected": expected,
        "lost": lost,
        "lat": lat_summary(lat, expected),
        "all_received_s": max(times) - t_fire if lost == 0 and times else None,
        "bound_s": bound,
    }
