#!/usr/bin/env python
"""Fuzz soak: honest topics keep working under a long stream of hostile messages.

Issue 11's done-when line: "100k fuzzed messages: 0 crashes, 0 topics in
Exception, memory within the documented bound" (docs/protocol.md, "Limits"
and "Floods and what a peer keeps").

Three honest ``Topic`` s on a ``MemoryNetwork`` (each exporting one machine and
toggling it now and then) plus one raw hostile ``MemoryTransport`` on the same
topic, which publishes ``--messages`` payloads made by a seeded
``random.Random`` (no hypothesis: speed and a fixed seed):

* valid-shaped forgeries: ``updates`` / ``info`` / ``gossip`` / ``bye`` /
  ``reqinfo`` / ``requpdates`` naming the honest peers, the hostile peer itself
  and up to ``--fake-peers`` made-up peers; forged clocks and signatures,
  huge and odd vectors, big schemas within the limits, Require chains up to
  1,000 long, machine indexes up to ``MAX_MACHINES_PER_PEER`` and beyond;
* raw junk bytes, truncated and bit-flipped msgpack.

Everything runs under trio's ``MockClock`` (autojump), so protocol timers run
in virtual time; virtual time moves ``--gap`` s between bursts of ``--burst``
messages so the per-author budget refills. ``--no-budget`` sets
``GossipConfig(author_rate=1e9, author_burst=10**9)`` on the honest topics,
so every message is decoded and handled (the harder case for memory).

Measured: exceptions escaping (crashes: the run, the transport's
``on_message`` guard, asyncio/trio callbacks logged at ERROR), guarded errors
(``drop_error*``, ``heartbeat_error*``, ``view_error``), topics whose machine
entered ``Exception``, whether the honest peers still converge at the end
(each sees the others' final clocks), the table sizes of ``topic.counters``
at the end and their maximum (sampled after every burst), and RSS
(``getrusage`` maxrss, ``/proc/self/status`` VmRSS) at start, max and end.

    .venv/bin/python benchmarks/fuzz_soak.py --seed 1
    .venv/bin/python benchmarks/fuzz_soak.py --seed 1 --no-budget
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import resource
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ampubsub_plugin.gossip import GossipConfig
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.protocol import (
    MAX_MACHINES_PER_PEER,
    MAX_STATES,
    MAX_TICK,
    ByeMach,
    ByeMsg,
    GossipMsg,
    Info,
    InfoMsg,
    Message,
    Proof,
    ProtocolError,
    ReqInfoMsg,
    ReqUpdatesMsg,
    UpdatesMsg,
    encode,
    schema_hash,
)
from ampubsub_plugin.topic import Topic
from asyncmachine import Machine, State

WORKER = {"Foo": State(require=["Bar"]), "Bar": State(), "Baz": State()}
WORKER_STATES = ["Foo", "Bar", "Baz", "Exception"]
TABLES = [
    "peers",
    "remote_machines",
    "missing_peers",
    "missing_updates",
    "pending_updates",
    "schemas",
]
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class ErrorLog(logging.Handler):
    """Counts records at ERROR and above (exceptions that guards logged)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.records.append(f"{record.name}: {text}")


class Sink:
    """The hostile transport's handler: it ignores what it hears."""

    def on_message(self, sender: str, data: bytes) -> None:
        pass

    def on_peer_joined(self, peer_id: str) -> None:
        pass

    def on_peer_left(self, peer_id: str) -> None:
        pass


# -- the hostile generator -------------------------------------------------------


