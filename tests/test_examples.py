"""Every example runs and prints what it promises (in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(name: str, *args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_core_quickstart() -> None:
    out = run("core_quickstart.py")
    assert "refused: CANCELED" in out
    assert "(Wet:1 Water:1 Ready:1) [Dry:0 Tick:0 Exception:0]" in out
    assert "dry in time: True (Dry:1)" in out


@pytest.mark.parametrize("transport", ["memory", "libp2p"])
def test_seed_usage(transport: str) -> None:
    out = run("seed_usage.py", "--transport", transport)
    assert "peer A exports: worker-1, worker-2, worker-3" in out
    assert "Bar set on worker-2: EXECUTED" in out
    assert "Baz active on worker-2: (Bar:1 Baz:1)" in out
    assert "worker-1 refuses:" in out and "not exported as mutable" in out


def test_supervisors() -> None:
    out = run("supervisors.py", "--transport", "memory")
    assert "client picked s-a1" in out
    assert "s-a1 is busy with our job: (Ready:1 Busy:1)" in out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("asyncio_app.py", "viewer saw the download finish: (Done:1)"),
        ("trio_app.py", "the phone knows the kettle is hot: (Heating:1 Hot:1)"),
    ],
)
@pytest.mark.parametrize("transport", ["memory", "libp2p"])
def test_async_programs(name: str, expected: str, transport: str) -> None:
    assert expected in run(name, "--transport", transport)


def test_three_processes_on_loopback() -> None:
    out = run("multiprocess.py", timeout=90)
    assert "watcher sees: ['proc0-w0', 'proc0-w1', 'proc1-w0', 'proc1-w1']" in out
    assert "Baz is active on all four remote workers" in out
    assert "their machines are disconnected" in out


def test_demo_command_converges_and_exits() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ampubsub_plugin.cli",
            "demo",
            "--peers",
            "3",
            "--machines",
            "2",
            "--seconds",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert "discovery: 4 remote machines per peer in" in result.stdout
    assert "update latency: p50" in result.stdout


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["peer", "--bootstrap", "/ip4/127.0.0.1/tcp/1"], "lacks the /p2p/", 2),
        (["watch", "--bootstrap", "/nope/1"], "not a multiaddr", 2),
        (
            ["peer", "--expose", "no_such_module:make"],
            "can't import 'no_such_module'",
            2,
        ),
        (["peer", "--expose", "json"], "wants module:function", 2),
        (["demo", "--peers", "1"], "--peers must be at least 2", 2),
        (["watch"], "needs at least one --bootstrap", 2),
        (
            [
                "watch",
                "--timeout",
                "20",
                "--bootstrap",
                "/ip4/127.0.0.1/tcp/1/p2p/"
                "12D3KooWLeGrKbEboBUCoceFmX3Rs1YRYbp6t7KSb19iHnnEj44p",
            ],
            "connecting",
            3,  # a network failure (docs/deployment.md, exit codes)
        ),
    ],
)
def test_cli_rejects_bad_input_with_one_line(
    args: list[str], message: str, code: int
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ampubsub_plugin.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_peer_and_watch_commands_talk_over_loopback() -> None:
    """`ampubsub peer` exports; `ampubsub watch` shows it; Ctrl-C says bye."""
    import signal

    peer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ampubsub_plugin.cli",
            "peer",
            "--topic",
            "cli-test",
            "--expose",
            "workers:make",
        ],
        cwd=EXAMPLES,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        lines = [peer.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("peer "), lines
        addr = lines[1].strip()
        assert addr.startswith("/ip4/127.0.0.1/tcp/") and "/p2p/" in addr
        assert "exporting 2 machine(s)" in lines[2]
        watch = subprocess.run(
            [
                sys.executable,
                "-m",
                "ampubsub_plugin.cli",
                "watch",
                "--topic",
                "cli-test",
                "--bootstrap",
                addr,
                "--seconds",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert watch.returncode == 0, watch.stderr
        assert "worker-0" in watch.stdout and "worker-1" in watch.stdout
        assert "Idle" in watch.stdout
        peer.send_signal(signal.SIGINT)
        out, err = peer.communicate(timeout=30)
        assert peer.returncode == 0, err
        assert "bye sent, disposed" in out
    finally:
        if peer.poll() is None:
            peer.kill()
