"""The raw gossipsub baseline: bare Libp2pTransports on their own topic."""

from __future__ import annotations

import time

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
