"""--ampubsub-timeout / --ampubsub-transport, their ini twins, and the marker."""

from __future__ import annotations

import pytest

from .helpers import elapsed, run, write_ini

TIMES_OUT = """
    import time

    from asyncmachine import Machine, State
    from pytest_ampubsub import eventually


    def test_network_check(ampubsub_network):
        net = ampubsub_network(peers=2)
        Machine({"Foo": State()}, id="worker").export_to(net[0])
        started = time.monotonic()
        try:
            net.assert_eventually_active("worker", "Foo")
        finally:
            print(f"ELAPSED network {time.monotonic() - started:.3f}")


    def test_free_eventually():
        def never():
            assert False, "still false"

        started = time.monotonic()
        try:
            eventually(never)
        finally:
            print(f"ELAPSED free {time.monotonic() - started:.3f}")
"""


@pytest.mark.parametrize(
    ("args", "ini"),
    [
        pytest.param(["--ampubsub-timeout", "0.5"], [], id="option"),
        pytest.param([], ["ampubsub_timeout = 0.5"], id="ini"),
        pytest.param(
            ["--ampubsub-timeout", "0.5"], ["ampubsub_timeout = 30"], id="option-wins"
        ),
    ],
)
def test_timeout_setting_changes_the_default_timeout(
    pytester: pytest.Pytester, args: list[str], ini: list[str]
) -> None:
    write_ini(pytester, *ini)
    pytester.makepyfile(TIMES_OUT)
    result = run(pytester, *args)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "ampubsub: * timeout=0.5s",
            "E * worker Foo active: not met after 0.5?s "
            "(waiting for Foo active on peer *)",
            "E * not met after 0.5?s and * attempts: still false",
        ]
    )
    for label in ("network", "free"):
        assert 0.45 <= elapsed(result, label) < 3.0


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        pytest.param(
            ["--ampubsub-timeout", "abc"],
            [],
            "ERROR: --ampubsub-timeout must be a number of seconds, got 'abc'",
            id="timeout-abc",
        ),
        pytest.param(
            ["--ampubsub-timeout", "-1"],
            [],
            "ERROR: --ampubsub-timeout must be > 0 seconds, got '-1'",
            id="timeout-negative",
        ),
        pytest.param(
            ["--ampubsub-timeout", "0"],
            [],
            "ERROR: --ampubsub-timeout must be > 0 seconds, got '0'",
            id="timeout-zero",
        ),
        pytest.param(
            ["--ampubsub-transport", "tcp"],
            [],
            "ERROR: --ampubsub-transport must be one of memory, libp2p, got 'tcp'",
            id="transport-tcp",
        ),
        pytest.param(
            [],
            ["ampubsub_timeout = soon"],
            "ERROR: ini ampubsub_timeout must be a number of seconds, got 'soon'",
            id="ini-timeout",
        ),
        pytest.param(
            [],
            ["ampubsub_transport = quic"],
            "ERROR: ini ampubsub_transport must be one of memory, libp2p, got 'quic'",
            id="ini-transport",
        ),
    ],
)
def test_bad_values_are_usage_errors_listing_what_is_allowed(
    pytester: pytest.Pytester, args: list[str], ini: list[str], message: str
) -> None:
    write_ini(pytester, *ini)
    pytester.makepyfile("def test_never_runs(): pass")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*test_never_runs*")


# Transport precedence: call > marker > option > ini > default ("memory").
# Each case is arranged so that the winner is "memory" and the loser
# "libp2p", so no libp2p peer is started here (see test_libp2p.py for that).
PRECEDENCE = """
    import pytest

    from ampubsub_plugin import MemoryTransport


    def memory(net):
        assert net.transport == "memory"
        assert all(isinstance(t.transport, MemoryTransport) for t in net)


    @pytest.mark.ampubsub(transport="memory")
    def test_marker_beats_run_setting(ampubsub_network):
        memory(ampubsub_network(peers=1))


    @pytest.mark.ampubsub(transport="libp2p")
    def test_call_beats_marker(ampubsub_network):
        memory(ampubsub_network(peers=1, transport="memory"))
"""


def test_marker_and_call_override_the_run_transport(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(PRECEDENCE)
    result = run(pytester, "--ampubsub-transport", "libp2p", "--strict-markers", "-v")
    result.stdout.fnmatch_lines(["ampubsub: * transport=libp2p, timeout=10s"])
    result.assert_outcomes(passed=2)


def test_option_beats_ini_transport(pytester: pytest.Pytester) -> None:
    write_ini(pytester, "ampubsub_transport = libp2p")
    pytester.makepyfile(
        """
        def test_run_setting(ampubsub_network):
            assert ampubsub_network(peers=1).transport == "memory"
        """
    )
    result = run(pytester, "--ampubsub-transport", "memory")
    result.stdout.fnmatch_lines(["ampubsub: * transport=memory, timeout=10s"])
    result.assert_outcomes(passed=1)


def test_ini_transport_reaches_the_run_setting(pytester: pytest.Pytester) -> None:
    write_ini(pytester, "ampubsub_transport = libp2p", "ampubsub_timeout = 2.5")
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    result.stdout.fnmatch_lines(["ampubsub: * transport=libp2p, timeout=2.5s"])


MARKER = """
    import pytest


    @pytest.mark.ampubsub(peers=2, machines=1)
    def test_marker_sets_peers_and_machines(ampubsub_network):
        net = ampubsub_network()
        assert len(net) == 2
        assert [[m.id for m in t.exported] for t in net] == [["p0-m0"], ["p1-m0"]]
        assert len(ampubsub_network(peers=1)) == 1  # the call wins


    @pytest.mark.ampubsub(transprt="memory")
    def test_misspelt_marker_option(ampubsub_network):
        ampubsub_network()


    @pytest.mark.ampubsub(transport="tcp")
    def test_unknown_transport_in_marker(ampubsub_network):
        ampubsub_network()
"""


def test_marker_options_and_their_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MARKER)
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "E * TypeError: ampubsub_network got unknown option(s) *'transprt'*",
            "E * ValueError: transport must be one of memory, libp2p, got 'tcp'",
        ]
    )
