"""Property tests of the gossip core and the topic's inbound path under hostile input.

Peers are untrusted (PROTOCOL.md): whatever decodable message arrives, in any
order and at any time, the core must not raise, must keep every remote clock
monotonic and consistent, and must only ever produce sendable messages. The
second half feeds raw bytes to a joined topic on the memory transport: the
topic's machine must never enter ``Exception``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampubsub_plugin.gossip import GossipConfig, GossipCore
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.protocol import (
    MAX_TICK,
    ByeMach,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    ProtocolError,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
    decode,
    encode,
    schema_hash,
)
from ampubsub_plugin.remote import RemoteMachine
from asyncmachine import State

from .coreutil import CorePeer, PeerSigner
from .netutil import advance, dispose_all, run, sees, start_topic, until, worker

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TOPIC_FUZZ = settings(FUZZ, max_examples=150)

CORES = ["A", "B", "C"]
PEERS = [*CORES, "X", "Y"]
NAMES = ["Foo", "Bar", "Baz", "Exception", "Q"]
WORKER_STATES = ["Foo", "Bar", "Baz", "Exception"]
SMALL = GossipConfig(
    max_peers=4, max_pending=4, max_schemas=2, infos_per_message=3, rate=5, burst=3
)

# -- hostile but decodable messages --------------------------------------------

peers = st.sampled_from(PEERS)
indexes = st.sampled_from([0, 0, 0, 1, 1, 2, MAX_TICK]) | st.integers(0, MAX_TICK)
# mostly small ticks: a vector's sum must stay <= MAX_TICK to be decodable
ticks = st.sampled_from(
    [0, 1, 2, 3, 4, 5, 7, 9, 0, 1, 2, 3, 2**32, MAX_TICK // 4 - 1, MAX_TICK]
)
#: as long as a worker's time vector, or any length
vectors = st.lists(ticks, min_size=4, max_size=4) | st.lists(ticks, max_size=6)
ids = st.sampled_from(["A-m0", "B-m0", "C-m0", "X-m0", "evil", ""])


@st.composite
def infos(draw: st.DrawFn) -> Info:
    # few shapes, so that infos about one (peer, index) often agree or clash
    states = draw(
        st.sampled_from([WORKER_STATES, WORKER_STATES, ["Q", "Exception"], None])
        | st.lists(st.sampled_from(NAMES), unique=True, max_size=5)
    )
    states = None if states is None else list(states)
    schema: dict[str, State] | None = None
    if states is not None and draw(st.booleans()):
        # relations only within the schema (see the last test of this file)
        rel = st.lists(st.sampled_from(states), max_size=2) if states else st.just([])
        schema = {
            name: State(
                require=draw(rel),
                add=draw(rel),
                remove=draw(rel),
                after=draw(rel),
                auto=draw(st.booleans()),
                multi=draw(st.booleans()),
            )
            for name in states
        }
    if states is not None and draw(st.integers(0, 9)) > 0:
        time = draw(st.lists(ticks, min_size=len(states), max_size=len(states)))
    else:
        time = draw(vectors)  # wrong length: decode rejects it, if states are set
    hash_: str | None = draw(st.sampled_from([None, "feedface", "0"]))
    if schema is not None and states is not None:
        hash_ = draw(st.sampled_from([None, schema_hash(schema, states)]))
    return Info(
        id=draw(ids),
        schema=schema,
        states=states,
        time=time,
        tags=draw(st.lists(st.sampled_from(["t", "k:v"]), max_size=2)),
        parent=draw(st.sampled_from(["", "p"])),
        schema_hash=hash_,
    )


def by_peer(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    machines = st.dictionaries(indexes, values, min_size=1, max_size=3)
    return st.dictionaries(peers, machines, min_size=1, max_size=3) | st.dictionaries(
        peers, st.dictionaries(indexes, values, max_size=1), max_size=1
    )


raw_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(InfoMsg, by_peer(infos()), by_peer(ticks)),
    st.builds(UpdatesMsg, by_peer(vectors)),
    st.builds(GossipMsg, by_peer(ticks)),
    st.builds(ReqInfoMsg, st.lists(peers, max_size=4)),
    st.builds(ReqUpdatesMsg, st.lists(peers, max_size=4)),
    st.builds(
        ByeMsg,
        st.dictionaries(
            indexes, st.builds(ByeMach, st.booleans(), ids, vectors), max_size=3
        ),
    ),
)


def decodable(msg: Message) -> Message | None:
    """The message as a receiving topic would see it; None if it can't travel."""
    try:
        return decode(encode(msg, strict_relations=False), strict_relations=False)
    except ProtocolError:
        return None


