"""Allow-lists: which peers a topic lets in.

Rules:

1. ``Topic(..., allow_peers=...)`` takes None (everyone), peer ids (any
   iterable of str; a single str is refused as ambiguous), or a callable
   ``peer_id -> bool``. The hook ``ampubsub_accept_peer`` can refuse more
   peers (False), never let in one ``allow_peers`` refuses.
2. A topic always accepts itself.
3. One predicate, :class:`PeerAllowList`, is asked everywhere: by the
   transport (connections closed, direct requests refused), by the inbound
   path (messages a refused peer authored are dropped and counted as
   ``drop_not_allowed``) and by the protocol core (infos about refused peers
   are ignored). It is called on the topic's trio thread, per message: a
   callable given must be fast and must not block. A callable that raises
   refuses (and is logged).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

log = logging.getLogger("ampubsub.allow")

#: What ``Topic(allow_peers=...)`` takes.
AllowPeers = Iterable[str] | Callable[[str], bool] | None


class PeerAllowList:
    """``allows(peer_id)``: the topic's allow-list and the plugins' veto."""

    __slots__ = ("_hook", "_ids", "_own", "_test")

    def __init__(
        self,
        allow_peers: AllowPeers,
        *,
        own: Callable[[], str],
        hook: Callable[[str], bool] | None = None,
    ) -> None:
        self._own = own
        self._hook = hook
        self._ids: frozenset[str] | None = None
        self._test: Callable[[str], bool] | None = None
        if allow_peers is None:
            pass
        elif isinstance(allow_peers, str | bytes):
            raise ValueError(
                "allow_peers takes a list of peer ids or a callable, not one "
                f"{type(allow_peers).__name__} ({allow_peers!r}); wrap it in a list"
            )
        elif callable(allow_peers):
            self._test = allow_peers
        else:
            ids = list(allow_peers)
            bad = [i for i in ids if not isinstance(i, str) or not i]
            if bad:
                raise ValueError(f"allow_peers: not peer ids: {bad!r}")
            self._ids = frozenset(ids)

    @property
    def restricted(self) -> bool:
        """Whether ``allow_peers`` was given (the hook may restrict anyway)."""
        return self._ids is not None or self._test is not None

    def __call__(self, peer_id: str) -> bool:
        if peer_id == self._own():
            return True
        if self._ids is not None and peer_id not in self._ids:
            return False
        if self._test is not None:
            try:
                if not self._test(peer_id):
                    return False
            except Exception:
                log.warning("allow_peers(%r) raised: refused", peer_id, exc_info=True)
                return False
        return self._hook is None or self._hook(peer_id)
