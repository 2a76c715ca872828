"""Regression tests for plugin bugs found while testing it.

Each test states the behaviour the plugin must have, reproduced minimally.
"""

from __future__ import annotations

import pytest

from pytest_ampubsub import settings

from .helpers import run, write_ini


def test_checks_time_out_when_a_watched_machine_is_disposed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.timeout(2)
        def test_a_peer_left(ampubsub_network):
            net = ampubsub_network(peers=3, machines=1)
            net[2].dispose()
            assert net[2].mach.when_disposed().wait(5)
            net.assert_converged(timeout=0.5)  # peer 2 lacks p0-m0: fails, but when?
        """
    )
    result = run(pytester)
    result.stdout.fnmatch_lines(["E * converged: not met after 0.5?s*"])


def test_consistently_names_the_peer_that_saw_the_flip(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import threading

        import pytest

        from asyncmachine import Machine, State


        def test_flip(ampubsub_network):
            net = ampubsub_network(peers=2)
            worker = Machine({"Foo": State()}, id="worker")
            worker.export_to(net[0])
            worker.add("Foo")
            net.assert_eventually_active("worker", "Foo")
            threading.Timer(0.1, worker.remove, ["Foo"]).start()
            with pytest.raises(AssertionError) as failed:
                net.assert_consistently_active("worker", "Foo", duration=5)
            assert net[1].peer_id[-6:] in str(failed.value), str(failed.value)
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_trio_failure_report_shows_the_live_table(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest


        @pytest.mark.trio
        async def test_fails(ampubsub_network_trio):
            net = await ampubsub_network_trio(peers=2)
            await net.assert_eventually_discovered(1, timeout=0.3)
        """
    )
    result = run(pytester, "--ampubsub-report=full")
    result.stdout.fnmatch_lines(
        ["*- ampubsub network 0 (ampubsub-test-*) -*", "what each peer saw:"]
    )
    result.stdout.no_fnmatch_line("*(topic disposed)*")


def test_a_network_that_failed_to_start_is_still_closed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import gc

        from ampubsub_plugin import Topic


        def test_start_times_out(ampubsub_network):
            ampubsub_network(peers=3, timeout=0.000001)


        def test_zz_nothing_left():
            alive = [
                o for o in gc.get_objects()
                if isinstance(o, Topic) and not o.mach.is_disposed
            ]
            assert alive == []
        """
    )
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_start_times_out FAILED*",
            "*::test_zz_nothing_left PASSED*",
        ]
    )


def test_in_process_run_does_not_leak_settings(pytester: pytest.Pytester) -> None:
    before = settings.current
    write_ini(pytester)  # pytest-asyncio warns without its loop scope set
    pytester.makepyfile("def test_nothing(): pass")
    try:
        inner = pytester.runpytest("-p", "no:cacheprovider", "--ampubsub-timeout", "3")
        inner.assert_outcomes(passed=1)
        assert settings.current == before
    finally:
        settings.current = before  # keep the rest of this session sane


def test_a_check_fails_at_once_when_the_owner_leaves_mid_check(
    pytester: pytest.Pytester,
) -> None:
    """A remote waiter ends unmet when its owner says bye: not a pass, not a
    wait until the timeout."""
    pytester.makepyfile(
        """
        import time

        import pytest

        from asyncmachine import Machine, State


        def test_owner_leaves(ampubsub_network):
            net = ampubsub_network(peers=2)
            worker = Machine({"Foo": State()}, id="worker")
            worker.export_to(net[0])
            net.assert_eventually_discovered(1, peers=[1])
            net[0].dispose()
            started = time.monotonic()
            with pytest.raises(AssertionError) as failed:
                net.assert_eventually_active("worker", "Foo", timeout=20)
            assert time.monotonic() - started < 10
            assert "ended unmet" in str(failed.value), str(failed.value)


        @pytest.mark.trio
        async def test_owner_leaves_trio(ampubsub_network_trio):
            net = await ampubsub_network_trio(peers=2)
            worker = Machine({"Foo": State()}, id="worker")
            worker.export_to(net[0])
            await net.assert_eventually_discovered(1, peers=[1])
            net[0].dispose()
            started = time.monotonic()
            with pytest.raises(AssertionError) as failed:
                await net.assert_eventually_active("worker", "Foo", timeout=20)
            assert time.monotonic() - started < 10
            assert "ended unmet" in str(failed.value), str(failed.value)
        """
    )
    run(pytester).assert_outcomes(passed=2)
