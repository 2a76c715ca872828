"""The ``ampubsub`` command run as a real subprocess: errors, addresses, watch."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from ampubsub_plugin.cli import Exit

from .cliutil import Peer, run, start_peer

NOBODY = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"


@pytest.fixture
def demo_peer() -> object:
    peers: list[Peer] = []

    def start(*args: str) -> Peer:
        peer = start_peer(*args)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.proc.kill()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_version_everywhere() -> None:
    for args in (["--version"], ["watch", "--version"], ["peer", "--version"]):
        ran = run(*args)
        assert ran.code == 0
        assert ran.out.startswith("ampubsub "), ran


def test_a_refused_dial_is_one_line_within_the_timeout() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{NOBODY}"
    # generous: the clock counts the process's start too, slow on a busy machine
    ran = run("watch", "--bootstrap", addr, "--timeout", "20")
    assert ran.code == Exit.NETWORK
    line = one_line(ran.err)
    assert line.startswith("ampubsub watch: connecting")
    assert addr in line and "nothing is listening there" in line
    assert len(line) > 80  # not wrapped though not a terminal
    assert ran.seconds < 20 + 1, ran.seconds


def test_a_malformed_address_is_a_usage_error() -> None:
    ran = run("peer", "--bootstrap", "/ip4/127.0.0.1/tcp/1")
    assert ran.code == Exit.USAGE
    assert "lacks the /p2p/<peer id> part" in one_line(ran.err)
    ran = run("peer", "--listen", "/ip9/nope")
    assert ran.code == Exit.USAGE
    assert "not a multiaddr" in one_line(ran.err)


def test_an_ip_of_another_host_is_refused() -> None:
    ran = run("peer", "--listen", "/ip4/203.0.113.7/tcp/0", "--timeout", "10")
    assert ran.code == Exit.NETWORK
    assert "that IP address is not on this host" in one_line(ran.err)


def test_a_port_in_use_is_refused() -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        ran = run("peer", "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--timeout", "10")
    finally:
        busy.close()
    assert ran.code == Exit.NETWORK
    line = one_line(ran.err)
    assert f"/ip4/127.0.0.1/tcp/{port}" in line and "already in use" in line


def test_a_peer_on_0000_prints_dialable_addresses(demo_peer: object) -> None:
    peer = demo_peer("--listen", "/ip4/0.0.0.0/tcp/0", "--demo", "2")  # type: ignore[operator]
    assert peer.addrs
    assert not any("/0.0.0.0/" in a for a in peer.addrs), peer.addrs
    assert all("/p2p/" in a for a in peer.addrs)
    for addr in peer.addrs:  # every printed address is dialled and answers
        ran = run("watch", "--bootstrap", addr, "--once", "--json")
        assert ran.code == 0, ran
        picture = json.loads(one_line(ran.out))
        assert picture["peer_count"] == 1
        assert sorted(m["id"] for m in picture["machines"]) == [
            f"{socket.gethostname()}-worker{i}" for i in range(2)
        ]


def test_quic_between_two_processes(demo_peer: object) -> None:
    peer = demo_peer(  # type: ignore[operator]
        "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--demo", "1", "--id-prefix", "q"
    )
    (addr,) = peer.addrs
    assert "/quic-v1/" in addr
    ran = run("watch", "--bootstrap", addr, "--once", "--json")
    assert ran.code == 0, ran
    picture = json.loads(one_line(ran.out))
    assert [m["id"] for m in picture["machines"]] == ["q-worker0"]
    assert "/udp/" in picture["peers"][0]["address"]


def test_watch_filters_and_ticks(demo_peer: object) -> None:
    peer = demo_peer("--demo", "3", "--id-prefix", "f", "--interval", "0.2")  # type: ignore[operator]
    ran = run(
        "watch", "--bootstrap", peer.addrs[0], "--once", "--json", "--id", "worker1$"
    )
    assert ran.code == 0, ran
    picture = json.loads(one_line(ran.out))
    (machine,) = picture["machines"]
    (seen,) = picture["peers"]
    assert 0 <= seen["last_heard_age"] < 30  # its updates reached us just now
    assert machine["id"] == "f-worker1"
    assert machine["ticks"]["Healthy"] == 1
    assert set(machine["active"]) <= set(machine["ticks"])
    ran = run("watch", "--bootstrap", peer.addrs[0], "--once", "--json", "--tag", "x")
    assert json.loads(one_line(ran.out))["machines"] == []


def test_watch_on_a_wrong_topic_says_so(demo_peer: object) -> None:
    peer = demo_peer("--demo", "1")  # type: ignore[operator]
    ran = run(
        "watch", "--bootstrap", peer.addrs[0], "--topic", "nope", "--timeout", "15"
    )
    assert ran.code == Exit.NOTHING_FOUND
    line = one_line(ran.err)
    assert "nobody on topic 'nope'" in line and "'ampubsub-demo'" in line


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text: str = answer.read().decode()
        return text


def test_metrics_port_serves_counters_and_convergence_lag(demo_peer: object) -> None:
    a = demo_peer("--demo", "1", "--id-prefix", "a", "--metrics-port", "0")  # type: ignore[operator]
    b = demo_peer("--demo", "1", "--id-prefix", "b", "--bootstrap", a.addrs[0])  # type: ignore[operator]
    assert a.metrics is not None
    b_id = b.addrs[0].rsplit("/p2p/", 1)[1]
    # wait for b's machine on a (watch exits once it sees it), then scrape
    ran = run("watch", "--bootstrap", a.addrs[0], "--once", "--json", "--id", "^b-")
    assert ran.code == 0
    text = scrape(a.metrics)
    assert 'ampubsub_counter{name="out_updates",topic="ampubsub-demo"}' in text
    assert 'ampubsub_machines{kind="exported",topic="ampubsub-demo"} 1.0' in text
    lag = [
        line
        for line in text.splitlines()
        if line.startswith("ampubsub_convergence_lag_seconds{") and b_id in line
    ]
    assert len(lag) == 1, text
    assert 0 <= float(lag[0].rsplit(" ", 1)[1]) < 30


def test_debug_logging_leaves_multiaddr_out() -> None:
    program = (
        "import logging, multiaddr;"
        "logging.basicConfig(level=logging.DEBUG);"
        "import ampubsub_plugin.libp2p_transport as t;"
        "t.Libp2pTransport(['/ip4/127.0.0.1/tcp/0']);"
        "str(multiaddr.Multiaddr('/ip4/127.0.0.1/tcp/1/p2p/" + NOBODY + "'));"
        "logging.getLogger('ampubsub.libp2p').debug('ours')"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "ampubsub.libp2p:ours" in done.stderr
    assert "multiaddr" not in done.stderr


FACTORY = """
import threading
from asyncmachine import Machine, State

def make(stop):
    schema = {"A": State(remove=["B"]), "B": State(remove=["A"])}
    m = Machine(schema, id="made", tags=["mine"])
    def flip():
        while not stop.wait(0.2):
            m.add("B" if m.is_active("A") else "A")
    threading.Thread(target=flip, daemon=True).start()
    return [m]
"""


def test_peer_exports_a_factory_that_changes_its_machines(
    demo_peer: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "myfactory.py").write_text(FACTORY)
    monkeypatch.chdir(tmp_path)  # the factory's module is found from the cwd
    peer = demo_peer("--expose", "myfactory:make")  # type: ignore[operator]
    ticks = []
    for _ in range(2):  # two pictures: the machine moved between them
        ran = run("watch", "--bootstrap", peer.addrs[0], "--once", "--json")
        assert ran.code == 0, ran
        (machine,) = json.loads(one_line(ran.out))["machines"]
        assert machine["id"] == "made" and machine["tags"] == ["mine"]
        ticks.append(sum(machine["ticks"].values()))
    assert ticks[1] > ticks[0]
