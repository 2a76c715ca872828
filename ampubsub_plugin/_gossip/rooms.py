"""The rooms, together: what the two flows (intake, outbox) work across.

The core builds each room once and hands the set to the flows; a flow reads
and changes rooms, never keeps state of its own about what they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from .answers import Answers
from .config import Shared
from .discovery import Discovery
from .exports import ExportTable
from .liveness import Liveness
from .pacing import Pacing
from .repair import Repair
from .roster import Roster


@dataclass(frozen=True, slots=True)
class Rooms:
    shared: Shared
    roster: Roster
    exports: ExportTable
    discovery: Discovery
    answers: Answers
    repair: Repair
    pacing: Pacing
    liveness: Liveness


class Flow:
    """A flow across the rooms (``Intake``, ``Outbox``)."""

    def __init__(self, rooms: Rooms) -> None:
        self._shared = rooms.shared
        self._roster = rooms.roster
        self._exports = rooms.exports
        self._discovery = rooms.discovery
        self._answers = rooms.answers
        self._repair = rooms.repair
        self._pacing = rooms.pacing
        self._liveness = rooms.liveness
