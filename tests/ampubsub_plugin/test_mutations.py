"""Remote mutations on the memory transport (virtual time), and their rules.

The owner answers over the transport's direct request; the caller awaits a
PendingMutation (trio here; asyncio and threads in the process tests).
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import trio

from ampubsub_plugin import (
    CALLER_ARG,
    MutationArgsError,
    MutationDenied,
    MutationRateLimited,
    OwnerUnreachable,
    RemoteMutation,
    Topic,
)
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.mutations import (
    BURST,
    MutationPolicy,
    MutationServer,
    decode_reply,
    encode_request,
)
from asyncmachine import Machine, ReadOnlyError, Result, State, StateError, Transition

from .netutil import dispose_all, run, start_topic, until

SCHEMA = {"Foo": State(), "Bar": State(), "Baz": State(), "Secret": State()}


class CallerSeen:
    """A tracer on the owner's machine: the callers named in the args."""

    def __init__(self) -> None:
        self.callers: list[str] = []

    def transition_end(self, tx: Transition) -> None:
        caller = tx.mutation.args.get(CALLER_ARG)
        if caller:
            self.callers.append(caller)


async def owner_and_caller(**export: Any) -> tuple[Topic, Topic, Machine, Any]:
    net = MemoryNetwork(latency=0.005, seed=1)
    owner = await start_topic(net)
    worker = Machine(SCHEMA, id="worker", tags=["foo:1"])
    worker.export_to(owner, **export)
    caller = await start_topic(net, owner.addrs)
    await until([caller], lambda t: bool(t.list_machines(id="worker")))
    (remote,) = caller.list_machines(id="worker")
    return owner, caller, worker, remote


def test_a_permitted_add_returns_executed_and_shows_everywhere() -> None:
    async def main() -> None:
        owner, caller, worker, remote = await owner_and_caller(mutable_by="*")
        seen = CallerSeen()
        worker.bind_tracer(seen)
        with trio.fail_after(10):
            result = await remote.add_async("Bar", {"why": "test"})
        assert result is Result.EXECUTED
        assert worker.is_active("Bar")
        assert seen.callers == [caller.peer_id]
        await until([caller], lambda _: remote.is_active("Bar"))
        with trio.fail_after(10):
            assert await remote.remove_async("Bar") is Result.EXECUTED
            assert await remote.toggle_async("Foo") is Result.EXECUTED
            assert await remote.set_async(["Baz"]) is Result.EXECUTED
        assert worker.active_states == ["Baz"]
        await dispose_all([caller, owner])

    run(main)


def test_without_permission_it_is_denied_and_nothing_changes() -> None:
    async def main() -> None:
        owner, caller, worker, remote = await owner_and_caller()
        before = worker.time()
        with trio.fail_after(10), pytest.raises(MutationDenied) as denied:
            await remote.add_async("Bar")
        assert isinstance(denied.value, ReadOnlyError)
        assert worker.time() == before
        # on the topic's own trio thread the blocking form refuses at once
        with pytest.raises(ReadOnlyError, match="add_async"):
            remote.add("Bar")
        await dispose_all([caller, owner])

    run(main)


def test_mutable_by_peer_ids_and_states() -> None:
    async def main() -> None:
        owner, caller, worker, remote = await owner_and_caller(
            mutable_by=["12D3KooWsomeoneelse"], mutable_states=["Bar"]
        )
        with trio.fail_after(10), pytest.raises(MutationDenied, match="may not"):
            await remote.add_async("Bar")
        assert not worker.is_active("Bar")
        await dispose_all([caller, owner])

    run(main)


def test_a_callable_decides_and_limited_states_refuse_the_rest() -> None:
    async def main() -> None:
        asked: list[RemoteMutation] = []

        def judge(peer: str, mutation: RemoteMutation) -> bool:
            asked.append(mutation)
            return True

        owner, caller, worker, remote = await owner_and_caller(
            mutable_by=judge, mutable_states=["Bar", "Baz"]
        )
        with trio.fail_after(10):
            assert await remote.add_async(["Bar", "Baz"]) is Result.EXECUTED
            with pytest.raises(MutationDenied, match="not mutable: \\['Secret'\\]"):
                await remote.add_async("Secret")
            with pytest.raises(MutationDenied, match="set is refused"):
                await remote.set_async("Bar")
        assert not worker.is_active("Secret")
        assert asked[0].caller == caller.peer_id
        assert asked[0].kind == "add" and asked[0].states == ("Bar", "Baz")
        await dispose_all([caller, owner])

    run(main)


