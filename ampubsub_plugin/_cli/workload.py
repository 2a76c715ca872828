"""What ``ampubsub peer`` exports: the demo workload or a user's factory.

A peer whose machines never change shows a view that never moves, so
``peer --demo N`` exports N demo workers that switch between Idle and
Working every ``--interval`` seconds, and ``--expose module:function`` calls
a user's factory. A factory returns a Machine or an iterable of them; if it
takes one parameter, it gets a ``threading.Event`` set when the peer stops,
so it can run its own thread that changes its machines until then.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterable

from asyncmachine import Machine, State

from .output import usage

TOPIC = "ampubsub-demo"
DEMO_SCHEMA = {
    "Idle": State(remove=["Working"]),
    "Working": State(remove=["Idle"]),
    "Healthy": State(),
    "Busy": State(auto=True, require=["Working"]),
}


def demo_machines(count: int, prefix: str) -> list[Machine]:
    machines = []
    for j in range(count):
        m = Machine(
            DEMO_SCHEMA, id=f"{prefix}-worker{j}", tags=["demo", f"peer:{prefix}"]
        )
        m.add(["Idle", "Healthy"])
        machines.append(m)
    return machines


class DemoWorkload:
    """Switches one demo machine between Idle and Working every ``interval``."""

    def __init__(self, machines: list[Machine], interval: float) -> None:
        self.machines = machines
        self.interval = interval
        self._thread = threading.Thread(
            target=self._run, name="ampubsub-demo-workload", daemon=True
        )

    def start(self, stop: threading.Event) -> None:
        self._stop = stop
        self._thread.start()

    def _run(self) -> None:
        turn = 0
        while self.machines and not self._stop.wait(self.interval):
            m = self.machines[turn % len(self.machines)]
            m.add("Idle" if m.is_active("Working") else "Working")
            turn += 1


def load_factory(spec: str) -> Callable[..., Iterable[Machine] | Machine]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise usage(f"--expose wants module:function, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the user's modules
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise usage(f"--expose: can't import {module_name!r}: {err}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise usage(f"--expose: {module_name} has no function {attr!r}")
    return factory  # type: ignore[no-any-return]


def run_factory(spec: str, stop: threading.Event) -> list[Machine]:
    """Call the factory (with ``stop`` if it takes a parameter); its machines."""
    factory = load_factory(spec)
    try:
        takes_stop = len(inspect.signature(factory).parameters) >= 1
    except (TypeError, ValueError):
        takes_stop = False
    made = factory(stop) if takes_stop else factory()
    machines = [made] if isinstance(made, Machine) else list(made)
    for m in machines:
        if not isinstance(m, Machine):
            raise usage(f"--expose {spec}: returned {m!r}, not a Machine")
    return machines
