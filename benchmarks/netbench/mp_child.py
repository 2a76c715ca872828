"""One child of the multi-process run: peers i with i % procs == k.

It speaks JSON lines: commands on stdin, events on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections import defaultdict
from typing import Any

from .common import (
    RAW_TOPIC,
    TOPIC,
    emit,
    make_schema,
    proc_status_kb,
    quiet_logging,
    updates_payload_size,
    wait_state,
)
from .metrics import counters_sum
from .raw import ONCE_HEAD, PROBE_HEAD, AllToAll, once_payload
from .timeline import Timeline

#: how long a bare transport keeps dialling its bootstrap peers, s
RAW_CONNECT_BOUND = 60.0


async def mp_child_main(a: argparse.Namespace) -> None:
    import trio

    from ampubsub_plugin import Libp2pTransport, Topic, hooks
    from ampubsub_plugin.transport import TransportError
    from asyncmachine import Machine

    quiet_logging()
    errors: list[str] = []  # --mp-progress: the first distinct error logs

    class KeepErrors(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = f"{record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f": {record.exc_info[1]!r}"
            if (record.levelno >= logging.ERROR or "failed" in text) and text[
                :400
            ] not in errors:
                errors[:] = [*errors[-4:], text[:400]]

    if a.mp_progress > 0:
        logging.getLogger("ampubsub").addHandler(KeepErrors(logging.ERROR))
        for name in ("ampubsub.runtime", "ampubsub.libp2p"):  # failed tasks, stacks
            logging.getLogger(name).setLevel(logging.DEBUG)
            logging.getLogger(name).addHandler(KeepErrors(logging.DEBUG))
    n, m_per, k = a.procs_peers, a.machines, a.mp_child
    profiler = None
    if a.mp_profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    schema = make_schema()
    rss_base = proc_status_kb("VmRSS")
    topics: dict[int, Any] = {}
    machines: dict[int, list[Any]] = {}
    local_count = len(range(k, n, a.procs))
    expected = m_per * (n - 1)
    measuring = False

    class MPProbe:
        def __init__(self) -> None:
            self.index: dict[int, int] = {}
            self.seen: dict[int, set[str]] = defaultdict(set)
            self.complete: set[int] = set()

        @hooks.hookimpl
        def ampubsub_machine_discovered(self, topic: Any, remote: Any) -> None:
            peer = self.index.get(id(topic))
            if peer is None:
                return
            s = self.seen[peer]
            s.add(remote.id)
            if len(s) >= expected and peer not in self.complete:
                self.complete.add(peer)
                if len(self.complete) == local_count:
                    emit({"ev": "discovered", "t": time.time()})

        @hooks.hookimpl
        def ampubsub_machine_updated(self, topic: Any, remote: Any) -> None:
            if measuring:
                emit(
                    {
                        "ev": "applied",
                        "id": remote.id,
                        "sum": remote.time_sum,
                        "rx": self.index.get(id(topic), -1),
                        "t": time.time(),
                    }
                )

    probe = MPProbe()
    hooks.register(probe, name="network-bench-mp-probe")
    timeline = (
        Timeline(os.path.join(a.mp_timeline, f"proc-{k}.json"), peers=n)
        if a.mp_timeline
        else None
    )
    if timeline is not None:
        timeline.watch_closes()
    sent_bytes = [0]

    def count_bytes(transport: Any) -> None:
        """Count the bytes the topic hands to this transport."""
        publish = transport.publish

        async def counted(data: bytes) -> None:
            sent_bytes[0] += len(data)
            await publish(data)

        transport.publish = counted

    # --- the raw baseline: bare transports, every peer publishes once ---------
    local = list(range(k, n, a.procs))
    baseline = AllToAll(n, local, lambda seq: emit({"ev": "raw_probe_got", "s": seq}))
    raw: dict[int, Any] = {}
    raw_scope = trio.CancelScope()
    payload_size = updates_payload_size(m_per)

    async def raw_host(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with raw_scope:
            async with trio.open_nursery() as raw_nursery:
                task_status.started(raw_nursery)
                await trio.sleep_forever()
        emit({"ev": "raw_closed"})

    async def serve_guarded(
        tr: Any, handler: Any, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        """A bare transport failing must not end this child: it is reported."""
        try:
            await tr.serve(handler, task_status=task_status)
        except Exception as err:
            emit({"ev": "raw_transport_failed", "error": repr(err)})

    async def start_raw(i: int, bootstrap: list[str]) -> None:
        try:
            tr = Libp2pTransport()
            raw[i] = tr
            await raw_nursery.start(serve_guarded, tr, baseline.handler(i))
            emit({"ev": "raw_started", "i": i, "addrs": tr.addrs})
            if bootstrap:
                await connect_with_retries(tr, bootstrap)
            await tr.join(RAW_TOPIC)
            await tr.wait_mesh(5.0)
            emit({"ev": "raw_joined", "i": i, "t": time.time()})
        except Exception as err:
            emit({"ev": "raw_failed", "i": i, "error": repr(err)})

    async def connect_with_retries(tr: Any, bootstrap: list[str]) -> None:
        """Dial the bootstrap peers until one answers (a loaded machine drops dials)."""
        deadline = trio.current_time() + RAW_CONNECT_BOUND
        while True:
            try:
                await tr.connect(bootstrap)
                return
            except TransportError:
                if trio.current_time() > deadline:
                    raise
                await trio.sleep(0.5)  # a pause between dial rounds, not a wait

    async def publish_guarded(i: int, payload: bytes) -> None:
        """A bare transport that died is reported, not fatal to this child."""
        try:
            await raw[i].publish(payload)
        except Exception as err:
            emit({"ev": "raw_publish_failed", "i": i, "error": repr(err)})

    async def publish_once(i: int, delay: float) -> None:
        await trio.sleep(delay)  # --raw-spread: pacing the publishes, not a wait
        await publish_guarded(i, once_payload(ONCE_HEAD, i, time.time(), payload_size))

    async def watch_raw() -> None:
        while len(baseline.complete) < len(local):
            await trio.sleep(0.05)
        emit({"ev": "raw_done", "t": time.time()})

    async def start_peer(i: int, bootstrap: list[str]) -> None:
        try:
            ms = [
                Machine(schema, id=f"p{i}-m{j}", tags=[f"peer:{i}"])
                for j in range(m_per)
            ]
            for mach in ms:
                mach.add("A")
            machines[i] = ms
            transport = Libp2pTransport()
            count_bytes(transport)
            topic = Topic(
                TOPIC,
                transport=transport,
                bootstrap=bootstrap,
                machines=ms,
                connect_attempts=a.connect_attempts,
            )
            topics[i] = topic
            probe.index[id(topic)] = i
            if timeline is not None:
                timeline.watch(i, topic)
            topic.start()
            await wait_state(topic, "Started", 20, "mp: start")
            emit({"ev": "started", "i": i, "addrs": topic.addrs})
            # each attempt: a dial (<= 5 s) and a doubling pause from 0.25 s
            connect_bound = 60 + sum(5 + 0.25 * 2**k for k in range(a.connect_attempts))
            await wait_state(topic, "Connected", connect_bound, "mp: connect")
            topic.join()
            await wait_state(topic, "Joined", 30, "mp: join")
            emit({"ev": "joined", "i": i, "t": time.time()})
        except Exception as err:
            emit({"ev": "error", "i": i, "error": str(err)})

    async def watch_sync() -> None:
        initial = None
        while True:
            await trio.sleep(0.05)
            if len(probe.complete) < local_count:
                continue
            if initial is None:
                initial = machines[min(machines)][0].time()
            ok = all(
                r.time() == initial
                for t in topics.values()
                for r in t.list_machines(connected=True)
            )
            if ok:
                emit({"ev": "synced", "t": time.time()})
                return

    async def report_progress(every: float) -> None:
        """--mp-progress: how far each local peer got, for the tail's shape."""
        while True:
            await trio.sleep(every)  # a sampling period, not a wait on state
            if not topics:
                continue
            seen = sorted(len(t.list_machines()) for t in topics.values())
            # the peer that sees least: is it cut off (no topic peers, no mesh)?
            low = min(topics.items(), key=lambda it: len(it[1].list_machines()))
            tr = low[1].transport
            run = getattr(tr, "_run", None)
            conns = len(run.host.get_network().connections) if run else -1
            out = counters_sum(list(topics.values()), "out_")
            out.update(counters_sum(list(topics.values()), "pull_"))
            emit(
                {
                    "ev": "progress",
                    "t": time.time(),
                    "seen": seen,
                    "of": expected,
                    "lag": round(max(t.core.lag for t in topics.values()), 2),
                    "low": [
                        low[0],
                        len(tr.topic_peers()),
                        len(tr.mesh_peers()),
                        conns,
                        sorted(low[1].mach.active_states),
                        repr(low[1].mach.err),
                    ],
                    "errors": errors,
                    "out": {k2: v for k2, v in sorted(out.items()) if v},
                }
            )

    def totals() -> dict[str, Any]:
        out = counters_sum(list(topics.values()), "out_")
        inbound = counters_sum(list(topics.values()), "in_")
        seen = [len(t.list_machines()) for t in topics.values()] or [0]
        return {
            "out": sum(out.values()),
            "out_bytes": sent_bytes[0],
            "hwm_mb": proc_status_kb("VmHWM") / 1024,
            "in": sum(inbound.values()),
            "cpu": time.process_time(),
            "t": time.time(),
            "by_type": dict(out),
            "in_by_type": dict(inbound),
            "kinds": dict(
                counters_sum(list(topics.values()), "info_")
                + counters_sum(list(topics.values()), "gossip_")
                + counters_sum(list(topics.values()), "pull_")
            ),
            "seen_min": min(seen),
            "seen_max": max(seen),
        }

    async with trio.open_nursery() as nursery:
        raw_nursery = await nursery.start(raw_host)
        nursery.start_soon(watch_sync)
        if a.mp_progress > 0:
            nursery.start_soon(report_progress, a.mp_progress)
        if timeline is not None:
            nursery.start_soon(timeline.run, topics, probe.complete)
        emit({"ev": "ready", "k": k})
        while True:
            line = await trio.to_thread.run_sync(
                sys.stdin.readline,
                abandon_on_cancel=True,  # type: ignore[call-arg]
            )
            if not line:
                os._exit(0)  # the coordinator is gone
            cmd = json.loads(line)
            op = cmd["cmd"]
            if op == "start":
                nursery.start_soon(start_peer, cmd["i"], cmd["boot"])
            elif op == "raw_start":
                raw_nursery.start_soon(start_raw, cmd["i"], cmd["boot"])
            elif op == "raw_probe":
                payload = once_payload(PROBE_HEAD, cmd["s"], time.time(), payload_size)
                raw_nursery.start_soon(publish_guarded, cmd["i"], payload)
            elif op == "raw_fire":
                raw_nursery.start_soon(watch_raw)
                for i in local:
                    delay = random.uniform(0, cmd.get("spread", 0.0))
                    raw_nursery.start_soon(publish_once, i, delay)
            elif op == "raw_report":
                emit(
                    {
                        "ev": "raw_report",
                        "lat": baseline.latencies(),
                        "expected": baseline.expected(),
                        "last_at": baseline.last_at,
                        "cpu": time.process_time(),
                    }
                )
                raw_scope.cancel()
            elif op == "change_all":
                changed = []
                for i in local:
                    mach = machines[i][0]
                    t0 = time.time()
                    mach.toggle(cmd["s"])
                    changed.append([mach.id, sum(mach.time()), t0])
                emit({"ev": "changed_all", "changes": changed})
            elif op == "totals":
                emit({"ev": "totals", **totals()})
            elif op == "measure":
                measuring = bool(cmd["on"])
                emit({"ev": "measuring", "on": measuring})
            elif op == "change":
                mach = machines[cmd["i"]][cmd["j"]]
                state = cmd["s"]
                t0 = time.time()
                if mach.is_active(state):
                    mach.remove(state)
                else:
                    mach.add(state)
                emit({"ev": "changed", "id": mach.id, "sum": sum(mach.time()), "t": t0})
            elif op == "stop":
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(os.path.join(a.mp_profile, f"proc-{k}.prof"))
                counters = counters_sum(list(topics.values()), "")
                for t in topics.values():  # the transports' own (py-libp2p drops)
                    counters.update(t.transport.counters())
                emit(
                    {
                        "ev": "final",
                        "rss_mb": proc_status_kb("VmRSS") / 1024,
                        "rss_base_mb": rss_base / 1024,
                        "hwm_mb": proc_status_kb("VmHWM") / 1024,
                        "cpu": time.process_time(),
                        "drops": {
                            k2: v
                            for k2, v in counters.items()
                            if k2.startswith("drop_")
                        },
                        # links lost and made again (the transport's own)
                        "links": {
                            k2: counters.get(k2, 0)
                            for k2 in ("redials", "streams_renewed")
                        },
                    }
                )
                os._exit(0)


def describe(err: BaseException) -> str:
    """The exception, or the leaves of an exception group, in one line."""
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(describe(e) for e in err.exceptions)
    return f"{type(err).__name__}: {err}"


def mp_child_entry(a: argparse.Namespace) -> int:
    import trio

    try:
        trio.run(mp_child_main, a)
    except BaseException as err:
        import traceback

        traceback.print_exc(file=sys.stderr)
        emit({"ev": "error", "error": describe(err)})
    os._exit(1)
