"""What a lost hello costs: seconds until the peers that missed it see its owner.

In the virtual-time simulator (``netbench.sim``: real GossipCores, pulls as
the topic does them), N peers join ``--stagger`` s apart on ``--cpus``
processors; the first hello of ``--victims`` random joiners is dropped for
``--missed`` random earlier peers each. Prints, per seed, how long each of
those peers took to see the owner's machines, and when every peer was
synced. ``--gossip-sample`` overrides ``GossipConfig.gossip_sample``.

    python benchmarks/lost_hello_sim.py --seeds 1,2,3,4 --gossip-sample 5
"""

from __future__ import annotations

import argparse
import functools
import random
from typing import Any

from netbench import sim
from netbench.sim import SimPeer, SimSettings, Simulation

from ampubsub_plugin._gossip import GossipConfig
from ampubsub_plugin.protocol import Message


class LostHellos(Simulation):
    """A simulation whose chosen joiners' first hello misses chosen peers."""

    def __init__(self, settings: SimSettings, missed_by: dict[int, set[int]]) -> None:
        super().__init__(settings)
        self.missed_by = missed_by
        self.dropped_at: dict[int, float] = {}
        #: (owner, peer that missed its hello) -> seconds until it saw it
        self.repaired: dict[tuple[int, int], float] = {}

    def _fanout(self, sender: SimPeer, msg: Message, size: int, now: float) -> None:
        owner = sender.index
        if (
            msg.TYPE != "info"
            or owner not in self.missed_by
            or owner in self.dropped_at
        ):
            super()._fanout(sender, msg, size, now)
            return
        self.dropped_at[owner] = now
        everyone, self.peers = (
            self.peers,
            [p for p in self.peers if p.index not in self.missed_by[owner]],
        )
        try:
            super()._fanout(sender, msg, size, now)
        finally:
            self.peers = everyone

    def _check(self, now: float) -> None:
        for owner, at in self.dropped_at.items():
            for peer in self.missed_by[owner]:
                if (owner, peer) in self.repaired:
                    continue
                view = self.peers[peer].core.roster.get(self.peers[owner].id)
                if view is not None and view.machines:
                    self.repaired[(owner, peer)] = now - at
        super()._check(now)


def run_seed(a: argparse.Namespace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    owners = rng.sample(range(a.missed + 1, a.peers), a.victims)
    missed_by = {o: set(rng.sample(range(o), a.missed)) for o in owners}
    settings = SimSettings(
        peers=a.peers,
        stagger=a.stagger,
        cpus=a.cpus,
        seed=seed,
        check_every=0.25,
        horizon=a.horizon,
    )
    run = LostHellos(settings, missed_by)
    res = run.run()
    return {
        "seed": seed,
        "synced_after_last_join_s": res.get("sync_after_last_join_s"),
        "repairs_s": sorted(round(v, 2) for v in run.repaired.values()),
        "unrepaired": a.victims * a.missed - len(run.repaired),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", type=int, default=100)
    p.add_argument("--stagger", type=float, default=0.25)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--victims", type=int, default=5)
    p.add_argument("--missed", type=int, default=3)
    p.add_argument("--seeds", default="1,2,3,4")
    p.add_argument("--horizon", type=float, default=400.0)
    p.add_argument("--gossip-sample", type=int, default=None)
    a = p.parse_args()
    if a.gossip_sample is not None:
        sim.GossipConfig = functools.partial(  # type: ignore[misc]
            GossipConfig, gossip_sample=a.gossip_sample
        )
    for seed in (int(s) for s in a.seeds.split(",")):
        r = run_seed(a, seed)
        print(
            f"seed {r['seed']}: synced {r['synced_after_last_join_s']} s after the "
            f"last join; lost hellos repaired after (s) {r['repairs_s']}"
            + (f"; {r['unrepaired']} never" if r["unrepaired"] else "")
        )


if __name__ == "__main__":
    main()
