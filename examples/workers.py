"""Machines for ``ampubsub peer --expose workers:make`` (run from examples/)."""

from __future__ import annotations

from asyncmachine import Machine, State

SCHEMA = {"Idle": State(remove=["Busy"]), "Busy": State(remove=["Idle"])}


def make() -> list[Machine]:
    machines = [Machine(SCHEMA, id=f"worker-{i}", tags=["pool:main"]) for i in range(2)]
    for machine in machines:
        machine.add("Idle")
    return machines
