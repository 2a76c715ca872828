"""The eventually-checks: passing, failing, waking on updates, failing fast.

Each outer test runs one inner session; inner tests that are meant to pass
assert their own timing, inner tests that are meant to fail are pinned by
their failure text here.
"""

from __future__ import annotations

import pytest

from .helpers import elapsed, run

COMMON = """
    import threading
    import time

    import pytest

    import pytest_ampubsub as pa
    from asyncmachine import Machine, State

    SCHEMA = {"Foo": State(), "Bar": State(), "Baz": State()}


    @pytest.fixture
    def net(ampubsub_network):
        return ampubsub_network(peers=3)


    @pytest.fixture
    def worker(net):
        machine = Machine(SCHEMA, id="worker")
        machine.export_to(net[0])
        return machine
"""

STATES = """
    def test_active_inactive_clock(net, worker):
        started = time.monotonic()
        worker.add("Foo")
        net.assert_eventually_active("worker", "Foo")
        worker.remove("Foo")
        worker.add("Bar")
        net.assert_eventually_inactive("worker", "Foo")
        net.assert_eventually_active("worker", ["Bar"])
        net.assert_eventually_clock("worker", {"Foo": 2, "Bar": 1, "Baz": 0})
        # woken by the updates, not polling towards the 10 s default timeout
        assert time.monotonic() - started < 2.0


    def test_peers_none_means_all_but_the_owner(net, worker):
        worker.add("Foo")
        net.assert_eventually_active("worker", "Foo")
        assert net[0].list_machines(id="worker") == []
        for topic in net.topics[1:]:
            assert topic.list_machines(id="worker")[0].is_active("Foo")
        net.assert_eventually_active("worker", "Foo", peers=[2])


    def test_free_function_forms(net, worker):
        worker.add("Foo")
        pa.assert_eventually_active(net, "worker", "Foo")
        pa.assert_consistently_active(net, "worker", "Foo", duration=0.1)
        worker.remove("Foo")
        pa.assert_eventually_inactive(net, "worker", "Foo", peers=[1, 2], timeout=5)
        pa.assert_eventually_clock(net, "worker", {"Foo": 2})
        pa.assert_eventually_discovered(net, 1, peers=[1, 2])
        pa.assert_converged(net, ["worker"])


    def test_timeout_must_be_positive(net, worker):
        with pytest.raises(ValueError, match="timeout must be > 0 seconds, got 0"):
            net.assert_eventually_active("worker", "Foo", timeout=0)


    def test_owner_is_not_a_peer_to_check(net, worker):
        worker.add("Foo")
        with pytest.raises(ValueError, match="peer 0 exports 'worker' itself"):
            net.assert_eventually_active("worker", "Foo", peers=[0], timeout=0.3)


    def test_fail_inactive(net, worker):
        worker.add("Foo")
        net.assert_eventually_active("worker", "Foo")
        net.assert_eventually_inactive("worker", "Foo", timeout=0.3)


    def test_fail_clock(net, worker):
        worker.add(["Foo", "Bar"])
        net.assert_eventually_clock("worker", {"Foo": 3}, timeout=0.5)


    def test_fail_free_function(net, worker):
        pa.assert_eventually_active(net, "worker", "Baz", timeout=0.3)
"""


def test_active_inactive_and_clock_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(COMMON + STATES)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_active_inactive_clock PASSED*",
            "*::test_peers_none_means_all_but_the_owner PASSED*",
            "*::test_free_function_forms PASSED*",
            "*::test_timeout_must_be_positive PASSED*",
            "*::test_owner_is_not_a_peer_to_check PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E * worker Foo inactive: not met after 0.3?s "
            "(waiting for Foo inactive on peer ?:??????)",
            "E * worker clock {'Foo': 3}: not met after 0.5?s (waiting for *)",
            "E * first to disagree: peer 1:?????? sees Foo=1 (want 3) "
            "(active: Foo Bar)",
            "E * what each peer saw:",
            "E * 0:?????? * worker (owner) * Foo Bar * Foo=1 (want 3)",
            "E * 1:?????? * worker@?????? * Foo Bar * Foo=1 (want 3) * yes",
        ]
    )
    # the free functions hide their frames: the traceback ends at the test
    result.stdout.fnmatch_lines(
        [
            "*_ test_fail_free_function _*",
            '>*pa.assert_eventually_active(net, "worker", "Baz", timeout=0.3)',
            "E * worker Baz active: not met after 0.3?s "
            "(waiting for Baz active on peer ?:??????)",
            "test_active_inactive_and_clock_checks.py:*: AssertionError",
        ]
    )
    result.assert_outcomes(passed=5, failed=3)


NETWORK_WIDE = """
    @pytest.mark.ampubsub(machines=1)
    def test_discovered_and_converged(ampubsub_network):
        net = ampubsub_network(peers=3)
        net.assert_eventually_discovered(2)
        for i, topic in enumerate(net):
            topic.exported[0].add("Bar" if i % 2 else ["Foo", "Bar"])
        net.assert_converged()
        net.assert_eventually_clock("p0-m0", {"Foo": 1, "Bar": 1})
        net.assert_eventually_active("p1-m0", "Bar")
        net.assert_converged(["p1-m0"])


    @pytest.mark.ampubsub(machines=1)
    def test_fail_discovered(ampubsub_network):
        net = ampubsub_network(peers=3)
        net.assert_eventually_discovered(3, timeout=0.3)


    def test_fail_converged(net, worker):
        net.assert_converged()
        net[0].transport.network.partition([net[2].transport])
        worker.add("Foo")
        net.assert_converged(timeout=0.5)
"""


