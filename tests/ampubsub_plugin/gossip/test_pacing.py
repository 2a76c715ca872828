"""Pacing: the token bucket holds messages back, and nothing is lost.

The rules live in ``ampubsub_plugin/_gossip/pacing.py``.
"""

from __future__ import annotations

import pytest

from ampubsub_plugin.protocol import ReqInfoMsg

from ..coreutil import clocks_in, make, worker


def test_rate_limited_updates_stay_dirty_until_sent() -> None:
    a = make("A", rate=2.0, burst=1, update_interval=0.02)
    m = worker("m")
    a.export(m)
    m.add("Bar")
    a.mark_dirty(0)
    assert clocks_in(a.collect(0.0)) == [{"A": {0: m.time()}}]
    m.add("Baz")
    a.mark_dirty(0)
    limited = a.counters["rate_limited"]
    assert a.collect(0.1) == []
    assert a.counters["rate_limited"] > limited
    assert a.stats()["dirty"] == 1
    assert a.next_due(0.1) == pytest.approx(0.5)
    m.add("Foo")  # a later change rides along
    (later,) = a.collect(0.5)
    assert clocks_in([later]) == [{"A": {0: m.time()}}]
    assert a.stats()["dirty"] == 0


def test_held_back_snapshot_request_is_sent_later() -> None:
    a = make("A", rate=1.0, burst=1)
    a.export(worker("a1"))
    a.joined(0.0)
    sent = [m for s in range(600) for m in a.collect(s / 10)]  # 60 s
    assert a.counters["rate_limited"] > 0
    assert ReqInfoMsg([]) in sent
