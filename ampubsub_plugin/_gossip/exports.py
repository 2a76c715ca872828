"""Own machines shared on the topic: the core's one cross-thread room.

Exported machines change on whatever thread mutates them, and users export
and un-export from any thread, so this table has its own small lock; the
rest of the core is touched only by its owner (the topic machine's
handlers, one at a time). The core takes what accumulated here (dirty
indexes, byes, news of an export) when it runs next.

An export is checked against the protocol's limits before it is taken
(:func:`check_limits`): a machine the wire can't carry raises ``ValueError``
at ``export()``, instead of being accepted and then never shared.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import NoReturn

from asyncmachine import Machine

from ..protocol import (
    MAX_ID_LEN,
    MAX_PAYLOAD,
    MAX_STATES,
    MAX_TAGS,
    MAX_TICK,
    ByeMach,
    Info,
    InfoMsg,
    ProtocolError,
    encode,
    identity_digest,
    schema_hash,
)
from .config import Shared

#: room an introduction keeps for what its owner adds when sending it (its
#: signature and incarnation: under 160 bytes)
SEND_RESERVE = 256


def check_limits(machine: Machine) -> None:
    """Raise ValueError, naming the limit, if the protocol can't carry ``machine``.

    The decoder's limits (``_wire/messages.py``) apply to what we send too: a
    machine past one would be exported, then never shared. Checked: the
    number of states (``Exception`` included) against MAX_STATES; the id,
    the parent id, each state name and tag against MAX_ID_LEN characters;
    the machine's and each state's tags against MAX_TAGS; every string
    UTF-8 encodable (no lone surrogates); and its introduction with the full
    schema, encoded alone (longest peer id and index, largest ticks), within
    MAX_PAYLOAD less SEND_RESERVE.
    """
    mid = machine.id

    def refuse(problem: str) -> NoReturn:
        raise ValueError(f"can't export machine {_quoted(mid)}: {problem}")

    def check_text(what: str, value: str) -> None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            refuse(
                f"{what} is not valid UTF-8 ({err.reason} at index "
                f"{err.start}): {_quoted(value)}"
            )
        if len(value) > MAX_ID_LEN:
            refuse(
                f"{what} has {len(value)} characters, over MAX_ID_LEN "
                f"({MAX_ID_LEN}): {_quoted(value)}"
            )

    def check_tags(state: str | None, tags: Sequence[str]) -> None:
        owner = "it" if state is None else f"state {_quoted(state)}"
        if len(tags) > MAX_TAGS:
            refuse(f"{owner} has {len(tags)} tags, over MAX_TAGS ({MAX_TAGS})")
        for tag in tags:
            check_text("a tag" if state is None else f"a tag of {owner}", tag)

    check_text("its id", mid)
    check_text("its parent id", machine.parent_id or "")
    check_tags(None, machine.tags)
    states = machine.state_names
    if len(states) > MAX_STATES:
        refuse(
            f"it has {len(states)} states (Exception included), "
            f"over MAX_STATES ({MAX_STATES})"
        )
    schema = machine.schema
    for name in states:
        check_text("a state name", name)
        check_tags(name, schema[name].tags)

    tick = MAX_TICK // max(len(states), 1)  # each the largest a vector allows
    info = Info(
        id=mid,
        schema=schema,
        states=states,
        time=[tick] * len(states),
        tags=machine.tags,
        parent=machine.parent_id or "",
        schema_hash=schema_hash(schema, states),
    )
    limit = MAX_PAYLOAD - SEND_RESERVE
    size: int | None = None  # None: over MAX_PAYLOAD
    try:
        size = len(encode(InfoMsg({"p" * MAX_ID_LEN: {MAX_TICK: info}}, {})))
    except ProtocolError as err:
        if err.reason != "too_large":
            refuse(f"its introduction breaks the protocol: {err}")
    if size is not None and size <= limit:
        return
    shown = f"{size:,}" if size is not None else f"more than {MAX_PAYLOAD:,}"
    refuse(
        f"its introduction (full schema) encodes to {shown} bytes, over "
        f"MAX_PAYLOAD ({MAX_PAYLOAD:,}) less SEND_RESERVE ({SEND_RESERVE}) "
        "kept for its signature; use fewer or shorter names"
    )


def _quoted(value: str) -> str:
    """repr() cut short: a name in an error message, not the whole of it."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Export:
    """One exported machine: its wire index, schema hash and identity digest."""

    __slots__ = (
        "hash",
        "identity",
        "index",
        "machine",
        "schema",
        "sent_at",
        "sent_sum",
        "states",
    )

    def __init__(self, index: int, machine: Machine) -> None:
        self.index = index
        self.machine = machine
        #: when our updates last carried its clock, and that clock's sum
        self.sent_at = float("-inf")
        self.sent_sum = -1
        self.states = machine.state_names
        self.schema = machine.schema
        self.hash = schema_hash(self.schema, self.states)
        self.identity = identity_digest(
            machine.id, self.states, machine.tags, machine.parent_id or "", self.hash
        )

    def info(self, with_schema: bool, shared: Shared) -> Info:
        """Its introduction now, clock signed (relays forward it unchanged)."""
        m = self.machine
        time = m.time()
        return Info(
            id=m.id,
            schema=self.schema if with_schema else None,
            states=list(self.states),
            time=time,
            tags=m.tags,
            parent=m.parent_id or "",
            schema_hash=self.hash,
            incarnation=shared.incarnation,
            signature=shared.prove(self.index, time, self.identity),
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
        """The machine's stable index on the wire (the same if exported twice).

        Raises ValueError, naming the limit, when the protocol can't carry
        the machine (:func:`check_limits`); nothing changes then.
        """
        index = self.index_of(machine)
        if index is not None:
            return index
        check_limits(machine)
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

    def ahead_of_us(self, reported: dict[int, int]) -> bool:
        """Does someone report a sum of ours greater than ours (an old run's)?"""
        with self._lock:
            entries = dict(self._entries)
        return any(
            index in entries and theirs > sum(entries[index].machine.time())
            for index, theirs in reported.items()
        )

    def push_where_behind(
        self, reported: dict[int, int], now: float, in_flight: float
    ) -> None:
        """Others report these sums of our machines: mark dirty where they're
        behind, unless the clock they lack went out within ``in_flight`` (it
        is on its way to them; a second copy would cost every peer)."""
        with self._lock:
            for index, theirs in reported.items():
                entry = self._entries.get(index)
                if entry is None:
                    continue
                current = sum(entry.machine.time())
                if theirs >= current:
                    continue
                if entry.sent_sum == current and now - entry.sent_at < in_flight:
                    continue
                self._dirty.add(index)

    def take_dirty(self) -> list[Export]:
        """The dirty machines, in index order; the set is cleared."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            return [self._entries[i] for i in sorted(dirty) if i in self._entries]

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
