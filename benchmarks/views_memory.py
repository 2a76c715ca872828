"""Memory of a discovered remote machine: a core record vs a built view.

Issue 12 asks that a remote machine cost <= 2 KB (3 states) until a user
asks for its ``RemoteMachine``. One peer discovers ``--machines`` machines
of 3 states (plus Exception) from ``--peers`` owners, all sharing a schema;
tracemalloc measures the bytes held after discovery (records only) and after
every view is built.

    python benchmarks/views_memory.py --machines 3000 --runs 3
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ampubsub_plugin._gossip import GossipConfig, GossipCore
from ampubsub_plugin._views import RemoteViews
from ampubsub_plugin.protocol import Info, InfoMsg, schema_hash
from asyncmachine import Machine, State

SCHEMA = {"Foo": State(require=["Bar"]), "Bar": State(), "Baz": State()}


class Quiet:
    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        return True

    def machine_discovered(self, remote: object) -> None: ...

    def machine_updated(self, remote: object) -> None: ...

    def machine_gone(self, remote: object) -> None: ...

    def wants_remotes(self) -> bool:
        return False


def one_run(machines: int, peers: int) -> tuple[float, float]:
    states = ["Foo", "Bar", "Baz", "Exception"]
    schema = Machine(SCHEMA).schema
    key = schema_hash(schema, states)
    config = GossipConfig(max_peers=peers * 2)
    core = GossipCore("me", config=config, rng=random.Random(0))
    core.joined(0.0, alone=True)
    views = RemoteViews(core)
    hooks = Quiet()
    per_peer = machines // peers
    msgs = []
    for p in range(peers):
        infos = {
            i: Info(
                f"p{p}-m{i}",
                schema if p == 0 and i == 0 else None,
                states,
                [1, 0, 0, 0],
                ["kind:worker"],
                "",
                schema_hash=key,
            )
            for i in range(per_peer)
        }
        msgs.append((f"peer{p:05d}", InfoMsg({f"peer{p:05d}": infos}, {})))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for sender, msg in msgs:
        views.apply(core.receive(sender, msg, 1.0), hooks)
    del msgs
    gc.collect()
    records = tracemalloc.get_traced_memory()[0] - before
    assert views.built == 0 and len(core.records()) == per_peer * peers
    views.all()
    gc.collect()
    built = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    count = per_peer * peers
    return records / count, built / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--machines", type=int, default=3000)
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run(args.machines, args.peers) for _ in range(args.runs)]
    for label, idx in (("record only", 0), ("view built", 1)):
        values = sorted(r[idx] for r in runs)
        print(
            f"{label:12s} bytes/machine min {values[0]:.0f} "
            f"median {statistics.median(values):.0f} max {values[-1]:.0f}"
        )
    ratio = statistics.median(r[1] for r in runs) / statistics.median(
        r[0] for r in runs
    )
    print(f"built/record ratio: {ratio:.1f}x")


if __name__ == "__main__":
    main()
