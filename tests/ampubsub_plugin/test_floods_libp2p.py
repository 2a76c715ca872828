"""Floods over real py-libp2p (127.0.0.1): shed before the signature check.

A flooder that signs with many made-up identities (each a fresh author with
a full author budget) and sends over one connection gets past every
per-author budget; only what the connection peer (authenticated by Noise)
may send bounds it. Here it writes raw RPCs of pre-signed messages straight
onto its pubsub stream to the watcher, as fast as the stream takes them,
while the owner keeps changing its machine: each change must still show at
the watcher within :data:`LAG` seconds, and the shed shows in the counters.

Real time and sockets: every wait is bounded and waits on clocks or
counters, never on a sleep.
"""

from __future__ import annotations

import contextlib

import pytest
import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.utils import encode_uvarint

from ampubsub_plugin import Libp2pTransport, Topic
from ampubsub_plugin.protocol import GossipMsg, ReqInfoMsg, encode

from .netutil import worker

TOPIC = "flood-libp2p"
TIMEOUT = 30
#: the issue's target for a view's lag during a flood
LAG = 3.0
#: made-up authors, messages each (inside every author's burst of 120)
AUTHORS, PER_AUTHOR, PER_RPC = 300, 100, 100


class _Deaf:
    def on_message(self, sender: str, data: bytes) -> None:
        pass

    def on_peer_joined(self, peer_id: str) -> None:
        pass

    def on_peer_left(self, peer_id: str) -> None:
        pass


def _flood_rpcs() -> list[bytes]:
    """Varint-prefixed RPCs of validly signed junk from many authors."""
    payloads = [
        encode(ReqInfoMsg([])),
        encode(GossipMsg({f"12D3KooWghost{i:04d}": {0: i + 1} for i in range(20)})),
    ]
    messages = []
    for a in range(AUTHORS):
        key_pair = create_new_key_pair(a.to_bytes(2, "big") * 16)
        author = ID.from_pubkey(key_pair.public_key).to_bytes()
        public = key_pair.public_key.serialize()
        for n in range(PER_AUTHOR):
            msg = rpc_pb2.Message(
                data=payloads[n % 2],
                topicIDs=[TOPIC],
                from_id=author,
                seqno=n.to_bytes(8, "big"),
            )
            signed = PUBSUB_SIGNING_PREFIX.encode() + msg.SerializeToString()
            msg.signature = key_pair.private_key.sign(signed)
            msg.key = public
            messages.append(msg)
    messages.sort(key=lambda m: m.seqno)  # authors interleaved
    rpcs = []
    for i in range(0, len(messages), PER_RPC):
        raw = rpc_pb2.RPC(publish=messages[i : i + PER_RPC]).SerializeToString()
        rpcs.append(encode_uvarint(len(raw)) + raw)
    return rpcs


async def _start(bootstrap: list[str], machines: list[object]) -> Topic:
    topic = Topic(
        TOPIC,
        transport=Libp2pTransport(["/ip4/127.0.0.1/tcp/0"]),
        bootstrap=bootstrap,
        machines=machines,  # type: ignore[arg-type]
    )
    topic.start()
    assert await topic.mach.when("Connected"), topic.mach.err
    topic.join()
    assert await topic.mach.when("Joined"), topic.mach.err
    return topic


def test_a_flood_from_many_signed_authors_over_one_connection_is_shed() -> None:
    rpcs = _flood_rpcs()

    async def main() -> None:
        with trio.fail_after(TIMEOUT):
            machine = worker("honest")
            owner = await _start([], [machine])
            watcher = await _start(owner.addrs, [])
            assert await watcher.mach.when_query(
                lambda _: len(watcher.list_machines(connected=True)) == 1
            )
            (remote,) = watcher.list_machines(id="honest")
        flooder = Libp2pTransport(["/ip4/127.0.0.1/tcp/0"])
        written = 0
        async with trio.open_nursery() as nursery:
            with trio.fail_after(TIMEOUT):
                await nursery.start(flooder.serve, _Deaf())
                await flooder.connect(watcher.addrs)
                pubsub = flooder._running().pubsub
                target = ID.from_base58(watcher.peer_id)
                await pubsub.wait_for_peer(target, timeout=TIMEOUT)
                stream = pubsub.peers[target]

            async def flood() -> None:
                nonlocal written
                for rpc in rpcs:  # as fast as the stream takes them
                    await stream.write(rpc)
                    written += 1

            nursery.start_soon(flood)
            # the owner keeps changing; each change shows within LAG seconds
            changes = 0
            while written < len(rpcs) or changes < 5:
                machine.toggle("Baz")
                with trio.fail_after(LAG):  # before: 1.5-4.8 s and growing
                    assert await remote.when_time(["Baz"], [machine.tick("Baz")])
                changes += 1
                with trio.move_on_after(0.2):  # pace the changes, not a sync
                    await trio.sleep_forever()
                assert changes < 200, "the flood never finished writing"
            nursery.cancel_scope.cancel()
        counters = watcher.counters
        assert counters["drop_conn_budget"] > 0, counters
        # the budget bounds what one connection made the watcher verify
        assert counters.get("in_reqinfo", 0) + counters.get("in_gossip", 0) < (
            AUTHORS * PER_AUTHOR / 2
        )
        with trio.fail_after(TIMEOUT):
            for topic in (watcher, owner):
                topic.dispose()
            for topic in (watcher, owner):
                assert await topic.mach.when_disposed()

    trio.run(main)


