"""The argument parser and the dispatch: every failure is one line and a code."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
from collections.abc import Sequence

from .._runtime import SharedRuntime
from .demo import demo
from .network import DEFAULT_LISTEN
from .output import LOG_LEVELS, Exit, Failure, say_error, setup_logging
from .peer import peer
from .watch import watch
from .workload import TOPIC

log = logging.getLogger("ampubsub.cli")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return f"ampubsub {dist_version('ampubsub')}"
    except PackageNotFoundError:  # running from a source tree
        return "ampubsub (not installed)"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", action="version", version=version())
    p.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="warning",
        help="stderr logging (warning); debug-all adds py-libp2p and multiaddr",
    )


def _network(s: argparse.ArgumentParser, *, listen_help: str) -> None:
    s.add_argument("--topic", default=TOPIC, help=f"topic name ({TOPIC})")
    s.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="ADDR",
        help="a peer's full multiaddr (.../p2p/<id>); repeat for more",
    )
    s.add_argument(
        "--listen", action="append", default=None, metavar="ADDR", help=listen_help
    )
    s.add_argument(
        "--mdns",
        action="store_true",
        help="find peers on this LAN by mDNS (no bootstrap)",
    )
    s.add_argument(
        "--psk-file",
        default=None,
        metavar="FILE",
        help="private network: a libp2p swarm key file (docs/security.md)",
    )
    s.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
    s.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to listen, connect and join (30); watch: also to find a peer",
    )
    s.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on this port (needs ampubsub[metrics])",
    )
    s.add_argument(
        "--metrics-addr",
        default="127.0.0.1",
        metavar="IP",
        help="address for --metrics-port (127.0.0.1; 0.0.0.0 for all)",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ampubsub",
        description="State machines shared over a libp2p gossip network.",
        epilog="exit codes: 0 ok, 1 unexpected error, 2 bad argument, "
        "3 network failure, 4 nobody on the topic (watch), 130 interrupted",
    )
    _common(p)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run a local network and watch it converge")
    _common(d)
    d.add_argument("--peers", type=int, default=5, help="peers in this process (5)")
    d.add_argument("--machines", type=int, default=3, help="machines per peer (3)")
    d.add_argument("--seconds", type=float, default=10.0, help="how long to run (10)")
    d.add_argument("--transport", choices=("libp2p", "memory"), default="libp2p")
    d.set_defaults(run=demo)

    s = sub.add_parser("peer", help="run one long-lived peer")
    _common(s)
    _network(
        s,
        listen_help=f"listen multiaddr ({DEFAULT_LISTEN}); /ip4/0.0.0.0/tcp/4001 "
        "for other hosts, /ip4/0.0.0.0/udp/4001/quic-v1 for QUIC",
    )
    s.add_argument(
        "--expose",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="a factory returning machines to export (given a stop Event if it "
        "takes a parameter)",
    )
    s.add_argument(
        "--demo",
        type=int,
        default=0,
        metavar="N",
        help="export N demo machines that change every --interval",
    )
    s.add_argument(
        "--interval", type=float, default=1.0, help="demo change interval (1)"
    )
    s.add_argument(
        "--id-prefix",
        default=socket.gethostname(),
        help="demo machine ids start with this (the host name)",
    )
    s.set_defaults(run=peer)

    w = sub.add_parser("watch", help="join a topic and show its peers and machines")
    _common(w)
    _network(w, listen_help=f"listen multiaddr ({DEFAULT_LISTEN})")
    w.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (0: never)"
    )
    w.add_argument("--once", action="store_true", help="print one picture and exit")
    w.add_argument("--json", action="store_true", help="print JSON instead of tables")
    w.add_argument("--peer", help="only machines of peers whose id starts/ends so")
    w.add_argument("--id", help="only machines whose id matches this regex")
    w.add_argument("--tag", help="only machines with this tag (or key of key:value)")
    w.set_defaults(run=watch)
    return p


def _check_numbers(args: argparse.Namespace) -> None:
    timeout = getattr(args, "timeout", 1.0)
    if not timeout > 0:
        raise Failure(f"--timeout must be > 0, got {timeout:g}", Exit.USAGE)
    interval = getattr(args, "interval", 1.0)
    if not interval > 0:
        raise Failure(f"--interval must be > 0, got {interval:g}", Exit.USAGE)
    if getattr(args, "demo", 0) < 0:
        raise Failure("--demo must be >= 0", Exit.USAGE)
    port = getattr(args, "metrics_port", None)
    if port is not None and not 0 <= port <= 65535:
        raise Failure(f"--metrics-port must be 0-65535, got {port}", Exit.USAGE)


def process_started() -> float:
    """When this process started, on the ``time.monotonic()`` clock.

    Python and py-libp2p take a second or more to import on a busy machine;
    the user's ``--timeout`` counts that too. (Linux: /proc; elsewhere: now.)
    """
    now = time.monotonic()
    try:
        with open("/proc/self/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as uptime:
            up = float(uptime.read().split()[0])
        age = up - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - max(0.0, min(age, 60.0))


def main(argv: Sequence[str] | None = None) -> int:
    started = process_started()  # --timeout counts from the process's start
    args = parser().parse_args(argv)
    args.started = started
    setup_logging(args.log_level)
    if getattr(args, "listen", "absent") is None and args.command == "peer":
        args.listen = [DEFAULT_LISTEN]
    try:
        _check_numbers(args)
        code: int = args.run(args)
        return code
    except Failure as failure:
        say_error(args.command, str(failure))
        return failure.code
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except Exception as error:  # a bug: one line, the traceback at debug level
        log.debug("unexpected error", exc_info=True)
        say_error(
            args.command,
            f"unexpected {type(error).__name__}: {error}; run with --log-level "
            "debug for the traceback, and please report it",
        )
        return Exit.FAILED
    finally:
        SharedRuntime.shutdown()
