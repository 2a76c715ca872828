"""The pytest plugin (entry point ``pytest11``): options, markers, fixtures.

Import-light on purpose: every pytest run of a user who installed ampubsub
imports this module, so it imports neither trio nor py-libp2p; fixtures do,
when a test uses them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Sequence,
)
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pytest

from . import _settings as settings

if TYPE_CHECKING:
    from ._network import AsyncioNetwork, AsyncNetwork, Network

NETWORKS = pytest.StashKey[list[Any]]()
PREVIOUS = pytest.StashKey[settings.Settings]()

MARKER = (
    "ampubsub(peers=3, transport='memory'|'libp2p', machines=None, name=None, "
    "config=None, timeout=None): defaults for the ampubsub_network fixtures in this "
    "test; peers may also be given positionally: ampubsub(2)"
)
OPTIONS = ("peers", "transport", "machines", "name", "config", "timeout")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ampubsub", "ampubsub multi-peer state machine tests")
    group.addoption(
        "--ampubsub-timeout",
        default=None,
        metavar="SECONDS",
        help=f"seconds an eventually-check waits (default {settings.DEFAULT_TIMEOUT})",
    )
    group.addoption(
        "--ampubsub-transport",
        default=None,
        metavar="memory|libp2p",
        help="transport of ampubsub_network: memory (default) or libp2p",
    )
    group.addoption(
        "--ampubsub-report",
        default=None,
        metavar="short|full",
        help="what a failing check prints: short (default; full with -v) or full "
        "(every row, the protocol log of each peer)",
    )
    parser.addini(
        "ampubsub_report",
        help="what a failing check prints: short or full",
        default="short",
    )
    parser.addini(
        "ampubsub_timeout",
        help="seconds an eventually-check waits",
        default=str(settings.DEFAULT_TIMEOUT),
    )
    parser.addini(
        "ampubsub_transport",
        help="transport of ampubsub_network: memory or libp2p",
        default="memory",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    try:
        raw_timeout = config.getoption("ampubsub_timeout")
        timeout = (
            settings.parse_timeout(raw_timeout, "--ampubsub-timeout")
            if raw_timeout is not None
            else settings.parse_timeout(
                config.getini("ampubsub_timeout"), "ini ampubsub_timeout"
            )
        )
        raw_transport = config.getoption("ampubsub_transport")
        transport = (
            settings.parse_transport(raw_transport, "--ampubsub-transport")
            if raw_transport is not None
            else settings.parse_transport(
                config.getini("ampubsub_transport"), "ini ampubsub_transport"
            )
        )
        raw_report = config.getoption("ampubsub_report")
        if raw_report is not None:
            report = settings.parse_report(raw_report, "--ampubsub-report")
        elif config.get_verbosity() >= 1:
            report = "full"
        else:
            report = settings.parse_report(
                config.getini("ampubsub_report"), "ini ampubsub_report"
            )
    except ValueError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[PREVIOUS] = settings.current
    settings.current = settings.Settings(
        timeout=timeout, transport=transport, report=report
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    # an in-process run (pytester) must not leave its settings behind
    if PREVIOUS in config.stash:
        settings.current = config.stash[PREVIOUS]


def pytest_report_header(config: pytest.Config) -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"ampubsub: {version('ampubsub')} (libp2p {version('libp2p')}, "
        f"trio {version('trio')}); report={settings.current.report}, "
        f"transport={settings.current.transport}, timeout={settings.current.timeout:g}s"
    )


def _defaults(request: pytest.FixtureRequest, kwargs: dict[str, Any]) -> dict[str, Any]:
    marker = request.node.get_closest_marker("ampubsub")
    merged = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        if len(marker.args) > 1 or "peers" in marker.kwargs:
            raise TypeError(
                "the ampubsub marker takes at most one positional argument (peers), "
                f"got args {marker.args!r} and options {sorted(marker.kwargs)}"
            )
        merged["peers"] = marker.args[0]
    merged.update({k: v for k, v in kwargs.items() if v is not None})
    unknown = set(merged) - set(OPTIONS)
    if unknown:
        raise TypeError(f"ampubsub_network got unknown option(s) {sorted(unknown)}")
    if "transport" in merged:
        merged["transport"] = settings.parse_transport(merged["transport"], "transport")
    return merged


@pytest.fixture
def ampubsub_network(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Network]]:
    """A factory of started, connected, joined networks for sync tests.

    ``net = ampubsub_network(peers=3, transport="memory", machines=2)``; every
    network it made is closed after the test, failed or not.
    """
    from ._network import Network, refuse_blocking

    made: list[Network] = []

    def make(peers: int | None = None, **kwargs: Any) -> Network:
        refuse_blocking("ampubsub_network")
        options = _defaults(request, {"peers": peers, **kwargs})
        return Network(**options, track=_reported(request, made))

    yield make
    errors = []
    for net in made:
        try:
            net.close()
        except AssertionError as err:
            errors.append(err)
    if errors:
        raise errors[0]


@pytest.fixture
async def ampubsub_network_trio(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[..., Awaitable[AsyncNetwork]]]:
    """The async factory for trio tests (pytest-trio): ``await factory(peers=3)``.

    Its topics run on the test's own trio run and are closed in it.
    """
    from ._network import AsyncNetwork

    made: list[AsyncNetwork] = []

    async def make(peers: int | None = None, **kwargs: Any) -> AsyncNetwork:
        options = _defaults(request, {"peers": peers, **kwargs})
        return await AsyncNetwork.open(**options, track=_reported(request, made))

    yield make
    for net in made:
        await net.close()


class _Tracked(list[Any]):
    """Networks a fixture made: closed by it, and reported with the test."""

    def __init__(self, node: pytest.Item, made: list[Any]) -> None:
        super().__init__()
        self._node = node
        self._made = made

    def append(self, net: Any) -> None:
        self._made.append(net)
        _report_with(self._node, net)


def _reported(request: pytest.FixtureRequest, made: list[Any]) -> list[Any]:
    return _Tracked(request.node, made)


def _report_with(node: pytest.Item, net: Any) -> None:
    networks = node.stash.setdefault(NETWORKS, [])
    if all(net is not n for n in networks):
        networks.append(net)


@pytest.fixture(scope="session")
def ampubsub_network_factory() -> Iterator[Callable[..., Network]]:
    """Session-wide factory of sync networks for module- or session-scoped fixtures.

    ``net = ampubsub_network_factory(peers=3, transport="libp2p")`` in a
    wider-scoped fixture of your own; pair it with ``ampubsub_isolate`` so
    each test cleans up after itself. Networks still open are closed when
    the session ends. (No marker defaults here: there is no single test.)
    """
    from ._network import Network, refuse_blocking

    made: list[Network] = []

    def make(peers: int = 3, **kwargs: Any) -> Network:
        refuse_blocking("ampubsub_network_factory")
        unknown = set(kwargs) - set(OPTIONS)
        if unknown:
            raise TypeError(
                f"ampubsub_network_factory got unknown option(s) {sorted(unknown)}"
            )
        if "transport" in kwargs and kwargs["transport"] is not None:
            kwargs["transport"] = settings.parse_transport(
                kwargs["transport"], "transport"
            )
        return Network(peers, **kwargs, track=made)

    yield make
    for net in made:
        if any(not t.mach.is_disposed for t in net.topics):
            net.close()


@pytest.fixture
def ampubsub_isolate(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``ampubsub_isolate(shared_net)``: this test's isolated share of a network.

    Returns the network; after the test, the machines it exported are
    unexported and the peers it added leave (``Network.isolated``), and a
    failure of the test reports the network.
    """
    exits: list[contextlib.ExitStack] = []

    def isolate(net: Network, timeout: float | None = None) -> Network:
        stack = contextlib.ExitStack()
        stack.enter_context(net.isolated(timeout))
        exits.append(stack)
        _report_with(request.node, net)
        return net

    yield isolate
    for stack in reversed(exits):
        stack.close()


