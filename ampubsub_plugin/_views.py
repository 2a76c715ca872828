"""Remote views: the core's events turned into ``RemoteMachine`` objects.

The core keeps plain records; users get ``RemoteMachine`` objects with
waiters, contexts and handler-free checking. This room builds them when a
machine is discovered (unless a plugin refuses it), feeds them clocks and
schemas, marks them disconnected and disposes them when forgotten, and
tells the plugins about each step. The topic applies events here inside its
machine's handlers, so remote machines change only there, whichever thread
runs the topic machine.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from ._gossip import (
    Advanced,
    Discovered,
    Event,
    Gone,
    GossipCore,
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


class RemoteViews:
    """The ``RemoteMachine`` of every record the core shows."""

    def __init__(self, core: GossipCore) -> None:
        self._core = core
        self._remotes: dict[tuple[str, int], RemoteMachine] = {}

    def get(self, peer: str, index: int) -> RemoteMachine | None:
        return self._remotes.get((peer, index))

    def all(self) -> list[RemoteMachine]:
        """Peers in the order the core learned of them, indexes sorted (any thread)."""
        remotes = dict(self._remotes)
        return [
            remote
            for peer, index, _ in self._core.records()
            if (remote := remotes.get((peer, index))) is not None
        ]

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
        found = []
        for remote in self.all():
            if remote.is_disposed:
                continue
            if id is not None and remote.id != id:
                continue
            if id_partial is not None and id_partial not in remote.id:
                continue
            if pattern is not None and not pattern.search(remote.id):
                continue
            if peer_id is not None and remote.peer_id != peer_id:
                continue
            if parent is not None and remote.parent_id != parent:
                continue
            if tag is not None and not any(
                t == tag or t.startswith(tag + ":") for t in remote.tags
            ):
                continue
            if connected is not None and remote.is_connected != connected:
                continue
            found.append(remote)
        return found

    def apply(self, events: list[Event], hooks: ViewHooks) -> None:
        """Apply each event; one that fails never stops the others.

        Events describe what peers sent, so applying one may fail (a schema
        no ``RemoteMachine`` can be built from, say): it is counted
        (``view_error`` in the core's counters), logged at debug level and
        skipped. A machine whose view can't be built is refused in the core:
        hidden, as if a plugin had refused it.
        """
        for event in events:
            key = (event.peer, event.index)
            try:
                if isinstance(event, Discovered):
                    self._discovered(event, hooks)
                    continue
                remote = self._remotes.get(key)
                if remote is None:
                    continue
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
                    self._core.refuse(*key)

    def _discovered(self, event: Discovered, hooks: ViewHooks) -> None:
        peer, index, info = event.peer, event.index, event.info
        if not hooks.accept_remote(peer, index, info):
            self._core.refuse(peer, index)
            return
        old = self._remotes.pop((peer, index), None)
        if old is not None:
            old.dispose()
        remote = RemoteMachine(
            peer_id=peer,
            index=index,
            id=info.id,
            states=info.states or [],
            schema=event.schema,
            time=event.time,
            tags=info.tags,
            parent_id=info.parent,
            schema_hash=info.schema_hash,
        )
        self._remotes[(peer, index)] = remote
        hooks.machine_discovered(remote)

    def clear(self) -> None:
        for remote in self._remotes.values():
            remote.dispose()
        self._remotes.clear()