def test_discovered_and_converged_checks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(COMMON + NETWORK_WIDE)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_discovered_and_converged PASSED*",
            "*::test_fail_discovered FAILED*",
            "*::test_fail_converged FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E * 3 machines discovered: not met after 0.3?s (waiting for *)",
            "E * converged: not met after 0.5?s and * attempts (waiting for any_of(*))",
            "E * peer ?????? * worker*",
            "E * what each peer saw:",
        ]
    )
    result.assert_outcomes(passed=1, failed=2)


CONSISTENTLY = """
    def test_holds_for_the_duration(net, worker):
        worker.add("Foo")
        net.assert_eventually_active("worker", "Foo")
        started = time.monotonic()
        net.assert_consistently_active("worker", "Foo", duration=0.3)
        assert time.monotonic() - started >= 0.3


    def test_fail_flip_during_the_duration(net, worker):
        worker.add("Foo")
        net.assert_eventually_active("worker", "Foo")
        flip = threading.Timer(0.2, worker.remove, ["Foo"])
        flip.start()
        started = time.monotonic()
        try:
            net.assert_consistently_active("worker", "Foo", duration=5)
        finally:
            flip.cancel()
            print(f"ELAPSED flip {time.monotonic() - started:.3f}")


    def test_fail_not_active_to_begin_with(net, worker):
        # it first waits (up to timeout) for the state to become active
        started = time.monotonic()
        try:
            net.assert_consistently_active("worker", "Foo", duration=5, timeout=0.5)
        finally:
            print(f"ELAPSED start {time.monotonic() - started:.3f}")
"""


def test_consistently_active_fails_as_soon_as_the_state_flips(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(COMMON + CONSISTENTLY)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_holds_for_the_duration PASSED*",
            "*::test_fail_flip_during_the_duration FAILED*",
            "*::test_fail_not_active_to_begin_with FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E * AssertionError: worker Foo stopped being active ?.??s into the 5s "
            "hold, first on peer ?:?????? (active: *)*",
            "E * worker Foo consistently active: not met after 0.5?s "
            "(waiting for Foo active on peer ?:??????)",
        ]
    )
    result.assert_outcomes(passed=1, failed=2)
    # the flip at 0.2 s fails the 5 s check at once, not at its end
    assert 0.15 <= elapsed(result, "flip") < 2.0
    assert elapsed(result, "start") < 2.0


EVENTUALLY = """
    from pytest_ampubsub import eventually


    def test_net_eventually_returns_the_value(net, worker):
        def seen():
            remotes = net[1].list_machines(id="worker")
            assert remotes and remotes[0].is_active("Foo"), "peer 1 lacks Foo"
            return remotes[0]

        worker.add("Foo")
        assert net.eventually(seen).id == "worker"


    def test_free_eventually_wakes_on_a_watched_change():
        local = Machine(SCHEMA, id="local")
        calls = []

        def check():
            calls.append(time.monotonic())
            if len(calls) == 1:
                local.add("Foo")  # a change during the check is not missed
            assert local.is_active("Foo") and len(calls) > 1, "first look"
            return "ok"

        started = time.monotonic()
        # interval only applies without watch: 30 s polling would time out
        assert eventually(check, 5, watch=[local], interval=30) == "ok"
        assert len(calls) == 2
        assert time.monotonic() - started < 1.0


    def test_free_eventually_polls_without_watch():
        calls = []

        def check():
            calls.append(1)
            assert len(calls) >= 3, f"only {len(calls)} calls"

        eventually(check, 5, interval=0.01)
        assert len(calls) == 3


    def test_fail_net_eventually(net):
        def never():
            assert len(net[1].list_machines()) == 5, "peer 1 lists too few machines"

        net.eventually(never, timeout=0.5)


    def test_fail_free_eventually():
        local = Machine(SCHEMA, id="local")

        def never():
            assert local.is_active("Foo"), "Foo never came"

        started = time.monotonic()
        try:
            eventually(never, 0.5, watch=[local])
        finally:
            print(f"ELAPSED free {time.monotonic() - started:.3f}")
"""


def test_eventually_with_plain_asserts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(COMMON + EVENTUALLY)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_net_eventually_returns_the_value PASSED*",
            "*::test_free_eventually_wakes_on_a_watched_change PASSED*",
            "*::test_free_eventually_polls_without_watch PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E * AssertionError: eventually: not met after 0.5?s and * attempts "
            "(waiting for *)",
            "E * peer 1 lists too few machines",
            "E * what each peer saw:",
        ]
    )
    result.stdout.fnmatch_lines(
        ["E * AssertionError: not met after 0.5?s and * attempts: Foo never came"]
    )
    result.assert_outcomes(passed=3, failed=2)
    assert 0.45 <= elapsed(result, "free") < 2.0
