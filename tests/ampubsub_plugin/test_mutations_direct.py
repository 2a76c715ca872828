"""The transport's direct request, which remote mutations ride on: both transports.

Each case runs on the memory transport and on py-libp2p (127.0.0.1, mplex
and yamux), two transports serving in one trio run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from ampubsub_plugin.libp2p_transport import Libp2pTransport
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.transport import (
    DIRECT_MAX_REPLY,
    DIRECT_MAX_REQUEST,
    HANDLER_TIMED_OUT,
    DirectRefused,
    DirectTimeout,
    DirectUnreachable,
    Transport,
    TransportError,
)

Pair = tuple[Transport, Transport]


class Quiet:
    def on_message(self, sender: str, data: bytes) -> None:
        pass

    def on_peer_joined(self, peer_id: str) -> None:
        pass

    def on_peer_left(self, peer_id: str) -> None:
        pass


def make_pair(kind: str) -> Pair:
    if kind == "memory":
        net = MemoryNetwork()
        return net.transport(), net.transport()
    muxer = "yamux" if kind == "libp2p-yamux" else "mplex"
    return Libp2pTransport(muxer=muxer), Libp2pTransport(muxer=muxer)


@asynccontextmanager
async def serving(kind: str) -> AsyncIterator[Pair]:
    a, b = make_pair(kind)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve, Quiet())
        await nursery.start(b.serve, Quiet())
        await b.connect(a.addrs)
        yield a, b
        nursery.cancel_scope.cancel()


KINDS = ["memory", "libp2p", "libp2p-yamux"]


def run(body: Callable[[], object]) -> None:
    trio.run(body)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_gets_the_handlers_reply_and_the_callers_id(kind: str) -> None:
    async def main() -> None:
        async with serving(kind) as (a, b):
            callers: list[str] = []

            async def echo(caller: str, payload: bytes) -> bytes:
                callers.append(caller)
                return payload[::-1][:DIRECT_MAX_REPLY]

            a.serve_requests(echo)
            with trio.fail_after(10):
                assert await b.request(a.peer_id, b"hello", 5) == b"olleh"
                big = bytes(range(256)) * (DIRECT_MAX_REQUEST // 256)
                reply = await b.request(a.peer_id, big, 5)
                assert reply == big[::-1][:DIRECT_MAX_REPLY]
            assert callers == [b.peer_id, b.peer_id]

    run(main)


@pytest.mark.parametrize("kind", KINDS)
def test_refusals_timeouts_and_limits_are_named(kind: str) -> None:
    async def main() -> None:
        async with serving(kind) as (a, b):
            with trio.fail_after(10), pytest.raises(DirectRefused, match="no direct"):
                await b.request(a.peer_id, b"x", 5)

            async def fail(caller: str, payload: bytes) -> bytes:
                raise PermissionError("nope, not you")

            a.serve_requests(fail)
            with trio.fail_after(10), pytest.raises(DirectRefused, match="not you"):
                await b.request(a.peer_id, b"x", 5)

            async def slow(caller: str, payload: bytes) -> bytes:
                await trio.sleep_forever()
                raise AssertionError

            a.serve_requests(slow)
            started = trio.current_time()
            with trio.fail_after(10), pytest.raises(DirectTimeout):
                await b.request(a.peer_id, b"x", 0.5)
            assert trio.current_time() - started < 3

            with pytest.raises(ValueError, match="over the"):
                await b.request(a.peer_id, bytes(DIRECT_MAX_REQUEST + 1), 5)

            async def echo(caller: str, payload: bytes) -> bytes:
                return payload

            a.serve_requests(echo)
            a.set_peer_filter(lambda peer: peer != b.peer_id)
            with trio.fail_after(10), pytest.raises(TransportError):
                await b.request(a.peer_id, b"x", 5)

    run(main)


@pytest.mark.parametrize("kind", KINDS)
def test_a_handler_past_the_servers_bound_is_refused_by_name(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every transport bounds a request's handler (``DIRECT_HANDLER_TIMEOUT``,
    shortened here) and refuses, naming why, while the caller still waits:
    a caller's patience is no reason for a server to work on forever."""
    from ampubsub_plugin import memory_transport
    from ampubsub_plugin._libp2p import direct

    bound = 0.3
    monkeypatch.setattr(direct, "HANDLER_TIMEOUT", bound)
    monkeypatch.setattr(memory_transport, "DIRECT_HANDLER_TIMEOUT", bound)

    async def main() -> None:
        async with serving(kind) as (a, b):
            cancelled: list[bool] = []

            async def slow(caller: str, payload: bytes) -> bytes:
                try:
                    await trio.sleep_forever()
                finally:
                    cancelled.append(True)
                raise AssertionError

            a.serve_requests(slow)
            started = trio.current_time()
            with trio.fail_after(10):
                with pytest.raises(DirectRefused, match=HANDLER_TIMED_OUT):
                    await b.request(a.peer_id, b"x", 5)
            assert bound <= trio.current_time() - started < 3
            assert cancelled == [True]

    run(main)


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_peer_is_unreachable(kind: str) -> None:
    async def main() -> None:
        async with serving(kind) as (_, b):
            ghost = make_pair(kind)[0].peer_id
            with trio.fail_after(10), pytest.raises(DirectUnreachable):
                await b.request(ghost, b"x", 5)

    run(main)


