"""Floods: a peer that sends far more than an honest one is shed at the door.

Each author has a budget (``author_rate``/``author_burst``, twice what an
honest peer may send); past it, its messages are dropped before decoding
(over gossipsub: not forwarded either). Virtual time on the memory
transport, so the flood's size is exact; what a flood costs in CPU and lag
over py-libp2p is a benchmark's question, not this test's.
"""

from __future__ import annotations

import trio

from ampubsub_plugin._gossip import GossipConfig
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.protocol import GossipMsg, ReqInfoMsg, encode

from .netutil import advance, dispose_all, run, sees, start_topic, until, worker


def test_a_flooding_author_is_shed_and_honest_updates_still_show() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.01, seed=20)
        cfg = GossipConfig(author_rate=60.0, author_burst=120)
        owner = await start_topic(net, machines=[worker("honest")], config=cfg)
        watcher = await start_topic(net, owner.addrs, config=cfg)
        await until([watcher], sees(1))
        (remote,) = watcher.list_machines(id="honest")
        flooder = net.transport()
        async with trio.open_nursery() as nursery:
            await nursery.start(flooder.serve, _Deaf())
            await flooder.connect(watcher.addrs)
            await flooder.join("t")
            noise = [
                encode(ReqInfoMsg([])),
                encode(GossipMsg({f"ghost{i}": {0: i} for i in range(50)})),
            ]
            machine = owner.exported[0]
            for _ in range(10):  # 1,000 messages a second for 10 s
                for i in range(1000):
                    await flooder.publish(noise[i % 2])
                    if i % 100 == 0:
                        await advance(0.001)
                # the honest owner's budget is its own: its change shows
                machine.toggle("Baz")
                with trio.fail_after(1):
                    assert await remote.when_time(["Baz"], [machine.tick("Baz")])
                await advance(max(0.0, 1.0 - (trio.current_time() % 1.0)))
            counters = watcher.counters
            # at most the budget got through: ~120 + 60 a second
            assert counters["drop_author_budget"] >= 10_000 - 120 - 60 * 11
            # names of ghosts from one author: capped, then they drain
            assert counters["missing_peers"] <= cfg.missing_per_author + 1
            nursery.cancel_scope.cancel()
        await advance(cfg.missing_ttl + 2)
        assert watcher.counters["missing_peers"] == 0
        await dispose_all([owner, watcher])

    run(main)


class _Deaf:
    def on_message(self, sender: str, data: bytes) -> None:
        pass

    def on_peer_joined(self, peer_id: str) -> None:
        pass

    def on_peer_left(self, peer_id: str) -> None:
        pass
