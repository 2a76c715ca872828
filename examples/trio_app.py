"""A trio program: topics run on the program's own trio run.

Run: python examples/trio_app.py [--transport memory]
"""

from __future__ import annotations

import argparse
import sys

import trio

from ampubsub_plugin import MemoryNetwork, Topic
from asyncmachine import Machine, State

SCHEMA = {"Heating": State(), "Hot": State(require=["Heating"])}


async def main(kind: str) -> int:
    memory = MemoryNetwork()

    def transport() -> object:
        if kind == "memory":
            return memory.transport()
        from ampubsub_plugin import Libp2pTransport

        return Libp2pTransport()

    kettle = Machine(SCHEMA, id="kettle")
    with trio.fail_after(20):
        home = Topic("trio-demo", transport=transport(), machines=[kettle])
        home.start()
        assert await home.mach.when("Connected")
        home.join()
        phone = Topic("trio-demo", transport=transport(), bootstrap=home.addrs)
        phone.start()
        assert await phone.mach.when("Connected")
        phone.join()
        assert await phone.mach.when_query(
            lambda _: bool(phone.list_machines(id="kettle"))
        )
        remote = phone.list_machines(id="kettle")[0]

        async with trio.open_nursery() as nursery:

            async def boil() -> None:
                kettle.add("Heating")
                await trio.sleep(0.1)  # the water heats up
                kettle.add("Hot")

            nursery.start_soon(boil)
            assert await remote.when("Hot")
        print("the phone knows the kettle is hot:", remote)

        # dispose() returns a waiter: the last updates and the bye went out
        for topic in (phone, home):
            assert await topic.dispose()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
    sys.exit(trio.run(main, parser.parse_args().transport))
