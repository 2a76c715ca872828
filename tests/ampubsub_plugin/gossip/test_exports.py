"""The export table: the core's one room that any thread may touch.

Users export from any thread and exported machines change on whatever thread
mutates them, while the core takes the dirty ones (and reads their clocks)
on its own thread (``ampubsub_plugin/_gossip/exports.py``). Real threads
here, bounded waits.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from ampubsub_plugin._gossip.exports import ExportTable
from asyncmachine import Machine

from ..coreutil import worker

THREADS = 4
MACHINES = 5
ROUNDS = 100
TIMEOUT = 10.0


def test_threads_export_and_mark_dirty_while_another_takes_the_dirty() -> None:
    table = ExportTable()
    both = worker("both")  # every thread exports this one too
    start = threading.Barrier(THREADS + 1, timeout=TIMEOUT)
    stop = threading.Event()
    lock = threading.Lock()
    errors: list[BaseException] = []
    owned: dict[int, Machine] = {}
    both_indexes: list[int] = []
    taken: dict[int, list[list[int]]] = defaultdict(list)

    def exporter(n: int) -> None:
        try:
            start.wait()
            machines = [worker(f"t{n}-m{i}") for i in range(MACHINES)]
            mine = {table.export(m): m for m in machines}
            index = table.export(both)
            with lock:
                owned.update(mine)
                both_indexes.append(index)
            for _ in range(ROUNDS):
                for i, machine in mine.items():
                    machine.toggle("Baz")
                    table.mark_dirty(i)
        except BaseException as error:
            errors.append(error)

    def taker() -> None:
        try:
            start.wait()
            while not stop.is_set():
                for export in table.take_dirty():
                    taken[export.index].append(export.machine.time())
        except BaseException as error:
            errors.append(error)

    exporters = [threading.Thread(target=exporter, args=(n,)) for n in range(THREADS)]
    taking = threading.Thread(target=taker)
    for thread in [*exporters, taking]:
        thread.start()
    for thread in exporters:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    stop.set()
    taking.join(TIMEOUT)
    assert not taking.is_alive()
    for export in table.take_dirty():  # what the last round left
        taken[export.index].append(export.machine.time())

    assert errors == []
    # unique indexes: one per machine, one for the machine every thread exported
    assert len(owned) == THREADS * MACHINES
    assert len(set(both_indexes)) == 1 and both_indexes[0] not in owned
    assert table.indexes() == {*owned, *both_indexes}
    assert table.indexes() == set(range(THREADS * MACHINES + 1))
    # every final clock was taken, and clocks of one machine only grew
    for index, machine in owned.items():
        assert machine.tick("Baz") == ROUNDS
        clocks = taken[index]
        assert clocks and clocks[-1] == machine.time(), machine.id
        sums = [sum(clock) for clock in clocks]
        assert sums == sorted(sums), machine.id
    assert not table.has_dirty and table.take_dirty() == []
