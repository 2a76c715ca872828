"""What the core tells its owner: each event says what changed in the roster.

The core never calls out. ``receive``, ``heartbeat``, ``refuse`` and
``dispose`` return these, in the order things happened, and the topic turns
them into :class:`~ampubsub_plugin.remote.RemoteMachine` changes and hook
calls inside its machine's handlers. Events carry values as they were at
that moment (a clock list is replaced, never changed in place), so applying
a batch later shows every step, not only the last.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncmachine import State

from ..protocol import Info


@dataclass(frozen=True, slots=True)
class Discovered:
    """A remote machine became known; the topic may still refuse to show it."""

    peer: str
    index: int
    #: the introduction as received (what accept hooks judge)
    info: Info
    #: its clock now (a buffered newer clock may already be applied)
    time: list[int]
    #: its schema as shown, or None while only its hash is known
    schema: dict[str, State] | None


@dataclass(frozen=True, slots=True)
class Advanced:
    """A remote machine shows a newer clock (its time sum grew)."""

    peer: str
    index: int
    time: list[int]


@dataclass(frozen=True, slots=True)
class SchemaKnown:
    """The schema of a machine first introduced by hash arrived."""

    peer: str
    index: int
    schema: dict[str, State]
    schema_hash: str | None


@dataclass(frozen=True, slots=True)
class Gone:
    """A remote machine disconnected; ``forgotten``: it left the roster too."""

    peer: str
    index: int
    forgotten: bool


@dataclass(frozen=True, slots=True)
class Revived:
    """A peer shown disconnected spoke again: its machines are back."""

    peer: str
    index: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The owner of the core refused to show a machine; it is tracked, hidden."""

    peer: str
    index: int


Event = Discovered | Advanced | SchemaKnown | Gone | Revived | Refused
