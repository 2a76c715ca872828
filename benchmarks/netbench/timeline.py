"""``--mp-timeline DIR``: when each peer got where, and every direct request.

A diagnostic of the multi-process run. Each child samples its peers every
``EVERY`` seconds (joined, first topic neighbour, first mesh peer, hello
sent, first refused and first good pull, settled, every machine seen) and
times both ends of every direct request (the caller's round trip, the
server's handling). It writes ``DIR/proc-K.json`` once a second;
``python benchmarks/netbench/timeline.py DIR`` prints the tables, times
from the first peer's join. This is how the pull times behind
``_libp2p/muxer.py`` were found: a reply built in 50 ms, read 2-8 s later.

It is not free: at 100 peers over 5 processes the sampling costs about a
quarter more CPU (a core while idle) and slows the sync (RESULTS.md,
ninth stop), so the figures for the targets are taken without it.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Container
from typing import Any

#: sampling period, s
EVERY = 0.1
#: steps in the order a peer takes them
STEPS = (
    "joined",
    "topic_peer",
    "mesh",
    "hello",
    "refused",
    "pull_ok",
    "settled",
    "complete",
)


#: a peer lacking at most this many owners has them listed (``lacking``)
LACKING = 8
#: a peer with at most this many connections has their changes recorded
LINKS = 12
#: changes of what a lacking peer hears, kept per peer
HEARING = 400


class Timeline:
    """One child's record: its peers' steps and its direct requests.

    With ``peers`` (the network's size), a peer that lacks at most
    :data:`LACKING` owners' machines also records which (their id tails),
    and which of them it knows it misses (named in gossip or elsewhere,
    so a pull or request is coming): the last ones a slow run waits for.
    """

    def __init__(self, path: str, peers: int = 0) -> None:
        self.path = path
        self.peers = peers
        #: peer -> [time, id tails it has machines of, tails it knows it misses]
        self.lacking: dict[int, list[Any]] = {}
        #: peer -> while it lacks owners, each change of [time, messages
        #: received, of them gossip, mesh size, topic peers, connections,
        #: pubsub peers, lag s]: did a peer that never hears an owner hear
        #: nothing at all (few links), or lag?
        self.hearing: dict[int, list[list[Any]]] = {}
        self.steps: dict[int, dict[str, float]] = {}
        self.counts: dict[int, dict[str, int]] = {}
        #: [caller, server id tail, kind, start, seconds, bytes or error]
        self.requests: list[list[Any]] = []
        #: [server, caller id tail, start, seconds, bytes or error]
        self.served: list[list[Any]] = []
        self.ids: dict[int, str] = {}
        #: [time, local tail or "mplex", remote tail, why]: connections closed
        self.closes: list[list[Any]] = []
        #: peer -> [time, "+tail" or "-tail"]: connections opened and closed
        #: (peers with at most LINKS connections)
        self.links: dict[int, list[list[Any]]] = {}
        self._linked: dict[int, set[str]] = {}
        #: peer -> owner id tail -> [when first named to it, in what, by whom]
        self.named: dict[int, dict[str, list[Any]]] = {}

    def watch_closes(self) -> None:
        """Record every connection this process closes, and why (the call
        stack's libp2p and ampubsub frames), and every mplex read loop that
        ended (the error): who cut a peer's links?"""
        from libp2p.network.connection.swarm_connection import SwarmConn
        from libp2p.stream_muxer.mplex.exceptions import MplexUnavailable

        from ampubsub_plugin._libp2p.muxer import ContainedMplex

        closes = self.closes
        close = SwarmConn.close

        async def recorded_close(conn: Any) -> None:
            if not conn.event_closed.is_set():
                local = conn.swarm.get_peer_id().to_base58()[-8:]
                remote = conn.muxed_conn.peer_id.to_base58()[-8:]
                closes.append([time.time(), local, remote, _stack()])
            await close(conn)

        SwarmConn.close = recorded_close  # type: ignore[method-assign]
        incoming = ContainedMplex._handle_incoming_message

        async def recorded_incoming(conn: Any) -> None:
            try:
                await incoming(conn)
            except MplexUnavailable as err:
                cause = err.__cause__ or err.__context__
                reason = f"{err!r} <- {cause!r}"[:160]
                closes.append(
                    [time.time(), "mplex", conn.peer_id.to_base58()[-8:], reason]
                )
                raise

        ContainedMplex._handle_incoming_message = recorded_incoming  # type: ignore[method-assign]

    def watch(self, peer: int, topic: Any) -> None:
        """Time ``topic``'s direct requests, both ways (wraps its transport)."""
        transport = topic.transport
        self.ids[peer] = transport.peer_id[-8:]
        request: Callable[[str, bytes, float], Awaitable[bytes]] = transport.request
        serve: Callable[[str, bytes], Awaitable[bytes]] = topic._serve_request

        async def timed_request(server: str, payload: bytes, timeout: float) -> bytes:
            kind = "snapshot" if payload.startswith(b"\x00ampubsub/pull-s") else "other"
            row: list[Any] = [peer, server[-8:], kind, time.time()]
            try:
                reply = await request(server, payload, timeout)
            except Exception as err:
                self.requests.append([*row, time.time() - row[3], type(err).__name__])
                raise
            self.requests.append([*row, time.time() - row[3], len(reply)])
            return reply

        async def timed_serve(caller: str, payload: bytes) -> bytes:
            row: list[Any] = [peer, caller[-8:], time.time()]
            try:
                reply = await serve(caller, payload)
            except Exception as err:
                self.served.append([*row, time.time() - row[2], str(err)[:40]])
                raise
            self.served.append([*row, time.time() - row[2], len(reply)])
            return reply

        transport.request = timed_request
        transport.serve_requests(timed_serve)
        self._watch_names(peer, topic.core)

    def _watch_names(self, peer: int, core: Any) -> None:
        """Note when each owner was first named to ``peer`` (an info or a
        gossip about it): a peer that lacks an owner for long either never
        heard of it, or heard and didn't act."""
        receive = core.receive
        named = self.named.setdefault(peer, {})

        def noting(sender: str, msg: Any, now: float, **kw: Any) -> Any:
            owners = getattr(msg, "peer_info", None) or getattr(
                msg, "peer_gossips", None
            )
            for owner in owners or ():
                tail = owner[-8:]
                if tail not in named:
                    named[tail] = [time.time(), msg.TYPE, sender[-8:]]
            return receive(sender, msg, now, **kw)

        core.receive = noting

    def sample(self, topics: dict[int, Any], complete: Container[int]) -> None:
        now = time.time()
        for peer, topic in topics.items():
            steps = self.steps.setdefault(peer, {})
            counters = topic.core.counters
            transport = topic.transport
            # (a transport without a mesh: its topic peers are its mesh)
            mesh = getattr(transport, "mesh_peers", transport.topic_peers)
            joined = topic.mach.is_active("Joined")
            reached = {
                "joined": joined,
                "topic_peer": bool(transport.topic_peers()),
                "mesh": bool(mesh()),
                "hello": counters.get("out_info", 0) > 0,
                "refused": counters.get("pull_failed", 0) > 0,
                "pull_ok": counters.get("pull_ok", 0) > 0,
                # (a core that never joined counts as settled: not yet)
                "settled": joined and topic.core.discovery.phase.value != "joining",
                "complete": peer in complete,
            }
            for step, done in reached.items():
                if done and step not in steps:
                    steps[step] = now
            if self.peers and peer not in complete:
                self._note_lacking(peer, topic, now)
            conns, _ = _links(transport)
            self._note_links(peer, transport, now)
            self.counts[peer] = {
                "conns_max": max(conns, self.counts.get(peer, {}).get("conns_max", 0)),
                "seen": len(topic.list_machines()),
                "pulls_failed": counters.get("pull_failed", 0),
                "hedged": counters.get("pull_hedged", 0),
            }

    def _note_links(self, peer: int, transport: Any, now: float) -> None:
        run = getattr(transport, "_run", None)
        if run is None:
            return
        connected = run.host.get_network().connections
        if len(connected) > LINKS:
            return
        tails = {p.to_base58()[-8:] for p in connected}
        before = self._linked.get(peer, set())
        changes = self.links.setdefault(peer, [])
        changes.extend([now, f"+{t}"] for t in sorted(tails - before))
        changes.extend([now, f"-{t}"] for t in sorted(before - tails))
        self._linked[peer] = tails

    def _note_lacking(self, peer: int, topic: Any, now: float) -> None:
        core = topic.core
        have = [v.peer[-8:] for v in core.roster.peers.values() if v.machines]
        if len(have) >= self.peers - 1 - LACKING:
            noticed = [p[-8:] for p in core.repair.missing_peers]
            self.lacking[peer] = [now, have, noticed]
            self._note_hearing(peer, topic, now)

    def _note_hearing(self, peer: int, topic: Any, now: float) -> None:
        counters = topic.core.counters
        transport = topic.transport
        mesh = getattr(transport, "mesh_peers", transport.topic_peers)
        heard = [
            sum(v for k, v in counters.items() if k.startswith("in_")),
            counters.get("in_gossip", 0),
            len(mesh()),
            len(transport.topic_peers()),
            *_links(transport),
            round(topic.core.lag, 2),
        ]
        series = self.hearing.setdefault(peer, [])
        if (not series or series[-1][1:] != heard) and len(series) < HEARING:
            series.append([now, *heard])

    def write(self) -> None:
        record = {
            "lacking": self.lacking,
            "hearing": self.hearing,
            "named": self.named,
            "links": self.links,
            "closes": self.closes,
            "steps": self.steps,
            "counts": self.counts,
            "requests": self.requests,
            "served": self.served,
            "ids": self.ids,
        }
        with open(self.path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(self.path + ".tmp", self.path)

    async def run(self, topics: dict[int, Any], complete: Container[int]) -> None:
        import trio

        written = time.monotonic()
        while True:
            await trio.sleep(EVERY)  # a sampling period, not a wait on state
            self.sample(topics, complete)
            if time.monotonic() - written >= 1.0:
                written = time.monotonic()
                self.write()


def _stack() -> str:
    """The libp2p and ampubsub frames of the current call stack, innermost last."""
    import traceback

    frames = [
        f"{f.filename.rsplit('/', 1)[-1]}:{f.name}"
        for f in traceback.extract_stack()[:-2]
        if "libp2p" in f.filename or "ampubsub" in f.filename
    ]
    return " > ".join(frames[-6:])


def _links(transport: Any) -> tuple[int, int]:
    """Open connections and peers with a pubsub stream (-1: not libp2p)."""
    run = getattr(transport, "_run", None)
    if run is None:
        return -1, -1
    return len(run.host.get_network().get_connections()), len(run.pubsub.peers)


def render(directory: str) -> str:
    """The tables of a run's ``proc-K.json`` files."""
    steps: dict[int, dict[str, float]] = {}
    counts: dict[int, dict[str, int]] = {}
    requests: list[list[Any]] = []
    served: list[list[Any]] = []
    peer_of: dict[str, int] = {}
    lacking: dict[int, list[Any]] = {}
    hearing: dict[int, list[list[Any]]] = {}
    named: dict[int, dict[str, list[Any]]] = {}
    links: dict[int, list[list[Any]]] = {}
    closes: list[list[Any]] = []
    for path in sorted(glob.glob(os.path.join(directory, "proc-*.json"))):
        with open(path) as f:
            record = json.load(f)
        lacking.update({int(p): v for p, v in record.get("lacking", {}).items()})
        hearing.update({int(p): v for p, v in record.get("hearing", {}).items()})
        named.update({int(p): v for p, v in record.get("named", {}).items()})
        links.update({int(p): v for p, v in record.get("links", {}).items()})
        closes += record.get("closes", [])
        steps.update({int(p): s for p, s in record["steps"].items()})
        counts.update({int(p): c for p, c in record["counts"].items()})
        requests += record["requests"]
        served += record["served"]
        peer_of.update({tail: int(p) for p, tail in record["ids"].items()})
    if not steps:
        return f"no timeline in {directory}"
    t0 = min(s["joined"] for s in steps.values() if "joined" in s)
    lines = [
        "peer " + " ".join(f"{s[:10]:>10}" for s in STEPS) + "  failed hedged conns"
    ]
    for peer in sorted(steps, key=lambda p: steps[p].get("complete", float("inf"))):
        s, c = steps[peer], counts.get(peer, {})
        cells = " ".join(
            f"{s[step] - t0:10.2f}" if step in s else f"{'-':>10}" for step in STEPS
        )
        lines.append(
            f"{peer:4} {cells}  {c.get('pulls_failed', 0):6} {c.get('hedged', 0):6}"
            f" {c.get('conns_max', -1):5}"
        )
    if lacking:
        lines.append("")
        lines.append(
            "last lacked before complete: peer, at, owners lacked "
            "(* = known to be missing)"
        )
        for peer in sorted(lacking, key=lambda p: lacking[p][0]):
            at, have, noticed = lacking[peer]
            gone = sorted(
                peer_of.get(t, -1)
                for t in set(peer_of) - set(have)
                if peer_of[t] != peer
            )
            tails = {peer_of.get(t): t for t in noticed}
            marked = [f"{o}{'*' if o in tails else ''}" for o in gone]
            lines.append(f"  {peer:4} {at - t0:7.2f} {' '.join(marked) or '-'}")
    lines.extend(_hearing(hearing, lacking, named, peer_of, t0))
    lines.append("")
    lines.append("connections closed (peer: at -other ...; +other: opened again)")
    for peer in sorted(links):
        events = links[peer]
        if not any(change.startswith("-") for _, change in events):
            continue
        shown = " ".join(
            f"{at - t0:.2f}{change[0]}{peer_of.get(change[1:], change[1:])}"
            for at, change in events
        )
        lines.append(f"  {peer:4}: {shown}")
    if closes:
        lines.append("")
        lines.append(
            "why: at, closing peer (or mplex: its read loop ended), other, stack"
        )
        for at, local, remote, why in sorted(closes, key=lambda c: c[0]):
            who = peer_of.get(local, local)
            other = peer_of.get(remote, remote)
            lines.append(f"  {at - t0:7.2f} {who!s:>5} {other!s:>5} {why}")
    lines.append("")
    lines.append("direct requests: caller -> server, kind, start, took s, bytes/error")
    for caller, server, kind, start, took, out in sorted(requests, key=lambda r: r[3]):
        who = peer_of.get(server, server)
        lines.append(
            f"  {caller:4} -> {who!s:>4} {kind:8} {start - t0:7.2f} {took:6.2f} {out}"
        )
    lines.append("")
    lines.append("served: server <- caller, start, took s, bytes/error")
    for server, caller, start, took, out in sorted(served, key=lambda r: r[2]):
        who = peer_of.get(caller, caller)
        lines.append(f"  {server:4} <- {who!s:>4} {start - t0:7.2f} {took:6.2f} {out}")
    return "\n".join(lines)


def _hearing(
    hearing: dict[int, list[list[Any]]],
    lacking: dict[int, list[Any]],
    named: dict[int, dict[str, list[Any]]],
    peer_of: dict[str, int],
    t0: float,
) -> list[str]:
    """What the last peers to complete heard while they lacked owners, and
    when the owners they lacked last were first named to them."""
    last = sorted(lacking, key=lambda p: lacking[p][0])[-3:]
    lines: list[str] = []
    for peer in last:
        _, have, _ = lacking[peer]
        for tail in sorted(set(peer_of) - set(have)):
            if peer_of[tail] == peer:
                continue
            first = named.get(peer, {}).get(tail)
            said = (
                "never"
                if first is None
                else (
                    f"at {first[0] - t0:.2f} in {first[1]} from "
                    f"{peer_of.get(first[2], first[2])}"
                )
            )
            lines.append(f"peer {peer} lacked {peer_of[tail]}: first named {said}")
        series = hearing.get(peer, [])
        if not series:
            continue
        lines.append("")
        lines.append(
            f"peer {peer} while lacking: at, received, of them gossip, mesh, "
            "topic peers, connections, pubsub peers, lag s"
        )
        for at, *heard in series:
            lines.append(f"  {at - t0:7.2f} " + " ".join(f"{h:>6}" for h in heard))
    return lines


if __name__ == "__main__":
    print(render(sys.argv[1] if len(sys.argv) > 1 else "."))
