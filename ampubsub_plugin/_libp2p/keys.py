"""Peers' public keys, from their ids: how a relayed clock's signature is checked.

Ed25519 peer ids embed the public key (an identity multihash), so a
signature by any peer id can be verified with no lookup; ids whose key is
only hashed (RSA) can't, and their relayed clocks are not believed. Keys are
cached, boundedly: parsing an id costs more than the check.
"""

from __future__ import annotations

from collections import OrderedDict

from libp2p.crypto.keys import PublicKey
from libp2p.peer.id import ID

#: peers whose keys are kept parsed
CACHE_SIZE = 4096


class PublicKeys:
    """Verifies signatures by peer id."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, PublicKey | None] = OrderedDict()

    def _key(self, peer_id: str) -> PublicKey | None:
        if peer_id in self._keys:
            self._keys.move_to_end(peer_id)
            return self._keys[peer_id]
        try:
            key = ID.from_base58(peer_id).extract_public_key()
        except Exception:  # not a peer id we can read: nothing verifies
            key = None
        self._keys[peer_id] = key
        while len(self._keys) > CACHE_SIZE:
            self._keys.popitem(last=False)
        return key

    def verify(self, peer_id: str, data: bytes, signature: bytes) -> bool:
        key = self._key(peer_id)
        if key is None:
            return False
        try:
            return bool(key.verify(data, signature))
        except Exception:  # malformed signature bytes
            return False