#: "owner": the message's first named peer sends it (as if about itself)
recv = st.tuples(
    st.just("recv"), st.integers(0, 2), peers | st.just("owner"), raw_messages
)
collect = st.tuples(st.just("collect"), st.integers(0, 2))
ops = st.one_of(
    recv,
    recv,
    recv,
    collect,
    collect,
    st.tuples(st.just("advance"), st.sampled_from([0.0, 0.01, 0.3, 2.0, 70.0])),
    st.tuples(st.just("heartbeat"), st.integers(0, 2)),
    st.tuples(st.just("mutate"), st.integers(0, 2), st.sampled_from(["Bar", "Baz"])),
    st.tuples(
        st.sampled_from(["unexport", "bye_all", "export", "fail"]), st.integers(0, 2)
    ),
    st.tuples(st.sampled_from(["peer_joined", "peer_left"]), st.integers(0, 2), peers),
)


class Picky:
    """Hooks that hide machines called "evil"."""

    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        return info.id != "evil"

    def machine_discovered(self, remote: RemoteMachine) -> None:
        assert not remote.is_disposed

    def machine_updated(self, remote: RemoteMachine) -> None:
        pass

    def machine_gone(self, remote: RemoteMachine) -> None:
        assert not remote.is_connected

    def wants_remotes(self) -> bool:
        return True


def named_peer(msg: Message) -> str:
    """The first peer a message is about (its likely owner), else "X"."""
    for field in ("peer_info", "peer_clocks", "peer_gossips"):
        named = getattr(msg, field, None)
        if named:
            return str(next(iter(named)))
    return "X"


class Monitor:
    """Checks the invariants after every step of a run."""

    def __init__(self, cores: list[CorePeer]) -> None:
        self.cores = cores
        self.sums: dict[int, tuple[RemoteMachine, int]] = {}
        self.counters = [dict(c.counters) for c in cores]

    def check(self, now: float) -> None:
        for i, core in enumerate(self.cores):
            for remote in core.remotes():
                assert remote.peer_id != core.peer_id
                time = remote.time()
                names = remote.state_names
                assert len(time) == len(names)
                assert remote.active_states == [
                    n for n, t in zip(names, time, strict=True) if t % 2
                ]
                kept = self.sums.get(id(remote))
                if kept is not None:
                    assert kept[0] is remote
                    assert sum(time) >= kept[1], (remote, kept[1])
                self.sums[id(remote)] = (remote, sum(time))
            counters = dict(core.counters)
            for key, value in self.counters[i].items():
                assert counters.get(key, 0) >= value, key
            self.counters[i] = counters
            stats = core.stats()
            cfg = core.config
            assert stats["peers"] <= cfg.max_peers
            assert stats["missing_peers"] <= cfg.max_peers
            assert stats["pending_updates"] <= cfg.max_pending
            assert stats["schemas"] <= cfg.max_schemas
            due = core.next_due(now)
            assert due is None or due >= now


@FUZZ
@given(
    st.integers(1, 3),
    st.integers(0, 2**16),
    st.lists(ops, min_size=25, max_size=80),
)
def test_hostile_messages_never_break_the_core(
    count: int, seed: int, steps: list[tuple[Any, ...]]
) -> None:
    cores = [
        CorePeer(
            GossipCore(CORES[i], config=SMALL, rng=random.Random(seed + i)), Picky()
        )
        for i in range(count)
    ]
    machines = [worker(f"{p}-m0") for p in CORES]
    for core, machine in zip(cores, machines):
        core.export(machine)
        core.joined(0.0)
    monitor = Monitor(cores)
    now = 0.0
    for step in steps:
        kind = step[0]
        if kind == "advance":
            now += step[1]
        elif kind == "recv":
            msg = decodable(step[3])
            if msg is not None:
                sender = step[2] if step[2] != "owner" else named_peer(msg)
                cores[step[1] % count].receive(sender, msg, now)
        elif kind == "heartbeat":
            cores[step[1] % count].heartbeat(now)
        elif kind == "mutate":
            i = step[1] % count
            machines[i].toggle(step[2])
            cores[i].mark_dirty(0)
        elif kind == "unexport":
            cores[step[1] % count].unexport(machines[step[1] % count])
        elif kind == "export":
            cores[step[1] % count].export(machines[step[1] % count])
        elif kind == "bye_all":
            cores[step[1] % count].bye_all()
        elif kind == "fail":  # the transport refuses everything collected
            core = cores[step[1] % count]
            for msg in core.collect(now):
                core.publish_failed(msg)
        elif kind == "peer_joined":
            cores[step[1] % count].peer_joined(step[2], now)
        elif kind == "peer_left":
            cores[step[1] % count].peer_left(step[2], now)
        else:
            sender = cores[step[1] % count]
            for msg in sender.collect(now):
                data = encode(msg)  # strict, as the topic sends it
                received = decode(data, strict_relations=False)
                assert received == msg
                for other in cores:
                    other.receive(sender.peer_id, received, now)
        monitor.check(now)


