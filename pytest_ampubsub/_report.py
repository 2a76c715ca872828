"""What each peer saw, rendered for failure messages.

The short form (the default) puts the rows of the machine under check
first, labels its ticks with state names and the wanted value
(``Job=3 (want 4)``), and counts the other rows instead of listing them.
The full form (``-v`` or ``--ampubsub-report=full``) lists every row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ampubsub_plugin import Topic
    from asyncmachine import Machine

HEADER = ("peer", "machine", "active states", "ticks", "updated", "conn")


@dataclass
class Focus:
    """The machine a check is about, and what it wants to see."""

    mach_id: str
    #: wanted ticks (clock checks), shown next to the seen ones
    want: Mapping[str, int] | None = None


def ticks(machine: Machine, want: Mapping[str, int] | None = None) -> str:
    """``Name=tick`` for each state; with ``want`` only those, plus the wish."""
    clock = machine.clock()
    if want is None:
        return " ".join(
            f"{name}={tick}"
            for name, tick in clock.items()
            if tick or name != "Exception"  # never-failed machines: no noise
        )
    parts = []
    for name, wanted in want.items():
        seen = clock.get(name)
        shown = "?" if seen is None else str(seen)
        parts.append(
            f"{name}={shown}" if seen == wanted else f"{name}={shown} (want {wanted})"
        )
    return " ".join(parts)


def peer_name(topics: Sequence[Topic], topic: Topic) -> str:
    return f"{topics.index(topic)}:{topic.peer_id[-6:] or '-'}"


def exporters(topics: Sequence[Topic]) -> list[str]:
    """``<id>@<peer index>`` of every exported machine."""
    return [f"{m.id}@{i}" for i, topic in enumerate(topics) for m in topic.exported]


def peer_table(
    topics: Sequence[Topic], focus: Focus | None = None, *, full: bool = True
) -> str:
    """One row per (peer, remote machine): states, ticks, age, connection.

    With ``focus``, the owner's row and every peer's copy of that machine
    come first; unless ``full``, the other rows are only counted.
    """
    now = time.monotonic()
    first: list[tuple[str, ...]] = []
    rest: list[tuple[str, ...]] = []
    want = focus.want if focus is not None else None
    for i, topic in enumerate(topics):
        peer = f"{i}:{topic.peer_id[-6:] or '-'}"
        if topic.mach.is_disposed:
            rest.append((peer, "(topic disposed)", "", "", "", ""))
            continue
        if focus is not None:
            for machine in topic.exported:
                if machine.id == focus.mach_id:
                    first.append(
                        (
                            peer,
                            f"{machine.id} (owner)",
                            " ".join(machine.active_states) or "-",
                            ticks(machine, want),
                            "",
                            "",
                        )
                    )
        remotes = topic.list_machines()
        joined = "joined" if topic.mach.is_active("Joined") else "not joined"
        if focus is not None and not any(r.id == focus.mach_id for r in remotes):
            owns = any(m.id == focus.mach_id for m in topic.exported)
            if not owns:
                first.append((peer, f"(no {focus.mach_id}; {joined})", "", "", "", ""))
        if not remotes and focus is None:
            rest.append((peer, f"(none; {joined})", "", "", "", ""))
        for remote in remotes:
            mine = focus is not None and remote.id == focus.mach_id
            row = (
                peer,
                f"{remote.id}@{remote.peer_id[-6:]}",
                " ".join(remote.active_states) or "-",
                ticks(remote, want if mine else None),
                f"{now - remote.updated_at:.2f}s ago",
                "yes" if remote.is_connected else "no",
            )
            (first if mine else rest).append(row)
    rows = first + rest if full or focus is None else first
    lines = _columns([HEADER, *rows])
    if not full and focus is not None and rest:
        lines.append(f"(+{len(rest)} rows of other machines)")
    return "what each peer saw:\n" + "\n".join(lines)


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def protocol_log(lines: Iterable[str]) -> list[str]:
    lines = list(lines)
    return lines if lines else ["(no protocol activity recorded)"]
