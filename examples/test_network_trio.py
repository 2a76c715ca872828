"""Copyable: the same checks from trio tests (pytest-trio).

In a trio test, use ``ampubsub_network_trio``: its topics run on the test's
own trio run, and every check is awaited. (``ampubsub_network`` blocks, so
calling it from a trio test raises RuntimeError.)

Run: pytest examples/test_network_trio.py   (needs pytest-trio)
"""

from __future__ import annotations

import pytest
import trio

from asyncmachine import Machine, State

pytestmark = pytest.mark.trio

SCHEMA = {
    "Ready": State(),
    "Working": State(require=["Ready"]),
    "Done": State(remove=["Working"]),
}


async def test_other_peers_see_the_worker(ampubsub_network_trio):
    net = await ampubsub_network_trio(peers=3)
    worker = Machine(SCHEMA, id="worker")
    worker.export_to(net[0])

    worker.add(["Ready", "Working"])
    await net.assert_eventually_active("worker", ["Ready", "Working"])
    worker.add("Done")
    await net.assert_eventually_inactive("worker", "Working", peers=[1, 2])
    await net.assert_converged()


async def test_trio_code_alongside(ampubsub_network_trio):
    net = await ampubsub_network_trio(peers=2)
    worker = Machine(SCHEMA, id="worker")
    worker.export_to(net[1])

    async def work() -> None:  # any trio code of yours, on the same run
        worker.add(["Ready", "Working"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(work)
        await net.assert_eventually_active("worker", "Working", peers=[0])
    await net.add_peer()
    await net.assert_eventually_discovered(1, peers=[2])  # the new peer, net[2]
