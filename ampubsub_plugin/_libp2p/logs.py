"""Our logger, and py-libp2p's logging kept off the application's root logger.

Rules:

1. The transport logs to ``ampubsub.libp2p`` (:data:`log`) only.
2. Importing the transport must not change the application's logging: no
   handler appears on the root logger, nothing is printed by
   ``logging.lastResort``. Two py-libp2p habits are corrected here, once, at
   import (with ``LIBP2P_DEBUG`` set, libp2p installs its own handlers, which
   still work).
3. The chatty dependencies (multiaddr, zeroconf) log at WARNING and up
   unless the application set their level itself.
"""

from __future__ import annotations

import logging

from libp2p.network.connection import swarm_connection as _swarm_connection

log = logging.getLogger("ampubsub.libp2p")

# libp2p's logger has no handler and doesn't propagate, so its warnings go to
# logging.lastResort (bare lines on stderr). A NullHandler silences that
# without touching the application's root logger. (With LIBP2P_DEBUG set,
# libp2p installs its own handlers, which still work.)
_libp2p_logger = logging.getLogger("libp2p")
if not any(isinstance(h, logging.NullHandler) for h in _libp2p_logger.handlers):
    _libp2p_logger.addHandler(logging.NullHandler())
# One module logs through the root logger (``logging.debug(...)`` at
# libp2p/network/connection/swarm_connection.py:92 and others), and the first
# such call runs logging.basicConfig(): a stderr handler appears on the
# application's root logger. Route that module's calls to its own libp2p
# logger instead (it only uses logging.debug and logging.warning).
if getattr(_swarm_connection, "logging", None) is logging:
    setattr(  # noqa: B010 - a module global, replaced on purpose
        _swarm_connection, "logging", logging.getLogger(_swarm_connection.__name__)
    )

#: Loggers of py-libp2p's dependencies that log every address parsed at
#: DEBUG (multiaddr: ~90% of a DEBUG log). Set to WARNING unless the
#: application chose a level for them (then theirs stands).
QUIET_LOGGERS = ("multiaddr", "zeroconf")
for _name in QUIET_LOGGERS:
    _quiet = logging.getLogger(_name)
    if _quiet.level == logging.NOTSET:
        _quiet.setLevel(logging.WARNING)
