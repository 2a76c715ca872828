"""mDNS between two network namespaces the test creates and removes.

Two namespaces joined by a veth pair (10.77.x.1 and 10.77.x.2, a multicast
route on each side): a peer in one announces itself, ``watch --mdns`` in the
other finds it with no bootstrap address and shows its machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from .cliutil import run, start_peer

pytestmark = pytest.mark.skipif(
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


def test_two_peers_in_two_namespaces_find_each_other_by_mdns(
    two_namespaces: tuple[str, str],
) -> None:
    a, b = two_namespaces
    peer = start_peer(
        "--mdns",
        "--listen",
        "/ip4/0.0.0.0/tcp/0",
        "--demo",
        "1",
        "--id-prefix",
        "nsa",
        ns=a,
    )
    try:
        assert all("/10.77." in x or "/127.0.0.1/" in x for x in peer.addrs)
        ran = run(
            "watch",
            "--mdns",
            "--listen",
            "/ip4/0.0.0.0/tcp/0",
            "--once",
            "--json",
            "--timeout",
            "30",
            ns=b,
        )
        assert ran.code == 0, ran
        picture = json.loads(ran.out)
        assert [m["id"] for m in picture["machines"]] == ["nsa-worker0"]
        assert picture["peers"][0]["address"].startswith("/ip4/10.77.")
    finally:
        peer.proc.kill()
