"""An owner, or a forger, as its own process over py-libp2p on 127.0.0.1.

Run by ``test_trust_processes.py``:

    python trust_program.py owner BOOTSTRAP SEED_HEX
    python trust_program.py forger BOOTSTRAP VICTIM_PEER_ID

``owner`` joins topic ``trust-test`` with a fixed identity (``SEED_HEX``: the
32-byte key seed, so a restart has the same peer id), exports machine
``worker``, prints ``ready``, then obeys lines on stdin: ``add NAME`` changes
the machine and prints its clock as JSON; ``exit`` disposes and exits.

``forger`` joins the same topic and publishes, as itself, ``updates`` that
claim clocks of the victim's machine 0: one far ahead (every tick 2**40+1),
one a single tick ahead of nothing in particular, one reusing a made-up
signature. It prints ``forged`` and waits for ``exit``.
"""

from __future__ import annotations

import json
import sys

import trio

from ampubsub_plugin import Libp2pTransport, Topic
from ampubsub_plugin.protocol import Proof, UpdatesMsg, encode
from asyncmachine import Machine, State

TOPIC = "trust-test"
SCHEMA = {"Foo": State(), "Bar": State(), "Baz": State()}
TIMEOUT = 20


def owner(bootstrap: str, seed: bytes) -> None:
    machine = Machine(SCHEMA, id="worker")
    topic = Topic(
        TOPIC,
        transport=Libp2pTransport(key_seed=seed),
        bootstrap=[bootstrap],
        machines=[machine],
    )
    topic.start()
    assert topic.mach.when("Connected").wait(TIMEOUT), topic.mach.err
    topic.join()
    assert topic.mach.when("Joined").wait(TIMEOUT), topic.mach.err
    print("ready", topic.peer_id, flush=True)
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "add":
            machine.add(arg)
            print(json.dumps(machine.time()), flush=True)
        elif command == "exit":
            break
    topic.dispose().wait(TIMEOUT)


async def forger(bootstrap: str, victim: str) -> None:
    transport = Libp2pTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.serve, _Ignore())
        await transport.connect([bootstrap])
        await transport.join(TOPIC)
        await transport.wait_mesh(TIMEOUT)
        states = len(SCHEMA) + 1  # Exception
        fake_proof = {victim: Proof(1, {0: b"\x01" * 64})}
        for msg in (
            UpdatesMsg({victim: {0: [2**40 + 1] * states}}),
            UpdatesMsg({victim: {0: [1] + [0] * (states - 1)}}),
            UpdatesMsg({victim: {0: [3] * states}}, fake_proof),
        ):
            await transport.publish(encode(msg))
        print("forged", transport.peer_id, flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        nursery.cancel_scope.cancel()


class _Ignore:
    def on_message(self, sender: str, data: bytes) -> None:
        pass

    def on_peer_joined(self, peer_id: str) -> None:
        pass

    def on_peer_left(self, peer_id: str) -> None:
        pass


if __name__ == "__main__":
    role, boot, arg = sys.argv[1:4]
    if role == "owner":
        owner(boot, bytes.fromhex(arg))
    else:
        trio.run(forger, boot, arg)
