"""Failure detection, checked from outside: the owner is its own OS process.

A SIGKILLed owner sends no bye; its neighbour sees the connection close,
probes it, and every peer shows it disconnected when it stays silent
(``_gossip/liveness.py``), including a watcher that was never connected to
it directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from ampubsub_plugin import Topic

from .procutil import TIMEOUT, second_watcher, start_owner, wait_shown

pytestmark = pytest.mark.timeout(120)


def test_a_killed_peer_is_shown_disconnected_within_10_s_everywhere(
    watcher: Topic, record_property: Callable[[str, object], None]
) -> None:
    far = second_watcher(watcher)
    owner, peer = start_owner(watcher)  # connected to the first watcher only
    try:
        owner.send("add Foo")
        clock = json.loads(owner.line())
        near_view = wait_shown(watcher, peer, clock)
        far_view = wait_shown(far, peer, clock)
        owner.kill()  # SIGKILL: no bye
        killed = time.monotonic()
        for topic, view in ((watcher, near_view), (far, far_view)):
            assert topic.mach.when_query(lambda _, v=view: not v.is_connected).wait(
                TIMEOUT
            )
            shown_in = time.monotonic() - killed
            name = "near" if topic is watcher else "far"
            record_property(f"{name}_shown_disconnected_s", round(shown_in, 3))
            assert shown_in < 10, f"shown disconnected after {shown_in:.1f} s"
        assert near_view.time() == far_view.time() == clock  # the last clock stays
    finally:
        owner.kill()
        assert far.dispose().wait(TIMEOUT)