@FUZZ
@given(
    st.integers(0, 2**16),
    st.lists(st.tuples(st.sampled_from(["C", "X", "Y"]), raw_messages), max_size=30),
)
def test_hostile_traffic_does_not_stop_honest_peers_converging(
    seed: int, traffic: list[tuple[str, Message]]
) -> None:
    """Hostile peers talk to B while A's machine changes; B still ends up right.

    The noise names A and B too (gossip with any sums, requests, contradicting
    infos of other peers, byes, and clocks of A's machine that A never signed:
    forged, higher than A's own). Once it stops, a quiet honest exchange must
    bring A's latest clock to B.
    """
    a = CorePeer(
        GossipCore(
            "A", rng=random.Random(seed), signer=PeerSigner("A"), incarnation=1
        )
    )
    b = CorePeer(
        GossipCore(
            "B", rng=random.Random(seed + 1), signer=PeerSigner("B"), incarnation=1
        )
    )
    mine = worker("a-m0")
    a.export(mine)
    for core in (a, b):
        core.joined(0.0)
    monitor = Monitor([a, b])
    now = 0.0

    def exchange() -> None:
        for src, dst in ((a, b), (b, a)):
            for out in src.collect(now):
                dst.receive(src.peer_id, decode(encode(out)), now)

    for sender, raw in traffic:
        msg = decodable(raw)
        if msg is not None:
            b.receive(sender, msg, now)  # forged clocks of A's included
        mine.toggle("Baz")
        a.mark_dirty(0)
        exchange()
        now += 0.05
        monitor.check(now)
    for _ in range(400):  # 100 s
        now += 0.25
        for core in (a, b):
            core.heartbeat(now)
        exchange()
        monitor.check(now)
    (view,) = [r for r in b.remotes() if r.peer_id == "A"]
    assert (view.id, view.index, view.time()) == ("a-m0", 0, mine.time())
    assert view.is_connected


# -- the topic's inbound path ------------------------------------------------------

GOLDEN = [
    bytes.fromhex(line.split()[1])
    for line in (Path(__file__).parent / "data" / "go-golden.hex")
    .read_text()
    .splitlines()
    if line.strip()
]

mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "set", "truncate"]),
    st.integers(0, 10_000),
    st.integers(0, 255),
)


def mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, pos, byte in mutations:
        if not out:
            out.append(byte)
            continue
        i = pos % len(out)
        if op == "flip":
            out[i] ^= 1 << (byte % 8)
        elif op == "set":
            out[i] = byte
        elif op == "insert":
            out.insert(i, byte)
        elif op == "truncate":
            del out[i:]
        else:
            del out[i]
    return bytes(out)


# what peers actually send, to mutate
REAL = [
    encode(
        InfoMsg({"X": {0: Info("x0", None, WORKER_STATES, [1, 1, 0, 0], [], "")}}, {})
    ),
    encode(UpdatesMsg({"X": {0: [1, 1, 2, 0]}})),
    encode(GossipMsg({"X": {0: 4}})),
    encode(ReqInfoMsg([])),
    encode(ReqUpdatesMsg(["X"])),
    encode(ByeMsg({0: ByeMach(True, "x0", [1, 1, 2, 0])})),
    *GOLDEN,
]


def lenient_bytes(msg: Message) -> bytes:
    try:
        return encode(msg, strict_relations=False)
    except ProtocolError:
        return b"\xc0"  # nil: not a map


