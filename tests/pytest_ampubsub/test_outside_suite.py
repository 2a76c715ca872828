"""The issue's "done when": an outside suite of sync, trio and asyncio tests on
both transports passes in random order and with ``-n 2`` (pytest-xdist)."""

from __future__ import annotations

import pytest

from .helpers import run

SUITE = """
    import asyncio

    import pytest
    import trio

    from asyncmachine import Machine, State

    SCHEMA = {"Ready": State(), "Job": State(require=["Ready"])}
    TRANSPORTS = pytest.mark.parametrize("transport", ["memory", "libp2p"])


    def worker(net):
        machine = Machine(SCHEMA, id="worker")
        machine.export_to(net[0])
        return machine


    @TRANSPORTS
    def test_sync(ampubsub_network, transport):
        net = ampubsub_network(peers=3, transport=transport)
        w = worker(net)
        w.add(["Ready", "Job"])
        net.assert_eventually_clock("worker", {"Job": 1})
        late = net.add_peer()
        net.assert_eventually_active("worker", "Job", peers=[late])


    @TRANSPORTS
    @pytest.mark.trio
    async def test_trio(ampubsub_network_trio, transport):
        net = await ampubsub_network_trio(peers=3, transport=transport)
        w = worker(net)
        w.add("Ready")
        await net.assert_eventually_active("worker", "Ready")
        with trio.fail_after(20):
            await net.assert_converged()


    @TRANSPORTS
    @pytest.mark.asyncio
    async def test_asyncio(ampubsub_network_asyncio, transport):
        net = await ampubsub_network_asyncio(peers=3, transport=transport)
        w = worker(net)
        w.add("Ready")
        await asyncio.wait_for(net.assert_eventually_active("worker", "Ready"), 20)
        await net.assert_consistently_active("worker", "Ready", duration=0.2)
"""

#: random order without another plugin: a seeded shuffle of the collection
SHUFFLE = """
    import os
    import random


    def pytest_collection_modifyitems(items):
        random.Random(int(os.environ["SHUFFLE_SEED"])).shuffle(items)
        print("ORDER", [item.name for item in items])
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_random_order(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setenv("SHUFFLE_SEED", str(seed))
    pytester.makeconftest(SHUFFLE)
    pytester.makepyfile(SUITE)
    result = run(pytester, "-s")
    result.assert_outcomes(passed=6)


def test_two_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = run(pytester, "-n", "2")
    result.stdout.fnmatch_lines(["*2 workers [[]6 items[]]*"])
    result.assert_outcomes(passed=6)
