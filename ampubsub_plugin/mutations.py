"""Remote mutations: asking an owner to mutate its machine, and its answer.

Rules:

1. Opt-in by the owner, per export: ``machine.export_to(topic,
   mutable_by=..., mutable_states=...)``. ``mutable_by`` is ``"*"``
   (anyone the topic lets in), peer ids, or a callable ``(peer_id,
   RemoteMutation) -> bool``; ``mutable_states`` limits the states a caller
   may name (and then ``set``, which touches every state, is refused).
   Without ``mutable_by`` a machine stays read-only.
2. A request goes to the owner alone, over the transport's direct request
   (never broadcast), as msgpack: ``{"v": 1, "op", "m" (machine id), "i"
   (index), "s" (states), "a" (args)}``. The reply is ``{"r": Result}`` or
   ``{"e": reason, "msg": text}``.
3. The owner checks, in order: the machine (index and id) is exported and
   mutable, the caller is permitted, the caller is within its rate
   (:data:`RATE` per second, bursts of :data:`BURST`, per caller), the
   states exist and are mutable. Then it mutates its machine like a local
   caller would (queued if the machine is busy) and answers with the
   ``Result``. The args gain :data:`CALLER_ARG`, the caller's peer id (so
   handlers and tracers see who asked; a caller can't set it itself).
4. The caller sees the owner's ``Result``, or one of: :class:`MutationDenied`
   (also for a rate limit: :class:`MutationRateLimited`), :class:`OwnerUnreachable`
   (gone before or during the call), :class:`MutationTimeout`,
   :class:`MutationArgsError` (args msgpack can't carry; raised before
   anything is sent). All are :class:`RemoteMutationError`; MutationDenied
   is also a ``ReadOnlyError``: for that caller the machine is read-only.

The owner's side (:class:`MutationServer`) is sans-IO: bytes in, bytes out.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack  # type: ignore[import-untyped]

from asyncmachine import Machine, ReadOnlyError, Result, Waiter

from ._gossip.pacing import TokenBucket

log = logging.getLogger("ampubsub.mutations")

Kind = Literal["add", "remove", "set", "toggle"]
KINDS: tuple[Kind, ...] = ("add", "remove", "set", "toggle")

#: the args key the owner sets to the caller's peer id
CALLER_ARG = "ampubsub_caller"
#: requests per second and burst, per caller (rule 3)
RATE = 20.0
BURST = 40
#: callers whose budgets are kept (least recently seen forgotten first)
MAX_CALLERS = 4096
#: how long a caller waits for the owner's answer by default (seconds)
DEFAULT_TIMEOUT = 10.0
#: longest error text carried back
MAX_REASON = 500


# -- errors (rule 4) ------------------------------------------------------------


class RemoteMutationError(Exception):
    """A remote mutation failed; ``machine_id`` and ``peer_id`` name where."""

    def __init__(self, machine_id: str, peer_id: str, message: str) -> None:
        super().__init__(f"machine {machine_id!r} of peer {peer_id}: {message}")
        self.machine_id = machine_id
        self.peer_id = peer_id


class MutationDenied(RemoteMutationError, ReadOnlyError):
    """The owner refused: not permitted, not mutable, or an unknown state."""


class MutationRateLimited(MutationDenied):
    """The owner refused: this caller is over its rate."""


class OwnerUnreachable(RemoteMutationError):
    """The owner can't be reached, or went away mid-call."""


class MutationTimeout(RemoteMutationError, TimeoutError):
    """No answer from the owner in time (the mutation may still happen)."""


class MutationArgsError(RemoteMutationError, ValueError):
    """The args can't travel (msgpack can't encode them); nothing was sent."""


# -- what a request is -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteMutation:
    """One request, as the owner's ``mutable_by`` callable sees it."""

    caller: str
    machine_id: str
    kind: Kind
    states: tuple[str, ...]
    args: dict[str, Any] = field(default_factory=dict)


MutableBy = Literal["*"] | Iterable[str] | Callable[[str, RemoteMutation], bool]


