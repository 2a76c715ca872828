"""A GossipCore with what the topic adds around it, for tests of the core alone.

The core returns events; the topic applies them to ``RemoteMachine`` objects
and calls the plugins. ``CorePeer`` does the same with the topic's own
``RemoteViews``, so core tests can look at remote machines and hook calls
while driving the core by hand with explicit times.
"""

from __future__ import annotations

from typing import Any

from ampubsub_plugin._gossip import Event, GossipCore
from ampubsub_plugin._views import RemoteViews, ViewHooks
from ampubsub_plugin.protocol import Info, Message
from ampubsub_plugin.remote import RemoteMachine


class AcceptAll:
    """Hooks that show every machine and say nothing."""

    def accept_remote(self, peer_id: str, index: int, info: Info) -> bool:
        return True

    def machine_discovered(self, remote: RemoteMachine) -> None:
        pass

    def machine_updated(self, remote: RemoteMachine) -> None:
        pass

    def machine_gone(self, remote: RemoteMachine) -> None:
        pass


class CorePeer:
    """Drive it like a GossipCore; it keeps the RemoteMachines and the events."""

    def __init__(self, core: GossipCore, hooks: ViewHooks | None = None) -> None:
        self.core = core
        self.hooks: ViewHooks = hooks or AcceptAll()
        self.views = RemoteViews(core)
        self.events: list[Event] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.core, name)

    def _apply(self, events: list[Event]) -> list[Event]:
        self.events.extend(events)
        self.views.apply(events, self.hooks)
        return events

    def receive(self, sender: str, msg: Message, now: float) -> list[Event]:
        return self._apply(self.core.receive(sender, msg, now))

    def heartbeat(self, now: float) -> list[Event]:
        return self._apply(self.core.heartbeat(now))

    def dispose(self) -> list[Event]:
        return self._apply(self.core.dispose())

    def remotes(self) -> list[RemoteMachine]:
        return self.views.all()
