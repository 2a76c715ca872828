"""What the single-process run measures with: cProfile split by package,
per-builder message counts, and the probe that timestamps updates."""

from __future__ import annotations

import cProfile
import io
import pstats
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ampubsub_plugin.hooks import hookimpl


class Aggregator:
    """cProfile stats, split by package, and the top functions."""

    AREAS = (
        ("ampubsub", "/ampubsub_plugin/"),
        ("asyncmachine", "/asyncmachine/"),
        ("libp2p", "/libp2p/"),
        ("trio", "/trio/"),
        ("crypto", "/nacl/"),
        ("crypto", "/cryptography/"),
        ("crypto", "/Crypto/"),
        ("protobuf", "/google/protobuf/"),
        ("multiaddr", "/multiaddr/"),
        ("msgpack", "msgpack"),
        ("pluggy", "/pluggy/"),
    )

    @classmethod
    def area(cls, filename: str) -> str:
        for name, marker in cls.AREAS:
            if marker in filename:
                return name
        if filename.startswith("~") or filename.startswith("<"):
            return "builtins"
        return "other"

    @classmethod
    def summary(cls, prof: cProfile.Profile, events: int, top: int = 18) -> str:
        stats = pstats.Stats(prof)
        by_area: Counter[str] = Counter()
        rows = []
        total = 0.0
        for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if "select.epoll" in func or "select.select" in func:
                continue  # waiting for I/O, not work
            by_area[cls.area(filename)] += tt
            total += tt
            rows.append((tt, ct, nc, f"{_short(filename)}:{line}({func})"))
        rows.sort(reverse=True)
        out = io.StringIO()
        per = 1000 * total / max(events, 1)
        out.write(
            f"  profiled time (I/O wait excluded) {total:.2f} s over {events} events"
            f" = {per:.1f} ms/event (cProfile overhead included)\n"
        )
        out.write(
            "  by package (tottime): "
            + ", ".join(
                f"{a} {100 * t / total:.0f}%" for a, t in by_area.most_common() if total
            )
            + "\n"
        )
        out.write("  top functions by tottime (ms/event, calls/event):\n")
        for tt, _ct, nc, name in rows[:top]:
            ms, calls = 1000 * tt / max(events, 1), nc / max(events, 1)
            out.write(f"    {ms:7.2f} ms {calls:8.1f}  {name}\n")
        # our own code by cumulative time (what it costs including callees)
        ours = [
            r for r in rows if "ampubsub_plugin" in r[3] or "/asyncmachine/" in r[3]
        ]
        ours.sort(key=lambda r: r[1], reverse=True)
        out.write("  ampubsub/asyncmachine functions by cumtime (ms/event):\n")
        for _tt, ct, nc, name in ours[:12]:
            ms, calls = 1000 * ct / max(events, 1), nc / max(events, 1)
            out.write(f"    {ms:7.2f} ms {calls:8.1f}  {name}\n")
        return out.getvalue()


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class Breakdown:
    """``--breakdown``: which builder of the core's outbox sent what (messages, bytes).

    Wraps the private builders of ``ampubsub_plugin._gossip.outbox.Outbox`` in
    this process (a diagnostic that reaches into the library; it encodes every
    message once more to weigh it, so it costs CPU: not for timing runs).
    """

    BUILDERS = (
        "_byes",
        "_updates",
        "_introductions",
        "_hello",
        "_requests",
        "_gossip",
    )

    def __init__(self) -> None:
        from ampubsub_plugin import protocol
        from ampubsub_plugin._gossip import answers, outbox

        self.count: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        box = outbox.Outbox
        for name in self.BUILDERS:
            setattr(box, name, self._wrap(getattr(box, name), name, protocol.encode))
        intros = box._introductions
        box._introductions = self._why(intros)  # type: ignore[method-assign]
        acks = answers.Answers.collect_acks
        answers.Answers.collect_acks = self._wrap(  # type: ignore[method-assign]
            acks, "_acks", protocol.encode
        )

    def _wrap(
        self, fn: Callable[..., Any], name: str, encode: Callable[[Any], bytes]
    ) -> Callable[..., Any]:
        def wrapped(room: Any, now: float, *rest: Any) -> Any:
            out = fn(room, now, *rest)
            for msg in out:
                key = f"{name.lstrip('_')}:{msg.TYPE}"
                self.count[key] += 1
                self.bytes[key] += len(encode(msg))
            return out

        return wrapped

    def _why(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(box: Any, now: float) -> Any:
            due = box._discovery.snapshot_due
            if due is not None and due <= now:
                self.reasons["snapshot (reqinfo [])"] += 1
            if any(t <= now for t in box._answers.info.values()):
                self.reasons["answer_info (reqinfo [peers])"] += 1
            if any(t <= now for t in box._answers.updates.values()):
                self.reasons["answer_updates"] += 1
            return fn(box, now)

        return wrapped

    def snapshot(self) -> dict[str, Any]:
        return {k: [self.count[k], self.bytes[k]] for k in self.count} | {
            "why answers": dict(self.reasons)
        }


# ---------------------------------------------------------------------------
# single-process measurement (runs in a child process per size)
# ---------------------------------------------------------------------------


@dataclass
class Expectation:
    sent_at: float
    receivers: int
    got: dict[int, float] = field(default_factory=dict)
    done: Any = None  # trio.Event


class Probe:
    """The ampubsub hooks: discovery per topic, clock updates per receiver."""

    def __init__(self, expected_machines: int, clock: Callable[[], float]) -> None:
        import trio

        self.clock = clock
        self.expected = expected_machines
        self.index: dict[int, int] = {}  # id(topic) -> peer index
        self.discovered: dict[int, set[str]] = defaultdict(set)
        self.complete_at: dict[int, float] = {}
        self.all_discovered = trio.Event()
        self.peers = 0
        self.waiting: dict[tuple[str, int], Expectation] = {}
        self.late = 0

    def add_topic(self, topic: Any, peer: int) -> None:
        self.index[id(topic)] = peer
        self.peers += 1

    @hookimpl
    def ampubsub_machine_discovered(self, topic: Any, remote: Any) -> None:
        peer = self.index.get(id(topic))
        if peer is None:
            return
        seen = self.discovered[peer]
        seen.add(remote.id)
        if len(seen) >= self.expected and peer not in self.complete_at:
            self.complete_at[peer] = self.clock()
            if len(self.complete_at) == self.peers:
                self.all_discovered.set()

    @hookimpl
    def ampubsub_machine_updated(self, topic: Any, remote: Any) -> None:
        now = self.clock()
        exp = self.waiting.get((remote.id, remote.time_sum))
        if exp is None:
            return
        peer = self.index.get(id(topic), -1)
        if peer in exp.got:
            return
        exp.got[peer] = now - exp.sent_at
        if exp.done is not None and len(exp.got) >= exp.receivers:
            exp.done.set()

    def expect(
        self, key: tuple[str, int], sent_at: float, receivers: int
    ) -> Expectation:
        import trio

        exp = Expectation(sent_at, receivers, done=trio.Event())
        self.waiting[key] = exp
        return exp


def counters_sum(topics: list[Any], prefix: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for t in topics:
        for k, v in t.core.counters.items():
            if k.startswith(prefix):
                total[k] += v
    return total
