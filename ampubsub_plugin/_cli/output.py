"""Exit codes, one-line errors, the console and logging for the command.

Rules:

1. Every failure the user can act on ends with one line on stderr,
   ``ampubsub <command>: <what failed>; <what to try>``, and the exit code
   of its kind (:class:`Exit`); no traceback, no wrapping.
2. stdout is rich when it is a terminal and plain text otherwise: rich never
   wraps a line (ids and addresses stay whole) and adds no colour codes to a
   pipe.
3. Logging goes to stderr at ``--log-level`` (warning by default); the
   chatty third-party loggers (py-libp2p, multiaddr) stay at WARNING unless
   ``--log-level debug-all`` asks for everything.
"""

from __future__ import annotations

import logging
import sys
from enum import IntEnum

from rich.console import Console


class Exit(IntEnum):
    """The command's exit codes (documented in docs/deployment.md)."""

    OK = 0
    #: an unexpected error (a bug): one line, and the traceback at debug level
    FAILED = 1
    #: a bad argument, address or factory: nothing was started
    USAGE = 2
    #: the network failed: can't listen, can't connect, can't join in time
    NETWORK = 3
    #: ``watch``: nobody on the topic within ``--timeout`` (a wrong topic?)
    NOTHING_FOUND = 4
    #: interrupted (Ctrl-C)
    INTERRUPTED = 130


class Failure(Exception):
    """A failure the user can act on: one line on stderr, then ``code``."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.code = code


def usage(message: str) -> Failure:
    return Failure(message, Exit.USAGE)


def network(message: str) -> Failure:
    return Failure(message, Exit.NETWORK)


#: stdout: soft_wrap keeps ids and addresses on one line
console = Console(soft_wrap=True)


def say_error(command: str, message: str) -> None:
    """The one line on stderr: plain print, so nothing wraps it."""
    line = " ".join(str(message).split())
    print(f"ampubsub {command}: {line}", file=sys.stderr, flush=True)


#: loggers of other packages kept at WARNING unless debug-all
NOISY_LOGGERS = ("libp2p", "multiaddr", "zeroconf", "aioquic", "async_service")

LOG_LEVELS = ("debug-all", "debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    """stderr logging at ``level``; third-party loggers quiet unless debug-all."""
    numeric = (
        logging.DEBUG if level.startswith("debug") else getattr(logging, level.upper())
    )
    logging.basicConfig(
        level=numeric,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in NOISY_LOGGERS:
        noisy = logging.getLogger(name)
        if level == "debug-all":
            noisy.setLevel(logging.DEBUG)
            noisy.propagate = True  # py-libp2p's own logger doesn't by default
        else:
            noisy.setLevel(max(numeric, logging.WARNING))