def test_bad_calls_fail_before_anything_is_sent() -> None:
    async def main() -> None:
        owner, caller, _, remote = await owner_and_caller(mutable_by="*")
        with pytest.raises(StateError):
            remote.add_async("Nope")
        with pytest.raises(MutationArgsError, match="msgpack"):
            remote.add_async("Bar", {"x": object()})
        assert owner.counters.get("direct_served", 0) == 0
        await dispose_all([caller, owner])

    run(main)


def test_the_owner_gone_is_a_clear_error() -> None:
    async def main() -> None:
        owner, caller, _, remote = await owner_and_caller(mutable_by="*")
        await dispose_all([owner])
        await until([caller], lambda _: not remote.is_connected)
        with trio.fail_after(10), pytest.raises(OwnerUnreachable, match="gone"):
            await remote.add_async("Bar")
        await dispose_all([caller])

    run(main)


def test_a_caller_over_its_rate_is_refused_over_the_network() -> None:
    async def main() -> None:
        owner, caller, worker, remote = await owner_and_caller(mutable_by="*")
        pendings = [remote.toggle_async("Foo") for _ in range(BURST + 5)]
        outcomes: list[object] = []
        with trio.fail_after(10):
            for pending in pendings:  # all sent at one (virtual) moment
                try:
                    outcomes.append(await pending)
                except MutationRateLimited as error:
                    outcomes.append(error)
        limited = [o for o in outcomes if isinstance(o, MutationRateLimited)]
        assert len(limited) >= 5, outcomes
        assert outcomes.count(Result.EXECUTED) <= BURST + 1
        assert owner.counters["mutation_rate_limited"] == len(limited)
        assert worker.tick("Foo") == outcomes.count(Result.EXECUTED)
        await dispose_all([caller, owner])

    run(main)


# -- the owner's rules, sans-IO ---------------------------------------------------


def request(kind: str = "add", states: list[str] | None = None, **extra: Any) -> bytes:
    body = {"v": 1, "op": kind, "m": "w", "i": 0, "s": states or ["Foo"], "a": {}}
    body.update(extra)
    return msgpack.packb(body)  # type: ignore[no-any-return]


def answer(server: MutationServer, data: bytes, caller: str = "p1") -> dict[str, Any]:
    reply: dict[str, Any] = msgpack.unpackb(server.handle(caller, data))
    return reply


def test_the_rate_limit_is_per_caller() -> None:
    now = [0.0]
    server = MutationServer(lambda: now[0])
    machine = Machine(SCHEMA, id="w")
    server.permit(0, machine, MutationPolicy.build(machine, "*", None))
    for _ in range(BURST):
        assert answer(server, request("toggle")) == {"r": 0}
    over = answer(server, request("toggle"))
    assert over["e"] == "rate"
    assert answer(server, request("toggle"), caller="p2") == {"r": 0}
    now[0] += 1.0  # a second later the caller has budget again
    assert answer(server, request("toggle")) == {"r": 0}
    assert server.counters["mutation_rate_limited"] == 1
    with pytest.raises(MutationRateLimited):
        decode_reply(msgpack.packb(over), "w", "owner")


def test_malformed_requests_are_answered_not_raised() -> None:
    server = MutationServer(lambda: 0.0)
    machine = Machine(SCHEMA, id="w")
    server.permit(0, machine, MutationPolicy.build(machine, "*", None))
    assert answer(server, b"\xc1")["e"] == "invalid"
    assert answer(server, request(v=2))["e"] == "invalid"
    assert answer(server, request(states="Foo"))["e"] == "invalid"
    assert answer(server, request(m="other"))["e"] == "denied"
    assert answer(server, request(states=["Nope"]))["e"] == "denied"
    assert machine.time() == [0, 0, 0, 0, 0]
    # a caller can't pretend to be someone else in the args
    seen = CallerSeen()
    machine.bind_tracer(seen)
    data = encode_request("w", 0, "add", ["Foo"], {CALLER_ARG: "forged"}, "owner")
    assert answer(server, data, caller="real") == {"r": 0}
    assert seen.callers == ["real"]


def test_export_options_are_checked() -> None:
    machine = Machine(SCHEMA, id="w")
    with pytest.raises(ValueError, match="unknown states"):
        MutationPolicy.build(machine, "*", ["Nope"])
    with pytest.raises(ValueError, match="needs mutable_by"):
        MutationPolicy.build(machine, None, ["Foo"])
    with pytest.raises(ValueError, match="wrap a peer id"):
        MutationPolicy.build(machine, "12D3KooWx", None)
    topic = Topic("t", transport=MemoryNetwork().transport())
    with pytest.raises(TypeError, match="no options but mutable_by"):
        machine.export_to(topic, mutable=True)
    machine.dispose()
