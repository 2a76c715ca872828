"""Own machines shared on the topic: the core's one cross-thread room.

Exported machines change on whatever thread mutates them, and users export
and un-export from any thread, so this table has its own small lock; the
rest of the core is touched only by its owner (the topic machine's
handlers, one at a time). The core takes what accumulated here (dirty
indexes, byes, news of an export) when it runs next.
"""

from __future__ import annotations

import threading

from asyncmachine import Machine

from ..protocol import ByeMach, Info, schema_hash


class Export:
    """One exported machine: its wire index and its schema's hash."""

    __slots__ = ("hash", "index", "machine", "schema", "states")

    def __init__(self, index: int, machine: Machine) -> None:
        self.index = index
        self.machine = machine
        self.states = machine.state_names
        self.schema = machine.schema
        self.hash = schema_hash(self.schema, self.states)

    def info(self, with_schema: bool) -> Info:
        m = self.machine
        return Info(
            id=m.id,
            schema=self.schema if with_schema else None,
            states=list(self.states),
            time=m.time(),
            tags=m.tags,
            parent=m.parent_id or "",
            schema_hash=self.hash,
        )


class ExportTable:
    """Exports by index, the dirty set, pending byes; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, Export] = {}
        self._next_index = 0
        self._dirty: set[int] = set()
        self._byes: dict[int, ByeMach] = {}
        #: an export happened since the core last looked (it announces it)
        self._news = False

    # -- any thread ------------------------------------------------------------

    def export(self, machine: Machine) -> int:
        """The machine's stable index on the wire (the same if exported twice)."""
        with self._lock:
            for entry in self._entries.values():
                if entry.machine is machine:
                    return entry.index
            index = self._next_index
            self._next_index += 1
            self._entries[index] = Export(index, machine)
            self._byes.pop(index, None)
            self._news = True
            return index

    def unexport(self, machine: Machine) -> int | None:
        """Drop a machine; a ``bye`` for it waits to be sent."""
        with self._lock:
            for index, entry in list(self._entries.items()):
                if entry.machine is machine:
                    del self._entries[index]
                    self._dirty.discard(index)
                    self._byes[index] = ByeMach(
                        peer_bye=False, id=machine.id, time=machine.time()
                    )
                    return index
            return None

    def mark_dirty(self, index: int) -> bool:
        """An own machine changed. True when the dirty set was empty (wake up)."""
        with self._lock:
            if index not in self._entries:
                return False
            was_clean = not self._dirty
            self._dirty.add(index)
            return was_clean

    def bye_all(self) -> None:
        """The whole peer leaves: one ``bye`` names every machine (or none)."""
        with self._lock:
            for index, entry in self._entries.items():
                m = entry.machine
                self._byes[index] = ByeMach(peer_bye=True, id=m.id, time=m.time())
            if not self._byes:
                self._byes[-1] = ByeMach(peer_bye=True, id="", time=[])
            self._dirty.clear()

    def machines(self) -> list[Machine]:
        with self._lock:
            return [e.machine for e in self._entries.values()]

    def index_of(self, machine: Machine) -> int | None:
        with self._lock:
            for entry in self._entries.values():
                if entry.machine is machine:
                    return entry.index
        return None

    # -- the core --------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, index: object) -> bool:
        return index in self._entries

    def entries(self) -> list[Export]:
        with self._lock:
            return list(self._entries.values())

    def indexes(self) -> set[int]:
        with self._lock:
            return set(self._entries)

    def take_news(self) -> bool:
        if not self._news:  # the common case needs no lock
            return False
        with self._lock:
            news, self._news = self._news, False
            return news

    @property
    def has_dirty(self) -> bool:
        return bool(self._dirty)

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    @property
    def has_byes(self) -> bool:
        return bool(self._byes)

    def touch(self, indexes: set[int] | list[int]) -> None:
        """Mark exported ``indexes`` dirty (a peer is behind on them)."""
        with self._lock:
            self._dirty.update(i for i in indexes if i in self._entries)

    def push_where_behind(self, reported: dict[int, int]) -> None:
        """Others report these sums of our machines: mark dirty where they're behind."""
        with self._lock:
            for index, theirs in reported.items():
                entry = self._entries.get(index)
                if entry is not None and theirs < sum(entry.machine.time()):
                    self._dirty.add(index)

    def take_clocks(self) -> dict[int, list[int]]:
        """Clocks of the dirty machines, in index order; the set is cleared."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            entries = [self._entries[i] for i in sorted(dirty) if i in self._entries]
        return {e.index: e.machine.time() for e in entries}

    def take_byes(self) -> dict[int, ByeMach]:
        with self._lock:
            byes, self._byes = self._byes, {}
            return byes

    def put_back_byes(self, byes: dict[int, ByeMach]) -> None:
        with self._lock:
            self._byes.update(byes)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._dirty.clear()