@dataclass(frozen=True, slots=True)
class MutationPolicy:
    """Who may mutate one exported machine, and which states (rule 1)."""

    peers: frozenset[str] | None  # None: anyone, or the callable decides
    test: Callable[[str, RemoteMutation], bool] | None
    states: frozenset[str] | None

    @classmethod
    def build(
        cls,
        machine: Machine,
        mutable_by: MutableBy | None,
        mutable_states: Iterable[str] | None,
    ) -> MutationPolicy | None:
        """The policy for an export; None: read-only. ``ValueError`` if bad."""
        if mutable_by is None:
            if mutable_states is not None:
                raise ValueError("mutable_states needs mutable_by")
            return None
        states: frozenset[str] | None = None
        if mutable_states is not None:
            if isinstance(mutable_states, str):
                mutable_states = [mutable_states]
            states = frozenset(mutable_states)
            unknown = sorted(states - set(machine.state_names))
            if unknown:
                raise ValueError(
                    f"mutable_states of {machine.id!r}: unknown states {unknown}"
                )
        if mutable_by == "*":
            return cls(None, None, states)
        if isinstance(mutable_by, str):
            raise ValueError(
                "mutable_by takes '*', a list of peer ids or a callable, not the "
                f"string {mutable_by!r}; wrap a peer id in a list"
            )
        if callable(mutable_by):
            return cls(None, mutable_by, states)
        peers = list(mutable_by)
        bad = [p for p in peers if not isinstance(p, str) or not p]
        if bad:
            raise ValueError(f"mutable_by: not peer ids: {bad!r}")
        return cls(frozenset(peers), None, states)

    def permits(self, mutation: RemoteMutation) -> bool:
        if self.peers is not None and mutation.caller not in self.peers:
            return False
        if self.test is not None:
            try:
                return bool(self.test(mutation.caller, mutation))
            except Exception:
                log.warning("mutable_by raised: refused", exc_info=True)
                return False
        return True


# -- the wire (rule 2) ---------------------------------------------------------------


def encode_request(
    machine_id: str,
    index: int,
    kind: Kind,
    states: list[str],
    args: dict[str, Any] | None,
    peer_id: str,
) -> bytes:
    """The request's bytes; :class:`MutationArgsError` if args can't travel."""
    if args is not None and not isinstance(args, dict):
        raise MutationArgsError(
            machine_id, peer_id, f"args must be a dict, not {type(args).__name__}"
        )
    body: dict[str, Any] = {"v": 1, "op": kind, "m": machine_id, "i": index}
    body["s"], body["a"] = states, dict(args or {})
    try:
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as error:
        raise MutationArgsError(
            machine_id, peer_id, f"args can't be sent (msgpack: {error})"
        ) from error


def _reply(**body: Any) -> bytes:
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_reply(data: bytes, machine_id: str, peer_id: str) -> Result:
    """The owner's answer: a ``Result``, or the error it names (rule 4)."""
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as error:
        raise OwnerUnreachable(
            machine_id, peer_id, f"a reply that isn't msgpack: {error}"
        ) from None
    if not isinstance(body, dict):
        raise OwnerUnreachable(machine_id, peer_id, "a malformed reply")
    if "r" in body:
        try:
            return Result(body["r"])
        except ValueError:
            raise OwnerUnreachable(
                machine_id, peer_id, f"an unknown result {body['r']!r}"
            ) from None
    reason, text = body.get("e"), str(body.get("msg", ""))[:MAX_REASON]
    if reason == "rate":
        raise MutationRateLimited(machine_id, peer_id, text)
    raise MutationDenied(machine_id, peer_id, text or str(reason))


# -- the owner's side (sans-IO) -------------------------------------------------


