"""--mp-timeline: each peer's steps and both ends of its direct requests."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from netbench.timeline import STEPS, Timeline, render

from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.topic import Topic
from tests.ampubsub_plugin.netutil import worker


def test_a_newcomers_pull_shows_at_both_ends_and_its_steps_in_order(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "proc-0.json")
    timeline = Timeline(path, peers=2)

    async def main() -> None:
        net = MemoryNetwork()
        old = Topic("t", transport=net.transport(), machines=[worker("old")])
        new = Topic("t", transport=net.transport(), machines=[worker("new")])
        topics = {0: old, 1: new}
        for peer, topic in topics.items():
            timeline.watch(peer, topic)
        complete: set[int] = set()
        with trio.fail_after(20):
            old.start()
            assert await old.mach.when("Connected")
            old.join()
            assert await old.mach.when("Joined")
            timeline.sample({0: old}, complete)  # alone: lacks the newcomer
            new.bootstrap = old.addrs
            new.start()
            assert await new.mach.when("Connected")
            new.join()
            for peer, topic in topics.items():
                assert await topic.mach.when_query(
                    lambda _, t=topic: len(t.list_machines()) == 1
                )
                complete.add(peer)
            assert await new.mach.when_query(lambda _: new.core.counters["pull_ok"])
            timeline.sample(topics, complete)
            timeline.write()
            for topic in topics.values():
                topic.dispose()
                assert await topic.mach.when_disposed()

    trio.run(main)
    record = json.loads(Path(path).read_text())
    steps = record["steps"]["1"]
    assert {"joined", "hello", "pull_ok", "settled", "complete"} <= steps.keys()
    # the newcomer asked the old peer once, and the old peer served it
    ((caller, server, kind, _start, took, reply),) = record["requests"]
    assert (caller, kind) == (1, "snapshot") and took >= 0 and reply > 0
    assert server == record["ids"]["0"]
    ((host, asker, _start, _took, served),) = record["served"]
    assert (host, asker, served) == (0, record["ids"]["1"], reply)
    table = render(str(tmp_path))
    assert all(step[:10] in table.splitlines()[0] for step in STEPS)
    assert "1 ->    0 snapshot" in table and "0 <-    1" in table
    # the last sample before the old peer was complete: it lacked peer 1
    lacked = table.split("last lacked before complete")[1].splitlines()[1].split()
    assert lacked[0] == "0" and lacked[2:] == ["1"]
