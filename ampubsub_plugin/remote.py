"""RemoteMachine: a read-only view of a machine exported by another peer.

It is an asyncmachine ``Machine`` in every checking and waiting method (the
same code, so ``remote.when("Foo")`` behaves like a local waiter), fed by
clocks from the network instead of mutations. Its identity is the owner's:
``id``, ``tags`` and ``parent_id`` are what the owner exported; ``peer_id``
and ``index`` say where it lives.

Mutations raise ``ReadOnlyError``, unless the view belongs to a topic (then
it can ask the owner, see ``mutations.py``): ``add/remove/set/toggle`` send
a request to the owner and block this thread for its ``Result`` (raising
:class:`~ampubsub_plugin.mutations.MutationDenied`, a ``ReadOnlyError``,
where the owner doesn't permit it); ``add_async`` and the others return a
:class:`~ampubsub_plugin.mutations.PendingMutation` to ``await`` (asyncio or
trio) or ``wait()``. On the topic's own trio thread, where blocking would
stall the network, only the ``*_async`` forms work.

The owner's clock only grows, so a clock is applied only when its time sum
is greater than the one shown; an older or equal one changes nothing. That
makes applying idempotent and order-independent, whichever peer relays it.

When the owner is gone (it said bye, went silent, or un-exported the
machine), the view is shown disconnected and its pending waiters end at
once with :class:`OwnerGone`: ``wait()`` returns False, ``await`` raises it,
``waiter.outcome`` is ``Outcome.CANCELLED``. A waiter made while the view is
disconnected ends the same way, unless the last clock shown already meets
it. Once the owner speaks again (revived), new waiters wait as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from time import monotonic as _monotonic
from typing import TYPE_CHECKING, Any, NoReturn

from asyncmachine import (
    Machine,
    Names,
    ReadOnlyError,
    Result,
    State,
    StateError,
    Transition,
    Waiter,
    WaiterCancelled,
)

if TYPE_CHECKING:
    from .mutations import Kind, MutationClient, PendingMutation


class OwnerGone(WaiterCancelled):
    """A remote machine's owner is gone, so its waiter can't be met any more.

    Raised by ``await`` on a remote waiter (and left in ``waiter.reason`` for
    threads) when the owner said bye or was shown disconnected. ``machine_id``
    and ``peer_id`` name the machine and its owner.
    """

    def __init__(self, machine_id: str, peer_id: str) -> None:
        super().__init__(
            f"the owner of remote machine {machine_id!r} (peer {peer_id}) is gone"
        )
        self.machine_id = machine_id
        self.peer_id = peer_id


def remote_schema(
    states: list[str], schema: Mapping[str, State] | None
) -> dict[str, State]:
    """The owner's schema in its state order; relations to absent states dropped.

    Lenient on purpose: a remote schema is data to display, not rules to run.
    """
    present = set(states)
    result: dict[str, State] = {}
    for name in states:
        spec = (schema or {}).get(name) or State()
        result[name] = State(
            require=[s for s in spec.require if s in present],
            add=[s for s in spec.add if s in present],
            remove=[s for s in spec.remove if s in present and s != name],
            after=[s for s in spec.after if s in present and s != name],
            auto=spec.auto,
            multi=spec.multi,
            tags=spec.tags,
        )
    return result


class RemoteMachine(Machine):
    """A machine of another peer, as last heard of."""

    def __init__(
        self,
        *,
        peer_id: str,
        index: int,
        id: str,
        states: list[str],
        schema: Mapping[str, State] | None,
        time: list[int],
        tags: Iterable[str] = (),
        parent_id: str = "",
        schema_hash: str | None = None,
    ) -> None:
        if len(time) != len(states):
            raise ValueError(
                f"remote machine {id!r}: {len(states)} states but {len(time)} ticks"
            )
        self._setup(remote_schema(states, schema), id, tags, parent_id or None)
        self.peer_id = peer_id
        self.index = index
        self.schema_hash = schema_hash
        #: False while only the state names are known (schema still to come)
        self.has_schema = schema is not None
        self._connected = True
        #: set by the topic: how to ask the owner for mutations
        self._mutations: MutationClient | None = None
        self._time_sum = 0
        self.updated_at = _monotonic()
        self._show(time)

    def __repr__(self) -> str:
        where = f"{self.peer_id[-6:]}#{self.index}"
        status = "" if self._connected else " disconnected"
        return f"<RemoteMachine {self.id}@{where}{status} {self}>"

    @property
    def is_connected(self) -> bool:
        """False once its peer said bye or went silent for too long."""
        return self._connected and not self.is_disposed

    @property
    def time_sum(self) -> int:
        return self._time_sum

    # -- fed by the topic (inside its machine's handlers) ----------------------

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected

    def _owner_gone(self) -> None:
        """Shown disconnected: pending waiters end with :class:`OwnerGone`."""
        self._connected = False
        self._cancel_waiters(OwnerGone(self.id, self.peer_id))

    def _release_waiters(self) -> None:
        """Release pending waiters unmet (our own topic is going away)."""
        self._cancel_waiters(None)

    def _waiter(
        self,
        description: str,
        states: tuple[str, ...] | None,
        check: Callable[[Transition | None], bool],
    ) -> Waiter:
        waiter = super()._waiter(description, states, check)
        # registered first, so an owner gone meanwhile is never missed
        if not self._connected and not waiter.done:
            waiter.cancel(OwnerGone(self.id, self.peer_id))
        return waiter

    def _apply_time(self, time: list[int]) -> bool:
        """Show a newer clock; False (and nothing changes) unless its sum grew.

        Sums only grow for one machine, so this is idempotent and independent
        of the order clocks arrive in. Which clocks to believe is the
        protocol's decision, made before a clock gets here.
        """
        if len(time) != len(self.state_names) or sum(time) <= self._time_sum:
            return False
        if self.is_disposed:
            return False
        self._show(time)
        self.updated_at = _monotonic()
        return True

    def _set_schema(self, schema: Mapping[str, State], schema_hash: str | None) -> None:
        """The schema arrived after the machine (it had been sent by hash)."""
        self._show_time(self.time(), remote_schema(self.state_names, schema))
        self.schema_hash = schema_hash or self.schema_hash
        self.has_schema = True

    def _show(self, time: list[int]) -> None:
        self._time_sum = sum(time)
        self._show_time(list(time))

    # -- read-only -----------------------------------------------------------

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise ReadOnlyError(
            f"machine {self.id!r} belongs to peer {self.peer_id}; "
            "remote machines are read-only"
        )

    def mutate(
        self,
        kind: Kind,
        states: Names,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> PendingMutation:
        """Ask the owner to ``add``/``remove``/``set``/``toggle``; returns at once.

        ``StateError`` for a state this machine lacks, ``MutationArgsError``
        for args msgpack can't carry (both before anything is sent), and
        ``ReadOnlyError`` when this view isn't on a topic.
        """
        from .mutations import DEFAULT_TIMEOUT, KINDS

        client = self._mutations
        if client is None:
            self._refuse()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        names = [states] if isinstance(states, str) else list(states)
        unknown = [n for n in names if n not in self.state_names]
        if unknown:
            raise StateError(f"machine {self.id!r} has no states {unknown}")
        wait = DEFAULT_TIMEOUT if timeout is None else timeout
        if not wait > 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        return client.call(self, kind, names, args, wait)

    def _mutate_blocking(
        self, kind: Kind, states: Names, args: dict[str, Any] | None
    ) -> Result:
        from .mutations import DEFAULT_TIMEOUT

        client = self._mutations
        if client is None:
            self._refuse()
        if client.in_runtime():
            raise ReadOnlyError(
                f"machine {self.id!r} is read-only from the topic's trio thread (a "
                f"remote {kind} would block it); use `await remote.{kind}_async(...)`"
            )
        return self.mutate(kind, states, args).wait(DEFAULT_TIMEOUT + 5)

    def add(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        return self._mutate_blocking("add", states, args)

    def remove(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        return self._mutate_blocking("remove", states, args)

    def set(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        return self._mutate_blocking("set", states, args)

    def toggle(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        return self._mutate_blocking("toggle", states, args)

    def add_async(
        self, states: Names, args: dict[str, Any] | None = None
    ) -> PendingMutation:
        return self.mutate("add", states, args)

    def remove_async(
        self, states: Names, args: dict[str, Any] | None = None
    ) -> PendingMutation:
        return self.mutate("remove", states, args)

    def set_async(
        self, states: Names, args: dict[str, Any] | None = None
    ) -> PendingMutation:
        return self.mutate("set", states, args)

    def toggle_async(
        self, states: Names, args: dict[str, Any] | None = None
    ) -> PendingMutation:
        return self.mutate("toggle", states, args)

    def add_err(self, exc: BaseException, args: dict[str, Any] | None = None) -> Result:
        self._refuse()

    def add_err_state(
        self, state: str, exc: BaseException, args: dict[str, Any] | None = None
    ) -> Result:
        self._refuse()

    def can_add(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        self._refuse()

    def can_remove(self, states: Names, args: dict[str, Any] | None = None) -> Result:
        self._refuse()

    def bind(self, handlers: object) -> str:
        raise ReadOnlyError(
            f"remote machine {self.id!r} runs no handlers; wait on its states instead"
        )

    def when_args(self, state: str, args: Mapping[str, Any]) -> Any:
        raise ReadOnlyError(
            f"remote machine {self.id!r}: mutation args do not travel over the network"
        )

    def export_to(self, target: object, **opts: Any) -> Any:
        raise ReadOnlyError(f"remote machine {self.id!r} can't be exported again")

    def set_schema(self, schema: Mapping[str, State]) -> None:
        raise ReadOnlyError(
            f"remote machine {self.id!r}: its schema is its owner's (it follows it)"
        )

    def set_groups(self, groups: Mapping[str, Names]) -> None:
        raise ReadOnlyError(f"remote machine {self.id!r}: its groups are its owner's")

    def eval(self, fn: Callable[[], object], timeout: float | None = None) -> bool:
        raise ReadOnlyError(
            f"remote machine {self.id!r} has no queue of its own to run code on"
        )
