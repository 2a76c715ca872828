"""Matching clients with supervisors by tags, across peers.

Supervisors export a machine tagged ``role:supervisor`` and ``pool:<name>``;
a client looks up the supervisors of its pool on the network, picks one
that is Ready and not Busy, and waits for it to become Busy with its job.

Run: python examples/supervisors.py [--transport memory]
"""

from __future__ import annotations

import argparse
import sys

from ampubsub_plugin import MemoryNetwork, Topic
from asyncmachine import Machine, State

SUPERVISOR = {
    "Ready": State(),
    "Busy": State(require=["Ready"]),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
    kind = parser.parse_args().transport
    memory = MemoryNetwork()

    def transport() -> object:
        if kind == "memory":
            return memory.transport()
        from ampubsub_plugin import Libp2pTransport

        return Libp2pTransport()

    supervisors = {
        "s-a1": ("pool:a", True),
        "s-a2": ("pool:a", False),  # not ready: must not be picked
        "s-b1": ("pool:b", True),
    }
    machines = {}
    topics = []
    for name, (pool, ready) in supervisors.items():
        m = Machine(SUPERVISOR, id=name, tags=["role:supervisor", pool])
        if ready:
            m.add("Ready")
        machines[name] = m
        boot = [addr for t in topics for addr in t.addrs]
        topic = Topic(
            "supervisors", transport=transport(), bootstrap=boot, machines=[m]
        )
        topic.start()
        assert topic.mach.when("Connected").wait(10), topic.mach.err
        topic.join()
        assert topic.mach.when("Joined").wait(10)
        topics.append(topic)

    client = Topic(
        "supervisors",
        transport=transport(),
        bootstrap=[a for t in topics for a in t.addrs],
    )
    client.start()
    assert client.mach.when("Connected").wait(10), client.mach.err
    client.join()
    assert client.mach.when("Joined").wait(10)

    def pool_a() -> list:
        return [
            s
            for s in client.list_machines(tag="role")
            if "role:supervisor" in s.tags and "pool:a" in s.tags
        ]

    assert client.mach.when_query(lambda _: len(pool_a()) == 2).wait(10)
    free = [s for s in pool_a() if s.is_active("Ready") and s.not_active("Busy")]
    print("pool a:", [(s.id, s.active_states) for s in pool_a()])
    chosen = free[0]
    print("client picked", chosen.id, "on peer", chosen.peer_id[-8:])

    busy = chosen.when("Busy")
    machines[chosen.id].add("Busy")  # the supervisor takes the job
    assert busy.wait(10)
    print(f"{chosen.id} is busy with our job: {chosen}")

    for topic in (client, *topics):
        topic.dispose()
    for topic in (client, *topics):
        assert topic.mach.when_disposed().wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
