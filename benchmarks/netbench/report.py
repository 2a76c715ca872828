"""Tables, targets and notes from the results (rich or markdown)."""

from __future__ import annotations

from typing import Any

from .common import TARGET_P50_10, TARGET_RATIO, TARGET_SYNC_30
from .latency import render_trace


def fmt(v: Any, spec: str = ".0f") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def rows_for(
    results: list[dict[str, Any]],
) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    head1 = [
        "peers x procs",
        "join s (1st start->last joined)",
        "discovery s (last join->all seen)",
        "discovered+synced s (from 1st start)",
        "msgs sent per peer until synced",
        "quiet s after synced",
        "idle msgs/peer/s",
        "idle CPU cores",
        "MB/peer ours (raw)",
        "load 1m",
    ]
    head2 = [
        "peers x procs",
        "updates",
        "ours p50 / p99 ms",
        "raw interleaved p50 / p99 ms",
        "ratio p50 (p99) vs interleaved",
        "raw alone p50 / p99 ms",
        "ratio p50 vs alone",
        "all-recv p50 ms ours / raw / alone",
        "lost ours / raw",
        "CPU ms/msg ours / raw / alone",
    ]
    r1, r2 = [], []
    for r in results:
        tag = f"{r['peers']} x {r.get('procs', 1)}"
        load = (
            f"{r.get('load_before', 0):.1f}->{r.get('load_after', 0):.1f}"
            if "load_before" in r
            else "-"
        )
        if r.get("phase") != "done":
            r1.append(
                [tag, f"FAILED in {r.get('phase')} (see below)"]
                + ["-"] * (len(head1) - 3)
                + [load]
            )
        else:
            raw_mem = r.get("mem_mb_per_peer_raw")
            r1.append(
                [
                    tag,
                    fmt(r.get("join_s"), ".2f"),
                    fmt(r.get("discovery_s"), ".2f"),
                    fmt(r.get("synced_from_start_s"), ".2f"),
                    fmt(
                        sum((r.get("discovery_out_by_type") or {}).values())
                        / r["peers"],
                        ".1f",
                    ),
                    fmt(r.get("quiet_after_synced_s"), ".1f")
                    + ("" if r.get("quiet", True) else " (never quiet)"),
                    fmt(r.get("idle_out_per_peer_s"), ".3f"),
                    fmt(r.get("idle_cpu_cores"), ".2f"),
                    fmt(r.get("mem_mb_per_peer"), ".2f")
                    + (f" ({raw_mem:.2f})" if raw_mem is not None else ""),
                    load,
                ]
            )
        lo, lr, la = (
            r.get("lat_ours") or {},
            r.get("lat_raw") or {},
            r.get("lat_raw_alone") or {},
        )
        if not (lo or la):
            continue

        def pair(d: dict[str, Any]) -> str:
            return f"{fmt(d.get('p50'))} / {fmt(d.get('p99'))}" if d else "-"

        def ratio(x: dict[str, Any], y: dict[str, Any], key: str) -> float | None:
            if x.get(key) and y.get(key):
                return float(x[key]) / float(y[key])
            return None

        rat, rat99, rat_alone = (
            ratio(lo, lr, "p50"),
            ratio(lo, lr, "p99"),
            ratio(lo, la, "p50"),
        )
        events = (lo.get("expected", 0) // max(1, r["peers"] - 1)) if lo else 0
        cut = " (budget cut)" if r.get("budget_cut_ours") else ""
        allrecv = " / ".join(
            fmt((r.get(k) or {}).get("p50"))
            for k in ("allrecv_ours", "allrecv_raw", "allrecv_raw_alone")
        )
        r2.append(
            [
                tag,
                f"{events}{cut}",
                pair(lo),
                pair(lr),
                f"{rat:.2f} ({rat99:.2f})" if rat and rat99 else "-",
                pair(la),
                f"{rat_alone:.2f}" if rat_alone else "-",
                allrecv,
                (f"{lo.get('lost')}/{lo.get('expected')}" if lo else "-")
                + (f" / {lr.get('lost')}/{lr.get('expected')}" if lr else ""),
                " / ".join(
                    fmt(r.get(k))
                    for k in ("cpu_ms_ours", "cpu_ms_raw", "cpu_ms_raw_alone")
                ),
            ]
        )
    return head1, r1, head2, r2


def targets(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        if r.get("procs", 1) != 1:
            continue
        lo, lr = r.get("lat_ours") or {}, r.get("lat_raw") or {}
        la = r.get("lat_raw_alone") or {}
        if lo.get("p50") and lr.get("p50"):
            ratio = lo["p50"] / lr["p50"]
            alone = f", {lo['p50'] / la['p50']:.2f}x raw alone" if la.get("p50") else ""
            verdict = "MET" if ratio <= TARGET_RATIO else "NOT MET"
            out.append(
                f"{r['peers']} peers: ours p50 {lo['p50']:.0f} ms = {ratio:.2f}x raw "
                f"interleaved{alone} (target <= {TARGET_RATIO}x): {verdict}"
            )
        if r["peers"] == 10 and lo.get("p50"):
            ok = lo["p50"] <= TARGET_P50_10
            out.append(
                f"10 peers: ours p50 {lo['p50']:.0f} ms "
                f"(target <= {TARGET_P50_10:.0f} ms): {'MET' if ok else 'NOT MET'}"
            )
        if r["peers"] == 30 and r.get("machines") == 3:
            s = r.get("synced_from_start_s")
            if s is None:
                out.append(
                    "30 peers x 3 machines discovered+synced "
                    f"<= {TARGET_SYNC_30:.0f} s: NOT MET ({r.get('error')})"
                )
            else:
                verdict = "MET" if s <= TARGET_SYNC_30 else "NOT MET"
                out.append(
                    f"30 peers x 3 machines discovered+synced in {s:.2f} s from the "
                    f"first start (target <= {TARGET_SYNC_30:.0f} s): {verdict}"
                )
    return out


def mp_lines(tag: str, r: dict[str, Any]) -> list[str]:
    """The multi-process run's everybody-at-once figures (also after a failure)."""
    out = []
    raw = r.get("raw_all")
    if raw:
        lat = raw.get("lat") or {}
        out.append(
            f"{tag}: raw gossipsub, every peer publishes once: all received in "
            f"{fmt(raw.get('all_received_s'), '.2f')} s (last reception "
            f"{fmt(raw.get('last_reception_s'), '.2f')} s); p50/p95 "
            f"{fmt(lat.get('p50'))}/{fmt(lat.get('p95'))} ms; lost "
            f"{lat.get('lost')}/{lat.get('expected')}"
        )
    if "sync_after_last_join_s" in r:
        out.append(
            f"{tag}: ampubsub synced {fmt(r['sync_after_last_join_s'], '.2f')} s "
            f"after the last join = {fmt(r.get('sync_vs_raw'), '.2f')}x raw "
            f"(target <= 1.5x); {fmt(r.get('synced_from_start_s'), '.1f')} s from "
            "the first start"
        )
    u = r.get("until_synced")
    if u:
        out.append(
            f"{tag}: until synced, per peer: {u['msgs_sent_per_peer']:.2f} msgs and "
            f"{u['bytes_sent_per_peer']:,.0f} B sent, "
            f"{u['msgs_received_per_peer']:.0f} msgs received"
        )
    elif "msgs_sent_per_peer_at_timeout" in r:
        out.append(
            f"{tag}: at the timeout, per peer: "
            f"{r['msgs_sent_per_peer_at_timeout']:.2f} msgs and "
            f"{r['bytes_sent_per_peer_at_timeout']:,.0f} B sent"
        )
    if "idle_in_per_peer_s" in r:
        out.append(
            f"{tag}: idle per peer: {r['idle_out_per_peer_s']:.3f} msgs/s sent, "
            f"{r['idle_in_per_peer_s']:.3f} msgs/s received"
        )
    burst = r.get("burst")
    if burst:
        lat = burst.get("lat") or {}
        out.append(
            f"{tag}: every owner updates once: lost {burst['lost']}/"
            f"{burst['expected']} after {burst['bound_s']:.0f} s; p50/p95 "
            f"{fmt(lat.get('p50'))}/{fmt(lat.get('p95'))} ms = "
            f"{fmt(r.get('burst_p50_vs_raw'), '.2f')}x/"
            f"{fmt(r.get('burst_p95_vs_raw'), '.2f')}x raw; all received in "
            f"{fmt(burst.get('all_received_s'), '.2f')} s"
        )
        if burst.get("sent_by_type"):
            by_type = sorted(burst["sent_by_type"].items())
            sent = ", ".join(f"{k} {v}" for k, v in by_type)
            out.append(
                f"{tag}: the burst's messages and counts (all peers): {sent}; CPU s "
                f"per process {burst.get('cpu_s_per_proc')}"
            )
        if burst.get("missing"):
            late = burst.get("came_late_s") or {}
            out.append(
                f"{tag}: lost in the burst (first 10): {', '.join(burst['missing'])}; "
                f"of all lost, {len(late)} came later (s after the change: "
                f"{', '.join(f'{k} {v}' for k, v in list(late.items())[:10]) or '-'})"
            )
    if r.get("cpu_s_per_proc"):
        out.append(
            f"{tag}: CPU s per process {r['cpu_s_per_proc']}; max RSS MB per "
            f"process {r.get('max_rss_mb_per_proc')}"
        )
    return out


def notes(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        tag = f"{r['peers']} x {r.get('procs', 1)}"
        out.extend(mp_lines(tag, r))
        if r.get("phase") != "done":
            out.append(f"{tag}: FAILED: {r.get('error')}")
            continue
        by = ", ".join(
            f"{k[4:]} {v}" for k, v in sorted((r.get("idle_out_by_type") or {}).items())
        )
        idle_s = r.get("idle_s", 0)
        out.append(f"{tag}: idle messages over {idle_s:.1f} s by type: {by or 'none'}")
        disc = ", ".join(
            f"{k[4:]} {v}"
            for k, v in sorted((r.get("discovery_out_by_type") or {}).items())
        )
        out.append(
            f"{tag}: messages sent from start until synced: {disc}; received per peer "
            f"{r.get('discovery_in_per_peer', 0):.0f}"
        )
        received = r.get("discovery_in_by_type") or {}
        if received:
            n = r.get("peers") or 1
            rx = ", ".join(f"{k[3:]} {v / n:.1f}" for k, v in sorted(received.items()))
            kinds = ", ".join(
                f"{k} {v}" for k, v in sorted((r.get("discovery_kinds") or {}).items())
            )
            out.append(f"{tag}: received per peer until synced by type: {rx}")
            out.append(f"{tag}: of the infos and gossip sent: {kinds or 'n/a'}")
        if r.get("drops"):
            out.append(f"{tag}: drops {r['drops']}")
        if r.get("links"):
            out.append(f"{tag}: links made again {r['links']}")
        if r.get("rss_mb_per_proc"):
            out.append(f"{tag}: RSS per process MB {r['rss_mb_per_proc']}")
        if r.get("timeouts_ours") or r.get("timeouts_raw"):
            out.append(
                f"{tag}: events not complete within the event timeout: ours "
                f"{r.get('timeouts_ours', 0)}, raw {r.get('timeouts_raw', 0)}"
            )
    return out


def render(results: list[dict[str, Any]], meta: dict[str, Any], form: str) -> None:
    h1, r1, h2, r2 = rows_for(results)
    if form == "markdown":
        for head, rows in ((h1, r1), (h2, r2)):
            print("| " + " | ".join(head) + " |")
            print("|" + "---|" * len(head))
            for row in rows:
                print("| " + " | ".join(row) + " |")
            print()
        for line in targets(results) + notes(results):
            print(f"- {line}")
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=max(160, Console().width))
        for title, head, rows in (
            ("start-up, discovery, idle, memory", h1, r1),
            ("clock-update latency vs raw gossipsub (same run)", h2, r2),
        ):
            table = Table(title=title)
            for col in head:
                table.add_column(col, overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print(table)
        for line in targets(results) + notes(results):
            console.print(f"  {line}", highlight=False)
    when, machine = meta.get("when", ""), meta.get("machine", "")
    print(f"\n{meta.get('command', '')}  ({when}; {machine})")
    for r in results:
        for key in ("breakdown_until_synced", "breakdown_total"):
            b = r.get(key)
            if not b:
                continue
            why = b.pop("why answers", {})
            span = key[10:].replace("_", " ")
            print(f"\n{r['peers']} peers, messages by builder ({span}):")
            for name, (count, size) in sorted(b.items(), key=lambda kv: -kv[1][1]):
                kib, avg = size / 1024, size / count
                print(f"  {name:22s} {count:6d} msgs  {kib:9.1f} KiB  avg {avg:7.0f} B")
            print(f"  answers built because of: {why}")
        if r.get("latency_trace"):
            print()
            print("\n".join(render_trace(r["peers"], r["latency_trace"])))
        for kind, text in (r.get("profile") or {}).items():
            print(f"\ncProfile, {r['peers']} peers, {kind} events:\n{text}")
