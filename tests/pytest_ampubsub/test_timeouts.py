"""A trio test killed by pytest-timeout (or crashed) fails alone.

pytest-timeout's ``signal`` method raises from SIGALRM; landing in
``trio.run``'s I/O wait it abandons the run, which used to fail every later
test ("Attempted to call run() from inside a run()", or the sync fixture
claiming to be called from trio). The plugin now finishes such a run.
"""

from __future__ import annotations

import pytest

from .helpers import LEAK_CONFTEST, run, sockets_before_after, threads_left, write_ini

AFTER_A_TIMEOUT = """
    import pytest
    import trio

    from asyncmachine import Machine, State

    TOPICS = []


    @pytest.mark.trio
    @pytest.mark.timeout(1)
    async def test_a_hangs_on_memory(ampubsub_network_trio):
        net = await ampubsub_network_trio(peers=2)
        TOPICS.extend(net.topics)
        await trio.sleep(60)


    @pytest.mark.trio
    @pytest.mark.timeout(5)
    async def test_b_hangs_on_libp2p(ampubsub_network_trio):
        net = await ampubsub_network_trio(peers=2, transport="libp2p")
        TOPICS.extend(net.topics)
        await trio.Event().wait()


    @pytest.mark.trio
    async def test_c_crashes(ampubsub_network_trio):
        net = await ampubsub_network_trio(peers=2)
        TOPICS.extend(net.topics)
        raise RuntimeError("the test itself broke")


    @pytest.mark.trio
    async def test_d_next_trio_test(ampubsub_network_trio):
        net = await ampubsub_network_trio(peers=2, machines=1)
        TOPICS.extend(net.topics)
        await net.assert_eventually_discovered(1)


    def test_e_next_sync_test(ampubsub_network):
        net = ampubsub_network(peers=2, machines=1)
        TOPICS.extend(net.topics)
        net.assert_eventually_discovered(1)


    @pytest.mark.trio
    async def test_f_plain_trio_test():
        await trio.sleep(0)


    def test_g_every_topic_was_disposed():
        assert len(TOPICS) == 10
        assert [t.mach.is_disposed for t in TOPICS] == [True] * 10
"""


def test_a_timed_out_trio_test_fails_alone(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    write_ini(pytester, "timeout_method = signal")
    pytester.makepyfile(AFTER_A_TIMEOUT)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_a_hangs_on_memory FAILED*",
            "*::test_b_hangs_on_libp2p FAILED*",
            "*::test_c_crashes FAILED*",
            "*::test_d_next_trio_test PASSED*",
            "*::test_e_next_sync_test PASSED*",
            "*::test_f_plain_trio_test PASSED*",
            "*::test_g_every_topic_was_disposed PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(["*Failed: Timeout (>1.0s) from pytest-timeout*"])
    # the timed-out test still gets the report of its network
    result.stdout.fnmatch_lines(["*- ampubsub network 0 (ampubsub-test-*) -*"])
    result.assert_outcomes(passed=4, failed=3)
    assert "Attempted to call run() from inside a run()" not in result.stdout.str()
    assert threads_left(result) == ["MainThread"]
    before, after = sockets_before_after(result)
    assert after == before


def test_trio_detection_is_not_fooled_by_a_dead_run(pytester: pytest.Pytester) -> None:
    """A run left installed but not running: not "in a trio test"."""
    pytester.makepyfile(
        """
        import trio

        from pytest_ampubsub._network import refuse_blocking
        from pytest_ampubsub._trio_guard import finish_abandoned_run


        def test_dead_run_is_not_a_trio_test():
            async def hang():
                await trio.sleep(60)

            def interrupt():
                raise KeyboardInterrupt  # out of the I/O wait, like SIGALRM

            async def main():
                trio.lowlevel.current_trio_token().run_sync_soon(interrupt)
                await hang()

            try:
                trio.run(main)
            except BaseException:
                pass
            refuse_blocking("x")  # no RuntimeError: nothing is running here
            finish_abandoned_run()
            assert not trio.lowlevel.in_trio_run()
            trio.run(trio.sleep, 0)
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_a_timed_out_asyncio_test_fails_alone(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    write_ini(pytester, "timeout_method = signal")
    pytester.makepyfile(
        """
        import asyncio

        import pytest


        @pytest.mark.asyncio
        @pytest.mark.timeout(1)
        async def test_a_hangs(ampubsub_network_asyncio):
            await ampubsub_network_asyncio(peers=2)
            await asyncio.sleep(60)


        @pytest.mark.asyncio
        async def test_b_next_asyncio_test(ampubsub_network_asyncio):
            net = await ampubsub_network_asyncio(peers=2, machines=1)
            await net.assert_eventually_discovered(1)


        def test_c_next_sync_test(ampubsub_network):
            ampubsub_network(peers=2, machines=1).assert_eventually_discovered(1)
        """
    )
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_a_hangs FAILED*",
            "*::test_b_next_asyncio_test PASSED*",
            "*::test_c_next_sync_test PASSED*",
        ]
    )
    result.assert_outcomes(passed=2, failed=1)
    assert threads_left(result) == ["MainThread"]
