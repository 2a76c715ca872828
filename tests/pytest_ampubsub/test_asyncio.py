"""ampubsub_network_asyncio under anyio's asyncio backend; anyio's trio backend."""

from __future__ import annotations

import pytest

from .helpers import LEAK_CONFTEST, run, threads_left

ASYNCIO_SESSION = """
    import asyncio

    import pytest

    from asyncmachine import Machine, State

    TOPICS = []


    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(request):
        return request.param


    @pytest.mark.anyio
    async def test_network(anyio_backend, ampubsub_network_asyncio,
                           ampubsub_network_trio):
        factory = (
            ampubsub_network_asyncio if anyio_backend == "asyncio"
            else ampubsub_network_trio
        )
        net = await factory(peers=3)
        TOPICS.extend(net.topics)
        worker = Machine({"Foo": State()}, id="worker")
        worker.export_to(net[0])
        worker.add("Foo")
        await net.assert_eventually_active("worker", "Foo")
        await net.assert_converged()
        topic = await net.add_peer()
        TOPICS.append(topic)
        await net.assert_eventually_active("worker", "Foo", peers=[topic])
        await net.assert_eventually_clock("worker", {"Foo": 1})
        with pytest.raises(AssertionError, match="first to disagree"):
            await net.assert_eventually_clock("worker", {"Foo": 2}, timeout=0.2)


    @pytest.mark.anyio
    async def test_sync_fixture_in_asyncio(anyio_backend, ampubsub_network):
        if anyio_backend == "asyncio":
            with pytest.raises(RuntimeError, match="would freeze the running asyncio"):
                ampubsub_network(peers=1)
        else:
            with pytest.raises(RuntimeError, match="use ampubsub_network_trio"):
                ampubsub_network(peers=1)


    @pytest.mark.anyio
    async def test_asyncio_fixture_in_trio(anyio_backend, ampubsub_network_asyncio):
        if anyio_backend == "trio":
            with pytest.raises(RuntimeError, match="use ampubsub_network_trio"):
                await ampubsub_network_asyncio(peers=1)


    def test_zz_every_topic_was_disposed():
        assert len(TOPICS) == 8
        assert all(t.mach.is_disposed for t in TOPICS)
"""


def test_asyncio_and_anyio_backends(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(ASYNCIO_SESSION)
    result = run(pytester, "-v", "-p", "anyio")
    result.assert_outcomes(passed=7)
    # the shared thread is stopped; trio's idle worker-thread cache may stay
    assert "ampubsub-trio" not in threads_left(result)


PYTEST_ASYNCIO_SESSION = """
    import asyncio

    import pytest

    from asyncmachine import Machine, State


    @pytest.mark.asyncio
    async def test_network(ampubsub_network_asyncio):
        net = await ampubsub_network_asyncio(peers=3)
        worker = Machine({"Foo": State()}, id="worker")
        worker.export_to(net[0])
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        worker.add("Foo")
        await net.assert_eventually_active("worker", "Foo")
        await net.assert_consistently_active("worker", "Foo", duration=0.3)
        ticker.cancel()
        assert ticks >= 5  # the loop kept running while the checks waited


    @pytest.mark.asyncio
    async def test_sync_fixture_in_asyncio(ampubsub_network):
        ampubsub_network(peers=1)


    def test_sync_checks_in_a_sync_test(ampubsub_network):
        ampubsub_network(peers=2).assert_eventually_discovered(0)
"""


def test_pytest_asyncio_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PYTEST_ASYNCIO_SESSION)
    result = run(pytester, "-v", "-p", "asyncio", "--strict-markers")
    result.stdout.fnmatch_lines(
        [
            "*::test_network PASSED*",
            "*::test_sync_fixture_in_asyncio FAILED*",
            "*::test_sync_checks_in_a_sync_test PASSED*",
            "E * RuntimeError: ampubsub_network blocks, which would freeze the "
            "running asyncio event loop; in asyncio tests use "
            "ampubsub_network_asyncio and await its checks",
        ]
    )
    result.assert_outcomes(passed=2, failed=1)