def renamed(msg: Message, names: dict[str, str]) -> Message:
    """``msg`` with placeholder peer ids ("A", "B") replaced by real ones."""

    def keys(by_peer: dict[str, Any]) -> dict[str, Any]:
        return {names.get(p, p): v for p, v in by_peer.items()}

    if isinstance(msg, InfoMsg):
        return InfoMsg(keys(msg.peer_info), keys(msg.peer_gossips))
    if isinstance(msg, UpdatesMsg):
        return UpdatesMsg(keys(msg.peer_clocks))
    if isinstance(msg, GossipMsg):
        return GossipMsg(keys(msg.peer_gossips))
    if isinstance(msg, ReqInfoMsg | ReqUpdatesMsg):
        return type(msg)([names.get(p, p) for p in msg.peer_ids])
    return msg


#: bytes as they arrive, or a message to encode once the real peer ids are known
payloads = st.one_of(
    st.binary(max_size=120),
    st.builds(
        mutate, st.sampled_from(REAL), st.lists(mutation, min_size=1, max_size=4)
    ),
    raw_messages,
    raw_messages,
)
senders = st.sampled_from(["self", "other", "X", "Y", "12D3KooWPeerA"])


@TOPIC_FUZZ
@given(st.lists(st.tuples(senders, payloads), min_size=1, max_size=25))
def test_inbound_bytes_never_break_a_joined_topic(
    inbound: list[tuple[str, bytes | Message]],
) -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.01, seed=1)
        a = await start_topic(net, machines=[worker("a1")])
        b = await start_topic(net, a.addrs, [worker("b1")])
        await until([a, b], sees(1), timeout=60)
        handler = a.transport._handler  # the topic's _Inbound
        assert handler is not None
        ids = {"self": a.peer_id, "other": b.peer_id}
        names = {"A": a.peer_id, "B": b.peer_id}
        for i, (sender, payload) in enumerate(inbound):
            if not isinstance(payload, bytes):
                payload = lenient_bytes(renamed(payload, names))
            handler.on_message(ids.get(sender, sender), payload)
            if i % 5 == 4:
                await advance(0.5)
        await advance(70.0)  # heartbeats, expiry, answers: all of it runs
        for topic in (a, b):
            assert topic.mach.tick("Exception") == 0, topic.mach.err
            assert topic.mach.is_active(["Joined", "Ready"])
            assert all(r.peer_id != topic.peer_id for r in topic.list_machines())
        await dispose_all([a, b])

    run(main)


def test_inbound_path_counts_what_it_drops() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        a = await start_topic(net, machines=[worker("a1")])
        handler = a.transport._handler
        assert handler is not None
        handler.on_message("X", b"\xff\x00garbage")
        handler.on_message("X", encode(UpdatesMsg({"X": {0: [1]}}))[:-3])
        assert a.counters["drop_msgpack"] == 2
        handler.on_message("X", encode(GossipMsg({"X": {0: 4}})))
        await trio.testing.wait_all_tasks_blocked()
        assert a.counters["in_gossip"] == 1
        assert a.mach.tick("Exception") == 0
        await dispose_all([a])

    run(main)


# -- a relayed schema that the strict encoder refuses -----------------------------


def test_relayed_schema_with_a_dangling_relation_does_not_poison_snapshots() -> None:
    schema = {"X": State(require=["Gone"]), "Exception": State(multi=True)}
    states = ["X", "Exception"]
    info = Info("e1", schema, states, [1, 0], [], "", schema_hash(schema, states))
    # Go's Schema.Parse keeps such Require entries; the topic decodes leniently
    data = encode(InfoMsg({"E": {0: info}}, {}), strict_relations=False)
    a = GossipCore("A", rng=random.Random(0))
    a.export(worker("a1"))
    a.joined(0.0, alone=True)  # the first peer: it sends the snapshots
    a.collect(0.0)
    a.receive("E", decode(data, strict_relations=False), 1.0)
    a.receive("N", ReqInfoMsg([]), 2.0)  # a newcomer asks for a snapshot
    sent = [m for s in range(20, 40) for m in a.collect(s / 10)]
    snapshots = [m for m in sent if isinstance(m, InfoMsg) and "E" in m.peer_info]
    assert snapshots
    for msg in snapshots:
        encode(msg)  # what Topic._publish does; a ProtocolError drops it all
