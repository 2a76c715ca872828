"""Topics as metrics: Prometheus text and OpenTelemetry instruments.

What is exported per topic (labels ``topic``, and ``peer`` where it says):

- ``ampubsub_counter{name}``: every entry of ``topic.counters`` (messages
  in and out by type, drops by reason, table sizes, the transport's own);
- ``ampubsub_topic_peers``: directly connected peers on the topic;
- ``ampubsub_remote_peers``: peers whose machines we show;
- ``ampubsub_machines{kind}``: ``exported`` (ours), ``remote`` (connected
  remote machines), ``remote_disconnected``;
- ``ampubsub_convergence_lag_seconds{peer}``: the age of the newest clock
  seen from each remote peer, i.e. how long ago that peer's machines last
  moved here. A peer whose machines keep changing and whose lag grows is
  not reaching us.

The clocks' arrival times come from :class:`Activity`, an ampubsub plugin
(``ampubsub_machine_discovered`` / ``ampubsub_machine_updated``), so this
module reads nothing but the topics' public API. Prometheus and
OpenTelemetry are optional: ``pip install 'ampubsub[metrics]'``; importing
this module needs neither, only the function that uses one does.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import hooks

if TYPE_CHECKING:
    from .remote import RemoteMachine
    from .topic import Topic

#: The name the :class:`Activity` plugin is registered under (once per process).
ACTIVITY_PLUGIN = "ampubsub-metrics-activity"


class Activity:
    """When the newest clock of each remote peer arrived, per topic.

    A pluggy plugin of project ``ampubsub``; :func:`activity` registers the
    process's one instance. Times are ``time.monotonic()``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clocks: weakref.WeakKeyDictionary[Topic, dict[str, float]] = (
            weakref.WeakKeyDictionary()
        )

    def _seen(self, topic: Topic, remote: RemoteMachine) -> None:
        now = time.monotonic()
        with self._lock:
            self._clocks.setdefault(topic, {})[remote.peer_id] = now

    @hooks.hookimpl
    def ampubsub_machine_discovered(self, topic: Topic, remote: RemoteMachine) -> None:
        self._seen(topic, remote)

    @hooks.hookimpl
    def ampubsub_machine_updated(self, topic: Topic, remote: RemoteMachine) -> None:
        self._seen(topic, remote)

    def last_clock(self, topic: Topic) -> dict[str, float]:
        """peer id -> when its newest clock arrived (monotonic seconds)."""
        with self._lock:
            return dict(self._clocks.get(topic, {}))

    def lag(self, topic: Topic, now: float | None = None) -> dict[str, float]:
        """peer id -> seconds since its newest clock arrived (peers we show)."""
        now = time.monotonic() if now is None else now
        shown = {r.peer_id for r in topic.list_machines()}
        return {
            peer: max(0.0, now - at)
            for peer, at in self.last_clock(topic).items()
            if peer in shown
        }


_activity: Activity | None = None
_activity_lock = threading.Lock()


def activity() -> Activity:
    """The process's :class:`Activity` plugin, registered on first use.

    Register it before topics join to see every clock; clocks that arrived
    earlier are unknown until the peer's next change.
    """
    global _activity
    with _activity_lock:
        if _activity is None:
            _activity = Activity()
            hooks.register(_activity, name=ACTIVITY_PLUGIN)
        return _activity


@dataclass(frozen=True, slots=True)
class Sample:
    """One value of one metric, with its labels."""

    name: str
    help: str
    kind: str  # "gauge" (everything here may go down or is a snapshot)
    labels: dict[str, str]
    value: float


