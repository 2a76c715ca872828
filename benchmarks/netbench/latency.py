"""``--trace-latency``: where an update's time goes, ours next to raw.

A diagnostic of the single-process sizes that patches timestamps into the
library's classes in this process (like ``Breakdown``, it reaches into
private code, and it costs a few microseconds per message: take no target
figures from a run with it). For every payload published it notes when the
transport was asked to publish it and, at each receiver, when py-libp2p
handed it to the transport's inbox (after the validator) and when the inbox
handed it to the handler; for our updates also when the receiver showed the
new clock (the probe's hook), what the validator and the handler cost there,
and the owner's steps from the change to the publish.

Times are medians over receptions (or over updates for the owner's steps);
each reception's time is measured from its own publish. Raw counts only
while it alternates with our updates (the benchmark's interleaved phase).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from .common import RAW_TOPIC
from .metrics import Expectation

#: the owner's steps, in order: its machine changed (the topic's tracer saw
#: it), the send loop woke, the ``Flush`` handler started and ended, the
#: transport was asked to publish the update
STEPS = ("changed", "woke", "flush_start", "flush_end", "published")


class LatencyTrace:
    """Install with ``LatencyTrace()`` before any transport or topic exists."""

    def __init__(self) -> None:
        from ampubsub_plugin import _inbound, topic
        from ampubsub_plugin._libp2p import inbox, transport

        from . import metrics, raw

        self.published: dict[bytes, tuple[str, float]] = {}
        self.arrived: dict[bytes, list[float]] = defaultdict(list)
        self.dispatched: dict[bytes, list[float]] = defaultdict(list)
        self.updates: dict[bytes, Expectation] = {}
        self.validator_s: list[float] = []
        self.handler_s: list[float] = []
        self.steps: list[dict[str, float]] = []
        self._step: dict[str, float] = {}
        #: the machine whose change is awaited, and its expectation
        self._expected: tuple[str, Expectation] | None = None
        self._owner: Any = None  # the topic of the change being traced
        self._publishing: Any = None  # a topic publishing the awaited update
        #: the first update's change: raw payloads published before it (the
        #: warm-up, raw measured alone) are left out
        self.since: float | None = None
        self._patch_owner(topic, _inbound, transport, metrics)
        self._patch_receivers(inbox, _inbound, raw)

    # -- patches ---------------------------------------------------------------

    def _patch_owner(
        self, topic: Any, inbound: Any, transport: Any, metrics: Any
    ) -> None:
        trace = self
        expect = metrics.Probe.expect

        def traced_expect(probe: Any, key: tuple[str, int], *args: Any) -> Expectation:
            exp: Expectation = expect(probe, key, *args)
            trace._expected = (key[0], exp)
            if trace.since is None:
                trace.since = exp.sent_at
            return exp

        metrics.Probe.expect = traced_expect

        transition_end = inbound.ExportTracer.transition_end

        def traced_transition_end(tracer: Any, tx: Any) -> None:
            changed = tx.time_after is not tx.time_before
            if changed and trace.since is not None and not trace._step:
                trace._step["changed"] = time.monotonic()
                trace._owner = getattr(tracer._wake, "__self__", None)
            transition_end(tracer, tx)

        inbound.ExportTracer.transition_end = traced_transition_end
        mesh_ready = transport.Libp2pTransport.mesh_ready

        def traced_mesh_ready(tr: Any) -> bool:
            if trace._owner is not None and tr is trace._owner.transport:
                trace._note("woke")
            result: bool = mesh_ready(tr)
            return result

        transport.Libp2pTransport.mesh_ready = traced_mesh_ready
        flush = topic._Handlers.Flush_state

        def traced_flush(handlers: Any, e: Any) -> None:
            mine = handlers.t is trace._owner
            if mine:
                trace._note("flush_start")
            flush(handlers, e)
            if mine:
                trace._note("flush_end")

        topic._Handlers.Flush_state = traced_flush
        topic_publish = topic.Topic._publish

        async def traced_topic_publish(t: Any, msg: Any) -> None:
            expected = trace._expected
            if (
                msg.TYPE == "updates"
                and expected is not None
                and any(m.id == expected[0] for m in t.core.exported())
            ):
                trace._publishing = t  # the owner of the awaited change
            try:
                await topic_publish(t, msg)
            finally:
                trace._publishing = None

        topic.Topic._publish = traced_topic_publish
        publish = transport.Libp2pTransport.publish

        async def traced_publish(tr: Any, data: bytes) -> None:
            now = time.monotonic()
            kind = "raw" if tr._inbox.topic == RAW_TOPIC else "ours"
            trace.published[data] = (kind, now)
            owner, expected = trace._publishing, trace._expected
            if owner is not None and tr is owner.transport and expected is not None:
                trace.updates[data] = expected[1]
                trace._expected = trace._publishing = None
                if "changed" in trace._step and owner is trace._owner:
                    trace._step["published"] = now
                    trace.steps.append(trace._step)
                trace._step = {}
                trace._owner = None
            await publish(tr, data)

        transport.Libp2pTransport.publish = traced_publish

    def _patch_receivers(self, inbox: Any, inbound: Any, raw: Any) -> None:
        trace = self
        on_message = inbox.Inbox.on_message

        def traced_arrival(box: Any, msg: Any) -> None:
            if msg.data in trace.published and msg.from_id != box._own:
                trace.arrived[msg.data].append(time.monotonic())
            on_message(box, msg)

        inbox.Inbox.on_message = traced_arrival
        accept = inbound.Inbound.accept

        def traced_accept(handler: Any, sender: str, data: bytes) -> bool:
            t0 = time.perf_counter()
            ok: bool = accept(handler, sender, data)
            if data in trace.updates:
                trace.validator_s.append(time.perf_counter() - t0)
            return ok

        inbound.Inbound.accept = traced_accept
        inbound.Inbound.on_message = self._dispatch(inbound.Inbound.on_message, True)
        raw.RawHandler.on_message = self._dispatch(raw.RawHandler.on_message, False)

    def _dispatch(
        self, handle: Callable[[Any, str, bytes], None], timed: bool
    ) -> Callable[[Any, str, bytes], None]:
        trace = self

        def traced(handler: Any, sender: str, data: bytes) -> None:
            t0 = time.perf_counter()
            if data in trace.published:
                trace.dispatched[data].append(time.monotonic())
            handle(handler, sender, data)
            if timed and data in trace.updates:
                trace.handler_s.append(time.perf_counter() - t0)

        return traced

    def _note(self, step: str) -> None:
        if self._step and step not in self._step:
            self._step[step] = time.monotonic()

    # -- report ----------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Medians in ms (CPU per reception in µs), with the sample counts."""
        since: dict[str, dict[str, list[float]]] = {
            "ours": defaultdict(list),
            "raw": defaultdict(list),
        }
        for data, (kind, at) in self.published.items():
            if kind == "ours" and data not in self.updates:
                continue  # only our updates: the rest is discovery and gossip
            if self.since is None or at < self.since:
                continue  # before the updates: raw alone, or its warm-up
            since[kind]["arrived"].extend(t - at for t in self.arrived.get(data, ()))
            since[kind]["dispatched"].extend(
                t - at for t in self.dispatched.get(data, ())
            )
            exp = self.updates.get(data)
            if exp is not None:
                shown = (exp.sent_at + lat - at for lat in exp.got.values())
                since[kind]["shown"].extend(shown)
        out: dict[str, Any] = {
            kind: {name: _stats(v) for name, v in segs.items()}
            for kind, segs in since.items()
        }
        owner: dict[str, Any] = {}
        for a, b in pairwise(STEPS):
            spans = [s[b] - s[a] for s in self.steps if a in s and b in s]
            owner[f"{a} -> {b}"] = _stats(spans)
        spans = [s["published"] - s["changed"] for s in self.steps]
        owner["changed -> published"] = _stats(spans)
        out["owner"] = owner
        out["cpu_us_per_reception"] = {
            "validator": _stats(self.validator_s, 1e6),
            "handler": _stats(self.handler_s, 1e6),
        }
        return out


def _stats(values: list[float], scale: float = 1000.0) -> list[float]:
    """[median, mean, count] of ``values`` seconds, scaled (ms by default)."""
    if not values:
        return [0.0, 0.0, 0]
    med, mean = statistics.median(values), statistics.fmean(values)
    return [round(scale * med, 3), round(scale * mean, 3), len(values)]


def render_trace(peers: int, trace: dict[str, Any]) -> list[str]:
    """Text lines of one size's ``latency_trace``."""
    lines = [f"{peers} peers, where an update's time goes (median ms, count):"]
    owner = trace.get("owner", {})
    for name, (med, _mean, n) in owner.items():
        lines.append(f"  owner  {name:28s} {med:8.3f}  ({n})")
    for kind in ("ours", "raw"):
        for name, (med, _mean, n) in trace.get(kind, {}).items():
            lines.append(f"  {kind:5s}  publish -> {name:17s} {med:8.3f}  ({n})")
    cpu = trace.get("cpu_us_per_reception", {})
    for name, (med, _mean, n) in cpu.items():
        lines.append(f"  ours   {name} per reception, µs   {med:8.1f}  ({n})")
    return lines
