"""The protocol's knobs, and the context every room of the core shares."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..protocol import Info, clock_proof_payload, info_identity

#: after a bye, messages from that peer are taken as sent before it for this long
BYE_GRACE = 5.0
#: time sums by peer and machine index, as gossip carries them
Sums = dict[str, dict[int, int]]
#: verified signatures remembered (~200 bytes each: id, signature, digest)
PROOF_CACHE = 8192


@dataclass
class GossipConfig:
    """Timing and size knobs, in seconds and counts."""

    #: minimum gap between two ``updates`` pushes of own machines
    update_interval: float = 0.02
    #: how often the topic calls ``heartbeat``
    heartbeat: float = 1.0
    #: about this many gossip messages per ``gossip_interval`` network-wide
    gossip_per_interval: float = 1.0
    gossip_interval: float = 2.0
    #: peers per gossip message (own included): the bigger, the sooner a
    #: peer some missed (a lost hello) is named to them; costs bytes only
    gossip_sample: int = 32
    #: a non-owner answers after a random delay in this window (suppression)
    answer_delay: tuple[float, float] = (0.02, 0.25)
    #: minimum gap between two own requests of one kind
    request_interval: float = 0.5
    #: a peer learned of indirectly (gossip, updates, a request) is asked
    #: about only after this long, and once no snapshot came for as long:
    #: its hello or a snapshot is likely on the way, and the request and
    #: its answers would cost every peer
    request_grace: float = 3.0
    #: a snapshot responder collects newcomers this long before answering
    #: them all with one snapshot (the next responder waits three times as
    #: long, and stays silent if a snapshot comes first)
    snapshot_window: float = 0.5
    #: ... and sends at most one snapshot per this long (joins in a burst
    #: batch up instead of costing a snapshot each)
    snapshot_every: float = 1.5
    #: a joiner whose hello was not answered by a snapshot this long asks
    #: for one (``reqinfo`` with no ids); peers exporting nothing ask at once
    snapshot_wait: float = 3.0
    #: the same peer is asked about again only after this long
    rerequest: float = 3.0
    #: hello repeats: first gap, then doubling up to the max
    hello_first: float = 8.0
    hello_max: float = 16.0
    #: send something at least this often, so others know we're alive ...
    keepalive: float = 15.0
    #: ... but no more often, network-wide, than one keepalive per this many
    #: seconds per peer (so a big network isn't flooded by keepalives)
    keepalive_per_peer: float = 1.0
    #: how many peers (besides the owner) answer a request, acknowledge a
    #: hello or send a snapshot: the ones whose id hashes closest to the
    #: subject (suppression; snapshots share one subject so they batch)
    responders: int = 2
    #: a request about a peer introduced this recently is not answered again
    answer_cooldown: float = 1.0
    #: a peer whose connection closed (or that another peer probes) is shown
    #: disconnected unless it speaks within this long
    probe_grace: float = 5.0
    #: a peer unheard for this long is shown disconnected ...
    peer_ttl: float = 60.0
    #: ... and forgotten this long after that (or after its bye)
    gone_ttl: float = 60.0
    #: outbound token bucket: messages per second, burst size
    rate: float = 30.0
    burst: int = 30
    #: inbound budget per author (twice what an honest peer may send): past
    #: it, an author's messages are dropped and, over gossipsub, not forwarded
    author_rate: float = 60.0
    author_burst: int = 120
    #: what we miss (peers named but not introduced, clocks we lag behind,
    #: clocks waiting for their machine's info) is forgotten this long after
    #: it was noted, so a burst of names for peers that don't exist drains
    missing_ttl: float = 30.0
    #: peers one author may name into the missing table (its own name aside)
    missing_per_author: int = 64
    #: bounds of the tables
    max_peers: int = 4096
    max_pending: int = 1024
    max_schemas: int = 1024
    max_machines_per_peer: int = 1024
    #: states of all of one peer's machines shown here (a remote machine
    #: costs about 1 KB per state: this bounds what one member can pin)
    max_states_per_peer: int = 65536
    #: machines per info message (bigger snapshots are split)
    infos_per_message: int = 256
    #: a newcomer fetches its snapshot from one neighbour over a direct
    #: stream instead of having it broadcast to every peer
    pull_snapshots: bool = True
    #: back-pressure: suppression windows, grace periods and repeat gaps
    #: grow by this many times the measured lag (``load``); 0 turns it off
    back_pressure: float = 2.0


class Signer(Protocol):
    """Signs as this peer and checks other peers' signatures (the transport)."""

    def sign(self, data: bytes) -> bytes | None: ...

    def verify(self, peer_id: str, data: bytes, signature: bytes) -> bool: ...


