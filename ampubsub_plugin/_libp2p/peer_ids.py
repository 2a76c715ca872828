"""Peer ids as text, from the bytes a pubsub message names its author by.

Each reception names its author twice on our side (the topic validator and
the inbox), and py-libp2p encodes base58 in pure Python: about 23 µs per id
on the benchmark machine, more than our validator's own work. Authors are
few and recur, so their text is kept; boundedly, since a ``from_id`` is
only known to be signed by its author, not to be one of few.
"""

from __future__ import annotations

from functools import lru_cache

from libp2p.peer.id import ID

#: author ids kept as text (the least recently used go first)
CACHE_SIZE = 4096


@lru_cache(maxsize=CACHE_SIZE)
def peer_text(raw: bytes) -> str:
    """The base58 text of the peer id whose bytes are ``raw``."""
    return ID(raw).to_base58()
