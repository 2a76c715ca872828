"""``ampubsub watch``: join a topic and show the network as a debugger would.

It shows the peers on the topic (count, connection address, when we last
heard from each and when its newest clock arrived), the machines with
their active states and per-state ticks (changes since the last refresh
highlighted), filtered by ``--peer``,
``--id`` (a regex) and ``--tag``. ``--once`` prints one picture and exits,
``--json`` prints JSON (one object per refresh, or one with ``--once``).

Nobody on the topic within ``--timeout`` ends it with a hint naming the
topics the connected peers are on (exit 4): a typo in ``--topic`` is the
usual cause.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._signals import bye_on_signals
from ..metrics import activity
from ..remote import RemoteMachine
from ..topic import Topic
from .network import check_addrs, make_topic, start
from .observe import serve_metrics
from .output import Exit, Failure, console, usage
from .peer import STOP_SIGNALS

#: how long the machines must stay the same before ``--once`` prints them
SETTLE = 0.5


@dataclass
class Filters:
    peer: str | None = None
    id: re.Pattern[str] | None = None
    tag: str | None = None

    def match(self, remote: RemoteMachine) -> bool:
        if self.peer and not (
            remote.peer_id.startswith(self.peer) or remote.peer_id.endswith(self.peer)
        ):
            return False
        if self.id is not None and not self.id.search(remote.id):
            return False
        if self.tag is not None:
            keys = {t.split(":", 1)[0] for t in remote.tags} | set(remote.tags)
            if self.tag not in keys:
                return False
        return True


@dataclass
class Picture:
    """What one refresh shows (also its JSON form)."""

    topic: str
    peer_id: str
    peers: list[dict[str, Any]] = field(default_factory=list)
    machines: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "peer_id": self.peer_id,
            "peer_count": len(self.peers),
            "peers": self.peers,
            "machines": self.machines,
        }

    def key(self) -> Any:
        """Which machines there are (not their states: those may never rest)."""
        return sorted((m["peer_id"], m["id"]) for m in self.machines)


def take_picture(topic: Topic, filters: Filters) -> Picture:
    now = time.monotonic()
    last_clock = activity().last_clock(topic)
    picture = Picture(topic.name, topic.peer_id)
    remotes = sorted(topic.list_machines(), key=lambda r: (r.peer_id, r.index))
    on_topic = set(topic.transport.topic_peers())
    peers = sorted(on_topic | {r.peer_id for r in remotes})
    address = getattr(topic.transport, "peer_address", lambda _: None)
    heard_ago: dict[str, float] = dict(getattr(topic.transport, "last_heard", dict)())
    for peer in peers:
        heard = last_clock.get(peer)
        picture.peers.append(
            {
                "peer_id": peer,
                "address": address(peer),
                "direct": peer in on_topic,
                "machines": sum(1 for r in remotes if r.peer_id == peer),
                "last_heard_age": (
                    round(heard_ago[peer], 3) if peer in heard_ago else None
                ),
                "last_clock_age": None if heard is None else round(now - heard, 3),
            }
        )
    for remote in remotes:
        if not filters.match(remote):
            continue
        clock = remote.clock()
        picture.machines.append(
            {
                "peer_id": remote.peer_id,
                "id": remote.id,
                "tags": list(remote.tags),
                "active": list(remote.active_states),
                "ticks": {s: t for s, t in clock.items() if t},
                "connected": remote.is_connected,
            }
        )
    return picture


def render(picture: Picture, before: Picture | None) -> Group:
    old = {(m["peer_id"], m["id"]): m for m in (before.machines if before else [])}
    peers = Table(title=f"topic {picture.topic!r}: {len(picture.peers)} peer(s)")
    for column in ("peer", "address", "machines", "last heard", "last clock"):
        peers.add_column(column)
    for p in picture.peers:
        peers.add_row(
            p["peer_id"][-8:],
            p["address"] or ("-" if p["direct"] else "(via others)"),
            str(p["machines"]),
            _ago(p["last_heard_age"]),
            _ago(p["last_clock_age"]),
        )
    machines = Table(title=f"{len(picture.machines)} machine(s)")
    for column in ("peer", "machine", "tags", "active (tick)", "conn"):
        machines.add_column(column)
    for m in picture.machines:
        prev = old.get((m["peer_id"], m["id"]))
        changed = prev is not None and prev["ticks"] != m["ticks"]
        active = " ".join(f"{s}:{m['ticks'].get(s, 0)}" for s in m["active"]) or "-"
        machines.add_row(
            m["peer_id"][-8:],
            m["id"],
            " ".join(m["tags"]),
            Text(active, style="bold yellow" if changed else ""),
            "yes" if m["connected"] else Text("no", style="red"),
        )
    return Group(peers, machines)


def _ago(age: float | None) -> str:
    return "-" if age is None else f"{age:.1f}s ago"


def wrong_topic_hint(topic: Topic, waited: float) -> Failure:
    seen: dict[str, int] = dict(getattr(topic.transport, "network_topics", dict)())
    seen.pop(topic.name, None)
    connected = topic.transport.connection_count()
    if seen:
        others = ", ".join(f"{t!r} ({n} peer(s))" for t, n in sorted(seen.items()))
        where = f"connected to {connected} peer(s), on {others}"
    else:
        where = f"connected to {connected} peer(s), on no topic yet"
    return Failure(
        f"nobody on topic {topic.name!r} after {waited:g} s ({where}); check --topic",
        Exit.NOTHING_FOUND,
    )


def default_listen(bootstrap: list[str]) -> list[str]:
    """TCP on loopback, and QUIC too when a bootstrap peer is on QUIC.

    py-libp2p dials only with the transports it listens on, and QUIC dials
    from its listening socket (so on all interfaces, to reach other hosts).
    """
    listen = ["/ip4/127.0.0.1/tcp/0"]
    if any("/quic" in addr for addr in bootstrap):
        listen.append("/ip4/0.0.0.0/udp/0/quic-v1")
    return listen


def watch(args: argparse.Namespace) -> int:
    """Show the topic live (or once) until interrupted or ``--seconds``."""
    bootstrap = check_addrs(args.bootstrap, "--bootstrap", dialable=True)
    if not bootstrap and not args.mdns:
        raise usage(
            "watch needs at least one --bootstrap ADDR (a peer's full address) "
            "or --mdns"
        )
    try:
        filters = Filters(args.peer, re.compile(args.id) if args.id else None, args.tag)
    except re.error as err:
        raise usage(f"--id: not a regular expression: {args.id!r} ({err})") from None
    activity()  # clock arrivals from the start
    topic = make_topic(
        args.topic,
        kind=args.transport,
        listen=args.listen or default_listen(bootstrap),
        bootstrap=bootstrap,
        timeout=args.timeout,
        mdns=args.mdns,
        psk_file=args.psk_file,
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    metrics = None
    try:
        started = args.started
        start(topic, args.timeout, started)
        metrics = serve_metrics(args, [topic])
        with bye_on_signals(topic, signals=STOP_SIGNALS):
            return _show(topic, args, filters, stop, started)
    finally:
        signal.signal(signal.SIGINT, previous)
        if metrics is not None:
            metrics.stop()
        topic.dispose()
        topic.mach.when_disposed().wait(10)


def _show(
    topic: Topic,
    args: argparse.Namespace,
    filters: Filters,
    stop: threading.Event,
    started: float,
) -> int:
    join_deadline = started + args.timeout
    end = started + args.seconds if args.seconds else None
    seen_peer = False
    before: Picture | None = None
    stable_since = time.monotonic()
    live: Live | None = None
    if not args.once and not args.json:
        live = Live(console=console, refresh_per_second=4)
        live.start()
    try:
        while not stop.wait(0.1 if args.once else 0.25):
            now = time.monotonic()
            picture = take_picture(topic, filters)
            seen_peer = seen_peer or bool(topic.transport.topic_peers())
            if not seen_peer and now > join_deadline:
                raise wrong_topic_hint(topic, args.timeout)
            if before is None or picture.key() != before.key():
                stable_since = now
            if args.once:
                settled = (
                    seen_peer and picture.machines and now - stable_since >= SETTLE
                )
                if settled or (seen_peer and now > join_deadline):
                    _print_once(picture, before, args.json)
                    return Exit.OK
            elif args.json:
                print(json.dumps(picture.as_json()), flush=True)
            elif live is not None:
                live.update(render(picture, before))
            before = picture
            if end is not None and now > end:
                break
    finally:
        if live is not None:
            live.stop()
    return Exit.OK  # Ctrl-C is how a live watch ends


def _print_once(picture: Picture, before: Picture | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps(picture.as_json()), flush=True)
    else:
        console.print(render(picture, before))
