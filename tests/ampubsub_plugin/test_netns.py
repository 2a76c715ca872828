"""Two hosts for real: two network namespaces the tests create and remove.

Two namespaces joined by a veth pair (10.77.x.1 and 10.77.x.2, a multicast
route on each side) stand for two hosts on one LAN. A peer in namespace A
listens on 0.0.0.0; from namespace B, ``watch`` finds it by mDNS (no
address given) or dials the address it printed over QUIC, and
``Topic(..., mdns=True)`` finds it too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .cliutil import Peer, run, start_peer

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network namespaces need root and iproute2 (ip netns)",
)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    tag = secrets.token_hex(3)
    a, b = f"amp-a-{tag}", f"amp-b-{tag}"
    net = int(tag[:2], 16)
    ip("netns", "add", a)
    try:
        ip("netns", "add", b)
        try:
            ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
            for ns, dev, host in ((a, f"va{tag}", 1), (b, f"vb{tag}", 2)):
                ip("link", "set", dev, "netns", ns)
                ip("-n", ns, "addr", "add", f"10.77.{net}.{host}/24", "dev", dev)
                ip("-n", ns, "link", "set", "lo", "up")
                ip("-n", ns, "link", "set", dev, "up")
                ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
            yield a, b
        finally:
            ip("netns", "del", b)  # takes the veth pair with it
    finally:
        ip("netns", "del", a)


def peer_in(ns: str, listen: str, *more: str) -> Peer:
    """A demo peer (one machine, ``nsa-worker0``) in namespace ``ns``."""
    peer = start_peer(
        "--listen", listen, "--demo", "1", "--id-prefix", "nsa", *more, ns=ns
    )
    # on 0.0.0.0 it prints the namespace's addresses, never 0.0.0.0
    assert peer.addrs and all("/10.77." in x or "/127.0.0.1/" in x for x in peer.addrs)
    return peer


def watch_once(ns: str, *args: str) -> dict[str, Any]:
    ran = run("watch", *args, "--once", "--json", "--timeout", "30", ns=ns)
    assert ran.code == 0, ran
    picture: dict[str, Any] = json.loads(ran.out)
    return picture


@needs_netns
def test_two_peers_in_two_namespaces_find_each_other_by_mdns(
    two_namespaces: tuple[str, str],
) -> None:
    a, b = two_namespaces
    peer = peer_in(a, "/ip4/0.0.0.0/tcp/0", "--mdns")
    try:
        picture = watch_once(b, "--mdns", "--listen", "/ip4/0.0.0.0/tcp/0")
        assert [m["id"] for m in picture["machines"]] == ["nsa-worker0"]
        (seen,) = picture["peers"]
        assert seen["address"].startswith("/ip4/10.77.")
    finally:
        peer.proc.kill()


@needs_netns
def test_quic_between_two_namespaces(two_namespaces: tuple[str, str]) -> None:
    a, b = two_namespaces
    peer = peer_in(a, "/ip4/0.0.0.0/udp/0/quic-v1")
    try:
        (outside,) = [x for x in peer.addrs if "/10.77." in x]
        assert "/udp/" in outside and "/quic-v1/" in outside
        picture = watch_once(b, "--bootstrap", outside)
        assert [m["id"] for m in picture["machines"]] == ["nsa-worker0"]
    finally:
        peer.proc.kill()


TOPIC_PROGRAM = """
import sys
from ampubsub_plugin import Topic
topic = Topic("ampubsub-demo", listen=["/ip4/0.0.0.0/tcp/0"], mdns=True)
topic.start()
topic.mach.when("Connected").wait(30)
topic.join()
found = topic.mach.when_query(
    lambda _: [r.id for r in topic.list_machines()] == ["nsa-worker0"]
).wait(30)
print("found" if found else "not found", flush=True)
topic.dispose().wait(5)
sys.exit(0 if found else 1)
"""


@needs_netns
def test_topic_with_mdns_true_finds_a_peer_in_another_namespace(
    two_namespaces: tuple[str, str],
) -> None:
    a, b = two_namespaces
    peer = peer_in(a, "/ip4/0.0.0.0/tcp/0", "--mdns")
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", b, sys.executable, "-c", TOPIC_PROGRAM],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "found"
    finally:
        peer.proc.kill()


def test_mdns_with_a_transport_of_ones_own_is_refused() -> None:
    from ampubsub_plugin import Topic
    from ampubsub_plugin.memory_transport import MemoryNetwork

    with pytest.raises(ValueError, match="mdns=True makes its own transport"):
        Topic("t", transport=MemoryNetwork().transport(), mdns=True)
