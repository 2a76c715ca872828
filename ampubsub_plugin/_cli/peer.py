"""``ampubsub peer``: one long-lived peer, until Ctrl-C, SIGTERM or SIGHUP.

It prints its id and the addresses others can dial (the host's real ones
when listening on 0.0.0.0 / ::), exports the demo workload and/or a user's
machines, and says bye before it goes.
"""

from __future__ import annotations

import argparse
import signal
import threading

from asyncmachine import Machine

from .._signals import bye_on_signals
from .network import check_addrs, make_topic, start
from .observe import serve_metrics
from .output import Exit, console
from .workload import DemoWorkload, demo_machines, run_factory

#: what ends a long-lived peer besides Ctrl-C: docker stop and systemd send
#: SIGTERM, a closed terminal SIGHUP (each says bye first, then ends as usual)
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def run_until_interrupted(stop: threading.Event) -> None:
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            pass
    finally:
        signal.signal(signal.SIGINT, previous)


def peer(args: argparse.Namespace) -> int:
    """Run one peer until interrupted."""
    listen = check_addrs(args.listen, "--listen", dialable=False)
    bootstrap = check_addrs(args.bootstrap, "--bootstrap", dialable=True)
    stop = threading.Event()
    machines: list[Machine] = []
    workload = None
    if args.demo:
        machines.extend(demo_machines(args.demo, args.id_prefix))
        workload = DemoWorkload(list(machines), args.interval)
    for spec in args.expose:
        machines.extend(run_factory(spec, stop))
    topic = make_topic(
        args.topic,
        kind=args.transport,
        listen=listen,
        bootstrap=bootstrap,
        timeout=args.timeout,
        machines=machines,
        mdns=args.mdns,
        psk_file=args.psk_file,
    )
    metrics = None
    try:
        start(topic, args.timeout, args.started)
        metrics = serve_metrics(args, [topic])
        console.print(f"peer {topic.peer_id} on topic {args.topic!r}", highlight=False)
        for addr in topic.addrs:
            console.print(f"  {addr}", highlight=False)
        console.print(
            f"exporting {len(machines)} machine(s); Ctrl-C to leave", highlight=False
        )
        if workload is not None:
            workload.start(stop)
        with bye_on_signals(topic, signals=STOP_SIGNALS):
            run_until_interrupted(stop)
    finally:
        stop.set()
        if metrics is not None:
            metrics.stop()
        topic.dispose()
        topic.mach.when_disposed().wait(10)
    console.print("bye sent, disposed", highlight=False)
    return Exit.OK