def test_a_libp2p_peer_that_doesnt_serve_the_protocol_is_unreachable() -> None:
    """The caller proposes the protocol with its request in one write (rule 1
    of ``_libp2p/direct.py``); a host without the handler answers ``na``."""
    from ampubsub_plugin._libp2p.direct import PROTOCOL

    async def main() -> None:
        async with serving("libp2p") as (a, b):
            assert isinstance(a, Libp2pTransport)
            host = a._running().host

            async def echo(caller: str, payload: bytes) -> bytes:
                return payload

            a.serve_requests(echo)
            host.remove_stream_handler(PROTOCOL)
            with (
                trio.fail_after(10),
                pytest.raises(DirectUnreachable, match="doesn't serve"),
            ):
                await b.request(a.peer_id, b"x", 5)
            # only that stream was refused: the connection serves the next one
            a._direct.attach(host)
            with trio.fail_after(10):
                assert await b.request(a.peer_id, b"again", 5) == b"again"
            assert b.connection_count() == 1

    run(main)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"\x13/multistream/9.9.9\n", "not a multistream-select header"),
        (b"\x13/multistream/1.0.0\n\x04nope", "not an answer to our proposal"),
        (b"\x13/multistream/1.0.0\n\xff\xff\x03", "exceeds"),  # a huge "echo"
        (b"\x13/multistream/1.0.0\n", "ended while reading"),  # cut short
    ],
    ids=["header", "answer", "oversized", "cut-short"],
)
def test_a_server_that_lies_about_the_negotiation_is_refused(
    answer: bytes, error: str
) -> None:
    """What a lying or broken server sends back instead of the echoes fails
    the request with an error naming it, and is never buffered whole."""
    from ampubsub_plugin._libp2p.direct import _read_echoes

    class Replayed:  # a stream that replays ``answer``, then ends
        def __init__(self) -> None:
            self.data = answer

        async def read(self, n: int = -1) -> bytes:
            size = len(self.data) if n < 0 else n
            chunk, self.data = self.data[:size], self.data[size:]
            return chunk

    async def main() -> None:
        with pytest.raises(Exception, match=error):
            await _read_echoes(Replayed())  # type: ignore[arg-type]

    run(main)


@pytest.mark.parametrize("kind", ["libp2p", "libp2p-yamux"])
def test_a_flood_of_requests_is_refused_past_the_limit_and_the_server_lives(
    kind: str,
) -> None:
    """Many requests at once from one caller: at most MAX_SERVING handlers
    run, the rest are refused at once by name (not left to time out), and
    the server answers normally afterwards."""
    from ampubsub_plugin._libp2p.direct import MAX_SERVING

    async def main() -> None:
        async with serving(kind) as (a, b):
            release = trio.Event()
            running = 0
            most = 0

            async def held(caller: str, payload: bytes) -> bytes:
                nonlocal running, most
                running += 1
                most = max(most, running)
                await release.wait()
                running -= 1
                return payload

            a.serve_requests(held)
            flood = 3 * MAX_SERVING
            outcomes: list[str] = []
            all_refused = trio.Event()

            async def ask(i: int) -> None:
                try:
                    await b.request(a.peer_id, b"%d" % i, 30)
                    outcomes.append("ok")
                except DirectRefused as err:
                    outcomes.append("busy" if "busy" in str(err) else repr(err))
                if len(outcomes) == flood - MAX_SERVING:
                    all_refused.set()

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for i in range(flood):
                        nursery.start_soon(ask, i)
                    # every request past the limit comes back refused first
                    await all_refused.wait()
                    assert outcomes == ["busy"] * (flood - MAX_SERVING)
                    release.set()
            assert most == MAX_SERVING
            assert outcomes.count("ok") == MAX_SERVING
            with trio.fail_after(10):
                assert await b.request(a.peer_id, b"after", 5) == b"after"

    run(main)
