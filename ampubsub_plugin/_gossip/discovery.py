"""Discovery: how a peer gets to know everyone, and everyone gets to know it.

Rules of this room (the only place that decides them):

1. **Hello.** After joining, a peer with exports announces them (an ``info``
   about itself, the hello) and repeats it with backoff (``hello_first``
   doubling up to ``hello_max``) until another peer's message shows it was
   heard: an info or snapshot that includes it, or gossip listing all its
   machines. A new export makes the next hello news again.
2. **A hello asks for a snapshot.** A newcomer's hello (or an explicit
   ``reqinfo`` with no ids) asks for everything known. One *sender* answers,
   after ``snapshot_window``, with one snapshot for the whole batch of
   newcomers, at most one per ``snapshot_every``. The sender is the peer that
   joined alone; when no sender is alive, the ``responders`` ranked first by
   id hash answer in turn, and whoever sent becomes the sender. Of two
   senders, one whose view was partial (the other's snapshot taught it
   peers) or, with equal views, the one ranked lower steps down.
3. **Phases of our own view** (one enum, one table, ``TRANSITIONS``):
   ``JOINING`` until a snapshot arrives or we waited long enough
   (``snapshot_wait`` after asking explicitly), then ``SETTLED``; ``SENDER``
   once we send snapshots. Only settled peers send snapshots, and requests
   about peers learned indirectly wait until we are settled. Peers that
   start together ask at spread moments, and an ask seen holds back one's
   own; a snapshot asked for while nobody was settled is owed: the
   responders send it once they settle by waiting.
4. **One-to-one.** When the transport can reach a neighbour directly, the
   hello says so (``pull``): nobody broadcasts a snapshot for it, and the
   newcomer fetches one from a single neighbour (``PULL_AFTER`` after its
   hello). A neighbour still joining refuses, a busy one may time out: the
   newcomer tries another (``PULL_RETRY`` later, ``MAX_PULLS`` in all) and
   only then asks everyone; it doesn't ask while a pull may still succeed,
   since every peer would pay for the snapshots that answer the ask.
5. **A repeated hello waits** while our snapshot is on the way: the snapshot
   shows whether we were heard, and a snapshot that lacks us brings the
   repeat forward. A pull that may still succeed counts as on the way (a
   busy neighbour answers late, and a repeat costs every peer a reception
   and the acknowledgement another): we neither repeat nor settle by
   waiting until the pulls succeeded or failed (``pulled``,
   ``pull_failed``), which takes at most ``MAX_PULLS`` pull timeouts.
"""

from __future__ import annotations

import logging
from enum import Enum

from .answers import place_for_all, rank
from .config import Shared
from .roster import Roster

log = logging.getLogger("ampubsub.gossip")


#: a newcomer pulls its snapshot this long after its hello, so that the
#: neighbour it asks has heard the hello and includes it
PULL_AFTER = 0.1
#: a failed pull is tried again (another neighbour) after this long ...
PULL_RETRY = 1.0
#: ... this many pulls in all before asking everyone
MAX_PULLS = 3
#: with no neighbour on the topic yet, a pull waits this many PULL_RETRYs
MAX_PULL_WAITS = 5


class Phase(Enum):
    #: our view may be incomplete: a snapshot is on the way
    JOINING = "joining"
    #: our view is complete (we were alone, a snapshot came, or we waited)
    SETTLED = "settled"
    #: settled, and we are the peer that sends snapshots to newcomers
    SENDER = "sender"


class Cause(Enum):
    JOINED = "joined"
    JOINED_ALONE = "joined alone"
    SNAPSHOT_SEEN = "snapshot seen"
    WAITED = "waited for a snapshot"
    SENT_SNAPSHOT = "sent a snapshot"
    STEPPED_DOWN = "another sender knows more"


_J, _S, _X = Phase.JOINING, Phase.SETTLED, Phase.SENDER
_REJOIN = {Cause.JOINED: _J, Cause.JOINED_ALONE: _X}

