"""pytest_ampubsub: multi-peer fixtures and eventually-across-peers checks.

The fixtures (``ampubsub_network``, ``ampubsub_network_trio``) come from the
plugin registered under ``pytest11``. The same checks are importable here as
functions taking a network first, plus :func:`eventually` for any callable
with plain asserts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import _settings as settings

if TYPE_CHECKING:
    from asyncmachine import Machine

    from ._network import AsyncioNetwork, AsyncNetwork, Network, Peers

__all__ = [
    "AsyncNetwork",
    "AsyncioNetwork",
    "Network",
    "assert_consistently_active",
    "assert_converged",
    "assert_eventually_active",
    "assert_eventually_clock",
    "assert_eventually_discovered",
    "assert_eventually_inactive",
    "eventually",
]


def assert_eventually_active(
    net: Network,
    mach_id: str,
    states: Any,
    peers: Peers | None = None,
    timeout: float | None = None,
) -> None:
    __tracebackhide__ = True
    net.assert_eventually_active(mach_id, states, peers, timeout)


def assert_eventually_inactive(
    net: Network,
    mach_id: str,
    states: Any,
    peers: Peers | None = None,
    timeout: float | None = None,
) -> None:
    __tracebackhide__ = True
    net.assert_eventually_inactive(mach_id, states, peers, timeout)


def assert_eventually_clock(
    net: Network,
    mach_id: str,
    clock: Mapping[str, int],
    peers: Peers | None = None,
    timeout: float | None = None,
) -> None:
    __tracebackhide__ = True
    net.assert_eventually_clock(mach_id, clock, peers, timeout)


def assert_eventually_discovered(
    net: Network,
    count: int,
    peers: Peers | None = None,
    timeout: float | None = None,
) -> None:
    __tracebackhide__ = True
    net.assert_eventually_discovered(count, peers, timeout)


def assert_consistently_active(
    net: Network,
    mach_id: str,
    states: Any,
    duration: float,
    peers: Peers | None = None,
    timeout: float | None = None,
) -> None:
    __tracebackhide__ = True
    net.assert_consistently_active(mach_id, states, duration, peers, timeout)


def assert_converged(
    net: Network, mach_ids: Sequence[str] | None = None, timeout: float | None = None
) -> None:
    __tracebackhide__ = True
    net.assert_converged(mach_ids, timeout)


def eventually(
    check: Callable[[], Any],
    timeout: float | None = None,
    *,
    watch: Sequence[Machine] = (),
    interval: float = 0.05,
) -> Any:
    """Call ``check`` until it stops raising ``AssertionError``; return its value.

    With ``watch``, it is retried each time one of those machines changes
    (no blip is missed); without, every ``interval`` seconds. On timeout the
    last ``AssertionError`` is raised again, with the elapsed time and the
    number of attempts.
    """
    __tracebackhide__ = True
    from asyncmachine import any_of

    from ._network import next_change

    started = time.monotonic()
    deadline = started + settings.timeout(timeout)
    attempts = 0
    while True:
        changed = any_of(*(next_change(m) for m in watch)) if watch else None
        attempts += 1
        try:
            return check()
        except AssertionError as error:
            last = error
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"not met after {time.monotonic() - started:.2f}s and {attempts} "
                f"attempts: {last}"
            ) from last
        if changed is not None:
            changed.wait(remaining)
        else:
            time.sleep(min(interval, remaining))


def __getattr__(name: str) -> Any:
    # public network classes, imported lazily: loading the plugin stays light
    if name in ("Network", "AsyncNetwork", "AsyncioNetwork"):
        from . import _network

        return getattr(_network, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
