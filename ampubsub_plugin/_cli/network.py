"""Transports and topics for the command: made, started within ``--timeout``.

Rules:

1. Addresses are parsed before anything starts; a bad one is a usage
   failure naming it.
2. Starting a topic (listen, dial, join) is bounded by ``--timeout`` in
   total. Dials are retried with backoff while the time lasts (a peer
   started a moment later is still found); when it runs out, the failure
   is the last dial's, in our words (``_libp2p.errors``).
3. Nothing here prints; failures are raised as :class:`output.Failure`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..topic import Topic
from ..transport import TransportError
from .output import Failure, network, usage

DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/0"


def check_addrs(addrs: Iterable[str], what: str, *, dialable: bool) -> list[str]:
    """Parse multiaddrs up front, so a typo is one clear line."""
    import multiaddr  # type: ignore[import-untyped]

    result = []
    for addr in addrs:
        try:
            parsed = multiaddr.Multiaddr(addr)
        except Exception as err:  # multiaddr raises several types
            raise usage(f"{what}: not a multiaddr: {addr!r} ({err})") from None
        text = str(parsed)
        if dialable and "/p2p/" not in text:
            raise usage(
                f"{what}: {addr!r} lacks the /p2p/<peer id> part; copy the full "
                "address a peer prints"
            )
        if not dialable and "/p2p/" in text:
            raise usage(f"{what}: {addr!r}: a listen address has no /p2p/ part")
        result.append(text)
    return result


def connect_attempts(timeout: float) -> int:
    """Dial attempts whose backoff (0.25 s, doubling) fits in half of ``timeout``."""
    attempts, delay, spent = 1, 0.25, 0.0
    while spent + delay <= timeout / 2:
        spent += delay
        delay *= 2
        attempts += 1
    return attempts


def make_transport(
    kind: str,
    listen: Sequence[str],
    *,
    timeout: float,
    memory: Any = None,
    mdns: bool = False,
    psk_file: str | None = None,
) -> Any:
    """The command's transport; over libp2p it keeps its last dial failure.

    ``last_error`` is what a deadline reports when the dials are still being
    retried (the topic reports only the final failure).
    """
    if psk_file is not None and kind == "memory":
        raise usage("--psk-file needs --transport libp2p")
    if kind == "memory":
        from ..memory_transport import MemoryNetwork

        return (memory or MemoryNetwork()).transport()
    from ..libp2p_transport import Libp2pTransport

    class Recording(Libp2pTransport):
        last_error: Exception | None = None

        async def connect(self, addrs: Sequence[str]) -> int:
            try:
                return await super().connect(addrs)
            except (TransportError, ValueError) as error:
                self.last_error = error
                raise

    try:
        return Recording(
            listen=list(listen),
            connect_timeout=max(0.1, min(timeout, 5.0)),
            mdns=mdns,
            psk=psk_file,
        )
    except ValueError as error:
        raise usage(str(error)) from None


def make_topic(
    name: str,
    *,
    kind: str,
    listen: Sequence[str],
    bootstrap: Sequence[str],
    timeout: float,
    machines: Iterable[Any] = (),
    mdns: bool = False,
    memory: Any = None,
    psk_file: str | None = None,
) -> Topic:
    transport = make_transport(
        kind, listen, timeout=timeout, memory=memory, mdns=mdns, psk_file=psk_file
    )
    return Topic(
        name,
        transport=transport,
        bootstrap=bootstrap,
        machines=machines,
        connect_attempts=connect_attempts(timeout),
    )


def _problem(
    topic: Topic, stage: str, deadline_hit: bool, timeout: float, started_for: float
) -> Failure:
    """The failure of ``stage`` in one line: the topic's error, or the last dial's.

    ``started_for``: seconds from the command's start to the topic's start
    (imports, on a busy machine: part of ``--timeout`` all the same).
    """
    if stage == "connecting" and not topic.mach.is_active("Started"):
        stage = "listening"
    err = _our_error(topic.mach.err)
    last = getattr(topic.transport, "last_error", None)
    if not deadline_hit and err is not None:
        return network(f"{stage}: {err}")
    if last is not None:
        return network(f"{stage} (gave up after {timeout:g} s): {last}")
    if stage == "connecting":
        return network(
            f"connecting took over {timeout:g} s: no answer from "
            f"{' '.join(topic.bootstrap)}; is the host reachable (firewall, wrong "
            "IP)? raise --timeout for a slow network"
        )
    return network(
        f"{stage} not done {timeout:g} s after the command started (start-up "
        f"took {started_for:.1f} s of it); raise --timeout"
    )


def _our_error(error: BaseException | None) -> BaseException | None:
    """The TransportError inside a task's exception groups, else ``error``."""
    if error is None:
        return None
    from .._libp2p.errors import causes

    for cause in causes(error):
        if isinstance(cause, TransportError | ValueError):
            return cause
    return error


def wait_state(
    topic: Topic,
    state: str,
    deadline: float,
    stage: str,
    timeout: float,
    started_for: float = 0.0,
) -> None:
    waiter = topic.mach.when([state])
    failed = topic.mach.when_err()
    while True:
        left = deadline - time.monotonic()
        if waiter.wait(max(0.0, min(0.05, left))):
            return
        if failed.done:
            raise _problem(topic, stage, False, timeout, started_for)
        if left <= 0:
            raise _problem(topic, stage, True, timeout, started_for)


def start(topic: Topic, timeout: float, since: float | None = None) -> None:
    """Listen, connect and join within ``timeout`` seconds, or fail in one line.

    ``since`` (monotonic) is when the clock started: the command's start, so
    that importing py-libp2p counts too.
    """
    now = time.monotonic()
    since = now if since is None else since
    deadline = since + timeout
    topic.start()
    wait_state(topic, "Connected", deadline, "connecting", timeout, now - since)
    topic.join()
    wait_state(topic, "Joined", deadline, "joining", timeout, now - since)