class MutationServer:
    """The owner: mutable exports, per-caller budgets, requests -> replies."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._exports: dict[int, tuple[Machine, MutationPolicy]] = {}
        self._budgets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.counters: dict[str, int] = {}

    def permit(
        self, index: int, machine: Machine, policy: MutationPolicy | None
    ) -> None:
        """Make the export at ``index`` mutable under ``policy`` (None: read-only)."""
        if policy is None:
            self._exports.pop(index, None)
        else:
            self._exports[index] = (machine, policy)

    def forget(self, index: int) -> None:
        self._exports.pop(index, None)

    @property
    def active(self) -> bool:
        return bool(self._exports)

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def handle(self, caller: str, data: bytes) -> bytes:
        """One request in, its reply out (rule 3); never raises."""
        try:
            body = msgpack.unpackb(data, raw=False, strict_map_key=True)
            machine_id, index = str(body["m"]), int(body["i"])
            kind, states, args = body["op"], body["s"], body.get("a") or {}
            if body.get("v") != 1 or kind not in KINDS:
                raise ValueError(f"unknown request {body.get('v')!r}/{kind!r}")
            if not isinstance(states, list) or not all(
                isinstance(s, str) for s in states
            ):
                raise ValueError("states must be a list of str")
            if not isinstance(args, dict):
                raise ValueError("args must be a map")
        except Exception as error:
            self._count("mutation_bad_request")
            return _reply(e="invalid", msg=f"a malformed request: {error}"[:MAX_REASON])
        entry = self._exports.get(index)
        if entry is None or entry[0].id != machine_id or entry[0].is_disposed:
            self._count("mutation_denied")
            return _reply(e="denied", msg="not exported as mutable here")
        machine, policy = entry
        mutation = RemoteMutation(caller, machine_id, kind, tuple(states), args)
        if not policy.permits(mutation):
            self._count("mutation_denied")
            return _reply(e="denied", msg=f"peer {caller} may not mutate it")
        if not self._spend(caller):
            self._count("mutation_rate_limited")
            return _reply(e="rate", msg=f"peer {caller} is over {RATE:g} requests/s")
        unknown = [s for s in states if s not in machine.state_names]
        if unknown:
            self._count("mutation_denied")
            return _reply(e="denied", msg=f"unknown states {unknown}")
        if policy.states is not None:
            if kind == "set":
                self._count("mutation_denied")
                return _reply(
                    e="denied", msg="set is refused: only some states are mutable"
                )
            closed = sorted(set(states) - policy.states)
            if closed:
                self._count("mutation_denied")
                return _reply(e="denied", msg=f"states not mutable: {closed}")
        args = dict(args)
        args[CALLER_ARG] = caller
        result = getattr(machine, kind)(states, args)
        self._count("mutation_done")
        return _reply(r=int(result))

    def _spend(self, caller: str) -> bool:
        budget = self._budgets.get(caller)
        if budget is None:
            budget = self._budgets[caller] = TokenBucket(RATE, BURST)
            while len(self._budgets) > MAX_CALLERS:
                self._budgets.popitem(last=False)
        else:
            self._budgets.move_to_end(caller)
        now = self._clock()
        if not budget.available(now):
            return False
        budget.spend(now, 1)
        return True


# -- the caller's side ----------------------------------------------------------------


class PendingMutation:
    """A remote mutation on its way: ``wait()`` in threads, ``await`` in async code.

    Both give the owner's ``Result`` or raise the error of rule 4; ``await``
    works under asyncio and trio alike (it is a :class:`Waiter` underneath).
    """

    def __init__(self, description: str) -> None:
        self._done = Waiter(description)
        self._result: Result | None = None
        self._error: RemoteMutationError | None = None
        self.description = description

    def __repr__(self) -> str:
        state = "done" if self._done.done else "pending"
        return f"<PendingMutation {self.description} {state}>"

    @property
    def done(self) -> bool:
        return self._done.done

    def _resolve(self, result: Result) -> None:
        self._result = result
        self._done.complete()

    def _fail(self, error: RemoteMutationError) -> None:
        self._error = error
        self._done.complete()

    def _outcome(self) -> Result:
        if self._error is not None:
            raise self._error.with_traceback(None)
        assert self._result is not None
        return self._result

    def wait(self, timeout: float | None = None) -> Result:
        """Block this thread for the answer; ``TimeoutError`` if none in ``timeout``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self.description}: no answer within {timeout} s")
        return self._outcome()

    def __await__(self) -> Any:
        return self._wait_async().__await__()

    async def _wait_async(self) -> Result:
        await self._done
        return self._outcome()


class MutationClient:
    """A topic's caller side: requests out over ``send``, answers into pendings.

    ``send(peer_id, payload, timeout)`` is the transport's direct request;
    ``spawn(fn, *args)`` starts a task on the topic's trio run (False when
    the topic isn't running); ``in_runtime()`` says whether this thread is
    that run's (where blocking for an answer would deadlock).
    """

    def __init__(
        self,
        send: Callable[[str, bytes, float], Any],
        spawn: Callable[..., bool],
        in_runtime: Callable[[], bool],
    ) -> None:
        self._send = send
        self._spawn = spawn
        self.in_runtime = in_runtime

    def call(
        self,
        remote: Any,
        kind: Kind,
        states: list[str],
        args: dict[str, Any] | None,
        timeout: float,
    ) -> PendingMutation:
        """Start one request; raises only for args that can't travel."""
        machine_id, peer_id = remote.id, remote.peer_id
        payload = encode_request(machine_id, remote.index, kind, states, args, peer_id)
        pending = PendingMutation(f"{kind} {states} on {machine_id}@{peer_id[-6:]}")
        if not remote.is_connected:
            pending._fail(OwnerUnreachable(machine_id, peer_id, "the owner is gone"))
            return pending
        if not self._spawn(
            self._request, pending, machine_id, peer_id, payload, timeout
        ):
            pending._fail(
                OwnerUnreachable(machine_id, peer_id, "this topic is not running")
            )
        return pending

    async def _request(
        self,
        pending: PendingMutation,
        machine_id: str,
        peer_id: str,
        payload: bytes,
        timeout: float,
    ) -> None:
        from .transport import (
            DirectClosed,
            DirectRefused,
            DirectTimeout,
            TransportError,
        )

        error: RemoteMutationError
        try:
            reply = await self._send(peer_id, payload, timeout)
        except DirectTimeout:
            error = MutationTimeout(
                machine_id, peer_id, f"no answer within {timeout:g} s"
            )
        except DirectClosed as failure:
            error = OwnerUnreachable(
                machine_id, peer_id, f"the owner went away mid-call ({failure})"
            )
        except DirectRefused as failure:
            error = MutationDenied(machine_id, peer_id, str(failure))
        except TransportError as failure:
            error = OwnerUnreachable(machine_id, peer_id, str(failure))
        except BaseException:
            pending._fail(
                OwnerUnreachable(machine_id, peer_id, "this topic stopped mid-call")
            )
            raise
        else:
            try:
                pending._resolve(decode_reply(reply, machine_id, peer_id))
            except RemoteMutationError as failure:
                pending._fail(failure)
            return
        pending._fail(error)
