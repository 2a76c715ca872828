"""Private-network keys (libp2p "pnet"): reading them, and naming a mismatch.

Rules:

1. A key is exactly 32 bytes. It is given either as those bytes or as the
   path of a key file in the usual libp2p swarm-key format::

       /key/swarm/psk/1.0.0/
       /base16/
       <64 hex digits>

   Anything else is a ``ValueError`` naming what was wrong (never the key).
2. py-libp2p wraps every TCP connection in Salsa20 under the key
   (``security/pnet``). Peers with different keys, or one without a key,
   see each other's bytes as noise: the handshake neither completes nor
   fails, it hangs. :class:`PskMismatchError` is what a dial reports instead,
   once the connection opened and the handshake did not complete in time.
3. The key itself is never logged or shown; :func:`psk_fingerprint` (a short
   hash) is what messages may show.

py-libp2p's pnet uses an 8-byte nonce where go-libp2p uses 24: a py-libp2p
private network does not interoperate with a go-libp2p one.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from ..transport import PskMismatchError

__all__ = [
    "PSK_SIZE",
    "PskMismatchError",
    "format_swarm_key",
    "load_psk",
    "new_swarm_key",
    "parse_swarm_key",
    "psk_fingerprint",
    "read_swarm_key",
]

#: The key length pnet takes (Salsa20's key).
PSK_SIZE = 32

#: The two header lines of a swarm key file.
SWARM_KEY_HEADER = "/key/swarm/psk/1.0.0/"
SWARM_KEY_ENCODING = "/base16/"

#: A key file is three short lines; anything much bigger is not one.
MAX_KEY_FILE_SIZE = 4096


def load_psk(value: bytes | str | os.PathLike[str]) -> bytes:
    """The 32-byte key from raw bytes or a swarm-key file path."""
    if isinstance(value, bytes | bytearray | memoryview):
        key = bytes(value)
        if len(key) != PSK_SIZE:
            raise ValueError(
                f"a private-network key must be {PSK_SIZE} bytes, got {len(key)} "
                "(or pass the path of a swarm key file)"
            )
        return key
    if isinstance(value, str | os.PathLike):
        return read_swarm_key(Path(value))
    raise ValueError(
        "psk must be 32 bytes or the path of a swarm key file, "
        f"not {type(value).__name__}"
    )


def read_swarm_key(path: Path) -> bytes:
    """Parse a swarm key file; ``ValueError`` naming the file and the problem."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_KEY_FILE_SIZE + 1)
    except OSError as error:
        raise ValueError(f"can't read swarm key file {str(path)!r}: {error}") from error
    if len(raw) > MAX_KEY_FILE_SIZE:
        raise ValueError(f"swarm key file {str(path)!r} is too large to be a key")
    return parse_swarm_key(raw, str(path))


def parse_swarm_key(raw: bytes, source: str = "<key>") -> bytes:
    """The key in a swarm key file's text (see the module docstring)."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"swarm key {source!r} is not ASCII text") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 3 or lines[0] != SWARM_KEY_HEADER:
        raise ValueError(
            f"swarm key {source!r} must be three lines: {SWARM_KEY_HEADER!r}, "
            f"{SWARM_KEY_ENCODING!r} and 64 hex digits"
        )
    if lines[1] != SWARM_KEY_ENCODING:
        raise ValueError(
            f"swarm key {source!r}: only the {SWARM_KEY_ENCODING!r} encoding is "
            f"supported, not {lines[1]!r}"
        )
    digits = lines[2]
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"swarm key {source!r}: the key is not hex digits") from None
    if len(key) != PSK_SIZE:
        raise ValueError(
            f"swarm key {source!r}: the key must be {PSK_SIZE * 2} hex digits, "
            f"got {len(digits)}"
        )
    return key


def format_swarm_key(key: bytes) -> str:
    """A swarm key file's text for ``key``."""
    key = load_psk(key)
    return f"{SWARM_KEY_HEADER}\n{SWARM_KEY_ENCODING}\n{key.hex()}\n"


def new_swarm_key() -> bytes:
    """A fresh random key."""
    return secrets.token_bytes(PSK_SIZE)


def psk_fingerprint(key: bytes) -> str:
    """A short, one-way name for a key, safe to log."""
    return "psk:" + hashlib.sha256(b"ampubsub-psk" + key).hexdigest()[:12]