#: phase -> what happened -> next phase; anything else leaves the phase as is
TRANSITIONS: dict[Phase, dict[Cause, Phase]] = {
    _J: {Cause.SNAPSHOT_SEEN: _S, Cause.WAITED: _S, Cause.SENT_SNAPSHOT: _X, **_REJOIN},
    _S: {Cause.SNAPSHOT_SEEN: _S, Cause.SENT_SNAPSHOT: _X, **_REJOIN},
    _X: {Cause.SNAPSHOT_SEEN: _X, Cause.STEPPED_DOWN: _S, **_REJOIN},
}


class Discovery:
    """Our hello, our phase, and the snapshots we owe newcomers."""

    def __init__(self, shared: Shared, roster: Roster) -> None:
        self._shared = shared
        self._roster = roster
        cfg = shared.config
        #: a core that never joined takes its (empty) view as complete
        self.phase = Phase.SETTLED
        self.joined = False
        # the hello
        self.hello_due: float | None = None
        self._hello_gap = cfg.hello_first
        self._hello_sent = False
        #: the hello last sent repeated an earlier one (for the counters)
        self.hello_repeated = False
        self._last_hello = float("-inf")
        #: the next hello has news (a new export), it isn't a mere repeat
        self._news = False
        self.heard = False
        # our snapshot
        #: when to ask for a snapshot ourselves (None: not needed)
        self.ask_due: float | None = None
        self._settle_at = float("-inf")
        self.last_snapshot_seen = float("-inf")
        # snapshots we send
        self.snapshot_due: float | None = None
        self._snapshot_since = float("-inf")
        self._snapshot_sent = float("-inf")
        #: peers seen sending snapshots; while one is alive, it answers alone
        self._senders: set[str] = set()
        #: the transport can fetch a snapshot from one neighbour directly
        self.direct = False
        #: when to pull our snapshot from a neighbour (None: not planned),
        #: and how many pulls may still be made before asking everyone
        self.pull_due: float | None = None
        self._pulls_left = 0
        self._pull_waits = 0
        self._pulled_from: set[str] = set()
        #: the planned pull waits for a neighbour on the topic
        self._no_neighbour = False
        #: our pull went out and hasn't ended (``pulled``, ``pull_failed``):
        #: its reply is handed over one message at a time, and until the
        #: last is in, our view is part of a snapshot, not one to serve
        self._pull_in_flight = False
        #: a snapshot seen meanwhile: its sender and the peers it covered
        self._seen_while_pulling: tuple[str, set[str]] | None = None
        #: a snapshot was asked for while we were joining: once settled by
        #: waiting (nobody else could answer either), the responders send it
        self._owed = False

    def _move(self, cause: Cause) -> None:
        self.phase = TRANSITIONS[self.phase].get(cause, self.phase)

    @property
    def is_sender(self) -> bool:
        return self.phase is Phase.SENDER

    @property
    def pulling(self) -> bool:
        """Our snapshot pull is planned or in flight (rule 5)."""
        return self.joined and self._pulls_left > 0

    def is_settled(self, now: float) -> bool:
        if (
            self.phase is Phase.JOINING
            and not self.pulling
            and now >= self._shared.late(self._settle_at, 2)
        ):
            # nobody answered: what we know is all there is
            log.debug("%s: no snapshot came; settled by waiting", self._shared.peer_id)
            self._shared.counters["info_settled_waiting"] += 1
            self._move(Cause.WAITED)
            if self._owed:
                # peers that joined with us asked, and nobody could answer
                self._owed = False
                self.snapshot_wanted(now)
        return self.phase is not Phase.JOINING

    # -- lifecycle ---------------------------------------------------------------

    def join(self, now: float, *, alone: bool, exporting: bool) -> None:
        """Hello now; without exports ask for a snapshot at once, else later."""
        cfg = self._shared.config
        self.joined = True
        self.hello_due = now if exporting else None
        self._hello_gap = cfg.hello_first
        self._hello_sent = False
        self.heard = False
        self._move(Cause.JOINED_ALONE if alone else Cause.JOINED)
        log.debug("%s: joined (alone: %s)", self._shared.peer_id, alone)
        wait = self._shared.stretch(cfg.snapshot_wait, 2) if exporting else 0.0
        # spread: the first ask, seen by the others, holds theirs back
        spread = 0.0
        if exporting:  # (a watcher asks at once: its view is all it wants)
            window = self._shared.stretch(cfg.snapshot_wait)
            spread = self._shared.rng.uniform(0, window)
        self.ask_due = None if alone else now + wait + spread
        # one-to-one: pull our snapshot from a neighbour once our hello (sent
        # now) has reached it; asking everyone waits until the pulls failed
        pull_after = self._shared.stretch(PULL_AFTER) if exporting else 0.0
        self.pull_due = now + pull_after if self.direct and not alone else None
        self._pull_in_flight = False
        self._seen_while_pulling = None
        if self.pull_due is not None:
            self.ask_due = None
            self._pulls_left = MAX_PULLS
            self._pull_waits = 0
            self._pulled_from.clear()
        self._settle_at = (
            now + wait + spread + self._shared.stretch(cfg.snapshot_wait, 2)
        )

    def leave(self) -> None:
        self.joined = False
        self.hello_due = None
        self.ask_due = None
        self.pull_due = None
        self.snapshot_due = None

    def announce(self) -> None:
        """A new export: the next hello is news, sent as soon as possible."""
        self._news = True
        self.heard = False
        self._hello_gap = self._shared.config.hello_first
        if self.joined:
            self.hello_due = -1.0

    def forget_departed_senders(self) -> None:
        self._senders &= self._roster.peers.keys()

    # -- the hello ---------------------------------------------------------------

    def repeat_waits(self) -> bool:
        """A repeated hello waits while our snapshot is on the way."""
        return (
            self._hello_sent
            and not self._news
            and (self.phase is Phase.JOINING or self.pulling)
        )

    def hello_now(self, now: float, *, exporting: bool) -> bool:
        """Is a hello due now? If so it counts as sent and the next is planned."""
        if self.hello_due is None or not exporting:
            return False
        if self._shared.late(self.hello_due, 2) > now:
            return False
        if self.repeat_waits() and (self.pulling or not self.is_settled(now)):
            return False  # the snapshot we wait for shows whether we were heard
        self._news = False
        if self.heard and self._hello_sent:
            self.hello_due = None
            return False
        log.debug("%s: hello (repeat: %s)", self._shared.peer_id, self._hello_sent)
        self.hello_repeated = self._hello_sent
        self._hello_sent = True
        self._last_hello = now
        self.hello_due = now + self._shared.stretch(self._hello_gap, 2)
        self._hello_gap = min(self._hello_gap * 2, self._shared.config.hello_max)
        return True

    def introduced_ourselves(self, now: float) -> None:
        """Our info went out in an answer or a snapshot: that was a hello, too."""
        if self.hello_due is not None:
            self.hello_due = now + self._hello_gap

    def heard_by_gossip(self) -> None:
        self.heard = True
        self.hello_due = None

    def hello_due_at(self, *, exporting: bool) -> float | None:
        hello = self.hello_due if exporting else None
        if hello is None:
            return None
        if self.repeat_waits():
            if self.pulling:
                return None  # the pull's outcome plans it (``pulled``)
            # the snapshot we wait for shows whether we were heard
            hello = max(hello, self._settle_at)
        return self._shared.late(hello, 2)

    def ask_at(self) -> float | None:
        """When our explicit ask for a snapshot is due (None: not needed)."""
        return None if self.ask_due is None else self._shared.late(self.ask_due, 2)

    # -- our snapshot ------------------------------------------------------------

    def ask_now(self, now: float) -> bool:
        """No snapshot came in time: ask for one explicitly (once)."""
        due = self.ask_at()
        if due is None or due > now:
            return False
        self.ask_due = None
        wait = self._shared.stretch(self._shared.config.snapshot_wait, 2)
        self._settle_at = min(self._settle_at, now + wait)
        log.debug("%s: no snapshot yet; asking for one", self._shared.peer_id)
        return True

    def pull_at(self) -> float | None:
        return None if self.pull_due is None else self._shared.late(self.pull_due)

    def pull_now(self, now: float) -> bool:
        """Is it time to fetch our snapshot from a neighbour? (Once.)"""
        due = self.pull_at()
        if due is None or due > now:
            return False
        self.pull_due = None
        self._no_neighbour = False
        self._pull_in_flight = True
        return True

    def pull_failed(
        self, now: float, *, exporting: bool, no_neighbour: bool = False
    ) -> None:
        """Our snapshot pull failed (refused, timed out): another neighbour
        later, or, after ``MAX_PULLS``, ask everyone. With ``no_neighbour``
        (no neighbour is on the topic yet: the subscriptions are still being
        exchanged) it is tried again later, up to ``MAX_PULL_WAITS`` times,
        without using up a pull."""
        self._pull_in_flight = False
        if not self.joined or self._pulls_left <= 0:
            return  # a snapshot came meanwhile
        seen, self._seen_while_pulling = self._seen_while_pulling, None
        if seen is not None:  # another's snapshot came whole meanwhile
            self.snapshot_seen(*seen, now, exporting=exporting)
            return
        if no_neighbour and self._pull_waits < MAX_PULL_WAITS:
            self._pull_waits += 1
            self.pull_due = now + self._shared.stretch(PULL_RETRY)
            self._no_neighbour = True
            return
        self._pulls_left -= 1
        if self._pulls_left > 0:
            self.pull_due = now + self._shared.stretch(PULL_RETRY)
        elif self.ask_due is None:
            self.ask_due = now
            # the ask's answer gets its time (slow pulls may have used it up)
            wait = self._shared.stretch(self._shared.config.snapshot_wait, 2)
            self._settle_at = max(self._settle_at, now + wait)
            log.debug("%s: pulls failed; asking everyone", self._shared.peer_id)

    def neighbour_joined(self, now: float) -> None:
        """A neighbour subscribed: a pull waiting for one goes now."""
        if self._no_neighbour and self.pull_due is not None:
            self.pull_due = min(self.pull_due, now)
        self._no_neighbour = False

    def pulled(self, sender: str, now: float, *, exporting: bool) -> None:
        """Our snapshot pull succeeded (its messages were received first):
        whatever it held is the view of a settled neighbour, so it counts as
        a snapshot even when that neighbour knew nobody else."""
        self._pull_in_flight = False
        self._seen_while_pulling = None
        if not self.joined or self._pulls_left <= 0:
            return  # already counted as a snapshot (a broadcast one)
        covered = {sender, self._shared.peer_id} if self.heard else {sender}
        self.snapshot_seen(sender, covered, now, exporting=exporting)

    def pick(self, neighbours: list[str]) -> str:
        """The neighbour to pull from: any, but not one that failed us since
        we joined while there are others."""
        fresh = [n for n in neighbours if n not in self._pulled_from]
        choice = self._shared.rng.choice(fresh or neighbours)
        if not fresh or len(self._pulled_from) >= 64:
            self._pulled_from.clear()  # all tried (or churn): start over
        self._pulled_from.add(choice)
        return choice

    def others_asked(self, now: float) -> None:
        """Another peer asked for a snapshot: the answer reaches us, too.

        (If none comes, we settle by waiting as planned, and then the
        responders among us owe it.) Our hello's repeat waits for it too:
        the snapshot shows whether we were heard.
        """
        self.ask_due = None
        if self.hello_due is not None and self.phase is Phase.JOINING:
            wait = self._shared.stretch(self._shared.config.snapshot_wait, 2)
            self.hello_due = max(self.hello_due, self._settle_at + wait)

    def ask_again(self) -> None:
        """Our explicit ask was held back: ask as soon as possible."""
        self.ask_due = float("-inf")

    def snapshot_seen(
        self, sender: str, covered: set[str], now: float, *, exporting: bool
    ) -> None:
        """A snapshot arrived (its sender relays others, or us): ours to use or skip.

        Only settled peers send snapshots, so it completes our view. If it
        lacks us, its sender never got our hello: say hello again now. If we
        had one planned, another responder answered the batch first.

        While our own pull is in flight, a snapshot's messages (the pull's
        reply, handed over one at a time, or another's broadcast) only count
        once the pull ends: settled on part of a view, we would serve that
        part to the next newcomer as if it were all, and the peers it lacks
        would reach that newcomer only by gossip, minutes later at scale.
        """
        if self._pull_in_flight:
            seen = self._seen_while_pulling
            if seen is not None and seen[0] == sender:
                covered = covered | seen[1]
            elif seen is not None:
                return  # (the first sender's counts if the pull fails)
            self._seen_while_pulling = (sender, covered)
            return
        me = self._shared.peer_id
        log.debug(
            "%s: snapshot from %s of %d peers (phase: %s, us in it: %s)",
            me,
            sender,
            len(covered),
            self.phase.value,
            me in covered,
        )
        self.ask_due = None
        self._pulls_left = 0  # nothing left to pull
        self.pull_due = None
        self._owed = False
        self._move(Cause.SNAPSHOT_SEEN)
        self.last_snapshot_seen = now
        self._senders.add(sender)
        if me not in covered and exporting and not self.heard:
            self._shared.counters["info_snapshot_lacked_us"] += 1
            # at most one repeat per first gap, however many snapshots lack us
            soon = self._last_hello + self._shared.stretch(
                self._shared.config.hello_first, 2
            )
            if self.hello_due is not None:
                soon = min(soon, self.hello_due)
            self.hello_due = max(now, soon)
        if self.is_sender:
            known = self._roster.peers.keys()
            news = any(p not in known for p in covered - {me})
            knows_all = covered >= known
            if news or (knows_all and rank(sender, "") < rank(me, "")):
                log.debug("%s: %s sends the snapshots now", me, sender)
                self._move(Cause.STEPPED_DOWN)
        if self.snapshot_due is not None and now > self._snapshot_since:
            self.snapshot_due = None

    # -- snapshots we send ---------------------------------------------------------

    def snapshot_wanted(self, now: float) -> None:
        """A newcomer needs everything we know: the chosen few batch an answer.

        If we are joining too (peers started together), nobody may be able
        to answer yet: we owe the snapshot once we settle.
        """
        if self.snapshot_due is not None:
            return  # joins the batch already waiting
        if self.phase is Phase.JOINING:
            self._owed = True
        position = self._position(now)
        if position is None:
            return
        self._snapshot_since = now
        cfg = self._shared.config
        window = self._shared.stretch(cfg.snapshot_window)
        due = now + window * (1 + 2 * position) + self._shared.answer_gap()
        self.snapshot_due = max(due, self._snapshot_sent + cfg.snapshot_every)

    def _position(self, now: float) -> int | None:
        """Our place among the snapshot responders, or None if we aren't one."""
        if not self.is_settled(now):
            return None
        if self.is_sender:
            return 0
        peers = self._roster.peers
        if any(p in peers and not peers[p].silent for p in self._senders):
            return None
        # no peer's id is "": every live peer takes part in the ranking
        responders = self._shared.config.responders
        closer = place_for_all(self._shared.peer_id, self._roster, responders)
        return closer if closer < responders else None

    def snapshot_now(self, now: float) -> bool:
        """Is our snapshot due? If so it counts as sent: we are the sender."""
        if self.snapshot_due is None or self.snapshot_due > now:
            return False
        self.snapshot_due = None
        self._snapshot_sent = now
        self._move(Cause.SENT_SNAPSHOT)
        return True
