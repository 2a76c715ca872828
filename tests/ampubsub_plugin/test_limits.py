"""The protocol's limits: nothing from the wire raises, exports that fit, snapshots
that can be sent.

1. Nothing from the wire raises. One info whose schema is a 1,000-long
   ``Require`` chain used to raise ``RecursionError`` while its
   ``RemoteMachine`` was built (the resolver ranked states recursively), and
   the error put every peer's topic machine into ``Exception``. The chain is
   handled now (tests/asyncmachine/test_long_chains.py), and whatever else
   fails while one message is handled is counted and the message dropped:
   ``GossipCore.receive`` and ``heartbeat`` never raise, ``RemoteViews.apply``
   applies each event under its own guard.
2. ``export()`` checks the limits the decoder enforces (MAX_STATES,
   MAX_ID_LEN, MAX_TAGS, UTF-8, MAX_PAYLOAD) and raises ``ValueError`` naming
   the limit; a machine exactly at a limit is accepted and shared.
3. Snapshots are split by encoded size: every message encodes, small
   introductions are never blocked by big ones, and an info that can't be
   sent even alone is left out and counted.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ampubsub_plugin._gossip import Discovered, GossipCore
from ampubsub_plugin._gossip.exports import SEND_RESERVE, check_limits
from ampubsub_plugin._gossip.intake import Intake
from ampubsub_plugin._gossip.outbox import pack_infos
from ampubsub_plugin._gossip.repair import Repair
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.protocol import (
    MAX_ID_LEN,
    MAX_PAYLOAD,
    MAX_STATES,
    MAX_TAGS,
    ByeMach,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    ProtocolError,
    ReqInfoMsg,
    UpdatesMsg,
    decode,
    encode,
    schema_hash,
)
from ampubsub_plugin.remote import RemoteMachine
from ampubsub_plugin.topic import Topic
from asyncmachine import Machine, State

from .coreutil import CorePeer, hello_of, introduced, make, wire
from .netutil import advance, dispose_all, run, sees, start_topic, until, worker

# -- hostile schemas ---------------------------------------------------------------


def chain_info(
    length: int,
    *,
    relation: str = "require",
    dependants_first: bool = True,
    dangling: bool = False,
    prefix: str = "S",
) -> Info:
    """An info whose schema chains ``length`` states by one relation.

    ``dependants_first``: S0 needs S1, S1 needs S2, ... and S0 is listed
    first (the order that made the old ranking recurse ``length`` deep).
    ``dangling``: the last link names a state outside the schema (Go's
    ``Schema.Parse`` keeps those; the topic decodes leniently).
    """
    names = [f"{prefix}{i}" for i in range(length)]
    schema: dict[str, State] = {}
    for i, name in enumerate(names):
        target = names[i + 1] if i + 1 < length else ("Nowhere" if dangling else "")
        schema[name] = State().replace(**{relation: [target] if target else []})
    schema["Exception"] = State(multi=True)
    if not dependants_first:
        schema = dict(reversed(schema.items()))
    states = list(schema)
    return Info(
        f"chain-{length}",
        schema,
        states,
        [0] * len(states),
        [],
        "",
        schema_hash(schema, states),
    )


def lenient(msg: Message) -> bytes:
    """The bytes a Go-like peer may send: relations are not checked."""
    return encode(msg, strict_relations=False)


def test_a_1000_long_require_chain_is_a_small_valid_message() -> None:
    data = lenient(InfoMsg({"E": {0: chain_info(1000)}}, {}))
    assert 25_000 < len(data) < 70_000
    decode(data, strict_relations=False)


@pytest.mark.parametrize("length", [1000, MAX_STATES - 1])
@pytest.mark.parametrize("relation", ["require", "add", "after"])
def test_a_long_chain_in_an_info_shows_as_a_remote_machine(
    length: int, relation: str
) -> None:
    info = chain_info(length, relation=relation)
    msg = decode(lenient(InfoMsg({"E": {0: info}}, {})), strict_relations=False)
    peer = make("A")
    peer.joined(0.0)
    peer.receive("E", msg, 1.0)
    (remote,) = peer.remotes()
    assert remote.state_names == info.states
    assert peer.counters["drop_error"] == 0
    assert peer.counters["view_error"] == 0


def test_a_long_chain_reaches_a_topic_without_putting_it_into_exception() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.01, seed=1)
        a = await start_topic(net, machines=[worker("a1")])
        b = await start_topic(net, a.addrs, [worker("b1")])
        await until([a, b], sees(1), timeout=60)
        handler = a.transport._handler
        assert handler is not None
        for i, dangling in enumerate([False, True]):
            info = chain_info(1000, dangling=dangling, prefix=f"P{i}-")
            handler.on_message(f"E{i}", lenient(InfoMsg({f"E{i}": {0: info}}, {})))
        await advance(5.0)
        assert a.mach.tick("Exception") == 0, a.mach.err
        assert a.mach.is_active(["Joined", "Ready"])
        assert {r.id for r in a.list_machines()} == {"b1", "chain-1000"}
        assert a.counters.get("drop_error", 0) == a.counters.get("view_error", 0) == 0
        await dispose_all([a, b])

    run(main)


# -- the guards --------------------------------------------------------------------


def test_a_message_whose_handling_fails_is_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    core = GossipCore("A", rng=random.Random(0))
    core.joined(0.0)
    real = Intake.receive

    def fragile(
        self: Intake, sender: str, msg: Message, now: float, events: list[Any]
    ) -> None:
        if sender == "evil":
            raise RecursionError("maximum recursion depth exceeded")
        real(self, sender, msg, now, events)
        if sender == "half":  # fails after changing something
            raise KeyError("half-way")

    monkeypatch.setattr(Intake, "receive", fragile)
    with caplog.at_level(logging.DEBUG, logger="ampubsub.gossip"):
        assert core.receive("evil", GossipMsg({"evil": {0: 3}}), 1.0) == []
    assert core.counters["drop_error"] == 1
    assert core.counters["drop_error_RecursionError"] == 1
    (record,) = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert "evil" in record.getMessage() and "gossip" in record.getMessage()
    # the next message is handled as usual
    info = Info("b1", None, ["X", "Exception"], [1, 0], [], "")
    events = core.receive("B", InfoMsg({"B": {0: info}}, {}), 2.0)
    assert [type(e) for e in events] == [Discovered]
    # what a failing message changed before it failed is still reported
    events = core.receive("half", InfoMsg({"half": {0: info}}, {}), 3.0)
    assert [(type(e), e.peer) for e in events] == [(Discovered, "half")]
    assert core.counters["drop_error_KeyError"] == 1


def test_a_failing_heartbeat_is_counted_and_keeps_the_events_it_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = GossipCore("A", rng=random.Random(0))
    core.joined(0.0)
    info = Info("b1", None, ["X", "Exception"], [1, 0], [], "")
    core.receive("B", InfoMsg({"B": {0: info}}, {}), 0.0)

    def broken(self: Repair, now: float) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(Repair, "expire", broken)
    events = core.heartbeat(1000.0)  # B is long silent: its machine is gone
    assert [e.peer for e in events] == ["B"]
    assert core.counters["heartbeat_error"] == 1
    assert core.counters["heartbeat_error_KeyError"] == 1


class Fragile:
    """Hooks that fail on the machine called "bad"."""

    def __init__(self) -> None:
        self.discovered: list[str] = []

    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        return True

    def machine_discovered(self, remote: Any) -> None:
        self.discovered.append(remote.id)

    def machine_updated(self, remote: Any) -> None:
        if remote.id == "bad":
            raise RuntimeError("a hook that breaks")

    def machine_gone(self, remote: Any) -> None:
        pass

    def wants_remotes(self) -> bool:
        return True


def test_one_event_that_fails_to_apply_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = RemoteMachine

    def build(**kwargs: Any) -> Any:
        if kwargs["id"] == "unbuildable":
            raise RecursionError("maximum recursion depth exceeded")
        return real(**kwargs)

    monkeypatch.setattr("ampubsub_plugin._views.RemoteMachine", build)
    hooks = Fragile()
    peer = CorePeer(GossipCore("A", rng=random.Random(0)), hooks)
    peer.joined(0.0)
    infos = {
        i: Info(name, None, ["X", "Exception"], [1, 0], [], "")
        for i, name in enumerate(["good", "unbuildable", "bad", "also-good"])
    }
    peer.receive("B", InfoMsg({"B": infos}, {}), 1.0)
    assert hooks.discovered == ["good", "bad", "also-good"]
    assert peer.counters["view_error"] == 1
    # the machine no view could be built for is hidden, as if refused
    assert peer.counters["refused_remote"] == 1
    assert [r.id for r in peer.remotes()] == ["good", "bad", "also-good"]
    clocks = {i: [3, 0] for i in infos}
    peer.receive("B", UpdatesMsg({"B": clocks}), 2.0)
    assert peer.counters["view_error"] == 2  # the "bad" hook
    assert [r.time() for r in peer.remotes()] == [[3, 0]] * 3


# -- hostile traffic through a topic -------------------------------------------------

PEERS = ["X", "Y", "12D3KooWPeerA"]
NAMES = ["Foo", "Bar", "Baz", "Exception", "Q"]


@st.composite
def hostile_schemas(draw: st.DrawFn) -> Info:
    """Big, cyclic, dangling, self-referencing schemas, or a long chain."""
    if draw(st.booleans()):
        return chain_info(
            draw(st.sampled_from([2, 300, 1000, 2000])),
            relation=draw(st.sampled_from(["require", "add", "remove", "after"])),
            dependants_first=draw(st.booleans()),
            dangling=draw(st.booleans()),
            prefix=draw(st.sampled_from(["S", "T"])),
        )
    size = draw(st.integers(1, 40))
    names = [f"N{i}" for i in range(size)] + ["Exception"]
    targets = st.lists(st.sampled_from([*names, "Ghost"]), max_size=4)
    schema = {
        name: State(
            require=draw(targets),
            add=draw(targets),
            remove=draw(targets),
            after=draw(targets),
            auto=draw(st.booleans()),
            multi=draw(st.booleans()),
        )
        for name in names
    }
    return Info(
        draw(st.sampled_from(["h1", "h2", "evil"])),
        schema,
        names,
        draw(st.lists(st.integers(0, 5), min_size=len(names), max_size=len(names))),
        [],
        "",
        schema_hash(schema, names),
    )


def hostile_bytes(msg: Message) -> bytes:
    try:
        return lenient(msg)
    except ProtocolError:
        return b"\xc0"  # nil: not a map


hostile_messages = st.one_of(
    st.builds(
        lambda peer, index, info: InfoMsg({peer: {index: info}}, {}),
        st.sampled_from(PEERS),
        st.integers(0, 2),
        hostile_schemas(),
    ),
    st.builds(
        lambda peer, index, time: UpdatesMsg({peer: {index: time}}),
        st.sampled_from(PEERS),
        st.integers(0, 2),
        st.lists(st.integers(0, 2**40), max_size=50),
    ),
    st.builds(lambda peer: GossipMsg({peer: {0: 2**40, 1: 0}}), st.sampled_from(PEERS)),
    st.builds(lambda peers: ReqInfoMsg(peers), st.lists(st.sampled_from(PEERS))),
    st.builds(
        lambda index: ByeMsg({index: ByeMach(False, "h1", [1])}), st.integers(0, 2)
    ),
)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(
        st.tuples(st.sampled_from([*PEERS, "owner"]), hostile_messages),
        min_size=1,
        max_size=12,
    )
)
def test_hostile_messages_never_put_a_topic_into_exception(
    inbound: list[tuple[str, Message]],
) -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.01, seed=1)
        a = await start_topic(net, machines=[worker("a1")])
        b = await start_topic(net, a.addrs, [worker("b1")])
        await until([a, b], sees(1), timeout=60)
        handler = a.transport._handler
        assert handler is not None
        for i, (sender, msg) in enumerate(inbound):
            if sender == "owner":  # the peer the message is about sends it
                named = getattr(msg, "peer_info", None) or getattr(
                    msg, "peer_clocks", None
                )
                sender = next(iter(named)) if named else "X"
            handler.on_message(sender, hostile_bytes(msg))
            if i % 4 == 3:
                await advance(0.5)
        await advance(70.0)  # heartbeats, expiry, snapshots, answers
        for topic in (a, b):
            assert topic.mach.tick("Exception") == 0, topic.mach.err
            assert topic.mach.is_active(["Joined", "Ready"])
        await dispose_all([a, b])

    run(main)


# -- export() checks the limits ------------------------------------------------------


def machine(n_states: int = 1, *, name_len: int = 1, **kw: Any) -> Machine:
    """``n_states`` states (Exception added) named to ``name_len`` characters."""
    names = [f"S{i}".ljust(name_len, "x") for i in range(n_states)]
    return Machine({n: State() for n in names}, **kw)


TOO_BIG = [
    ("too many states", lambda: machine(MAX_STATES), "MAX_STATES", "4097 states"),
    (
        "a long state name",
        lambda: machine(name_len=MAX_ID_LEN + 1),
        "MAX_ID_LEN",
        "257 characters",
    ),
    (
        "a long id",
        lambda: machine(id="i" * (MAX_ID_LEN + 1)),
        "MAX_ID_LEN",
        "257 characters",
    ),
    (
        "a long parent id",
        lambda: machine(parent="p" * (MAX_ID_LEN + 5)),
        "MAX_ID_LEN",
        "261 characters",
    ),
    (
        "a long tag",
        lambda: machine(tags=["t" * (MAX_ID_LEN + 1)]),
        "MAX_ID_LEN",
        "257 characters",
    ),
    (
        "too many tags",
        lambda: machine(tags=[f"t{i}" for i in range(MAX_TAGS + 1)]),
        "MAX_TAGS",
        "257 tags",
    ),
    (
        "too many tags of a state",
        lambda: Machine({"A": State(tags=[f"t{i}" for i in range(MAX_TAGS + 1)])}),
        "MAX_TAGS",
        "state 'A' has 257 tags",
    ),
    (
        "a lone surrogate in a state name",
        lambda: Machine({"Ok\udc80": State()}),
        "UTF-8",
        "'Ok\\udc80'",
    ),
    ("a lone surrogate in the id", lambda: machine(id="m\ud800"), "UTF-8", "its id"),
    (
        "a lone surrogate in a state's tag",
        lambda: Machine({"A": State(tags=["\udfff"])}),
        "UTF-8",
        "a tag of state 'A'",
    ),
    (
        "an introduction over MAX_PAYLOAD",
        lambda: machine(3000, name_len=200),
        "MAX_PAYLOAD",
        "more than 1,000,000 bytes",
    ),
]


@pytest.mark.parametrize(
    ("build", "limit", "value"),
    [case[1:] for case in TOO_BIG],
    ids=[case[0] for case in TOO_BIG],
)
def test_an_export_past_a_limit_raises_a_value_error_naming_it(
    build: Any, limit: str, value: str
) -> None:
    m = build()
    core = GossipCore("A", rng=random.Random(0))
    with pytest.raises(ValueError, match="can't export machine") as raised:
        core.export(m)
    message = str(raised.value)
    assert limit in message and value in message
    assert repr(m.id)[:20] in message
    assert core.exported() == []  # nothing changed
    assert core.counters == {}


def test_topic_export_checks_the_limits() -> None:
    topic = Topic("t", transport=MemoryNetwork().transport())
    with pytest.raises(ValueError, match="MAX_STATES"):
        topic.export(machine(MAX_STATES, id="many"))
    assert topic.core.exported() == []
    topic.export(worker("fine"))
    assert [m.id for m in topic.core.exported()] == ["fine"]


def largest_introduction() -> Machine:
    """The machine with the most 200-character state names export() accepts."""
    low, high = 1, MAX_STATES - 1
    while low < high:
        mid = (low + high + 1) // 2
        try:
            check_limits(machine(mid, name_len=200))
        except ValueError:
            high = mid - 1
        else:
            low = mid
    return machine(low, name_len=200, id="largest")


AT_THE_LIMIT = [
    ("MAX_STATES states", lambda: machine(MAX_STATES - 1, id="states")),
    (
        "MAX_ID_LEN names",
        lambda: machine(3, name_len=MAX_ID_LEN, id="i" * MAX_ID_LEN, parent="p" * 256),
    ),
    (
        "MAX_TAGS tags of MAX_ID_LEN",
        lambda: Machine(
            {"A": State(tags=[f"{i:03d}".ljust(MAX_ID_LEN, "s") for i in range(256)])},
            id="tags",
            tags=[f"{i:03d}".ljust(MAX_ID_LEN, "t") for i in range(MAX_TAGS)],
        ),
    ),
    ("unicode names", lambda: Machine({"Zürich-東京-✓": State()}, id="ünï")),
    ("the largest introduction", largest_introduction),
]


def snapshot(sender: CorePeer, now: float) -> list[InfoMsg]:
    """The snapshot ``sender`` (joined alone) sends when a newcomer asks for one."""
    sender.receive("N", ReqInfoMsg([]), now)
    sent = [m for step in range(1, 31) for m in sender.collect(now + step / 10)]
    infos = [m for m in sent if isinstance(m, InfoMsg)]
    assert infos, sent
    return infos


def small_hello(peer: str, now: float) -> Message:
    """The hello of ``peer`` exporting one worker, as received."""
    small = make(peer)
    small.export(worker(f"{peer.lower()}1"))
    small.joined(now)
    return wire(hello_of(small, now))


def introductions(msgs: list[InfoMsg]) -> set[tuple[str, int]]:
    return {
        (peer, i) for m in msgs for peer, machs in m.peer_info.items() for i in machs
    }


@pytest.mark.parametrize(
    "build", [case[1] for case in AT_THE_LIMIT], ids=[case[0] for case in AT_THE_LIMIT]
)
def test_a_machine_exactly_at_a_limit_is_accepted_and_shared(build: Any) -> None:
    m = build()
    owner, other = make("A"), make("B")
    owner.export(m)
    hello = introduced(owner, other)  # through the codec, both ways
    assert len(encode(hello)) <= MAX_PAYLOAD
    (remote,) = other.remotes()
    assert (remote.id, remote.state_names, remote.tags) == (m.id, m.state_names, m.tags)
    assert remote.schema == m.schema
    # relayed in B's snapshot, next to another machine and the gossip sample
    other.joined(0.0, alone=True)
    other.collect(0.0)
    other.receive("C", small_hello("C", 0.5), 0.5)
    newcomer = make("N")
    for msg in snapshot(other, 1.0):
        newcomer.receive("B", wire(msg), 2.0)
    assert sorted(r.id for r in newcomer.remotes()) == sorted([m.id, "c1"])


def test_the_largest_introduction_accepted_is_close_to_the_limit() -> None:
    m = largest_introduction()
    states = m.state_names
    info = Info(m.id, m.schema, states, m.time(), [], "", schema_hash(m.schema, states))
    size = len(encode(InfoMsg({"A": {0: info}}, {})))
    # export() assumed the longest peer id and index, and the largest ticks
    assert MAX_PAYLOAD - SEND_RESERVE - 60_000 < size <= MAX_PAYLOAD - SEND_RESERVE


# -- snapshots split by encoded size ---------------------------------------------------


def sized_info(prefix: str, target: int, *, time: int = 0) -> Info:
    """An info with its full schema, about ``target`` bytes encoded alone."""

    def build(count: int) -> Info:
        names = [f"{prefix}{i:05d}".ljust(150, "x") for i in range(count)]
        schema = {n: State() for n in names}
        return Info(
            f"{prefix}-machine",
            schema,
            names,
            [time] * count,
            [],
            "",
            schema_hash(schema, names),
        )

    per_state = len(encode(InfoMsg({"X": {0: build(100)}}, {}))) / 100
    return build(int(target / per_state))


def big_network() -> tuple[CorePeer, list[Info]]:
    """Snapshot sender A knows: X with two ~600 KB infos and one that can't be
    sent at all, and Y and Z with small machines."""
    a = make("A")
    a.export(worker("a1"))
    a.joined(0.0, alone=True)
    a.collect(0.0)
    big = [sized_info("P", 600_000), sized_info("Q", 600_000)]
    for index, info in enumerate(big):
        a.receive("X", wire(InfoMsg({"X": {index: info}}, {})), 0.1)
    # 1.2 MB: no peer could have sent it whole, but a relay's copy can grow past
    # the limit (its ticks grow from 1 to 9 bytes each); given to the core as is
    huge = sized_info("H", 1_200_000, time=1)
    with pytest.raises(ProtocolError, match="MAX_PAYLOAD"):
        encode(InfoMsg({"X": {2: huge}}, {}))
    a.receive("X", InfoMsg({"X": {2: huge}}, {}), 0.2)
    for peer in ("Y", "Z"):
        a.receive(peer, small_hello(peer, 0.3), 0.3)
    assert len(a.remotes()) == 5
    return a, big


def test_big_infos_never_block_a_snapshot_of_the_small_ones() -> None:
    a, big = big_network()
    msgs = snapshot(a, 1.0)
    for msg in msgs:
        assert len(encode(msg)) <= MAX_PAYLOAD
    assert introductions(msgs) == {
        ("A", 0),
        ("X", 0),
        ("X", 1),
        ("Y", 0),
        ("Z", 0),
    }
    assert a.counters["drop_out_oversize_info"] == 1
    # the first message holds the sender and every small machine: a newcomer
    # takes it for a snapshot whatever the big ones do
    first = msgs[0]
    assert {("A", 0), ("Y", 0), ("Z", 0)} <= introductions([first])
    assert first.peer_gossips  # the gossip sample rides in it
    assert len(msgs) == 2
    # what a newcomer decodes is what was sent, big schemas included
    received = [wire(msg) for msg in msgs]
    assert received == msgs
    relayed = {i.id: i for m in msgs for i in m.peer_info.get("X", {}).values()}
    assert relayed["P-machine"].schema == big[0].schema
    assert relayed["Q-machine"].schema == big[1].schema
    newcomer = make("N")
    newcomer.joined(0.0)
    for msg in received:
        newcomer.receive("A", msg, 2.0)
    assert "a1" in {r.id for r in newcomer.remotes()}
    assert newcomer.counters["drop_error"] == 0


def test_every_snapshot_counts_the_info_it_left_out() -> None:
    a, _ = big_network()
    snapshot(a, 1.0)
    snapshot(a, 10.0)
    assert a.counters["drop_out_oversize_info"] == 2


def test_many_peers_exporting_nothing_are_split_across_messages() -> None:
    empty = [f"12D3KooW{i:05d}" for i in range(2500)]
    msgs = pack_infos([], empty, {"A": {0: 1}}, 256, Counter())
    assert len(msgs) == 3  # at most MAX_PEERS_PER_MSG peers a message
    for msg in msgs:
        assert decode(encode(msg)) == msg
    assert [p for m in msgs for p in m.peer_info] == empty  # type: ignore[union-attr]


def test_a_small_snapshot_is_one_message_as_before() -> None:
    a = make("A")
    a.export(worker("a1"))
    a.joined(0.0, alone=True)
    a.collect(0.0)
    for peer in ("Y", "Z"):
        a.receive(peer, small_hello(peer, 0.3), 0.3)
    (msg,) = snapshot(a, 1.0)
    assert introductions([msg]) == {("A", 0), ("Y", 0), ("Z", 0)}
    schemas = [i.schema for machs in msg.peer_info.values() for i in machs.values()]
    assert sum(s is not None for s in schemas) == 1  # one schema, carried once
