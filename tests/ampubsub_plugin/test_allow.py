"""Allow-lists: an outsider is not connected, not heard, and not shown.

Memory transport in virtual time for the protocol (the outsider's messages
reach the allow-listed peer through an open relay, so the drop and the
ignored relayed infos are really exercised); real py-libp2p for the gate
that closes connections.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from ampubsub_plugin import Libp2pTransport, Topic, TransportError, hooks
from ampubsub_plugin._allow import PeerAllowList
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.protocol import InfoMsg
from asyncmachine import Transition

from .netutil import dispose_all, run, until, worker

TIMEOUT = 30


class InfosAbout:
    """Tracer of a topic machine: infos about ``peer`` (kept) relayed by others."""

    def __init__(self, peer: str, *, relayed: bool = True) -> None:
        self.peer = peer
        self.relayed = relayed
        self.count = 0
        self.last: InfoMsg | None = None

    def transition_end(self, tx: Transition) -> None:
        args = tx.mutation.args
        msg, sender = args.get("msg"), args.get("peer_id")
        if (
            "MsgInfo" in tx.mutation.called
            and isinstance(msg, InfoMsg)
            and (sender != self.peer) == self.relayed
            and self.peer in msg.peer_info
        ):
            self.count += 1
            self.last = msg


async def started(topic: Topic) -> Topic:
    topic.start()
    with trio.fail_after(10):
        assert await topic.mach.when("Connected"), topic.mach.err
    topic.join()
    with trio.fail_after(10):
        assert await topic.mach.when("Joined"), topic.mach.err
    return topic


async def outsider_scenario(
    net: MemoryNetwork, allow: Any = None
) -> tuple[Topic, Topic, Topic, InfosAbout]:
    """A (restricted) <- D (open relay) <- C (outsider): returns A, D, C.

    ``allow(a, d, c)`` (the three transports) gives A's ``allow_peers``.
    """
    t_a, t_d, t_c = net.transport(), net.transport(), net.transport()
    allow_peers = None if allow is None else allow(t_a, t_d, t_c)
    a = Topic("t", transport=t_a, machines=[worker("a1")], allow_peers=allow_peers)
    watch = InfosAbout(t_c.peer_id)
    a.mach.bind_tracer(watch)  # (some tests look at what A was told)
    await started(a)
    d = Topic("t", transport=t_d, bootstrap=a.addrs, machines=[worker("d1")])
    await started(d)
    c = Topic("t", transport=t_c, bootstrap=d.addrs, machines=[worker("c1")])
    await started(c)
    return a, d, c, watch


def test_an_allow_listed_peer_ignores_an_outsider_that_reaches_it_via_a_relay() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.005, seed=3)
        a, d, c, _ = await outsider_scenario(
            net, lambda t_a, t_d, t_c: lambda peer: peer == t_d.peer_id
        )
        # the relay shows everyone, the outsider sees the relay
        await until([d], lambda t: {m.id for m in t.list_machines()} >= {"a1", "c1"})
        await until([a], lambda t: bool(t.list_machines(id="d1")))
        # the outsider's own messages reached A and were dropped, counted
        await until([a], lambda t: t.counters["drop_not_allowed"] > 0)
        assert a.list_machines(id="c1") == []
        assert a.list_machines(peer_id=c.peer_id) == []
        # no direct link either: the outsider can't connect to A
        with pytest.raises(TransportError):
            await c.transport.connect(a.addrs)
        assert c.peer_id not in a.transport.topic_peers()
        await dispose_all([c, d, a])

    run(main)


def test_a_relayed_introduction_of_an_outsider_is_ignored() -> None:
    """C's own signed hello, as if D relayed it: shown by an open peer only."""

    async def main() -> None:
        net = MemoryNetwork(latency=0.005, seed=6)
        t_d, t_c = net.transport(), net.transport()
        d = Topic("t", transport=t_d, machines=[worker("d1")])
        hellos = InfosAbout(t_c.peer_id, relayed=False)
        d.mach.bind_tracer(hellos)
        await started(d)
        c = Topic("t", transport=t_c, bootstrap=d.addrs, machines=[worker("c1")])
        await started(c)
        await until([d], lambda _: hellos.last is not None)
        relayed = {"peer_id": d.peer_id, "msg": hellos.last}
        # two lone peers of the same network (so C's signature checks out),
        # which hear nothing from C or D: only what is handed to them
        open_peer = await started(Topic("t", transport=net.transport()))
        closed_peer = await started(
            Topic("t", transport=net.transport(), allow_peers=lambda p: p == d.peer_id)
        )
        open_peer.mach.add("MsgInfo", relayed)
        closed_peer.mach.add("MsgInfo", relayed)
        await until([open_peer], lambda t: bool(t.list_machines(id="c1")))
        assert closed_peer.list_machines() == []
        assert c.peer_id not in closed_peer.core.repair.missing_peers  # nor asked
        await dispose_all([c, d, open_peer, closed_peer])

    run(main)


