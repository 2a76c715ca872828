"""py-libp2p's failures, said in our words: what failed and what to try.

Rules:

1. One line per failure, naming the address (or peer) and a next step; no
   exception class names from py-libp2p, no nested groups.
2. The cause is found by walking the whole chain py-libp2p builds
   (``SwarmDialAllFailedError`` from a ``MultiError`` of ``SwarmException``
   from ``OpenConnectionError`` from ``OSError`` from an ``ExceptionGroup``
   ...), so a new wrapper in py-libp2p doesn't hide it.
3. Each kind of failure is one :class:`Problem` member; anything we don't
   recognise falls back to :attr:`Problem.OTHER` with the innermost message.

A PSK mismatch has its own member: py-libp2p doesn't say it (a dial with the
wrong key hangs until the timeout or fails the security handshake), so a
transport configured with a PSK passes ``psk=True`` and those two outcomes
are reported as a likely key mismatch.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from enum import Enum


class Problem(Enum):
    """The kinds of network failure the command line and the logs tell apart."""

    REFUSED = "nothing is listening there"
    UNREACHABLE = "no route to that host"
    WRONG_PEER_ID = "a different peer answered"
    TIMEOUT = "timed out with no answer"
    PSK_MISMATCH = "the private-network key (PSK) differs"
    ADDRESS_IN_USE = "the port is already in use"
    ADDRESS_NOT_LOCAL = "that IP address is not on this host"
    HANDSHAKE = "the security handshake failed"
    OTHER = "failed"


#: What to try, per problem (the second half of each line).
HINTS: dict[Problem, str] = {
    Problem.REFUSED: "is the peer running, and are the IP and port right?",
    Problem.UNREACHABLE: "check the IP address and this host's network/routes",
    Problem.WRONG_PEER_ID: (
        "the peer restarted with a new identity, or the /p2p/ part is from "
        "another peer: copy its address again"
    ),
    Problem.TIMEOUT: (
        "is the host reachable (firewall, wrong IP)? raise --timeout for a slow network"
    ),
    Problem.PSK_MISMATCH: "both peers need the same PSK (--psk-file)",
    Problem.ADDRESS_IN_USE: "stop the other process or pick another port (0: any)",
    Problem.ADDRESS_NOT_LOCAL: (
        "listen on one of this host's addresses, or on 0.0.0.0 / :: for all"
    ),
    Problem.HANDSHAKE: "is it a libp2p peer with Noise, and the same muxer?",
    Problem.OTHER: "run with --log-level debug for details",
}


def causes(error: BaseException) -> Iterator[BaseException]:
    """Every exception in ``error``'s chain and groups, outermost first."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        members = getattr(current, "exceptions", None) or getattr(
            current, "errors", None
        )
        if isinstance(members, list | tuple):
            todo.extend(m for m in members if isinstance(m, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)


def classify(error: BaseException, *, psk: bool = False) -> Problem:
    """The kind of failure behind ``error`` (a dial's or a listen's)."""
    found: Problem | None = None
    for cause in causes(error):
        name = type(cause).__name__
        if isinstance(cause, ConnectionRefusedError):
            return Problem.REFUSED
        if name == "PeerIDMismatchesPubkey":
            return Problem.WRONG_PEER_ID
        if isinstance(cause, OSError) and cause.errno is not None:
            if cause.errno == errno.EADDRINUSE:
                return Problem.ADDRESS_IN_USE
            if cause.errno == errno.EADDRNOTAVAIL:
                return Problem.ADDRESS_NOT_LOCAL
            if cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                return Problem.UNREACHABLE
        if isinstance(cause, TimeoutError) or name in ("TooSlowError",):
            found = found or Problem.TIMEOUT
        if name in ("SecurityUpgradeFailure", "HandshakeFailure", "NoiseFailure"):
            found = found or Problem.HANDSHAKE
    if found is None:
        return Problem.OTHER
    if psk and found in (Problem.TIMEOUT, Problem.HANDSHAKE):
        return Problem.PSK_MISMATCH
    return found


def innermost_message(error: BaseException) -> str:
    """The deepest message in the chain, on one line (for ``Problem.OTHER``)."""
    message = str(error)
    for cause in causes(error):
        text = str(cause).strip()
        if text:
            message = text
    return " ".join(message.split())


def explain(
    error: BaseException | None,
    target: str,
    *,
    psk: bool = False,
    problem: Problem | None = None,
) -> str:
    """One line: ``target``, what went wrong, what to try.

    ``target`` names what was dialled or listened on; ``problem`` overrides
    the classification (a timeout we measured ourselves, say).
    """
    if problem is None:
        problem = Problem.OTHER if error is None else classify(error, psk=psk)
    what = problem.value
    if problem is Problem.OTHER and error is not None:
        what = innermost_message(error) or type(error).__name__
    elif problem is Problem.WRONG_PEER_ID and error is not None:
        actual = _answering_peer(error)
        if actual:
            what = f"{what} ({actual})"
    return f"{target}: {what}; {HINTS[problem]}"


_REMOTE_ID = re.compile(r"remote_peer_id_from_pubkey=(\w+)")


def _answering_peer(error: BaseException) -> str | None:
    for cause in causes(error):
        match = _REMOTE_ID.search(str(cause))
        if match:
            return match.group(1)
    return None
