"""Tests of pytest_ampubsub, the pytest plugin, through pytester.

pytester is enabled here by registering it in ``pytest_configure`` rather
than with ``pytest_plugins = ["pytester"]``: pytest 9 refuses
``pytest_plugins`` in a conftest below the rootdir whenever the whole suite
runs (``pytest`` with ``testpaths = ["tests"]``), and the root conftest is
not ours to edit. Registered this way, pytester's options get their defaults
and its fixtures are available to every test in this folder.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")