def test_a_peer_list_lets_members_in() -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.005, seed=4)
        t_a, t_b = net.transport(), net.transport()
        a = Topic(
            "t", transport=t_a, machines=[worker("a1")], allow_peers=[t_b.peer_id]
        )
        b = Topic(
            "t",
            transport=t_b,
            machines=[worker("b1")],
            allow_peers=[t_a.peer_id],
        )
        await started(a)
        b.bootstrap = a.addrs
        await started(b)
        await until([a, b], lambda t: len(t.list_machines()) == 1)
        assert a.counters.get("drop_not_allowed", 0) == 0
        await dispose_all([a, b])

    run(main)


class Bouncer:
    """Refuses chosen peers on chosen topics (by the topic's peer id)."""

    def __init__(self) -> None:
        self.refused: set[tuple[str, str]] = set()

    @hooks.hookimpl
    def ampubsub_accept_peer(self, topic: Topic, peer_id: str) -> bool | None:
        own = topic.transport.peer_id
        return False if (own, peer_id) in self.refused else None


@pytest.fixture
def bouncer() -> Iterator[Bouncer]:
    plugin = Bouncer()
    hooks.register(plugin)
    try:
        yield plugin
    finally:
        hooks.unregister(plugin)


def test_the_accept_peer_hook_refuses_like_an_allow_list(bouncer: Bouncer) -> None:
    async def main() -> None:
        net = MemoryNetwork(latency=0.005, seed=5)

        def refuse_c(t_a: Any, t_d: Any, t_c: Any) -> None:
            bouncer.refused.add((t_a.peer_id, t_c.peer_id))

        a, d, c, _ = await outsider_scenario(net, refuse_c)
        await until([d], lambda t: {m.id for m in t.list_machines()} >= {"a1", "c1"})
        await until([a], lambda t: bool(t.list_machines(id="d1")))
        await until([a], lambda t: t.counters["drop_not_allowed"] > 0)
        assert a.list_machines(id="c1") == []
        await dispose_all([c, d, a])

    run(main)


def test_allow_peers_rejects_what_is_not_peer_ids() -> None:
    own = lambda: "me"  # noqa: E731
    with pytest.raises(ValueError, match="wrap it in a list"):
        PeerAllowList("12D3KooWsomething", own=own)
    with pytest.raises(ValueError, match="not peer ids"):
        PeerAllowList(["ok", ""], own=own)
    allows = PeerAllowList(["x"], own=own)
    assert allows("me") and allows("x") and not allows("y")

    def broken(peer: str) -> bool:
        raise RuntimeError("boom")

    assert not PeerAllowList(broken, own=own)("x")
    assert PeerAllowList(None, own=own, hook=lambda p: p != "z")("x")
    assert not PeerAllowList(None, own=own, hook=lambda p: p != "z")("z")


# -- real py-libp2p: the gate ---------------------------------------------------


def test_libp2p_closes_the_connection_of_a_peer_not_on_the_list() -> None:
    """A private network with an allow-list: an outsider with the key is cut."""
    key = bytes(range(32))
    member = Libp2pTransport(psk=key)
    outsider_transport = Libp2pTransport(psk=key)
    a = Topic(
        "allow-test",
        transport=member,
        machines=[worker("a1")],
        allow_peers=["12D3KooWNobodyNobodyNobodyNobodyNobodyNobodyNobody"],
    )
    a.start()
    assert a.mach.when("Connected").wait(TIMEOUT), a.mach.err
    a.join()
    assert a.mach.when("Joined").wait(TIMEOUT)
    outsider = Topic("allow-test", transport=outsider_transport, bootstrap=a.addrs)
    closed = threading.Event()
    try:
        outsider.start()
        # the dial may succeed before the gate closes it, or fail: either way
        # the gate counts it and no connection stays open
        outsider.mach.when_query(
            lambda _: outsider.mach.any_active("Connected", "Exception")
        ).wait(TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:  # counters have no event: poll
            if (
                member.counters().get("conn_refused_peer", 0) > 0
                and member.connection_count() == 0
            ):
                closed.set()
                break
            closed.wait(0.05)
        assert closed.is_set(), (member.counters(), member.connection_count())
        assert outsider.list_machines() == []
    finally:
        assert outsider.dispose().wait(TIMEOUT)
        assert a.dispose().wait(TIMEOUT)
