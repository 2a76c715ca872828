"""A network of three processes on loopback.

This process is a watcher peer; it starts two child processes (this same
file in child mode), each a peer exporting two workers. The watcher waits
until it sees all four machines, tells the children to set "Baz", waits for
that on every remote view, then closes the children's stdin: each says bye
and exits, and the watcher sees their machines disconnect.

Run: python examples/multiprocess.py
"""

from __future__ import annotations

import subprocess
import sys

from ampubsub_plugin import Libp2pTransport, Topic
from asyncmachine import Machine, State

TOPIC = "multiprocess-demo"
SCHEMA = {"Foo": State(), "Bar": State(), "Baz": State()}
TIMEOUT = 30


def join(topic: Topic) -> None:
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err


def child(index: int, bootstrap: list[str]) -> int:
    workers = [Machine(SCHEMA, id=f"proc{index}-w{j}", tags=["demo"]) for j in range(2)]
    topic = Topic(
        TOPIC, transport=Libp2pTransport(), bootstrap=bootstrap, machines=workers
    )
    join(topic)
    print("ready", flush=True)
    for line in sys.stdin:  # commands from the parent, until EOF
        if line.strip() == "go":
            for worker in workers:
                worker.add("Baz")
    topic.dispose().wait(TIMEOUT)  # the last updates, then the bye
    return 0


def parent() -> int:
    watcher = Topic(TOPIC, transport=Libp2pTransport())
    join(watcher)
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "child", str(i), *watcher.addrs],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        for proc in children:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        seen = watcher.mach.when_query(lambda _: len(watcher.list_machines()) == 4)
        assert seen.wait(TIMEOUT), watcher.list_machines()
        print("watcher sees:", sorted(m.id for m in watcher.list_machines()))
        remotes = watcher.list_machines()
        waiters = [r.when("Baz") for r in remotes]
        for proc in children:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert all(w.wait(TIMEOUT) for w in waiters)
        print("Baz is active on all four remote workers")
        for proc in children:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in children:
            assert proc.wait(TIMEOUT) == 0
        gone = watcher.mach.when_query(
            lambda _: not any(r.is_connected for r in watcher.list_machines())
        )
        assert gone.wait(TIMEOUT)
        print("the children said bye: their machines are disconnected")
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.kill()
        watcher.dispose().wait(TIMEOUT)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child(int(sys.argv[2]), sys.argv[3:]))
    sys.exit(parent())
