"""The seed README's usage, in Python, across two processes over py-libp2p.

A worker peer (its own process) exports three workers: "worker-2" is tagged
"foo" and lets anyone mutate it (``export_to(topic, mutable_by="*")``); its
handler adds "Baz" whenever "Bar" activates. The client peer (this process)
joins through the worker peer's address and does what Go's example does:
list the machines of that peer, find the one tagged "foo", add "Bar" (a
direct request to the owner, which answers with its Result) and wait for
"Baz". "worker-1" was exported without permission: mutating it is refused.

Run: python examples/seed_usage.py [--transport memory] [--psk-file KEY]
(``memory`` runs both peers in this process; ``--psk-file`` makes it a
private network, see docs/security.md.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

from ampubsub_plugin import MemoryNetwork, MutationDenied, RemoteMachine, Topic
from asyncmachine import Event, Machine, State

TOPIC = "seed-usage"
SCHEMA = {"Foo": State(require=["Bar"]), "Bar": State(), "Baz": State()}
TIMEOUT = 20


class BarMakesBaz:
    """The worker's handlers: whoever adds Bar (here or remotely), Baz follows."""

    def Bar_state(self, e: Event) -> None:
        e.machine.add("Baz")


def transport(kind: str, memory: MemoryNetwork, psk: str | None) -> Any:
    if kind == "memory":
        return memory.transport()
    from ampubsub_plugin import Libp2pTransport

    return Libp2pTransport(listen=["/ip4/127.0.0.1/tcp/0"], psk=psk)


def joined(topic: Topic) -> Topic:
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    return topic


def worker_peer(topic_transport: Any) -> Topic:
    """Peer init (Go: NewTopic, Start, Joining) with three exported workers."""
    topic = joined(Topic(TOPIC, transport=topic_transport))
    Machine(SCHEMA, id="worker-1", tags=["bar"]).export_to(topic)
    foo = Machine(SCHEMA, id="worker-2", tags=["foo:1", "region:eu"])
    foo.bind(BarMakesBaz())
    foo.export_to(topic, mutable_by="*")
    Machine(SCHEMA, id="worker-3").export_to(topic)
    return topic


def list_machines(topic: Topic, peer_id: str) -> list[RemoteMachine]:
    """Go's ``Mach.Add1(ss.ListMachines, Pass(args))``, with a callback."""
    found: list[RemoteMachine] = []
    topic.mach.add(
        "ListMachines", {"filters": {"peer_id": peer_id}, "callback": found.extend}
    )
    return found


def tag_value(tags: list[str], key: str) -> str:
    """Go's ``amhelp.TagValue``: the value of a ``key:value`` tag, or ""."""
    for tag in tags:
        name, _, value = tag.partition(":")
        if name == key:
            return value
    return ""


def client(bootstrap: list[str], peer_id: str, topic_transport: Any) -> None:
    ps = joined(Topic(TOPIC, transport=topic_transport, bootstrap=bootstrap))
    # list the machines exported by the worker peer (all three, once known)
    assert ps.mach.when_query(
        lambda _: len(ps.list_machines(peer_id=peer_id)) == 3
    ).wait(TIMEOUT)
    workers = sorted(list_machines(ps, peer_id), key=lambda w: w.id)
    print("peer A exports:", ", ".join(w.id for w in workers), flush=True)

    # find a worker tagged "foo", add state "Bar", and wait for state "Baz"
    for mach in workers:
        if tag_value(mach.tags, "foo") == "":
            continue
        result = mach.add("Bar")
        print(f"Bar set on {mach.id}: {result.name}", flush=True)
        assert mach.when("Baz").wait(TIMEOUT)
        print(f"Baz active on {mach.id}: {mach}", flush=True)
        break

    # a worker exported without mutable_by stays read-only
    try:
        workers[0].add("Bar")
    except MutationDenied as err:
        print(f"{workers[0].id} refuses: {err}", flush=True)
    assert ps.dispose().wait(TIMEOUT)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", nargs="?", choices=("both", "worker"), default="both")
    parser.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
    parser.add_argument("--psk-file", help="a libp2p swarm key file")
    args = parser.parse_args()
    memory = MemoryNetwork()

    if args.role == "worker":  # the child process
        topic = worker_peer(transport(args.transport, memory, args.psk_file))
        print("ready", topic.peer_id, " ".join(topic.addrs), flush=True)
        sys.stdin.read()  # until the client closes our stdin
        assert topic.dispose().wait(TIMEOUT)
        return 0

    if args.transport == "memory":  # one process: both peers here
        worker = worker_peer(memory.transport())
        client(worker.addrs, worker.peer_id, memory.transport())
        assert worker.dispose().wait(TIMEOUT)
        return 0

    command = [sys.executable, __file__, "worker"]
    if args.psk_file:
        command += ["--psk-file", args.psk_file]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            ready, peer_id, *addrs = child.stdout.readline().split()
            if ready != "ready":
                raise SystemExit("the worker process didn't start")
            client(addrs, peer_id, transport("libp2p", memory, args.psk_file))
        finally:
            child.stdin.close()
            child.wait(TIMEOUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
