"""An asyncio program: topics run on ampubsub's background trio thread, and
every waiter is awaitable from asyncio.

Run: python examples/asyncio_app.py [--transport memory]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ampubsub_plugin import MemoryNetwork, Topic
from asyncmachine import Machine, State

SCHEMA = {"Downloading": State(), "Done": State(remove=["Downloading"])}


async def main(kind: str) -> int:
    memory = MemoryNetwork()

    def transport() -> object:
        if kind == "memory":
            return memory.transport()
        from ampubsub_plugin import Libp2pTransport

        return Libp2pTransport()

    job = Machine(SCHEMA, id="download-42")
    owner = Topic("asyncio-demo", transport=transport(), machines=[job])
    owner.start()
    await asyncio.wait_for(owner.mach.when("Connected"), 10)
    owner.join()
    viewer = Topic("asyncio-demo", transport=transport(), bootstrap=owner.addrs)
    viewer.start()
    await asyncio.wait_for(viewer.mach.when("Connected"), 10)
    viewer.join()
    await asyncio.wait_for(viewer.mach.when("Joined"), 10)

    found = viewer.mach.when_query(
        lambda _: bool(viewer.list_machines(id="download-42"))
    )
    await asyncio.wait_for(found, 10)
    remote = viewer.list_machines(id="download-42")[0]

    async def work() -> None:
        job.add("Downloading")
        await asyncio.sleep(0.1)  # pretend to download
        job.add("Done")

    task = asyncio.create_task(work())
    await asyncio.wait_for(remote.when("Done"), 10)
    await task
    print("viewer saw the download finish:", remote)

    # dispose() returns a waiter: the last updates and the bye went out
    for topic in (viewer, owner):
        assert await asyncio.wait_for(topic.dispose(), 10)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
    sys.exit(asyncio.run(main(parser.parse_args().transport)))
