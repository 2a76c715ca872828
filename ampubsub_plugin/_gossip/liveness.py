"""Liveness: which peers are shown connected, and how fast a departure shows.

Rules of this room:

1. **A closed connection is a question, not an answer.** When a direct
   neighbour's connection closes (the transport says it left), we ask the
   whole topic for its clocks with a *probe* (``requpdates`` with
   ``Probe``). Owners answer requests about themselves at once, so a peer
   that is alive speaks within moments; one that says nothing (authors no
   message) within ``probe_grace`` is shown disconnected. Every peer that
   receives a probe judges the same way, so a crash is shown everywhere,
   not only at the crashed peer's neighbours.
2. Only an owner's own message clears a probe: nobody can vouch for another
   peer's life. (A peer that exports nothing never answers; being shown
   disconnected costs it nothing visible.)
3. **Silence**: a peer that authors nothing for ``peer_ttl`` (stretched with
   the keepalive in big networks) is shown disconnected too (``roster``).
4. **Reunion**: when a neighbour connects that we show disconnected (a
   partition healed, a peer came back), we ask for the clocks of the peers
   we show disconnected; those alive answer at once and are shown again,
   without waiting for their next keepalive.
"""

from __future__ import annotations

import logging

from ..protocol import Message, ReqUpdatesMsg
from .config import Shared
from .events import Event
from .roster import Roster

log = logging.getLogger("ampubsub.gossip")

#: peers named in one probe or reunion request
ASK_AT_MOST = 16


class Liveness:
    """Probes of peers whose connection closed, and asks after a reunion."""

    def __init__(self, shared: Shared, roster: Roster) -> None:
        self._shared = shared
        self._roster = roster
        #: peer -> when we started waiting for it to speak
        self.probes: dict[str, float] = {}
        self._probe_asks: set[str] = set()
        self._reunion_asks: set[str] = set()
        self._last_ask = float("-inf")

    def _live(self, peer: str) -> bool:
        view = self._roster.get(peer)
        return view is not None and not view.silent and peer != self._shared.peer_id

    def departed(self, peer: str, now: float) -> None:
        """A direct neighbour's connection closed: probe it."""
        if self._live(peer) and peer not in self.probes:
            log.debug("%s: %s left us; probing it", self._shared.peer_id, peer)
            self.probes[peer] = now
            self._probe_asks.add(peer)

    def probed(self, peers: list[str], now: float) -> None:
        """Another peer probes these: wait for them to speak, as it does."""
        for peer in peers:
            if self._live(peer):
                self.probes.setdefault(peer, now)

    def heard(self, peer: str) -> None:
        """``peer`` authored a message: it is alive."""
        if self.probes:
            self.probes.pop(peer, None)
            self._probe_asks.discard(peer)

    def arrived(self, peer: str) -> None:
        """A direct neighbour connected: if it is one we show gone, a link
        healed, and the peers we show gone may be back too: ask after them.
        (A newcomer's arrival says nothing about them.)"""
        view = self._roster.get(peer)
        if view is None or not view.silent:
            return
        silent = [v.peer for v in self._roster.peers.values() if v.silent]
        self._reunion_asks.update(silent[:ASK_AT_MOST])

    def expire(self, now: float) -> list[Event]:
        """Show disconnected the probed peers that stayed silent."""
        grace = self._shared.stretch(self._shared.config.probe_grace, 2)
        events: list[Event] = []
        for peer, since in list(self.probes.items()):
            if now - since < grace:
                continue
            del self.probes[peer]
            self._probe_asks.discard(peer)
            view = self._roster.get(peer)
            if view is not None and not view.silent and view.heard_at <= since:
                self._shared.counters["peer_unreachable"] += 1
                log.debug("%s: %s did not answer a probe", self._shared.peer_id, peer)
                events.extend(self._roster.silence(view, now))
        return events

    def collect(self, now: float) -> list[Message]:
        """A probe, or a reunion request, at most one per ``request_interval``."""
        if not (self._probe_asks or self._reunion_asks):
            return []
        if now < self._last_ask + self._shared.config.request_interval:
            return []
        self._last_ask = now
        out: list[Message] = []
        if self._probe_asks:
            ids = sorted(self._probe_asks)[:ASK_AT_MOST]
            self._probe_asks.difference_update(ids)
            out.append(ReqUpdatesMsg(peer_ids=ids, probe=True))
        if self._reunion_asks:
            ids = sorted(self._reunion_asks)[:ASK_AT_MOST]
            self._reunion_asks.difference_update(ids)
            out.append(ReqUpdatesMsg(peer_ids=ids))
        return out

    @property
    def wants(self) -> bool:
        return bool(self._probe_asks or self._reunion_asks)

    @property
    def next_ask(self) -> float:
        return self._last_ask + self._shared.config.request_interval
