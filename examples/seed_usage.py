"""The seed README's usage, in Python: peers, remote workers, tags, waiting.

Peer A exports three workers (one tagged "foo"); peer B joins through A's
address, lists A's machines, picks the worker tagged "foo" and waits for
its state "Baz". Remote machines are read-only: checking and waiting yes,
mutations no (they raise ReadOnlyError).

Run: python examples/seed_usage.py [--transport memory]
"""

from __future__ import annotations

import argparse
import sys

from ampubsub_plugin import MemoryNetwork, Topic
from asyncmachine import Machine, ReadOnlyError, State

SCHEMA = {"Foo": State(require=["Bar"]), "Bar": State(), "Baz": State()}


def transport(kind: str, memory: MemoryNetwork) -> object:
    if kind == "memory":
        return memory.transport()
    from ampubsub_plugin import Libp2pTransport

    return Libp2pTransport(listen=["/ip4/127.0.0.1/tcp/0"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
    kind = parser.parse_args().transport
    memory = MemoryNetwork()

    # peer init: the first peer has nothing to dial
    workers = [
        Machine(SCHEMA, id="worker-1", tags=["bar"]),
        Machine(SCHEMA, id="worker-2", tags=["foo", "region:eu"]),
        Machine(SCHEMA, id="worker-3"),
    ]
    a = Topic("seed-usage", transport=transport(kind, memory), machines=workers)
    a.start()
    assert a.mach.when("Connected").wait(10), a.mach.err
    a.join()
    assert a.mach.when("Joined").wait(10)

    # a second peer connects to the address of the first one
    b = Topic("seed-usage", transport=transport(kind, memory), bootstrap=a.addrs)
    b.start()
    assert b.mach.when("Connected").wait(10), b.mach.err
    b.join()
    assert b.mach.when("Joined").wait(10)

    # list the machines exported by peer A (wait until all three are known)
    assert b.mach.when_query(
        lambda _: len(b.list_machines(peer_id=a.peer_id)) == 3
    ).wait(10)
    remote_workers = b.list_machines(peer_id=a.peer_id)
    print("peer A exports:", ", ".join(w.id for w in remote_workers))

    # find a worker tagged "foo" and wait for its state "Baz"
    worker = next(w for w in remote_workers if "foo" in w.tags)
    try:
        worker.add("Bar")
    except ReadOnlyError as err:
        print("as in Go, mutations are refused:", err)
    baz = worker.when("Baz")
    workers[1].add("Baz")  # the owner changes its machine ...
    assert baz.wait(10)  # ... and the remote view follows
    print(f"Baz active on {worker.id}: {worker}")

    for topic in (b, a):
        assert topic.dispose().wait(10)  # the bye went out
    return 0


if __name__ == "__main__":
    sys.exit(main())