def samples(topics: Iterable[Topic], tracker: Activity | None = None) -> list[Sample]:
    """The metrics of ``topics`` now (what both exporters publish)."""
    tracker = tracker or activity()
    out: list[Sample] = []
    for topic in topics:
        base = {"topic": topic.name}
        for name, value in sorted(topic.counters.items()):
            out.append(
                Sample(
                    "ampubsub_counter",
                    "topic.counters: messages in/out, drops by reason, table sizes",
                    "gauge",
                    {**base, "name": name},
                    float(value),
                )
            )
        remotes = topic.list_machines()
        connected = sum(1 for r in remotes if r.is_connected)
        out.append(
            Sample(
                "ampubsub_topic_peers",
                "directly connected peers on the topic",
                "gauge",
                base,
                float(len(topic.transport.topic_peers())),
            )
        )
        out.append(
            Sample(
                "ampubsub_remote_peers",
                "peers whose machines this topic shows",
                "gauge",
                base,
                float(len({r.peer_id for r in remotes})),
            )
        )
        for kind, count in (
            ("exported", len(topic.exported)),
            ("remote", connected),
            ("remote_disconnected", len(remotes) - connected),
        ):
            out.append(
                Sample(
                    "ampubsub_machines",
                    "machines by kind: exported, remote, remote_disconnected",
                    "gauge",
                    {**base, "kind": kind},
                    float(count),
                )
            )
        for peer, lag in sorted(tracker.lag(topic).items()):
            out.append(
                Sample(
                    "ampubsub_convergence_lag_seconds",
                    "age of the newest clock seen from each remote peer",
                    "gauge",
                    {**base, "peer": peer},
                    lag,
                )
            )
    return out


# -- Prometheus ------------------------------------------------------------------


class PrometheusCollector:
    """A prometheus_client collector reading ``topics()`` at each scrape."""

    def __init__(
        self, topics: Callable[[], Iterable[Topic]], tracker: Activity | None = None
    ) -> None:
        self._topics = topics
        self._tracker = tracker or activity()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families: dict[str, GaugeMetricFamily] = {}
        for sample in samples(self._topics(), self._tracker):
            family = families.get(sample.name)
            if family is None:
                family = families[sample.name] = GaugeMetricFamily(
                    sample.name, sample.help, labels=list(sample.labels)
                )
            family.add_metric(list(sample.labels.values()), sample.value)
        yield from families.values()


class MetricsServer:
    """A running ``/metrics`` endpoint: its port, and how to stop it."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_prometheus(
    topics: Callable[[], Iterable[Topic]],
    port: int,
    addr: str = "127.0.0.1",
) -> MetricsServer:
    """Serve ``/metrics`` on ``addr:port`` from a daemon thread.

    ``port`` 0 picks a free one (``server.port``). Raises ``ImportError``
    naming the extra when prometheus_client is missing, and ``OSError`` when
    the port can't be bound.
    """
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as error:
        raise ImportError(
            "Prometheus metrics need prometheus_client: pip install 'ampubsub[metrics]'"
        ) from error
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(topics))
    server, thread = start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server, thread)


# -- OpenTelemetry ---------------------------------------------------------------


def register_opentelemetry(
    topics: Callable[[], Iterable[Topic]], meter: Any = None
) -> list[Any]:
    """Observable gauges on ``meter`` (opentelemetry-api) read at each collection.

    ``meter`` defaults to ``metrics.get_meter("ampubsub")`` of the global
    provider; the application sets up the SDK and its exporter. Returns the
    instruments.
    """
    try:
        from opentelemetry import metrics as otel
        from opentelemetry.metrics import Observation
    except ImportError as error:
        raise ImportError(
            "OpenTelemetry metrics need opentelemetry-api: "
            "pip install 'ampubsub[metrics]'"
        ) from error
    if meter is None:
        meter = otel.get_meter("ampubsub")
    tracker = activity()
    names = {
        "ampubsub_counter": ("ampubsub.counter", "1"),
        "ampubsub_topic_peers": ("ampubsub.topic.peers", "1"),
        "ampubsub_remote_peers": ("ampubsub.remote.peers", "1"),
        "ampubsub_machines": ("ampubsub.machines", "1"),
        "ampubsub_convergence_lag_seconds": ("ampubsub.convergence.lag", "s"),
    }

    def callback_for(metric: str) -> Callable[[Any], Iterable[Any]]:
        def observe(_options: Any) -> Iterable[Any]:
            return [
                Observation(s.value, s.labels)
                for s in samples(topics(), tracker)
                if s.name == metric
            ]

        return observe

    instruments = []
    for metric, (otel_name, unit) in names.items():
        instruments.append(
            meter.create_observable_gauge(
                otel_name, callbacks=[callback_for(metric)], unit=unit
            )
        )
    return instruments
