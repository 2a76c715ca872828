"""ampubsub_plugin.metrics: samples, Prometheus text and OpenTelemetry gauges."""

from __future__ import annotations

import urllib.request

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ampubsub_plugin import metrics
from ampubsub_plugin.memory_transport import MemoryNetwork

from .netutil import dispose_all, run, start_topic, until, worker


def by_name(samples: list[metrics.Sample], name: str) -> list[metrics.Sample]:
    return [s for s in samples if s.name == name]


def test_samples_prometheus_and_opentelemetry_show_two_peers() -> None:
    tracker = metrics.activity()  # before the topics join: clocks are recorded

    async def main() -> None:
        net = MemoryNetwork(latency=0.005)
        a = await start_topic(net, machines=[worker("a1")])
        b = await start_topic(net, a.addrs, [worker("b1"), worker("b2")])
        await until([a, b], lambda t: len(t.list_machines()) == (2 if t is a else 1))
        got = metrics.samples([a], tracker)
        machines = {
            s.labels["kind"]: s.value for s in by_name(got, "ampubsub_machines")
        }
        assert machines == {"exported": 1, "remote": 2, "remote_disconnected": 0}
        (remote_peers,) = by_name(got, "ampubsub_remote_peers")
        assert remote_peers.value == 1
        (lag,) = by_name(got, "ampubsub_convergence_lag_seconds")
        assert lag.labels == {"topic": a.name, "peer": b.peer_id}
        assert lag.value >= 0
        counters = {s.labels["name"]: s.value for s in by_name(got, "ampubsub_counter")}
        assert counters == {k: float(v) for k, v in a.counters.items()}

        server = metrics.serve_prometheus(lambda: [a], 0)
        try:
            url = f"http://127.0.0.1:{server.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as answer:
                text = answer.read().decode()
        finally:
            server.stop()
        assert f'ampubsub_remote_peers{{topic="{a.name}"}} 1.0' in text
        assert f'peer="{b.peer_id}"' in text

        reader = InMemoryMetricReader()
        meter = MeterProvider(metric_readers=[reader]).get_meter("test")
        metrics.register_opentelemetry(lambda: [a], meter)
        data = reader.get_metrics_data()
        assert data is not None
        points = {
            m.name: [p.value for p in m.data.data_points]
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        assert points["ampubsub.remote.peers"] == [1]
        assert len(points["ampubsub.convergence.lag"]) == 1
        await dispose_all([a, b])

    run(main)


def test_a_busy_metrics_port_is_an_oserror() -> None:
    first = metrics.serve_prometheus(list, 0)
    try:
        with pytest.raises(OSError):
            metrics.serve_prometheus(list, first.port)
    finally:
        first.stop()
