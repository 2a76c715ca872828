"""What each peer saw, rendered for failure messages."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ampubsub_plugin import Topic


def peer_table(topics: Sequence[Topic]) -> str:
    """One row per (peer, remote machine): states, ticks, age, connection."""
    now = time.monotonic()
    rows = [("peer", "machine", "active states", "ticks", "updated", "conn")]
    for i, topic in enumerate(topics):
        peer = f"{i}:{topic.peer_id[-6:] or '-'}"
        if topic.mach.is_disposed:
            rows.append((peer, "(topic disposed)", "", "", "", ""))
            continue
        remotes = topic.list_machines()
        if not remotes:
            state = "joined" if topic.mach.is_active("Joined") else "not joined"
            rows.append((peer, f"(none; {state})", "", "", "", ""))
        for remote in remotes:
            rows.append(
                (
                    peer,
                    f"{remote.id}@{remote.peer_id[-6:]}",
                    " ".join(remote.active_states) or "-",
                    " ".join(map(str, remote.time())),
                    f"{now - remote.updated_at:.2f}s ago",
                    "yes" if remote.is_connected else "no",
                )
            )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "what each peer saw:\n" + "\n".join(lines)


def protocol_log(lines: Iterable[str]) -> list[str]:
    lines = list(lines)
    return lines if lines else ["(no protocol activity recorded)"]
