"""Remote views: the core's events turned into ``RemoteMachine`` objects.

The core keeps plain records; users get ``RemoteMachine`` objects with
waiters, contexts and handler-free checking. This room builds one when a
user (or a plugin) first asks for it, feeds it clocks and schemas, marks it
disconnected and disposes it when forgotten, and tells the plugins about
each step. Until then a discovered machine is only the core's record (a few
hundred bytes, against several KB for a ``Machine``): a peer watching a
thousand machines pays for the ones it looks at. The topic applies events
here inside its machine's handlers, so built remote machines change only
there, whichever thread runs the topic machine; building one from another
thread takes the same lock.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Protocol

from ._gossip import (
    Advanced,
    Discovered,
    Event,
    Gone,
    GossipCore,
    MachineRecord,
    Refused,
    Revived,
    SchemaKnown,
)
from .protocol import Info
from .remote import RemoteMachine

log = logging.getLogger("ampubsub.gossip")


class ViewHooks(Protocol):
    """What remote views tell (and ask) the plugins."""

    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool: ...

    def machine_discovered(self, remote: RemoteMachine) -> None: ...

    def machine_updated(self, remote: RemoteMachine) -> None: ...

    def machine_gone(self, remote: RemoteMachine) -> None: ...

    def wants_remotes(self) -> bool: ...


class RemoteViews:
    """The ``RemoteMachine`` of every record the core shows."""

    def __init__(
        self,
        core: GossipCore,
        on_built: Callable[[RemoteMachine], None] | None = None,
    ) -> None:
        self._core = core
        #: the topic's own step for every view built (before any plugin's)
        self._on_built = on_built
        self._remotes: dict[tuple[str, int], RemoteMachine] = {}
        #: shown (accepted) machines whose ``RemoteMachine`` isn't built yet
        self._unbuilt: set[tuple[str, int]] = set()
        self._lock = threading.RLock()

    def get(self, peer: str, index: int) -> RemoteMachine | None:
        with self._lock:
            return self._built((peer, index))

    def all(self) -> list[RemoteMachine]:
        """Peers in the order the core learned of them, indexes sorted (any thread)."""
        with self._lock:
            return [
                remote
                for peer, index, _ in self._core.records()
                if (remote := self._built((peer, index))) is not None
            ]

    @property
    def built(self) -> int:
        """How many ``RemoteMachine`` objects exist (the rest are records)."""
        return len(self._remotes)

    def _built(
        self, key: tuple[str, int], *, in_topic: bool = False
    ) -> RemoteMachine | None:
        """The view of a shown machine, built now if nobody asked before.

        One that can't be built (what a peer sent can't be shown) stays
        hidden; ``in_topic`` (called while applying events): the core is
        told to refuse it, as if a plugin had.
        """
        remote = self._remotes.get(key)
        if remote is not None or key not in self._unbuilt:
            return remote
        self._unbuilt.discard(key)
        view = self._core.roster.get(key[0])
        record = view.machines.get(key[1]) if view is not None else None
        if view is None or record is None:
            return None
        try:
            remote = self._build(key, record)
        except Exception as exc:
            self._core.counters["view_error"] += 1
            log.debug("%s: can't show %s#%d: %r", self._core.peer_id, *key, exc)
            if in_topic:
                self._core.refuse(*key)
            return None
        if view.silent:
            remote._set_connected(False)
        if self._on_built is not None:
            self._on_built(remote)
        self._remotes[key] = remote
        return remote

    @staticmethod
    def _build(key: tuple[str, int], record: MachineRecord) -> RemoteMachine:
        return RemoteMachine(
            peer_id=key[0],
            index=key[1],
            id=record.id,
            states=list(record.states),
            schema=record.schema,
            time=list(record.time),
            tags=record.tags,
            parent_id=record.parent,
            schema_hash=record.schema_hash,
        )

    def find(
        self,
        *,
        id: str | None = None,
        id_partial: str | None = None,
        id_regex: str | re.Pattern[str] | None = None,
        peer_id: str | None = None,
        parent: str | None = None,
        tag: str | None = None,
        connected: bool | None = None,
    ) -> list[RemoteMachine]:
        """The remote machines matching every filter given (``Topic.list_machines``).

        ``tag`` matches a tag equal to it or a ``key:value`` tag with it as key.
        """
        pattern = re.compile(id_regex) if isinstance(id_regex, str) else id_regex

        def wanted(peer: str, record: MachineRecord) -> bool:
            # on the core's record: only the matches get a view built
            mid = record.id
            return (
                (id is None or mid == id)
                and (id_partial is None or id_partial in mid)
                and (pattern is None or pattern.search(mid) is not None)
                and (peer_id is None or peer == peer_id)
                and (parent is None or (record.parent or None) == parent)
                and (
                    tag is None
                    or any(t == tag or t.startswith(tag + ":") for t in record.tags)
                )
            )

        with self._lock:
            matches = [
                remote
                for peer, index, record in self._core.records()
                if wanted(peer, record)
                and (remote := self._built((peer, index))) is not None
            ]
        return [
            remote
            for remote in matches
            if not remote.is_disposed
            and (connected is None or remote.is_connected == connected)
        ]

    def apply(self, events: list[Event], hooks: ViewHooks) -> None:
        """Apply each event; one that fails never stops the others.

        Events describe what peers sent, so applying one may fail (a schema
        no ``RemoteMachine`` can be built from, say): it is counted
        (``view_error`` in the core's counters), logged at debug level and
        skipped. A machine whose view can't be built is refused in the core:
        hidden, as if a plugin had refused it.
        """
        with self._lock:
            for event in events:
                self._apply(event, hooks)

    def _apply(self, event: Event, hooks: ViewHooks) -> None:
        key = (event.peer, event.index)
        try:
            if isinstance(event, Discovered):
                self._discovered(event, hooks)
                return
            if isinstance(event, Refused) or (
                isinstance(event, Gone) and event.forgotten
            ):
                self._unbuilt.discard(key)
            elif key in self._unbuilt and hooks.wants_remotes():
                self._built(key, in_topic=True)  # a plugin now looks at them
            remote = self._remotes.get(key)
            if remote is not None:
                self._update(key, remote, event, hooks)
        except Exception as exc:
            self._core.counters["view_error"] += 1
            log.debug(
                "%s: can't apply %s of %s#%d: %r",
                self._core.peer_id,
                type(event).__name__,
                *key,
                exc,
                exc_info=True,
            )
            if isinstance(event, Discovered) and key not in self._remotes:
                self._unbuilt.discard(key)
                self._core.refuse(*key)

    def _update(
        self,
        key: tuple[str, int],
        remote: RemoteMachine,
        event: Event,
        hooks: ViewHooks,
    ) -> None:
        if isinstance(event, Advanced):
            if remote._apply_time(event.time):
                hooks.machine_updated(remote)
        elif isinstance(event, SchemaKnown):
            remote._set_schema(event.schema, event.schema_hash)
        elif isinstance(event, Gone):
            if remote.is_connected:
                remote._owner_gone()  # pending waiters end: OwnerGone
                hooks.machine_gone(remote)
            if event.forgotten:
                del self._remotes[key]
                remote.dispose()
        elif isinstance(event, Revived):
            remote._set_connected(True)
            hooks.machine_updated(remote)
        elif isinstance(event, Refused):
            del self._remotes[key]
            remote.dispose()

    def _discovered(self, event: Discovered, hooks: ViewHooks) -> None:
        peer, index, info = event.peer, event.index, event.info
        if not hooks.accept_remote(peer, index, info):
            self._core.refuse(peer, index)
            return
        old = self._remotes.pop((peer, index), None)
        if old is not None:
            old.dispose()
        self._unbuilt.add((peer, index))
        if hooks.wants_remotes():
            remote = self._built((peer, index), in_topic=True)
            if remote is not None:
                hooks.machine_discovered(remote)

    def clear(self) -> None:
        with self._lock:
            for remote in self._remotes.values():
                remote.dispose()
            self._remotes.clear()
            self._unbuilt.clear()
