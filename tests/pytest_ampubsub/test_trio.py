"""ampubsub_network_trio under pytest-trio, and the sync/trio mix-ups."""

from __future__ import annotations

import pytest

from .helpers import LEAK_CONFTEST, elapsed, run, threads_left

TRIO_SESSION = """
    import threading
    import time

    import pytest

    from asyncmachine import Machine, State

    SCHEMA = {"Foo": State(), "Bar": State()}
    TOPICS = []


    @pytest.mark.trio
    async def test_trio_network(ampubsub_network_trio):
        net = await ampubsub_network_trio(peers=3)
        TOPICS.extend(net.topics)
        assert len(net) == 3 and all(t.mach.is_active("Joined") for t in net)
        worker = Machine(SCHEMA, id="worker")
        worker.export_to(net[0])
        worker.add("Foo")
        await net.assert_eventually_active("worker", "Foo")
        worker.remove("Foo")
        await net.assert_eventually_inactive("worker", "Foo")
        await net.assert_eventually_clock("worker", {"Foo": 2})
        await net.assert_converged()
        seen = await net.eventually(lambda: net[2].list_machines(id="worker")[0])
        assert seen.id == "worker" and seen.peer_id == net[0].peer_id
        topic = await net.add_peer()
        TOPICS.append(topic)
        await net.assert_eventually_discovered(1, peers=[3])
        worker.add("Bar")
        await net.assert_eventually_active("worker", "Bar")
        await net.assert_consistently_active("worker", "Bar", duration=0.2, peers=[1])
        # the topics run on this test's own trio run: no background thread
        assert [t.name for t in threading.enumerate()] == ["MainThread"]


    @pytest.mark.trio
    @pytest.mark.ampubsub(peers=2)
    async def test_trio_check_fails(ampubsub_network_trio):
        net = await ampubsub_network_trio()
        TOPICS.extend(net.topics)
        assert len(net) == 2
        await net.assert_eventually_active("nobody", "Foo", timeout=0.3)


    @pytest.mark.trio
    async def test_trio_crash_fails_fast(ampubsub_network_trio):
        net = await ampubsub_network_trio(peers=2)
        TOPICS.extend(net.topics)
        net[1].mach.add_err(RuntimeError("boom"))
        started = time.monotonic()
        try:
            await net.assert_eventually_active("nobody", "Foo", timeout=10)
        finally:
            print(f"ELAPSED trio-crash {time.monotonic() - started:.3f}")


    @pytest.mark.trio
    async def test_sync_fixture_in_a_trio_test(ampubsub_network):
        ampubsub_network(peers=1)


    def test_trio_fixture_in_a_sync_test(ampubsub_network_trio):
        pass


    def test_zz_every_network_was_torn_down():
        assert len(TOPICS) == 3 + 1 + 2 + 2
        assert all(t.mach.is_disposed for t in TOPICS)
"""


def test_trio_tests_use_their_own_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(TRIO_SESSION)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_trio_network PASSED*",
            "*::test_trio_check_fails FAILED*",
            "*::test_trio_crash_fails_fast FAILED*",
            "*::test_sync_fixture_in_a_trio_test FAILED*",
            "*::test_trio_fixture_in_a_sync_test ERROR*",
            "*::test_zz_every_network_was_torn_down PASSED*",
        ]
    )
    # pytest-trio shows a trio test's failure inside an ExceptionGroup
    result.stdout.fnmatch_lines(
        [
            "*| AssertionError: nobody Foo active: not met after 0.3?s (waiting for *)",
            "*| what each peer saw:",
            "*- ampubsub network 0 (ampubsub-test-*) -*",
        ]
    )
    result.stdout.fnmatch_lines(["*| *peer 1 (*) crashed: RuntimeError('boom')"])
    result.stdout.fnmatch_lines(
        [
            "*RuntimeError: ampubsub_network blocks; "
            "in trio tests use ampubsub_network_trio",
        ]
    )
    # pytest's own message; the plugin could say which fixture to use instead
    result.stdout.fnmatch_lines(
        ["*requested an async fixture 'ampubsub_network_trio'*"]
    )
    result.assert_outcomes(passed=2, failed=3, errors=1)
    assert elapsed(result, "trio-crash") < 2.0
    threads = threads_left(result)
    print(f"inner session left threads {threads}")
    assert threads == ["MainThread"]
