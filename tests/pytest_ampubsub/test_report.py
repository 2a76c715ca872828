"""What a failing check shows: the per-peer table, the report section, crashes."""

from __future__ import annotations

import pytest

from .helpers import elapsed, run

REPORT = """
    import threading
    import time

    from asyncmachine import Machine, State

    SCHEMA = {"Foo": State(), "Bar": State(), "Baz": State()}


    def test_check_fails(ampubsub_network):
        net = ampubsub_network(peers=2)
        ampubsub_network(peers=2)  # a second network gets its own section
        worker = Machine(SCHEMA, id="worker")
        worker.export_to(net[0])
        worker.add("Bar")
        net.assert_eventually_active("worker", "Bar")
        net.assert_eventually_active("worker", "Foo", timeout=0.5)


    def test_crash_fails_fast(ampubsub_network):
        net = ampubsub_network(peers=3)
        Machine(SCHEMA, id="worker").export_to(net[0])
        boom = threading.Timer(0.2, net[1].mach.add_err, [RuntimeError("boom")])
        boom.start()
        started = time.monotonic()
        try:
            net.assert_eventually_active("worker", "Foo")  # default timeout: 10 s
        finally:
            boom.cancel()
            print(f"ELAPSED crash {time.monotonic() - started:.3f}")


    def test_passes(ampubsub_network):
        ampubsub_network(peers=2)
"""


def test_failure_shows_what_each_peer_saw(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(REPORT)
    result = run(pytester, "-v")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_check_fails _*",
            '>*net.assert_eventually_active("worker", "Foo", timeout=0.5)',
            "E * AssertionError: worker Foo active: not met after 0.5?s "
            "(waiting for Foo active on peer *)",
            "E * what each peer saw:",
            "E * peer * machine * active states * ticks * updated * conn",
            "E * 0:?????? * worker (owner) * Bar * Foo=0 Bar=1 Baz=0",
            "E * 1:?????? * worker@?????? * Bar * Foo=0 Bar=1 Baz=0 * ?.??s ago * yes",
            "test_failure_shows_what_each_peer_saw.py:*: AssertionError",
            # the report section: table, counters, protocol log per peer
            "*- ampubsub network 0 (ampubsub-test-*) -*",
            "what each peer saw:",
            "peer 0 ?????? (*Joined:1*)",
            "  counters: *exports=1*",
            "* +Joined",
            "peer 1 ?????? (*Joined:1*)",
            "  counters: *remote_machines=1*",
            "*- ampubsub network 1 (ampubsub-test-*) -*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_crash_fails_fast _*",
            "E * peer 1 (??????) crashed: RuntimeError('boom')",
            "E * what each peer saw:",
            "*- ampubsub network 0 (ampubsub-test-*) -*",
            "peer 1 ?????? (Exception:1 *",
        ]
    )
    # the crash at 0.2 s ends the 10 s check well before its timeout
    assert 0.15 <= elapsed(result, "crash") < 2.0
    # only failures get the section
    assert result.stdout.str().count("- ampubsub network 0 (") == 2
