#!/usr/bin/env python
"""Microseconds per event: ``add`` of an active multi state, one handler.

Topics receive every message as such an event (``MsgUpdates`` and the other
``Msg*`` states), so its cost is paid per reception. Machine: the topic's
schema (``ampubsub_plugin.states``), ``Start``/``Connected``/``Joined``
active, one ``MsgUpdates_state`` handler bound. Prints min / median / max
over ``--repeat`` timed loops of ``--number`` adds (after a warm-up), and
checks the clock counted every add.

Usage: python benchmarks/event_bench.py [--repeat 9] [--number 20000]
Compare two trees by running it with each on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from ampubsub_plugin.states import TOPIC_SCHEMA
from asyncmachine import Event, Machine


class _Handlers:
    def __init__(self) -> None:
        self.calls = 0

    def MsgUpdates_state(self, e: Event) -> None:
        self.calls += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--number", type=int, default=20_000)
    a = p.parse_args()
    m = Machine(TOPIC_SCHEMA, id="event-bench")
    handlers = _Handlers()
    m.bind(handlers)
    for state in ("Start", "Connected", "Joined"):
        m.add(state)
    args: dict[str, Any] = {"peer_id": "p", "msg": None, "arrived": 0.0}
    for _ in range(a.number // 10):
        m.add("MsgUpdates", args)
    before = m.tick("MsgUpdates")
    runs = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        for _ in range(a.number):
            m.add("MsgUpdates", args)
        runs.append((time.perf_counter() - t0) / a.number * 1e6)
    added = a.repeat * a.number
    assert m.tick("MsgUpdates") == before + 2 * added, "an add was not counted"
    assert handlers.calls == added + a.number // 10, "a handler call was lost"
    print(
        f"add of an active multi state, one handler: min {min(runs):.2f} / "
        f"median {statistics.median(runs):.2f} / max {max(runs):.2f} µs "
        f"({a.repeat} x {a.number})"
    )


if __name__ == "__main__":
    main()
