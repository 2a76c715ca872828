"""How often the core may speak: the rate limit, keepalives, gossip timing.

Rules of this room:

1. Every message goes through one token bucket; a message already built may
   overdraw it (debt), so nothing is cut in half or dropped, and the debt
   delays what comes next.
2. A joined peer sends something at least every keepalive, which grows with
   the number of peers (one keepalive per ``keepalive_per_peer`` seconds per
   peer network-wide), and silence detection stretches as much.
3. Gossip is planned at random gaps whose mean grows with the peers known,
   so the whole network gossips about ``gossip_per_interval`` times per
   ``gossip_interval``, whatever its size.
"""

from __future__ import annotations

from .config import Shared


class TokenBucket:
    """Messages per second with a burst; a send may overdraw it (debt).

    Overdrawing lets a builder's messages go out together (an info split in
    chunks, say) instead of being cut in the middle; the debt delays what
    comes next, so the average rate holds and nothing is dropped.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp: float | None = None

    def _level(self, at: float) -> float:
        if self.stamp is None or at <= self.stamp:
            return self.tokens
        return min(self.burst, self.tokens + (at - self.stamp) * self.rate)

    def available(self, now: float) -> bool:
        return self._level(now) >= 1

    def spend(self, now: float, count: int) -> None:
        self.tokens = self._level(now) - count
        if self.stamp is None or now > self.stamp:
            self.stamp = now

    def ready_at(self, at: float) -> float:
        """The earliest moment from ``at`` on when a send is allowed."""
        level = self._level(at)
        if level >= 1:
            return at
        return at + (1 - level) / self.rate


class Pacing:
    """The bucket, when we last spoke, and when to gossip next."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        cfg = shared.config
        self.bucket = TokenBucket(cfg.rate, cfg.burst)
        self.last_sent = float("-inf")
        self.last_update_sent = float("-inf")
        self.gossip_due: float | None = None
        self._gossip_planned = float("-inf")

    def keepalive(self, peers: int) -> float:
        cfg = self._shared.config
        return self._shared.stretch(max(cfg.keepalive, peers * cfg.keepalive_per_peer))

    def keepalive_due(self, peers: int) -> float:
        return self.last_sent + self.keepalive(peers)

    def peer_ttl(self, peers: int) -> float:
        """``peer_ttl``, stretched as much as the keepalive was."""
        cfg = self._shared.config
        stretch = self.keepalive(peers) / max(cfg.keepalive, 1e-9)
        return self._shared.stretch(cfg.peer_ttl * max(1.0, stretch), 2)

    def updates_due(self) -> float:
        return self.last_update_sent + self._shared.config.update_interval

    def plan_gossip(self, now: float, peers: int, *, at_least: float = 0.0) -> None:
        self._gossip_planned = now
        self.gossip_due = now + max(at_least, self._gossip_gap(peers))

    def gossip_now(self, now: float, peers: int, *, joined: bool) -> bool:
        """Is a gossip (or a keepalive) due? Plans the next one if so."""
        keepalive = now >= self.keepalive_due(peers) and joined
        due = self.gossip_due is not None and self.gossip_due <= now
        if not (due or keepalive):
            return False
        if not keepalive and now - self._gossip_planned < 0.5 * self._mean(peers):
            # planned when we knew fewer peers: the network gossips enough
            self.gossip_due = self._gossip_planned + self._gossip_gap(peers)
            return False
        self.plan_gossip(now, peers)
        return True

    def _gossip_gap(self, peers: int) -> float:
        """Random gap so that all peers together gossip at the configured rate."""
        mean = self._mean(peers)
        return self._shared.rng.uniform(0.5 * mean, 1.5 * mean)

    def _mean(self, peers: int) -> float:
        cfg = self._shared.config
        mean = cfg.gossip_interval * max(1, peers) / max(cfg.gossip_per_interval, 1e-9)
        return self._shared.stretch(min(mean, self.keepalive(peers)), 2)