class Forger:
    """Seeded hostile payloads (bytes) about honest, own and made-up peers."""

    def __init__(
        self, rng: random.Random, honest: list[str], me: str, fakes: int
    ) -> None:
        self.rng = rng
        self.honest = honest
        self.me = me
        self.fakes = [
            "12D3KooW" + "".join(rng.choice(_B58) for _ in range(44))
            for _ in range(fakes)
        ]
        self.kinds: Counter[str] = Counter()
        self.my_inc = 1_700_000_000_000_000
        self.valid: list[bytes] = []  # recent encodable payloads, to mutate
        # big schemas and long Require chains: built once, reused (encoding
        # them is the slow part); several sizes so schema hashes differ
        self.big: list[Info] = []
        for n in (200, 1000, 2000, MAX_STATES - 1):
            names = [f"S{i:04d}_{rng.randrange(10**6)}" for i in range(n)]
            schema = {s: State(multi=rng.random() < 0.1) for s in names}
            names.append("Exception")
            schema["Exception"] = State(multi=True)
            self.big.append(self._info(f"big{n}", schema, names))
        for n in (10, 100, 1000):
            names = [f"C{i}" for i in range(n)]
            schema = {
                s: State(require=[names[i + 1]] if i + 1 < n else [], auto=True)
                for i, s in enumerate(names)
            }
            names.append("Exception")
            schema["Exception"] = State(multi=True)
            self.big.append(self._info(f"chain{n}", schema, names))
        # dangling relations: Go's parser keeps them; we decode leniently
        names = ["X", "Exception"]
        schema = {"X": State(require=["Gone"], add=["Nope"]), "Exception": State()}
        self.big.append(self._info("dangling", schema, names))
        self.big_cache: dict[tuple[int, str, int], bytes] = {}

    def _info(self, mid: str, schema: dict[str, State], names: list[str]) -> Info:
        return Info(
            mid,
            schema,
            names,
            [self.rng.choice([0, 1, 2]) for _ in names],
            [],
            "",
            schema_hash(schema, names),
        )

    # -- pieces --

    def peer(self) -> str:
        r = self.rng.random()
        if r < 0.35:
            return self.rng.choice(self.honest)
        if r < 0.55:
            return self.me
        return self.rng.choice(self.fakes)

    def peers(self, most: int = 1024) -> list[str]:
        r = self.rng.random()
        n = (
            self.rng.randint(0, 4)
            if r < 0.8
            else self.rng.randint(0, min(most, len(self.fakes)))
        )
        return [self.peer() for _ in range(n)]

    def index(self) -> int:
        r = self.rng.random()
        if r < 0.6:
            return self.rng.randint(0, 3)
        if r < 0.9:
            return self.rng.randint(0, MAX_MACHINES_PER_PEER + 8)
        return self.rng.choice(
            [MAX_TICK, 2**32, 2**31 - 1, self.rng.randrange(MAX_TICK)]
        )

    def tick(self) -> int:
        r = self.rng.random()
        if r < 0.7:
            return self.rng.randint(0, 20)
        if r < 0.9:
            return self.rng.randint(0, 2**40)
        return self.rng.choice([MAX_TICK // 8, MAX_TICK // 4 - 1, 2**62, 0, 2**63])

    def vector(self) -> list[int]:
        r = self.rng.random()
        if r < 0.6:
            n = 4
        elif r < 0.9:
            n = self.rng.randint(0, 8)
        else:
            n = self.rng.randint(0, MAX_STATES + 2)
        if n > 64:
            return [self.rng.randint(0, 3) for _ in range(n)]
        return [self.tick() for _ in range(n)]

    def sig(self) -> bytes:
        return self.rng.randbytes(self.rng.choice([1, 64, 64, 64, 128]))

    def inc(self, who: str = "") -> int:
        # the hostile peer's own runs: mostly its current incarnation, now and
        # then a new (greater) one; for others, anything
        if who == self.me or (not who and self.rng.random() < 0.7):
            if self.rng.random() < 0.01:
                self.my_inc += self.rng.randint(1, 10**6)
            return self.my_inc
        return self.rng.choice([0, 1, self.my_inc, MAX_TICK, self.rng.randrange(2**62)])

    def small_info(self) -> Info:
        r = self.rng.random()
        if r < 0.5:
            names = list(WORKER_STATES)
        else:
            names = [
                f"s{self.rng.randrange(50)}" for _ in range(self.rng.randint(0, 12))
            ]
            names = [*dict.fromkeys(names), "Exception"]
        schema = None
        h: str | None = self.rng.choice([None, "feedface", "0", "x" * 16])
        if self.rng.random() < 0.6:
            schema = {
                n: State(
                    require=self.rng.sample(
                        names, min(len(names), self.rng.randint(0, 2))
                    ),
                    remove=self.rng.sample(
                        names, min(len(names), self.rng.randint(0, 1))
                    ),
                    auto=self.rng.random() < 0.2,
                    multi=self.rng.random() < 0.2,
                )
                for n in names
            }
            if self.rng.random() < 0.8:
                h = schema_hash(schema, names)
        time_ = (
            [self.tick() for _ in names] if self.rng.random() < 0.85 else self.vector()
        )
        return Info(
            self.rng.choice(
                ["m0", "evil", "", "x" * 256, f"id{self.rng.randrange(99)}"]
            ),
            schema,
            names if self.rng.random() < 0.95 else None,
            time_,
            self.rng.sample(["t", "k:v", "a" * 200, "ü"], self.rng.randint(0, 2)),
            self.rng.choice(["", "p", "m0"]),
            h,
            self.inc() if self.rng.random() < 0.5 else 0,
            self.sig() if self.rng.random() < 0.5 else None,
        )

    def by_peer(self, value: Any) -> dict[str, dict[int, Any]]:
        out: dict[str, dict[int, Any]] = {}
        r = self.rng.random()
        npeers = self.rng.randint(1, 3) if r < 0.9 else self.rng.randint(1, 1024)
        for _ in range(npeers):
            nm = (
                self.rng.randint(1, 3)
                if self.rng.random() < 0.95
                else self.rng.randint(1, 64)
            )
            out[self.peer()] = {self.index(): value() for _ in range(nm)}
        return out

    # -- messages --

    def message(self) -> Message | None:
        k = self.rng.choices(
            ["updates", "info", "gossip", "bye", "reqinfo", "requpdates", "big"],
            [25, 20, 20, 8, 8, 8, 3],
        )[0]
        self.kinds[k] += 1
        if k == "updates":
            clocks = self.by_peer(self.vector)
            proofs = {}
            for p in clocks:
                if self.rng.random() < 0.5:
                    proofs[p] = Proof(self.inc(p), {i: self.sig() for i in clocks[p]})
            return UpdatesMsg(clocks, proofs)
        if k == "info":
            return InfoMsg(self.by_peer(self.small_info), self.by_peer(self.tick))
        if k == "gossip":
            return GossipMsg(self.by_peer(self.tick), self.inc())
        if k == "bye":
            machs = {
                self.index(): ByeMach(
                    self.rng.random() < 0.02,
                    self.rng.choice(["m0", "evil", ""]),
                    self.vector(),
                )
                for _ in range(self.rng.randint(0, 4))
            }
            return ByeMsg(machs, self.inc())
        if k == "reqinfo":
            return ReqInfoMsg(self.peers())
        if k == "requpdates":
            return ReqUpdatesMsg(self.peers(), self.rng.random() < 0.2)
        return None  # "big": see payload()

    def payload(self) -> bytes:
        r = self.rng.random()
        if r < 0.06:
            self.kinds["junk"] += 1
            return self.rng.randbytes(self.rng.randint(0, 300))
        if r < 0.12 and self.valid:
            self.kinds["mutated"] += 1
            data = bytearray(self.rng.choice(self.valid))
            for _ in range(self.rng.randint(1, 4)):
                if not data:
                    break
                i = self.rng.randrange(len(data))
                op = self.rng.randrange(4)
                if op == 0:
                    data[i] ^= 1 << self.rng.randrange(8)
                elif op == 1:
                    data[i] = self.rng.randrange(256)
                elif op == 2:
                    del data[i:]  # truncated msgpack
                else:
                    data.insert(i, self.rng.randrange(256))
            return bytes(data)
        msg = self.message()
        if msg is None:
            return self.big_payload()
        try:
            data = encode(msg, strict_relations=False)
        except ProtocolError:
            self.kinds["unencodable"] += 1
            return b"\xc0"
        if len(data) < 4000:
            self.valid.append(data)
            if len(self.valid) > 200:
                self.valid.pop(0)
        return data

    def big_payload(self) -> bytes:
        # a big schema or a long Require chain, introduced by the hostile peer
        # itself (believed: it is the author) or relayed for another peer
        j = self.rng.randrange(len(self.big))
        who = self.me if self.rng.random() < 0.6 else self.peer()
        idx = (
            self.rng.randrange(MAX_MACHINES_PER_PEER)
            if who == self.me
            else self.rng.randint(0, 3)
        )
        key = (j, who, idx % 16)
        data = self.big_cache.get(key)
        if data is None:
            data = encode(
                InfoMsg({who: {idx % 16 * 64: self.big[j]}}, {}), strict_relations=False
            )
            if len(self.big_cache) < 400:
                self.big_cache[key] = data
        return data


# -- the run -------------------------------------------------------------------------


async def start_topic(
    net: MemoryNetwork, boot: list[str], mach: Machine, cfg: GossipConfig | None
) -> Topic:
    topic = Topic(
        "t", transport=net.transport(), bootstrap=boot, machines=[mach], config=cfg
    )
    topic.start()
    with trio.fail_after(10):
        assert await topic.mach.when("Connected")
    topic.join()
    with trio.fail_after(10):
        assert await topic.mach.when("Joined")
    return topic


def converged(topics: list[Topic], machines: list[Machine]) -> bool:
    for t in topics:
        for o, m in zip(topics, machines, strict=True):
            if o is t:
                continue
            views = [
                r for r in t.list_machines(connected=True) if r.peer_id == o.peer_id
            ]
            if len(views) != 1 or views[0].time() != m.time():
                return False
    return True


async def soak(args: argparse.Namespace, out: dict[str, Any]) -> None:
    rng = random.Random(args.seed)
    cfg = GossipConfig(author_rate=1e9, author_burst=10**9) if args.no_budget else None
    net = MemoryNetwork(seed=args.seed)
    machines = [Machine(WORKER, id=f"h{i}-m0") for i in range(3)]
    topics: list[Topic] = []
    for m in machines:
        boot = [a for t in topics for a in t.addrs]
        topics.append(await start_topic(net, boot, m, cfg))
    async with trio.open_nursery() as nursery:
        evil = net.transport()
        await nursery.start(evil.serve, Sink())
        await evil.connect([a for t in topics for a in t.addrs])
        await evil.join("t")
        await advance(30.0)
        if not converged(topics, machines):
            out["converged_before"] = False
        else:
            out["converged_before"] = True
        forger = Forger(rng, [t.peer_id for t in topics], evil.peer_id, args.fake_peers)
        out["rss_start_kb"] = rss_kb()
        out["maxrss_start_kb"] = maxrss_kb()
        maxes = dict.fromkeys(TABLES, 0)
        rss_max = out["rss_start_kb"]
        sent = 0
        bytes_sent = 0
        t0 = time.perf_counter()
        burst_no = 0
        while sent < args.messages:
            n = min(args.burst, args.messages - sent)
            for _ in range(n):
                data = forger.payload()
                bytes_sent += len(data)
                await evil.publish(data)
            sent += n
            burst_no += 1
            await trio.testing.wait_all_tasks_blocked()
            # honest changes now and then
            for m in machines:
                if rng.random() < 0.3:
                    m.toggle(rng.choice(["Bar", "Baz"]))
            await advance(args.gap)
            for t in topics:
                c = t.counters
                for k in TABLES:
                    maxes[k] = max(maxes[k], c.get(k, 0))
            if burst_no % 20 == 0:
                rss_max = max(rss_max, rss_kb())
            if args.progress and burst_no % 100 == 0:
                print(
                    f"  {sent} sent, {time.perf_counter() - t0:.0f} s, "
                    f"rss {rss_kb() // 1024} MB, max {maxes}",
                    file=sys.stderr,
                    flush=True,
                )
        out["elapsed_s"] = round(time.perf_counter() - t0, 1)
        out["sent"] = sent
        out["bytes_sent"] = bytes_sent
        out["kinds"] = dict(forger.kinds)
        out["rss_after_flood_kb"] = rss_kb()
        out["tables_after_flood"] = [
            {k: t.counters.get(k, 0) for k in TABLES} for t in topics
        ]
        # the flood stops; honest peers go on changing, then must converge
        for _ in range(5):
            for m in machines:
                m.toggle("Baz")
            await advance(1.0)
        await advance(args.settle)
        ok = converged(topics, machines)
        if not ok:
            await advance(120.0)
        out["converged_end"] = ok
        out["converged_end_late"] = converged(topics, machines)
        out["tables_max"] = maxes
        out["tables_end"] = [{k: t.counters.get(k, 0) for k in TABLES} for t in topics]
        out["exception_topics"] = sum(
            1
            for t in topics
            if t.mach.is_active("Exception") or t.mach.tick("Exception")
        )
        out["exception_errs"] = [
            repr(t.mach.err) for t in topics if t.mach.tick("Exception")
        ]
        out["joined_ready"] = [t.mach.is_active(["Joined", "Ready"]) for t in topics]
        guarded: Counter[str] = Counter()
        drops: Counter[str] = Counter()
        for t in topics:
            for k, v in t.counters.items():
                if k.startswith(("drop_error", "heartbeat_error", "view_error")):
                    guarded[k] += v
                elif k.startswith("drop_"):
                    drops[k] += v
        out["guarded_errors"] = dict(guarded)
        out["drops"] = dict(drops.most_common())
        out["in_counts"] = dict(
            sum(
                (
                    Counter(
                        {k: v for k, v in t.counters.items() if k.startswith("in_")}
                    )
                    for t in topics
                ),
                Counter(),
            )
        )
        gc.collect()
        out["rss_end_kb"] = rss_kb()
        out["rss_max_sampled_kb"] = max(
            rss_max, out["rss_after_flood_kb"], out["rss_end_kb"]
        )
        out["maxrss_end_kb"] = maxrss_kb()
        for t in topics:
            t.dispose()
        with trio.fail_after(30):
            for t in topics:
                await t.mach.when_disposed()
        nursery.cancel_scope.cancel()


async def advance(seconds: float) -> None:
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    clock.jump(seconds)
    await trio.testing.wait_all_tasks_blocked()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--burst", type=int, default=100, help="messages per burst")
    p.add_argument("--gap", type=float, default=2.0, help="virtual s between bursts")
    p.add_argument(
        "--settle", type=float, default=70.0, help="virtual s after the flood"
    )
    p.add_argument("--fake-peers", type=int, default=5000)
    p.add_argument("--no-budget", action="store_true")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    logging.getLogger().setLevel(logging.WARNING)
    out: dict[str, Any] = {"args": vars(args) | {"json": str(args.json)}}
    crash = None
    try:
        trio.run(soak, args, out, clock=trio.testing.MockClock(autojump_threshold=0))
    except BaseException as exc:
        crash = "".join(traceback.format_exception(exc))
    out["crash"] = crash
    out["error_logs"] = len(errors.records)
    out["error_log_samples"] = errors.records[:5]
    text = json.dumps(out, indent=1, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
