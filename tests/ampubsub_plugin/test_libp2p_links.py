"""Kept peers (``_libp2p/links.py``): when they are dialled again, in virtual time.

The network and the dial are stand-ins; a real redial over TCP is in
``test_libp2p_transport.py``.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from libp2p.peer.id import ID

from ampubsub_plugin._libp2p.dial import Attempt
from ampubsub_plugin._libp2p.links import REDIAL_MAX, STABLE, Links, _Kept

PEER = ID.from_base58("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")


class Network:
    """Connections are up or down as the test says."""

    def __init__(self) -> None:
        self.up: set[ID] = set()

    def get_connections(self, peer: ID) -> list[Any]:
        return [object()] if peer in self.up else []


class Dials(Links):
    """Records when a redial would start; each ends at once."""

    def __init__(self, allows: Any = lambda peer: True) -> None:
        super().__init__("me", allows)
        self.at: list[float] = []

    async def _redial(self, peer: ID, kept: _Kept) -> None:
        self.at.append(trio.current_time())
        done = Attempt(None, None)  # type: ignore[arg-type]
        done.done.set()
        kept.attempt = done


async def tick(links: Dials, network: Network, seconds: int) -> None:
    """``seconds`` checks, one per virtual second, as ``Links.run`` makes them."""
    async with trio.open_nursery() as nursery:
        for _ in range(seconds):
            links._check(network, nursery)  # type: ignore[arg-type]
            await trio.sleep(1)


def run(fn: Any) -> None:
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_lost_peer_is_dialled_again_with_growing_pauses() -> None:
    async def main() -> None:
        links, network = Dials(), Network()
        links.keep({PEER: []}, {})
        await tick(links, network, 130)
        gaps = [b - a for a, b in zip(links.at, links.at[1:], strict=False)]
        assert links.at[0] == 1  # noticed at 0, dialled a pause later
        assert gaps[:5] == [1, 2, 4, 8, 16]
        assert set(gaps[5:]) == {REDIAL_MAX}

    run(main)


def test_the_pauses_start_over_once_the_peer_stayed_connected() -> None:
    async def main() -> None:
        links, network = Dials(), Network()
        links.keep({PEER: []}, {})
        await tick(links, network, 20)  # dialled at 1, 2, 4, 8, 16
        network.up.add(PEER)
        await tick(links, network, 3)  # up, but not for long: no reset
        network.up.clear()
        start = trio.current_time()
        await tick(links, network, 40)
        assert links.at[5] - start == REDIAL_MAX  # the pause went on growing
        network.up.add(PEER)
        await tick(links, network, int(STABLE) + 2)
        network.up.clear()
        start = trio.current_time()
        dials = len(links.at)
        await tick(links, network, 3)
        assert links.at[dials] - start == 1  # first pause again

    run(main)


def test_a_peer_the_gate_refuses_is_not_dialled_again() -> None:
    async def main() -> None:
        links, network = Dials(allows=lambda peer: False), Network()
        links.keep({PEER: []}, {})
        await tick(links, network, 10)
        assert links.at == []
        assert links._kept == {}

    run(main)


def test_no_second_dial_while_one_is_under_way() -> None:
    async def main() -> None:
        links, network = Dials(), Network()
        pending = Attempt(None, None)  # type: ignore[arg-type]
        links.keep({PEER: []}, {PEER: pending})  # connect()'s, still going on
        await tick(links, network, 10)
        assert links.at == []
        pending.done.set()  # at 10, failed: dialled a pause later
        await tick(links, network, 2)
        assert links.at == [11]

    run(main)
