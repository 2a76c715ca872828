"""Listen addresses checked and announced; py-libp2p's failures in our words."""

from __future__ import annotations

import errno
import socket

import multiaddr  # type: ignore[import-untyped]
import pytest

from ampubsub_plugin._libp2p.addresses import (
    check_can_listen,
    expand_unspecified,
    interface_ips,
)
from ampubsub_plugin._libp2p.errors import Problem, classify, explain


def test_unspecified_addresses_become_this_hosts_ips() -> None:
    ips = interface_ips(4)
    assert "127.0.0.1" in ips and ips[-1] == "127.0.0.1"  # loopback last
    out = [
        str(a)
        for a in expand_unspecified([multiaddr.Multiaddr("/ip4/0.0.0.0/tcp/4001")])
    ]
    assert out == [f"/ip4/{ip}/tcp/4001" for ip in ips]
    quic = multiaddr.Multiaddr("/ip4/0.0.0.0/udp/9/quic-v1")
    assert all(str(a).endswith("/udp/9/quic-v1") for a in expand_unspecified([quic]))
    fixed = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/5")
    assert expand_unspecified([fixed]) == [fixed]
    for ip in interface_ips(6):
        assert not ip.startswith("fe80")  # link-local needs a zone: left out


def test_a_taken_port_and_a_foreign_ip_are_refused() -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        with pytest.raises(OSError) as info:
            check_can_listen([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{port}")])
        assert info.value.errno == errno.EADDRINUSE
        assert f"/ip4/127.0.0.1/tcp/{port}" in str(info.value)
        assert classify(info.value) is Problem.ADDRESS_IN_USE
    finally:
        busy.close()
    with pytest.raises(OSError) as info:
        check_can_listen([multiaddr.Multiaddr("/ip4/203.0.113.7/tcp/0")])
    assert classify(info.value) is Problem.ADDRESS_NOT_LOCAL
    check_can_listen([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")])  # free: fine


class Wrapper(Exception):
    pass


class PeerIDMismatchesPubkey(Exception):  # named as py-libp2p's
    pass


def wrapped(inner: BaseException) -> BaseException:
    """inner, buried as py-libp2p buries it: a cause inside a group inside a cause."""
    try:
        try:
            raise ExceptionGroup("nursery", [inner])
        except ExceptionGroup as group:
            raise Wrapper("unable to connect") from group
    except Wrapper as outer:
        return outer


def test_failures_are_found_deep_in_the_chain() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert classify(wrapped(refused)) is Problem.REFUSED
    line = explain(wrapped(refused), "/ip4/127.0.0.1/tcp/1/p2p/X")
    assert line.startswith("/ip4/127.0.0.1/tcp/1/p2p/X: nothing is listening there;")
    assert "\n" not in line
    mismatch = PeerIDMismatchesPubkey("remote_peer_id_from_pubkey=12D3KooWabc")
    assert "a different peer answered (12D3KooWabc)" in explain(wrapped(mismatch), "a")
    unknown = RuntimeError("something\nodd")
    assert explain(wrapped(unknown), "a").startswith("a: something odd;")


def test_a_hang_with_a_psk_is_reported_as_a_key_mismatch() -> None:
    hang = wrapped(TimeoutError())
    assert classify(hang) is Problem.TIMEOUT
    assert classify(hang, psk=True) is Problem.PSK_MISMATCH
    assert "same PSK" in explain(hang, "a", psk=True)
