"""A peer that changes its machine, disposes its topic and exits at once.

Run by ``test_shutdown.py`` in a fresh interpreter:

    python shutdown_program.py KIND TOPIC BOOTSTRAP_ADDR [--wait]

``KIND`` is ``threads``, ``asyncio`` or ``trio``. The program joins
``TOPIC`` over py-libp2p on 127.0.0.1, exporting one machine ``owner``,
prints ``ready``, then waits for one line on stdin:

- ``go``: it changes ``owner`` (prints its final clock as JSON), calls
  ``topic.dispose()`` and returns from main at once, unless ``--wait`` is
  given (then it waits for the returned waiter first);
- ``block``: ``bye_on_signals(topic)`` is installed and the program blocks
  (in sync code, or in its event loop) until a signal ends it. It prints
  ``blocking`` first.

``owner()`` is also the machine factory for ``ampubsub peer --expose
shutdown_program:owner``.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import signal
import sys

from ampubsub_plugin import Libp2pTransport, Topic, bye_on_signals
from asyncmachine import Machine, State

SCHEMA = {"Foo": State(), "Bar": State(), "Baz": State(multi=True)}
TIMEOUT = 20


# where every thread is, when a test finds us still running (procutil.py)
faulthandler.register(signal.SIGUSR1, all_threads=True)
# what the topic did, quoted by a failing test (stderr goes to a file)
logging.basicConfig(
    level=logging.WARNING, format="%(relativeCreated)7.0f %(name)s %(message)s"
)
logging.getLogger("ampubsub").setLevel(logging.INFO)
# SIGINT raises KeyboardInterrupt, as in a program started from a terminal.
# Started from a non-interactive shell's background job (`cmd &` in a
# script: how a CI runner may start the tests), a process inherits SIGINT
# ignored (POSIX), Python leaves it so, and bye_on_signals then rightly
# hands the signal back to "ignored": the program says bye and runs on.
signal.signal(signal.SIGINT, signal.default_int_handler)


def owner() -> Machine:
    return Machine(SCHEMA, id="owner")


def make(name: str, bootstrap: str) -> tuple[Topic, Machine]:
    machine = owner()
    topic = Topic(
        name, transport=Libp2pTransport(), bootstrap=[bootstrap], machines=[machine]
    )
    return topic, machine


def change(machine: Machine) -> None:
    machine.add("Foo")
    machine.add("Baz")
    machine.add("Baz")
    print(json.dumps(machine.time()), flush=True)


def threads(name: str, bootstrap: str, wait: bool) -> None:
    topic, machine = make(name, bootstrap)
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    print("ready", flush=True)
    command = sys.stdin.readline().strip()
    if command == "block":
        with bye_on_signals(topic):
            print("blocking", flush=True)
            sys.stdin.readline()  # blocked in sync code until the signal
        return
    change(machine)
    done = topic.dispose()
    if wait:
        assert done.wait(TIMEOUT)


async def asyncio_main(name: str, bootstrap: str, wait: bool) -> None:
    import asyncio

    topic, machine = make(name, bootstrap)
    topic.start()
    assert await asyncio.wait_for(topic.mach.when("Connected"), TIMEOUT)
    topic.join()
    assert await asyncio.wait_for(topic.mach.when("Joined"), TIMEOUT)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
    if command == "block":
        with bye_on_signals(topic):
            print("blocking", flush=True)
            await asyncio.Event().wait()  # until the signal
        return
    change(machine)
    done = topic.dispose()
    if wait:
        assert await asyncio.wait_for(done, TIMEOUT)


async def trio_main(name: str, bootstrap: str, wait: bool) -> None:
    import trio

    topic, machine = make(name, bootstrap)
    with trio.fail_after(TIMEOUT):
        topic.start()
        assert await topic.mach.when("Connected")
        topic.join()
        assert await topic.mach.when("Joined")
    print("ready", flush=True)
    command = (await trio.to_thread.run_sync(sys.stdin.readline)).strip()
    if command == "block":
        with bye_on_signals(topic):
            print("blocking", flush=True)
            await trio.sleep_forever()  # until the signal
        return
    change(machine)
    done = topic.dispose()
    if wait:
        with trio.fail_after(TIMEOUT):
            assert await done


def main(argv: list[str]) -> int:
    kind, name, bootstrap = argv[:3]
    wait = "--wait" in argv
    if kind == "threads":
        threads(name, bootstrap, wait)
    elif kind == "asyncio":
        import asyncio

        asyncio.run(asyncio_main(name, bootstrap, wait))
    elif kind == "trio":
        import trio

        trio.run(trio_main, name, bootstrap, wait)
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