def _message(author: bytes, seqno: int) -> rpc_pb2.Message:
    return rpc_pb2.Message(
        from_id=author, seqno=seqno.to_bytes(8, "big"), data=b"x", topicIDs=[TOPIC]
    )


def test_a_spoofed_author_sheds_only_on_the_spoofers_own_connection() -> None:
    from ampubsub_plugin._libp2p.shedding import Admission, ShedConfig

    honest_conn, spoofer = (
        ID.from_pubkey(create_new_key_pair(bytes([i]) * 32).public_key) for i in (1, 2)
    )
    owner, other = b"owner-id", b"other-id"

    async def main() -> None:
        admission = Admission(ShedConfig(conn_rate=1000, conn_burst=50, conn_queue=8))
        # the spoofer claims the owner's id, far over every budget
        for n in range(100):
            admission.offer(spoofer, _message(owner, n), seen=False)
        # the owner's real messages over an honest connection all get in
        for n in range(5):
            assert admission.offer(honest_conn, _message(owner, 1000 + n), seen=False)
        assert admission.offer(honest_conn, _message(other, 1), seen=False)
        counters = admission.counters
        assert counters["drop_conn_queue"] == 50 - 8  # the spoofer's queue
        assert counters["drop_conn_budget"] == 50  # the spoofer's budget
        # served in turn: the honest connection isn't behind the spoofer's
        served = [got for _ in range(8) if (got := admission.take_nowait())]
        honest = [msg for conn, msg in served if conn == honest_conn]
        assert len(honest) == 4
        # within a connection, authors in turn, each author in order
        assert [m.from_id for m in honest[:2]] == [owner, other]
        # duplicates cost no budget
        assert not admission.offer(honest_conn, _message(owner, 1), seen=True)
        assert counters["dup_early"] == 1

    trio.run(main)


def test_an_author_past_an_honest_peers_rate_is_delivered_but_not_forwarded() -> None:
    from ampubsub_plugin._libp2p.shedding import Admission, ShedConfig

    async def main() -> None:
        admission = Admission(ShedConfig(forward_rate=30, forward_burst=60))
        flooder, honest = b"flooder", b"honest"
        forwarded = sum(admission.forwards(flooder) for _ in range(1000))
        assert forwarded == 60  # its burst, then its rate (no time passed)
        assert admission.forwards(honest)  # a budget per author
        assert admission.counters["unforwarded_budget"] == 1000 - 60

    trio.run(main)


class _Chunks:
    """A stream whose reads return the given chunks, then b\"\"."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        return self.chunks.pop(0) if self.chunks else b""


def test_frames_are_cut_from_chunks_whatever_their_boundaries() -> None:
    from libp2p.exceptions import ParseError
    from libp2p.io.exceptions import IncompleteReadError, MessageTooLarge

    from ampubsub_plugin._libp2p.frames import FrameReader

    frames = [b"", b"a", b"b" * 300, b"c" * 70_000]
    wire = b"".join(encode_uvarint(len(f)) + f for f in frames)

    async def read_all(chunks: list[bytes], limit: int = 1 << 20) -> list[bytes]:
        reader = FrameReader(_Chunks(chunks), limit)  # type: ignore[arg-type]
        got = []
        with contextlib.suppress(IncompleteReadError):
            while True:
                got.append(await reader.next())
        return got

    async def main() -> None:
        assert await read_all([wire]) == frames
        assert await read_all([wire[i : i + 1] for i in range(len(wire))]) == frames
        assert await read_all([wire[:2], wire[2:9], wire[9:]]) == frames
        with pytest.raises(MessageTooLarge):  # before the body is read
            await read_all([encode_uvarint(5000)], limit=4096)
        with pytest.raises(ParseError):
            await read_all([b"\xff" * 11])
        assert await read_all([wire[:-1]]) == frames[:3]  # cut short: ends

    trio.run(main)