@pytest.fixture
def ampubsub_network_asyncio(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Awaitable[AsyncioNetwork]]]:
    """The async factory for asyncio tests (pytest-asyncio, anyio's asyncio backend).

    ``net = await ampubsub_network_asyncio(peers=3)``; checks are awaited on
    the test's loop while the topics run on the shared trio thread. A plain
    fixture on purpose: it needs no asyncio plugin's fixture decorator, and
    closes its networks after the loop stopped.
    """
    from ._network import AsyncioNetwork

    made: list[AsyncioNetwork] = []

    async def make(peers: int | None = None, **kwargs: Any) -> AsyncioNetwork:
        from ._trio_guard import in_live_trio_task

        if in_live_trio_task():
            raise RuntimeError(
                "ampubsub_network_asyncio is for asyncio; in trio tests "
                "(pytest-trio, anyio's trio backend) use ampubsub_network_trio"
            )
        options = _defaults(request, {"peers": peers, **kwargs})
        return await AsyncioNetwork.open(**options, track=_reported(request, made))

    yield make
    for net in made:
        net.close_blocking()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # a run abandoned outside our makereport (another plugin's hook, say)
    _finish_abandoned_trio_run()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    networks: list[Any] = item.stash.get(NETWORKS, [])
    texts: list[tuple[str, str]] = []
    failed = call.excinfo is not None and not call.excinfo.errisinstance(
        pytest.skip.Exception
    )
    if call.when == "call" and failed:
        for i, net in enumerate(networks):
            title = f"ampubsub network {i} ({net.name})"
            texts.append((title, net.last_report or net.report()))
        # junitxml (and any report consumer) gets the full report
        item.user_properties.extend(texts)
    report = yield
    if report.failed and settings.current.report == "full":
        report.sections.extend(texts)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except BaseException:
        if "trio" in sys.modules:
            # the report shows the networks as they were when the test died;
            # finishing an abandoned run closes them
            networks = item.stash.get(NETWORKS, [])
            for net in networks:
                net.last_report = net.last_report or net.report()
            _finish_abandoned_trio_run([net.close for net in networks])
        raise


def _finish_abandoned_trio_run(
    before: Sequence[Callable[[], Awaitable[Any]]] = (),
) -> None:
    """A trio test killed mid-wait (pytest-timeout) must fail alone."""
    if "trio" in sys.modules:
        from ._trio_guard import finish_abandoned_run

        finish_abandoned_run(before)


def pytest_sessionfinish(session: pytest.Session) -> None:
    runtime = sys.modules.get("ampubsub_plugin._runtime")
    if runtime is not None:
        runtime.SharedRuntime.shutdown()