class Shared:
    """What every room reads: who we are, the knobs, randomness, counters.

    ``peer_id`` is empty until the transport has started; rooms read it
    here, never keep a copy. ``incarnation`` grows with every start of this
    peer (the topic sets it); ``signer`` signs our clocks and checks relayed
    ones (None: nothing is signed, and only clocks a peer sends itself are
    believed).
    """

    __slots__ = (
        "_proofs",
        "accepts_peer",
        "config",
        "counters",
        "incarnation",
        "lag",
        "peer_id",
        "rng",
        "signer",
    )

    def __init__(
        self,
        peer_id: str,
        config: GossipConfig,
        rng: random.Random,
        signer: Signer | None = None,
        incarnation: int = 0,
    ) -> None:
        self.peer_id = peer_id
        self.config = config
        self.rng = rng
        self.signer = signer
        self.incarnation = incarnation
        self.counters: Counter[str] = Counter()
        #: the topic's allow-list (_allow.py): infos about others are ignored
        self.accepts_peer: Callable[[str], bool] = lambda peer: True
        #: how far behind this peer runs, in seconds (the ``load`` room)
        self.lag = 0.0
        #: signatures already verified, with what they were verified over:
        #: snapshots and relays repeat the same signed clocks, and checking
        #: one again would cost the same ~0.1 ms for nothing new
        self._proofs: dict[tuple[str, bytes], bytes] = {}

    def stretch(self, seconds: float, factor: float = 1.0) -> float:
        """A window widened for the lag: others' messages must be seen in it."""
        return seconds + factor * self.config.back_pressure * self.lag

    def in_flight(self) -> float:
        """How long a clock may take to reach every peer: a gap seen within
        this long of the change is most likely the message on its way (a
        loaded peer's queue holds it), not a loss to repair by broadcast."""
        return self.stretch(self.config.request_grace, 2)

    def late(self, due: float, factor: float = 1.0) -> float:
        """A moment planned earlier, put off by the lag as it is now."""
        return self.stretch(due, factor)

    def prove(self, index: int, time: list[int], identity: bytes) -> bytes | None:
        """Our signature of one of our clocks (None without a signer)."""
        if self.signer is None:
            return None
        payload = clock_proof_payload(
            self.peer_id, index, self.incarnation, time, identity
        )
        return self.signer.sign(payload)

    def proven(
        self,
        peer: str,
        index: int,
        incarnation: int,
        time: list[int],
        identity: bytes,
        signature: bytes | None,
    ) -> bool:
        """Is ``signature`` the owner's, over exactly this clock?"""
        if signature is None or self.signer is None:
            return False
        payload = clock_proof_payload(peer, index, incarnation, time, identity)
        key = (peer, signature)
        digest = hashlib.blake2b(payload, digest_size=16).digest()
        if self._proofs.get(key) == digest:
            return True
        if not self.signer.verify(peer, payload, signature):
            return False  # failures aren't kept: a forger can't fill the cache
        if len(self._proofs) >= PROOF_CACHE:
            self._proofs.pop(next(iter(self._proofs)))  # the oldest
        self._proofs[key] = digest
        return True

    def answer_gap(self) -> float:
        """A random moment to answer in, so that the first answer suppresses others."""
        low, high = self.config.answer_delay
        return self.rng.uniform(low, self.stretch(high))

    def proven_info(self, peer: str, index: int, info: Info) -> bool:
        """Is this introduction of ``peer``'s machine signed by ``peer``?"""
        if info.states is None:
            return False  # no identity to check a signature against
        identity = info_identity(info)
        return self.proven(
            peer, index, info.incarnation, info.time, identity, info.signature
        )
