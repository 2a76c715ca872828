"""Load: how far behind this peer runs, and the back-pressure it applies.

Suppression (answer after a random moment unless someone answered first,
ask unless someone asked first) only works while a peer sees others'
messages before its own timers fire. When processing lags (py-libp2p spends
milliseconds of CPU per reception, and many peers share a process), every
peer stops seeing the others in time and each answers and asks itself:
requests multiply with load, which adds load. So every window of the
protocol is stretched by the lag measured here.

Rules of this room:

1. **Our own queue.** How long a message waited between the transport
   handing it over and the core handling it is lag, measured directly; the
   largest recent wait counts, halving every ``HALF_LIFE`` seconds.
2. Senders stamp each message with their own clock (``sent_at``, ms). For
   each sender the smallest ``now - sent_at`` seen is its baseline (clock
   offset plus the fastest path); how much a message exceeds it is how long
   it queued somewhere: in the sender, the network, py-libp2p or our inbox.
   Baselines are minima over two epochs, so clock drift ages out.
   (The first message of a sender sets its baseline, so this half sees
   only queues that grow; the first half sees every message.)
3. The stamp half of the lag is the median over the recently heard senders
   of their latest excess: one sender lying in its stamps moves nothing.
   The lag is the larger of the two halves.
4. A jump of more than ``MAX_LAG`` from a sender is a new clock (a restart),
   not lag: its baseline starts over. The lag is capped at ``MAX_LAG``.
5. ``Shared.stretch`` adds ``factor`` times the lag to a window; the rooms
   call it for every suppression window, grace period and repeat gap.
"""

from __future__ import annotations

from collections import OrderedDict
from statistics import median

from .config import Shared

#: a baseline is the minimum over the current and the previous epoch
EPOCH = 60.0
#: the lag never exceeds this; a bigger jump is a sender's new clock
MAX_LAG = 30.0
#: senders heard within this long count towards the lag
RECENT = 10.0
#: at most this many senders' latest excess are kept for the median
SAMPLED = 64
#: the measured wait in our own queue halves in this many seconds
HALF_LIFE = 5.0


class _Baseline:
    __slots__ = ("epoch_start", "last", "previous", "smallest")

    def __init__(self, seen: float, now: float) -> None:
        self.smallest = seen
        self.previous = seen
        self.epoch_start = now
        self.last = 0.0

    def excess(self, seen: float, now: float) -> float:
        if now - self.epoch_start >= EPOCH:
            self.previous, self.smallest, self.epoch_start = self.smallest, seen, now
        self.smallest = min(self.smallest, seen)
        excess = seen - min(self.smallest, self.previous)
        if excess - self.last > MAX_LAG:
            # not a queue this long but a clock that changed: start over
            self.smallest = self.previous = seen
            excess = 0.0
        self.last = excess
        return excess


class Load:
    """Per-sender baselines, recent excesses, and the lag they add up to."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self._baselines: OrderedDict[str, _Baseline] = OrderedDict()
        self._recent: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._stamped = 0.0
        self._waited = 0.0
        self._waited_at = float("-inf")

    def waited(self, seconds: float, now: float) -> None:
        """A message waited this long in our queue before being handled."""
        current = self._decayed(now)
        if seconds > current:
            current = min(seconds, MAX_LAG)
        self._waited, self._waited_at = current, now
        self._shared.lag = max(self._stamped, current)

    def _decayed(self, now: float) -> float:
        if self._waited <= 0 or now <= self._waited_at:
            return max(self._waited, 0.0)
        return float(self._waited * 0.5 ** ((now - self._waited_at) / HALF_LIFE))

    def observe(self, sender: str, sent_at: int, now: float) -> None:
        """A message ``sender`` stamped ``sent_at`` (ms) is handled at ``now``."""
        if not sent_at:
            return  # not stamped (a Go peer)
        seen = now - sent_at / 1000.0
        baseline = self._baselines.get(sender)
        if baseline is None:
            baseline = self._baselines[sender] = _Baseline(seen, now)
            while len(self._baselines) > self._shared.config.max_peers:
                self._baselines.popitem(last=False)
        else:
            self._baselines.move_to_end(sender)
        self._recent[sender] = (baseline.excess(seen, now), now)
        self._recent.move_to_end(sender)
        while len(self._recent) > SAMPLED:
            self._recent.popitem(last=False)

    def update(self, now: float) -> float:
        """Recompute the lag (the heartbeat calls this); returns it."""
        for sender in [s for s, (_, at) in self._recent.items() if now - at > RECENT]:
            del self._recent[sender]
        excesses = [excess for excess, _ in self._recent.values()]
        self._stamped = min(median(excesses), MAX_LAG) if excesses else 0.0
        self._waited = self._decayed(now)
        self._waited_at = now
        lag = self._shared.lag = max(self._stamped, self._waited)
        return lag

    def forget(self, sender: str) -> None:
        """A sender restarted: its clock starts over."""
        self._baselines.pop(sender, None)
        self._recent.pop(sender, None)
