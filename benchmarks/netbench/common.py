"""Helpers every mode shares: constants, bounded waits, percentiles, /proc."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ampubsub_plugin.protocol import UpdatesMsg

HERE = Path(__file__).resolve().parent.parent / "network_bench.py"


TOPIC = "network-bench"
RAW_TOPIC = "network-bench-raw"
STATES = ("A", "B", "C")
RESULT_PREFIX = "RESULT "
TARGET_RATIO = 1.2  # ours p50 / raw p50
TARGET_P50_10 = 60.0  # ms, ours p50 at 10 peers
TARGET_SYNC_30 = 10.0  # s, 30 peers x 3 machines discovered and synced


class PhaseTimeout(Exception):
    """A bounded wait ran out; the message names the phase."""

    def __init__(self, phase: str, detail: str = "") -> None:
        super().__init__(f"{phase}: timed out" + (f" ({detail})" if detail else ""))
        self.phase = phase


def quiet_logging() -> None:
    logging.getLogger().setLevel(logging.ERROR)
    lib = logging.getLogger("libp2p")
    lib.addHandler(logging.NullHandler())
    lib.setLevel(logging.CRITICAL)


def proc_status_kb(key: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM); 0 when unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def topology(n: int, rng: random.Random) -> list[list[int]]:
    """Peer 0 plus 3 random earlier peers for each peer (all earlier ones at first)."""
    boots: list[list[int]] = []
    for i in range(n):
        if i <= 4:
            boots.append(list(range(i)))
        else:
            boots.append([0, *sorted(rng.sample(range(1, i), 3))])
    return boots


def make_schema() -> dict[str, Any]:
    from asyncmachine import State

    return {name: State() for name in STATES}


def pct(values: list[float], q: float) -> float | None:
    """Percentile q (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def lat_summary(values_s: list[float], expected: int) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "expected": expected,
        "lost": expected - len(ms),
        "p50": pct(ms, 50),
        "p90": pct(ms, 90),
        "p95": pct(ms, 95),
        "p99": pct(ms, 99),
        "max": max(ms) if ms else None,
        "mean": statistics.fmean(ms) if ms else None,
    }


def owner_update(machines: int) -> UpdatesMsg:
    """An ``updates`` message as an owner publishes it: the clock of its
    last machine, signed and stamped. A real core makes it, so the raw
    baseline's payload follows the format (it once left out the proof and
    the stamps: 90 bytes where ours sent 247)."""
    from ampubsub_plugin._gossip.core import GossipCore
    from ampubsub_plugin.libp2p_transport import Libp2pTransport
    from ampubsub_plugin.protocol import UpdatesMsg
    from asyncmachine import Machine

    signer = Libp2pTransport()
    core = GossipCore("")
    core.start(signer.peer_id, signer, time.time_ns() // 1000)
    owned = [Machine(make_schema(), id=f"m{k}") for k in range(machines)]
    for mach in owned:
        core.export(mach)
        mach.add("A")
    now = time.monotonic()
    core.joined(now, alone=True)
    core.collect(now)  # the hello, with every clock
    owned[-1].add("B")
    core.mark_dirty(machines - 1)
    for step in range(1, 60):
        for msg in core.collect(now + step):
            if isinstance(msg, UpdatesMsg):
                return msg
    raise RuntimeError("the core collected no update for a changed machine")


def updates_payload_size(machines: int) -> int:
    """Bytes of a typical ampubsub ``updates`` message (see owner_update)."""
    from ampubsub_plugin.protocol import encode

    return len(encode(owner_update(machines)))


async def wait_state(topic: Any, state: str, timeout: float, phase: str) -> None:
    """Wait for a topic state; raise PhaseTimeout, or RuntimeError on an error state."""
    import trio

    from asyncmachine import any_of

    mach = topic.mach
    if not mach.is_active(state):
        with trio.move_on_after(timeout) as scope:
            await any_of(mach.when(state), mach.when_err())
        if scope.cancelled_caught:
            raise PhaseTimeout(phase, f"{topic!r} not {state}")
    if not mach.is_active(state):
        raise RuntimeError(f"{phase}: {topic!r} failed: {mach.err!r}")


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def load_average() -> str:
    """/proc/loadavg as it reads (1, 5, 15 min averages, runnable/total, last pid)."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('unknown' when unavailable)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def run_meta(argv: list[str] | None) -> dict[str, Any]:
    """Command, time, machine and load of a run, for RESULTS.md."""
    args = argv if argv is not None else sys.argv[1:]
    return {
        "command": "python " + " ".join([os.path.relpath(HERE, Path.cwd()), *args]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}",
        "load_before": load_average(),
    }
