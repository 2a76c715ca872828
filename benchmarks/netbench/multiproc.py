"""The coordinator of the multi-process run (this process)."""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from functools import partial
from typing import Any

from .common import STATES, PhaseTimeout, lat_summary, topology
from .mp_phases import launch_when_ready, raw_all_to_all, update_burst
from .procs import Children


def counted_between(
    before: list[dict[str, Any]], after: list[dict[str, Any]], key: str
) -> Counter[str]:
    """What the children's ``key`` counters grew by between two totals."""
    grown: Counter[str] = Counter()
    for x, y in zip(before, after):
        grown.update(Counter(y[key]) - Counter(x[key]))
    return grown


def multiproc(a: argparse.Namespace) -> dict[str, Any]:
    n, procs, m_per = a.procs_peers, a.procs, a.machines
    res: dict[str, Any] = {"peers": n, "procs": procs, "machines": m_per}
    rng = random.Random(a.seed + 1)
    boots = topology(n, rng)
    res["edges"] = sum(len(b) for b in boots)
    say = partial(print, file=sys.stderr, flush=True)
    head = f"[{n} peers / {procs} procs]"
    children = Children(a)
    phase = "mp: spawn"
    try:
        deadline = time.monotonic() + 60
        ready = 0
        while ready < procs:
            _, msg = children.get(deadline, phase)
            ready += msg.get("ev") == "ready"
        # --- the raw baseline first, alone on the machine --------------------------
        if not a.no_raw:
            res["raw_all"] = raw_all_to_all(
                children,
                boots,
                a.raw_bound,
                a.raw_spread,
                lambda p: say(f"{head} {p}"),
            )
        # --- start peers as soon as their bootstrap peers listen ----------------
        phase = "mp: start+connect+join"
        say(f"[{n} peers / {procs} procs] {phase}")
        t_start = time.time()
        addrs: dict[int, list[str]] = {}
        sent: set[int] = set()
        joined: dict[int, float] = {}
        discovered: dict[int, float] = {}
        synced: dict[int, float] = {}
        # a peer may take all its connect attempts (dial <= 5 s, doubling pause)
        dialling = sum(5 + 0.25 * 2**k for k in range(a.connect_attempts))
        deadline = time.monotonic() + 60 + 2 * n + dialling

        def launch_ready() -> None:
            launch_when_ready(children, boots, addrs, sent, "start")

        def handle(k: int, msg: dict[str, Any]) -> None:
            ev = msg.get("ev")
            if ev == "started":
                addrs[msg["i"]] = msg["addrs"]
                launch_ready()
            elif ev == "joined":
                joined[msg["i"]] = msg["t"]
            elif ev == "discovered":
                discovered[k] = msg["t"]
            elif ev == "synced":
                synced[k] = msg["t"]
            elif ev == "progress":
                seen = msg["seen"]
                say(
                    f"{head} +{msg['t'] - t_start:6.1f}s proc {k}: seen "
                    f"min {seen[0]} median {seen[len(seen) // 2]} of {msg['of']}, "
                    f"complete {sum(x >= msg['of'] for x in seen)}/{len(seen)}, "
                    f"lag {msg['lag']} s, sent {msg['out']}; least-seeing peer "
                    f"{msg['low'][0]}: topic peers {msg['low'][1]}, mesh "
                    f"{msg['low'][2]}, connections {msg['low'][3]}, {msg['low'][4]}, "
                    f"error {msg['low'][5]}; logged {msg.get('errors')}"
                )

        launch_ready()
        while len(joined) < n:
            handle(*children.get(deadline, f"{phase} ({len(joined)}/{n} joined)"))
        last_join = max(joined.values())
        res["join_s"] = last_join - t_start
        phase = "mp: discovery+sync"
        say(f"[{n} peers / {procs} procs] {phase}")
        deadline = time.monotonic() + a.mp_discovery_timeout
        try:
            while len(synced) < procs:
                handle(*children.get(deadline, phase))
        except PhaseTimeout:
            children.broadcast({"cmd": "totals"})
            got: dict[int, dict[str, Any]] = {}
            with contextlib.suppress(PhaseTimeout):
                dl = time.monotonic() + 15
                while len(got) < procs:
                    k, msg = children.get(dl, phase)
                    if msg.get("ev") == "totals":
                        got[k] = msg
            seen = [(x["seen_min"], x["seen_max"]) for x in got.values()]
            res["cpu_s_per_proc"] = [round(x["cpu"], 1) for x in got.values()]
            res["max_rss_mb_per_proc"] = [round(x["hwm_mb"], 1) for x in got.values()]
            res["msgs_sent_per_peer_at_timeout"] = (
                sum(x["out"] for x in got.values()) / n
            )
            res["bytes_sent_per_peer_at_timeout"] = (
                sum(x["out_bytes"] for x in got.values()) / n
            )
            sent_by_type: Counter[str] = sum(
                (Counter(x["by_type"]) for x in got.values()), Counter()
            )
            raise PhaseTimeout(
                phase,
                f"after {a.mp_discovery_timeout:.0f} s: {len(discovered)}/{procs} "
                f"processes complete; machines seen per peer (min, max) by process "
                f"{seen} of {m_per * (n - 1)}; "
                f"messages sent so far {dict(sent_by_type)}",
            ) from None
        res["discovery_s"] = max(discovered.values()) - last_join
        res["discovered_from_start_s"] = max(discovered.values()) - t_start
        res["synced_from_start_s"] = max(synced.values()) - t_start
        res["sync_after_last_join_s"] = max(synced.values()) - last_join

        # --- idle traffic ----------------------------------------------------
        phase = "mp: settle"
        say(f"[{n} peers / {procs} procs] {phase}")

        def totals() -> list[dict[str, Any]]:
            children.broadcast({"cmd": "totals"})
            got: dict[int, dict[str, Any]] = {}
            dl = time.monotonic() + 10
            while len(got) < procs:
                k, msg = children.get(dl, phase)
                if msg.get("ev") == "totals":
                    got[k] = msg
            return [got[k] for k in range(procs)]

        first = totals()
        res["until_synced"] = {
            "msgs_sent_per_peer": sum(x["out"] for x in first) / n,
            "bytes_sent_per_peer": sum(x["out_bytes"] for x in first) / n,
            "msgs_received_per_peer": sum(x["in"] for x in first) / n,
        }
        res["discovery_out_by_type"] = dict(
            sum((Counter(x["by_type"]) for x in first), Counter())
        )
        res["discovery_in_per_peer"] = sum(x["in"] for x in first) / n
        # receptions by message type, and which infos/gossip they were
        res["discovery_in_by_type"] = dict(
            sum((Counter(x.get("in_by_type", {})) for x in first), Counter())
        )
        res["discovery_kinds"] = dict(
            sum((Counter(x.get("kinds", {})) for x in first), Counter())
        )
        t_synced = time.monotonic()
        time.sleep(a.settle)
        calm = 0
        while calm < 2 and time.monotonic() - t_synced < a.settle + a.quiet_timeout:
            x0 = totals()
            time.sleep(1.0)
            x1 = totals()
            busy = sum(
                Counter(y["by_type"])["out_info"] + Counter(y["by_type"])["out_reqinfo"]
                for y in x1
            ) - sum(
                Counter(y["by_type"])["out_info"] + Counter(y["by_type"])["out_reqinfo"]
                for y in x0
            )
            inbound = (sum(y["in"] for y in x1) - sum(y["in"] for y in x0)) / n
            calm = calm + 1 if busy == 0 and inbound <= n / 15 + 1 else 0
        res["quiet_after_synced_s"] = time.monotonic() - t_synced
        res["quiet"] = calm >= 2
        phase = "mp: idle"
        say(f"[{n} peers / {procs} procs] {phase}")
        before = totals()
        time.sleep(a.idle)
        after = totals()
        wall = statistics.fmean(x["t"] for x in after) - statistics.fmean(
            x["t"] for x in before
        )
        res["idle_s"] = wall
        res["idle_out_per_peer_s"] = sum(x["out"] for x in after) - sum(
            x["out"] for x in before
        )
        res["idle_out_per_peer_s"] /= n * wall
        res["idle_in_per_peer_s"] = (
            sum(x["in"] for x in after) - sum(x["in"] for x in before)
        ) / (n * wall)
        res["idle_out_by_type"] = dict(counted_between(before, after, "by_type"))
        res["idle_cpu_cores"] = (
            sum(x["cpu"] for x in after) - sum(x["cpu"] for x in before)
        ) / wall

        # --- latency -----------------------------------------------------------
        phase = "mp: latency"
        say(f"[{n} peers / {procs} procs] {phase}")
        children.broadcast({"cmd": "measure", "on": True})
        dl = time.monotonic() + 10
        acks = 0
        while acks < procs:
            acks += children.get(dl, phase)[1].get("ev") == "measuring"
        applied: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
        changes: list[tuple[tuple[str, int], float]] = []
        allrecv: list[float] = []
        timeouts = 0
        interval = 1.0 / a.mp_rate
        next_at = time.monotonic()
        cpu0 = totals()
        t_lat0 = time.monotonic()
        for _ in range(a.updates):
            if time.monotonic() - t_lat0 > a.latency_budget:
                break
            time.sleep(max(0.0, next_at - time.monotonic()))
            p = rng.randrange(n)
            children.send(
                p % procs,
                {
                    "cmd": "change",
                    "i": p,
                    "j": rng.randrange(m_per),
                    "s": rng.choice(STATES),
                },
            )
            key = None
            t0 = 0.0
            dl = time.monotonic() + a.event_timeout
            while True:
                try:
                    k, msg = children.get(dl, phase)
                except PhaseTimeout:
                    timeouts += 1
                    break
                ev = msg.get("ev")
                if ev == "changed":
                    key, t0 = (msg["id"], msg["sum"]), msg["t"]
                    changes.append((key, t0))
                elif ev == "applied":
                    applied[(msg["id"], msg["sum"])].setdefault(msg["rx"], msg["t"])
                if key is not None and len(applied[key]) >= n - 1:
                    allrecv.append(max(applied[key].values()) - t0)
                    break
            next_at = max(next_at + interval, time.monotonic() + 0.05)
        elapsed = time.monotonic() - t_lat0
        # stragglers
        dl = time.monotonic() + 1.0
        with contextlib.suppress(PhaseTimeout):
            while True:
                k, msg = children.get(dl, phase)
                if msg.get("ev") == "applied":
                    applied[(msg["id"], msg["sum"])].setdefault(msg["rx"], msg["t"])
        children.broadcast({"cmd": "measure", "on": False})
        cpu1 = totals()
        lat = [t - t0 for key, t0 in changes for t in applied[key].values()]
        res["lat_ours"] = lat_summary(lat, len(changes) * (n - 1))
        res["allrecv_ours"] = lat_summary(allrecv, len(changes))
        res["timeouts_ours"] = timeouts
        res["events_per_s"] = len(changes) / elapsed
        res["cpu_ms_ours"] = (
            1000
            * (sum(x["cpu"] for x in cpu1) - sum(x["cpu"] for x in cpu0))
            / max(1, a.updates)
        )
        # --- every owner changes a state at once: lost updates -------------------
        phase = "mp: update burst"
        b0 = totals()
        res["burst"] = update_burst(
            children, n, rng.choice(STATES), a.loss_bound, lambda p: say(f"{head} {p}")
        )
        b1 = totals()
        # what the burst cost besides the updates
        sent = counted_between(b0, b1, "by_type") + counted_between(b0, b1, "kinds")
        res["burst"]["sent_by_type"] = dict(sent)
        res["burst"]["cpu_s_per_proc"] = [
            round(y["cpu"] - x["cpu"], 1) for x, y in zip(b0, b1)
        ]
        phase = "mp: stop"
        children.broadcast({"cmd": "stop"})
        finals: dict[int, dict[str, Any]] = {}
        dl = time.monotonic() + 20
        while len(finals) < procs:
            k, msg = children.get(dl, phase)
            if msg.get("ev") == "final":
                finals[k] = msg
                children.finished.add(k)
        res["mem_mb_per_peer"] = (
            sum(f["rss_mb"] - f["rss_base_mb"] for f in finals.values()) / n
        )
        res["rss_mb_per_proc"] = [round(finals[k]["rss_mb"], 1) for k in range(procs)]
        res["max_rss_mb_per_proc"] = [
            round(finals[k]["hwm_mb"], 1) for k in range(procs)
        ]
        res["cpu_s_per_proc"] = [round(finals[k]["cpu"], 1) for k in range(procs)]
        raw_all = res.get("raw_all") or {}
        if raw_all.get("all_received_s"):
            res["sync_vs_raw"] = (
                res["sync_after_last_join_s"] / raw_all["all_received_s"]
            )
        for q in ("p50", "p95"):
            raw_q = (raw_all.get("lat") or {}).get(q)
            burst_q = res["burst"]["lat"].get(q)
            if raw_q and burst_q:
                res[f"burst_{q}_vs_raw"] = burst_q / raw_q
        drops: Counter[str] = Counter()
        links: Counter[str] = Counter()
        for f in finals.values():
            drops.update(f["drops"])
            links.update(f.get("links") or {})
        res["drops"] = dict(drops)
        res["links"] = dict(links)
        res["phase"] = "done"
    except PhaseTimeout as err:
        res["error"] = str(err)
        res["phase"] = err.phase
    except RuntimeError as err:
        res["error"] = str(err)
        res["phase"] = phase
    finally:
        children.kill()
    return res
