"""Copyable: the same checks from asyncio tests (pytest-asyncio or anyio).

In an asyncio test, use ``ampubsub_network_asyncio``: its topics run on the
shared background trio thread, and every check is awaited on the test's
loop, which keeps running. (``ampubsub_network`` blocks, so calling it from
an asyncio test raises RuntimeError instead of freezing the loop.)

Run: pytest examples/test_network_asyncio.py   (needs pytest-asyncio)
"""

from __future__ import annotations

import asyncio

import pytest

from asyncmachine import Machine, State

pytestmark = pytest.mark.asyncio

SCHEMA = {
    "Ready": State(),
    "Working": State(require=["Ready"]),
    "Done": State(remove=["Working"]),
}


async def test_other_peers_see_the_worker(ampubsub_network_asyncio):
    net = await ampubsub_network_asyncio(peers=3)
    worker = Machine(SCHEMA, id="worker")
    worker.export_to(net[0])

    worker.add(["Ready", "Working"])
    await net.assert_eventually_active("worker", ["Ready", "Working"])
    worker.add("Done")
    await net.assert_eventually_inactive("worker", "Working", peers=[1, 2])
    await net.assert_converged()


async def test_asyncio_code_alongside(ampubsub_network_asyncio):
    net = await ampubsub_network_asyncio(peers=2)
    worker = Machine(SCHEMA, id="worker")
    worker.export_to(net[0])

    async def finish_later() -> None:
        await asyncio.sleep(0.05)
        worker.add(["Ready", "Done"])

    task = asyncio.create_task(finish_later())
    await net.assert_eventually_active("worker", "Done", timeout=5)
    await task
    late = await net.add_peer()
    await net.assert_eventually_active("worker", "Done", peers=[late])
