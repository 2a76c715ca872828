"""``--metrics-port``: the Prometheus endpoint of the command's topics."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..metrics import MetricsServer, activity, serve_prometheus
from ..topic import Topic
from .output import Exit, Failure, console, network


def track_activity() -> None:
    """Start recording clock arrivals (before topics join: lag needs them)."""
    activity()


def serve_metrics(
    args: argparse.Namespace, topics: Sequence[Topic]
) -> MetricsServer | None:
    port = getattr(args, "metrics_port", None)
    if port is None:
        return None
    listed = list(topics)
    try:
        server = serve_prometheus(lambda: listed, port, addr=args.metrics_addr)
    except ImportError as error:
        raise Failure(str(error), Exit.USAGE) from None
    except OSError as error:
        raise network(
            f"--metrics-port {port}: can't listen on {args.metrics_addr}:{port}: "
            f"{error.strerror or error}; pick another port"
        ) from None
    console.print(
        f"metrics: http://{args.metrics_addr}:{server.port}/metrics", highlight=False
    )
    return server
