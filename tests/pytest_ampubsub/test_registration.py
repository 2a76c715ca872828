"""The plugin is found through its pytest11 entry point, and imports lightly."""

from __future__ import annotations

import sys
from importlib import metadata

import pytest

from .helpers import LEAK_CONFTEST, run, threads_left, version


def test_pytest11_entry_point_names_the_plugin_module() -> None:
    found = [
        ep for ep in metadata.entry_points(group="pytest11") if ep.name == "ampubsub"
    ]
    assert [ep.value for ep in found] == ["pytest_ampubsub.plugin"]


def test_trace_config_shows_the_plugin_loaded(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fixture_is_there(ampubsub_network):
            assert callable(ampubsub_network)
        """
    )
    result = run(pytester, "--trace-config")
    result.stdout.fnmatch_lines(
        [
            "PLUGIN registered: <module 'pytest_ampubsub.plugin' from '*plugin.py'>",
            f"plugins: *ampubsub-{version('ampubsub')}*",
        ]
    )
    result.assert_outcomes(passed=1)


def test_disabling_the_entry_point_removes_the_fixtures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_uses_it(ampubsub_network):
            pass
        """
    )
    result = run(pytester, "-p", "no:ampubsub")
    result.stdout.fnmatch_lines(["*fixture 'ampubsub_network' not found*"])
    result.assert_outcomes(errors=1)


def test_importing_the_plugin_imports_neither_trio_nor_libp2p(
    pytester: pytest.Pytester,
) -> None:
    code = (
        "import sys\n"
        "import pytest_ampubsub.plugin, pytest_ampubsub\n"
        "heavy = ('trio', 'libp2p', 'ampubsub_plugin.topic',\n"
        "         'pytest_ampubsub._network')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
        "print('LOADED', 'pytest_ampubsub.plugin' in sys.modules)\n"
    )
    result = pytester.run(sys.executable, "-c", code, timeout=30)
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["HEAVY []", "LOADED True"])


def test_a_session_not_using_the_fixtures_starts_no_network(
    pytester: pytest.Pytester,
) -> None:
    """The plugin is loaded into every session; unused, it costs nothing."""
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(
        """
        import sys

        def test_plain():
            assert "libp2p" not in sys.modules
            assert "ampubsub_plugin.topic" not in sys.modules
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert threads_left(result) == ["MainThread"]


def test_report_header_names_libp2p_and_trio_versions(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester)
    result.stdout.fnmatch_lines(
        [
            f"ampubsub: {version('ampubsub')} (libp2p {version('libp2p')}, "
            f"trio {version('trio')}); report=short, transport=memory, timeout=10s",
        ]
    )


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.ampubsub(peers=2)
        def test_marked(ampubsub_network):
            assert len(ampubsub_network()) == 2
        """
    )
    listed = run(pytester, "--markers")
    listed.stdout.fnmatch_lines(
        [
            "@pytest.mark.ampubsub(peers=3, transport='memory'|'libp2p', "
            "machines=None, name=None, config=None, timeout=None):*"
        ]
    )
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=1)
