"""One timeline for a whole network: who changed what, who saw it when.

Each peer's own protocol log says what that peer did; to see *who was late
and why* the events of every peer must sit on one clock. A
:class:`Timeline` records, on ``time.monotonic``:

- transitions of every exported machine, on its owner (``worker +Job``);
- each time a peer's copy of a remote machine changes clock (``sees worker
  Job=3``), with how long after its owner's change that was;
- the protocol messages each peer sent and received, in between.

Recording is a tracer on each topic machine (and on each exported machine,
bound when the topic first shows it), so it costs nothing until a check
fails except a bounded deque.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ampubsub_plugin import Topic
    from asyncmachine import Machine

#: events kept per network (the newest ones)
TIMELINE_EVENTS = 200
#: events shown in a full report
SHOWN = 80
#: topic states worth a line: messages and the topic's own lifecycle
LIFECYCLE = {"Joined", "Disconnected", "Disposing", "Disposed", "Exception"}


class Timeline:
    """A bounded, merged, cross-peer event log (thread-safe appends)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.events: collections.deque[tuple[float, str, str]] = collections.deque(
            maxlen=TIMELINE_EVENTS
        )
        #: (machine id, clock sum) -> when its owner got there
        self._changed_at: dict[tuple[str, int], float] = {}
        self._labels: dict[str, str] = {}
        self._lock = threading.Lock()
        self._bound: set[int] = set()
        #: tracers bound to the user's exported machines (unbound on close)
        self._tracers: list[tuple[Machine, _ExportTracer]] = []

    def add(self, peer: str, text: str) -> None:
        self.events.append((time.monotonic(), peer, text))

    def watch(self, index: int, topic: Topic) -> Callable[[], None]:
        """Record ``topic`` (peer ``index``) from now on.

        Returns a callable that starts following machines the topic just
        exported (call it from ``export``; otherwise the topic's next step
        does, and transitions in between show only as the export's clock).
        """
        if not self._labels and not self.events:
            self.started = time.monotonic()  # the clock starts with the first peer
        timeline = self
        seen: dict[tuple[str, str], int] = {}

        def label() -> str:
            return f"{index}:{topic.peer_id[-6:] or '-'}"

        class TopicTracer:
            def transition_end(self, tx: Any) -> None:
                if not tx.is_accepted or tx.time_after is tx.time_before:
                    return
                if topic.peer_id:
                    timeline._labels[topic.peer_id[-6:]] = label()
                text = _message(tx, timeline._labels)
                if text is not None:
                    timeline.add(label(), text)
                timeline._bind_exports(label, topic)
                timeline._copies(label(), topic, seen)

        topic.mach.bind_tracer(TopicTracer())
        return lambda: timeline._bind_exports(label, topic)

    def _bind_exports(self, label: Any, topic: Topic) -> None:
        for machine in topic.exported:
            with self._lock:  # the topic's thread and the exporting one
                if id(machine) in self._bound:
                    continue
                self._bound.add(id(machine))
            self._owner_change(machine)
            self.add(label(), f"exports {machine.id} at {_ticks(machine)}")
            tracer = _ExportTracer(self, machine, label)
            machine.bind_tracer(tracer)
            self._tracers.append((machine, tracer))

    def stop(self) -> None:
        """Leave the user's machines alone: the network is closed."""
        tracers, self._tracers = self._tracers, []
        for machine, tracer in tracers:
            machine.unbind_tracer(tracer)

    def _owner_change(self, machine: Machine) -> None:
        key = (machine.id, sum(machine.time()))
        self._changed_at.setdefault(key, time.monotonic())

    def _copies(
        self, peer: str, topic: Topic, seen: dict[tuple[str, str], int]
    ) -> None:
        """A line for each remote copy whose clock moved since we last looked."""
        for remote in topic.list_machines():
            key = (remote.peer_id, remote.id)
            now_sum = sum(remote.time())
            if seen.get(key) == now_sum:
                continue
            seen[key] = now_sum
            changed = self._changed_at.get((remote.id, now_sum))
            lag = (
                f" ({time.monotonic() - changed:.3f}s after its owner)"
                if changed is not None
                else ""
            )
            self.add(peer, f"sees {remote.id} at {_ticks(remote)}{lag}")

    def render(self, shown: int = SHOWN) -> list[str]:
        events = sorted(self.events)[-shown:]
        if not events:
            return ["(nothing recorded)"]
        width = max(len(peer) for _, peer, _ in events)
        lines = [
            f"{at - self.started:8.3f}s  {peer.ljust(width)}  {text}"
            for at, peer, text in events
        ]
        dropped = len(self.events) - len(events)
        if dropped > 0:
            lines.insert(0, f"(... {dropped} earlier events)")
        return lines


class _ExportTracer:
    """Transitions of an exported machine, on its owner's line."""

    def __init__(self, timeline: Timeline, machine: Machine, label: Any) -> None:
        self._timeline = timeline
        self._machine = machine
        self._label = label

    def transition_end(self, tx: Any) -> None:
        if not tx.is_accepted or tx.time_after is tx.time_before:
            return
        self._timeline._owner_change(self._machine)
        sign = "-" if tx.mutation_type.value == "remove" else "+"
        called = " ".join(tx.called_states)
        self._timeline.add(
            self._label(),
            f"{self._machine.id} {sign}{called} -> {_ticks(self._machine)}",
        )


def _ticks(machine: Machine) -> str:
    return " ".join(
        f"{name}={tick}"
        for name, tick in machine.clock().items()
        if tick or name != "Exception"
    )


def _message(tx: Any, labels: dict[str, str]) -> str | None:
    """A topic transition worth a timeline line: a message or the lifecycle."""
    args = tx.args
    called = " ".join(tx.called_states)
    if "msg" in args:
        sender = str(args.get("peer_id"))[-6:]
        return f"got {args['msg'].TYPE} from {labels.get(sender, sender)}"
    if "type" in args:
        return f"sent {args['type']} {args.get('size', '?')}B"
    if "err" in args:
        return f"{called} {args['err']!r}"
    if tx.mutation_type.value != "remove" and set(tx.called_states) & LIFECYCLE:
        return f"+{called}"
    return None
