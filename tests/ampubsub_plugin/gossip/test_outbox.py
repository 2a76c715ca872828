"""The outbox: own updates coalesced, failed publishes kept, schemas sent once.

The rules live in ``ampubsub_plugin/_gossip/outbox.py``.
"""

from __future__ import annotations

import pytest

from ampubsub_plugin.protocol import ByeMsg, UpdatesMsg

from ..coreutil import (
    HASH,
    STATES,
    clocks_in,
    hello_of,
    introduced,
    make,
    of_type,
    worker,
)


def test_mark_dirty_coalesces_changes_into_one_updates_message() -> None:
    a = make("A", update_interval=0.02)
    m1, m2 = worker("m1"), worker("m2")
    a.export(m1)
    a.export(m2)
    introduced(a)
    # the first change goes out at once
    m1.toggle("Baz")
    a.mark_dirty(0)
    assert clocks_in(a.collect(1.0)) == [{"A": {0: m1.time()}}]
    # a burst right after coalesces into one message; only the first change
    # asks the owner to wake its sender
    wakes = []
    for _ in range(100):
        m1.toggle("Baz")
        wakes.append(a.mark_dirty(0))
        m2.toggle("Bar")
        wakes.append(a.mark_dirty(1))
    assert wakes.count(True) == 1 and wakes[0]
    assert a.mark_dirty(99) is False  # not exported: ignored
    assert of_type(a.collect(1.01), UpdatesMsg) == []
    assert a.next_due(1.01) == pytest.approx(1.02)
    assert clocks_in(a.collect(1.02)) == [{"A": {0: m1.time(), 1: m2.time()}}]
    assert of_type(a.collect(2.0), UpdatesMsg) == []
    assert a.stats()["dirty"] == 0


def test_publish_failed_keeps_the_message_intent() -> None:
    a = make("A", update_interval=0.02)
    m = worker("m")
    a.export(m)
    m.add("Bar")
    a.mark_dirty(0)
    (update,) = a.collect(0.0)
    a.publish_failed(update)
    assert a.counters["publish_failed"] == 1
    assert a.stats()["dirty"] == 1
    assert a.collect(0.01) == []
    m.add("Baz")
    (again,) = a.collect(0.02)
    assert clocks_in([again]) == [{"A": {0: m.time()}}]
    # a bye that failed goes out again too
    a.unexport(m)
    (bye,) = a.collect(1.0)
    assert isinstance(bye, ByeMsg)
    a.publish_failed(bye)
    assert a.collect(1.0) == [bye]


def test_schema_travels_once_then_by_hash() -> None:
    b = make("B")
    m = worker("b1")
    b.export(m)
    b.joined(0.0, alone=True)
    first = hello_of(b, 0.0).peer_info["B"][0]
    assert first.schema == m.schema and first.schema_hash == HASH
    second = hello_of(b, b.config.hello_first).peer_info["B"][0]
    assert second.schema is None and second.schema_hash == HASH
    assert (second.id, second.states, second.time) == (first.id, STATES, m.time())
