"""The raw gossipsub baseline: bare Libp2pTransports on their own topic."""

from __future__ import annotations

import time
from collections.abc import Callable

from .metrics import Expectation


class RawHandler:
    """TransportHandler of a bare Libp2pTransport: timestamps payloads."""

    def __init__(self, peer: int, waiting: dict[int, Expectation]) -> None:
        self.peer = peer
        self.waiting = waiting

    def on_message(self, sender: str, data: bytes) -> None:
        now = time.monotonic()
        try:
            seq = int(data[4:12])
        except ValueError:
            return
        exp = self.waiting.get(seq)
        if exp is None or self.peer in exp.got:
            return
        exp.got[self.peer] = now - exp.sent_at
        if len(exp.got) >= exp.receivers:
            exp.done.set()

    def on_peer_joined(self, peer_id: str) -> None:
        pass

    def on_peer_left(self, peer_id: str) -> None:
        pass


#: payload heads of the all-to-all baseline: a probe, and a peer's one publish
PROBE_HEAD = b"prb:"
ONCE_HEAD = b"all:"


def once_payload(head: bytes, number: int, sent_at: float, size: int) -> bytes:
    """``head`` + number + wall-clock send time, padded to ``size`` bytes."""
    body = head + b"%08d:%.6f:" % (number, sent_at)
    return body + b"x" * max(0, size - len(body))


def parse_once(data: bytes) -> tuple[bytes, int, float] | None:
    """(head, number, sent_at) of a baseline payload; None for anything else."""
    head = data[:4]
    if head not in (PROBE_HEAD, ONCE_HEAD):
        return None
    parts = data[4:].split(b":", 2)
    if len(parts) < 2:
        return None
    try:
        return head, int(parts[0]), float(parts[1])
    except ValueError:
        return None


class AllToAll:
    """The raw baseline of the multi-process run, for this child's peers.

    Every peer publishes once; every other peer timestamps each reception
    with ``time.time()`` (one clock for all processes on the machine).
    ``on_probe`` is told of each probe reception (the coordinator counts
    them to know the mesh carries a message to everybody before firing).
    """

    def __init__(
        self, peers: int, local: list[int], on_probe: Callable[[int], None]
    ) -> None:
        self.peers = peers
        self.local = local
        self.on_probe = on_probe
        #: receiver -> sender -> seconds from publish to reception
        self.got: dict[int, dict[int, float]] = {i: {} for i in local}
        self.complete: set[int] = set()
        #: wall-clock time of the last reception of a peer's publish
        self.last_at = 0.0

    def handler(self, receiver: int) -> AllToAllHandler:
        return AllToAllHandler(self, receiver)

    def received(self, receiver: int, data: bytes) -> None:
        now = time.time()
        parsed = parse_once(data)
        if parsed is None:
            return
        head, number, sent_at = parsed
        if head == PROBE_HEAD:
            self.on_probe(number)
            return
        got = self.got[receiver]
        if number == receiver or number in got:
            return
        got[number] = now - sent_at
        self.last_at = max(self.last_at, now)
        if len(got) >= self.peers - 1:
            self.complete.add(receiver)

    def expected(self) -> int:
        return len(self.local) * (self.peers - 1)

    def latencies(self) -> list[float]:
        return [v for got in self.got.values() for v in got.values()]


class AllToAllHandler:
    """TransportHandler of one bare transport of :class:`AllToAll`."""

    def __init__(self, owner: AllToAll, receiver: int) -> None:
        self.owner = owner
        self.receiver = receiver

    def on_message(self, sender: str, data: bytes) -> None:
        self.owner.received(self.receiver, data)

    def on_peer_joined(self, peer_id: str) -> None:
        pass

    def on_peer_left(self, peer_id: str) -> None:
        pass
