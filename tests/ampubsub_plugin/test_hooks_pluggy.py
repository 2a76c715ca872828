"""ampubsub hooks called through pluggy: wrappers, monitoring, fault isolation.

The facade tests drive :class:`TopicHooks` with a stand-in topic through the
real (guarded) plugin manager. The end-to-end tests run real topics, on the
memory transport in virtual time and on py-libp2p in real time; they pass
once topic.py calls its hooks through ``TopicHooks``.

Each test gets a fresh ampubsub plugin manager (the process-wide one is put
back afterwards) and leaves it empty: every plugin it registered, by hand or
by entry point, is unregistered.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections import Counter
from collections.abc import Generator, Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

import pluggy
import pytest
import trio

from ampubsub_plugin import hooks
from ampubsub_plugin.hooks import TopicHooks
from ampubsub_plugin.libp2p_transport import Libp2pTransport
from ampubsub_plugin.memory_transport import MemoryNetwork
from ampubsub_plugin.protocol import Info
from ampubsub_plugin.remote import RemoteMachine
from ampubsub_plugin.topic import Topic
from asyncmachine import Machine

from .netutil import dispose_all, run, start_topic, until, worker

hookimpl = hooks.hookimpl

HOOKS = [
    "ampubsub_peer_joined",
    "ampubsub_peer_left",
    "ampubsub_machine_discovered",
    "ampubsub_machine_updated",
    "ampubsub_machine_gone",
    "ampubsub_accept_remote",
    "ampubsub_accept_export",
]


# -- stand-ins and plugins -------------------------------------------------------


class StandInTopic:
    """All a facade does with its topic is hand it to the plugins."""

    def __repr__(self) -> str:
        return "<StandInTopic>"


STAND_IN = cast(Topic, StandInTopic())
REMOTE = cast(RemoteMachine, SimpleNamespace(id="w"))
INFO = cast(Info, SimpleNamespace(id="w"))
MACHINE = cast(Machine, SimpleNamespace(id="m"))


def facade(topic: Topic = STAND_IN) -> tuple[TopicHooks, Counter[str]]:
    counters: Counter[str] = Counter()
    return TopicHooks(topic, counters), counters


def call_every_hook(topic_hooks: TopicHooks) -> list[bool]:
    """Each facade method once, in the order of ``HOOKS``; the two verdicts."""
    topic_hooks.peer_joined("peer-1")
    topic_hooks.peer_left("peer-1")
    topic_hooks.machine_discovered(REMOTE)
    topic_hooks.machine_updated(REMOTE)
    topic_hooks.machine_gone(REMOTE)
    return [
        topic_hooks.accept_remote("peer-1", 0, INFO),
        topic_hooks.accept_export(MACHINE),
    ]


class Plain:
    """Records its tag (with the topic and the machine) on discovery."""

    def __init__(self, order: list[tuple[Any, ...]], tag: str = "plain") -> None:
        self.order = order
        self.tag = tag

    @hookimpl
    def ampubsub_machine_discovered(self, topic: Topic, remote: RemoteMachine) -> None:
        self.order.append((self.tag, topic, remote.id))


class TryFirst(Plain):
    @hookimpl(tryfirst=True)
    def ampubsub_machine_discovered(self, topic: Topic, remote: RemoteMachine) -> None:
        self.order.append((self.tag, topic, remote.id))


class TryLast(Plain):
    @hookimpl(trylast=True)
    def ampubsub_machine_discovered(self, topic: Topic, remote: RemoteMachine) -> None:
        self.order.append((self.tag, topic, remote.id))


class Wrapper:
    """A new-style wrapper around discovery: before, the others, after."""

    def __init__(self, order: list[tuple[Any, ...]]) -> None:
        self.order = order

    @hookimpl(wrapper=True)
    def ampubsub_machine_discovered(
        self, topic: Topic, remote: RemoteMachine
    ) -> Generator[None, list[object], list[object]]:
        self.order.append(("wrapper before", topic, remote.id))
        results = yield
        self.order.append(("wrapper after", topic, remote.id))
        return results


class OldStyleWrapper:
    """An old-style hookwrapper on accept_remote: it sees, and may force, the
    outcome."""

    def __init__(self, order: list[tuple[Any, ...]], force: bool | None) -> None:
        self.order = order
        self.force = force

    @hookimpl(hookwrapper=True)
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> Generator[None, pluggy.Result[bool | None], None]:
        self.order.append(("hookwrapper before", topic, info.id))
        outcome = yield
        self.order.append(("hookwrapper after", outcome.get_result()))
        if self.force is not None:
            outcome.force_result(self.force)


class Verdict:
    """Answers accept_remote with a fixed verdict (None: no opinion)."""

    def __init__(self, answer: bool | None, order: list[tuple[Any, ...]]) -> None:
        self.answer = answer
        self.order = order

    @hookimpl
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> bool | None:
        self.order.append(("verdict", self.answer))
        return self.answer


class TryFirstRefusal:
    @hookimpl(tryfirst=True)
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> bool | None:
        return False


class EveryHook:
    """Implements every hook; has no opinion on the accept hooks."""

    @hookimpl
    def ampubsub_peer_joined(self, topic: Topic, peer_id: str) -> None:
        pass

    @hookimpl
    def ampubsub_peer_left(self, topic: Topic, peer_id: str) -> None:
        pass

    @hookimpl
    def ampubsub_machine_discovered(self, topic: Topic, remote: RemoteMachine) -> None:
        pass

    @hookimpl
    def ampubsub_machine_updated(self, topic: Topic, remote: RemoteMachine) -> None:
        pass

    @hookimpl
    def ampubsub_machine_gone(self, topic: Topic, remote: RemoteMachine) -> None:
        pass

    @hookimpl
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> bool | None:
        return None

    @hookimpl
    def ampubsub_accept_export(self, topic: Topic, machine: Machine) -> bool | None:
        return None


class Faulty(EveryHook):
    """Raises in every hook."""

    def fail(self) -> Any:
        raise RuntimeError("faulty plugin")

    @hookimpl
    def ampubsub_peer_joined(self, topic: Topic, peer_id: str) -> None:
        self.fail()

    @hookimpl
    def ampubsub_peer_left(self, topic: Topic, peer_id: str) -> None:
        self.fail()

    @hookimpl
    def ampubsub_machine_discovered(self, topic: Topic, remote: RemoteMachine) -> None:
        self.fail()

    @hookimpl
    def ampubsub_machine_updated(self, topic: Topic, remote: RemoteMachine) -> None:
        self.fail()

    @hookimpl
    def ampubsub_machine_gone(self, topic: Topic, remote: RemoteMachine) -> None:
        self.fail()

    @hookimpl
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> bool | None:
        return cast(bool | None, self.fail())

    @hookimpl
    def ampubsub_accept_export(self, topic: Topic, machine: Machine) -> bool | None:
        return cast(bool | None, self.fail())


class FaultyWrapperBefore:
    @hookimpl(wrapper=True)
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> Generator[None, bool | None, bool | None]:
        raise RuntimeError("faulty wrapper, before its yield")
        return (yield)  # unreachable: the body is a generator


class FaultyWrapperAfter:
    @hookimpl(wrapper=True)
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> Generator[None, bool | None, bool | None]:
        yield
        raise RuntimeError("faulty wrapper, after its yield")


class WrapperWithoutYield:
    @hookimpl(wrapper=True)
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> Generator[None, bool | None, bool | None]:
        if info is not None:
            return True
        return (yield)


class FaultyHookwrapperBefore:
    @hookimpl(hookwrapper=True)
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> Generator[None, pluggy.Result[bool | None], None]:
        raise RuntimeError("faulty hookwrapper, before its yield")
        yield  # unreachable: the body is a generator


class FaultyHookwrapperAfter:
    @hookimpl(hookwrapper=True)
    def ampubsub_accept_remote(
        self, topic: Topic, peer_id: str, index: int, info: Info
    ) -> Generator[None, pluggy.Result[bool | None], None]:
        yield
        raise RuntimeError("faulty hookwrapper, after its yield")


class Monitor:
    """``pm.add_hookcall_monitoring``: what pluggy was asked to call."""

    def __init__(self, manager: pluggy.PluginManager) -> None:
        self.traced: list[tuple[str, str, Mapping[str, object]]] = []
        self.undo = manager.add_hookcall_monitoring(self.before, self.after)

    def before(
        self,
        hook_name: str,
        impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, object],
    ) -> None:
        self.traced.append(("before", hook_name, kwargs))

    def after(
        self,
        outcome: pluggy.Result[object],
        hook_name: str,
        impls: Sequence[pluggy.HookImpl],
        kwargs: Mapping[str, object],
    ) -> None:
        self.traced.append(("after", hook_name, kwargs))

    def names(self, when: str) -> list[str]:
        return [name for w, name, _ in self.traced if w == when]


# -- fixtures ---------------------------------------------------------------------


class Registry:
    """Registers plugins on the test's manager; the fixture unregisters them."""

    def __init__(self) -> None:
        self.registered: list[object] = []

    def add(self, plugin: object, name: str | None = None) -> Any:
        hooks.register(plugin, name=name)
        self.registered.append(plugin)
        return plugin


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.setattr(hooks, "_manager", None)  # a fresh manager for this test
    registry = Registry()
    yield registry
    manager = hooks._manager
    if manager is None:
        return
    for plugin in reversed(registry.registered):
        if manager.is_registered(plugin):
            hooks.unregister(plugin)
    for plugin in list(manager.get_plugins()):  # entry points, pm.register
        manager.unregister(plugin)


@pytest.fixture
def order() -> list[tuple[Any, ...]]:
    return []


@pytest.fixture
def monitor(plugins: Registry) -> Iterator[Monitor]:
    recorder = Monitor(hooks.get_plugin_manager())
    yield recorder
    recorder.undo()


def failure_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ampubsub.hooks"]


# -- calling through pluggy ---------------------------------------------------------


def test_a_wrapper_runs_before_and_after_the_other_implementations(
    plugins: Registry, order: list[tuple[Any, ...]]
) -> None:
    plugins.add(Plain(order, "first"))
    plugins.add(Wrapper(order))
    plugins.add(Plain(order, "second"))
    topic_hooks, counters = facade()
    topic_hooks.machine_discovered(REMOTE)
    assert [tag for tag, *_ in order] == [
        "wrapper before",
        "second",  # pluggy: the last registered first
        "first",
        "wrapper after",
    ]
    assert {(topic, remote_id) for _, topic, remote_id in order} == {(STAND_IN, "w")}
    assert counters == Counter()


def test_tryfirst_and_trylast_keep_their_places(
    plugins: Registry, order: list[tuple[Any, ...]]
) -> None:
    plugins.add(TryFirst(order, "tryfirst"))
    plugins.add(Plain(order, "plain"))
    plugins.add(Wrapper(order))
    plugins.add(TryLast(order, "trylast"))
    facade()[0].machine_discovered(REMOTE)
    assert [tag for tag, *_ in order] == [
        "wrapper before",
        "tryfirst",
        "plain",
        "trylast",
        "wrapper after",
    ]


def test_an_old_style_hookwrapper_runs_and_its_forced_result_counts(
    plugins: Registry, order: list[tuple[Any, ...]]
) -> None:
    plugins.add(Verdict(None, order))
    wrapper = plugins.add(OldStyleWrapper(order, force=None))
    topic_hooks, _ = facade()
    assert topic_hooks.accept_remote("peer-1", 3, INFO) is True
    assert order == [
        ("hookwrapper before", STAND_IN, "w"),
        ("verdict", None),
        ("hookwrapper after", None),
    ]
    wrapper.force = False  # the outcome it forces is the hook's answer
    assert topic_hooks.accept_remote("peer-1", 3, INFO) is False


def test_monitoring_sees_every_facade_call(plugins: Registry, monitor: Monitor) -> None:
    plugins.add(EveryHook())
    assert call_every_hook(facade()[0]) == [True, True]
    assert monitor.names("before") == HOOKS
    assert monitor.names("after") == HOOKS
    assert all(kwargs["topic"] is STAND_IN for _, _, kwargs in monitor.traced)
    assert monitor.traced[-2][2] == {"topic": STAND_IN, "machine": MACHINE}


def test_a_hook_nobody_implements_never_enters_pluggy(
    plugins: Registry, monitor: Monitor, order: list[tuple[Any, ...]]
) -> None:
    topic_hooks, _ = facade()
    assert call_every_hook(topic_hooks) == [True, True]  # nobody objects
    assert monitor.traced == []

    plain = plugins.add(Plain(order))  # registered after the facade was built
    assert call_every_hook(topic_hooks) == [True, True]
    assert monitor.names("before") == ["ampubsub_machine_discovered"]
    assert order == [("plain", STAND_IN, "w")]

    hooks.unregister(plain)
    monitor.traced.clear()
    call_every_hook(topic_hooks)
    assert monitor.traced == []


# -- fault isolation ---------------------------------------------------------------


def test_a_raising_plugin_is_logged_counted_and_the_others_still_run(
    plugins: Registry,
    order: list[tuple[Any, ...]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugins.add(Plain(order, "first"))
    plugins.add(Faulty(), name="faulty")
    plugins.add(Plain(order, "third"))
    topic_hooks, counters = facade()
    topic_hooks.machine_discovered(REMOTE)
    assert [tag for tag, *_ in order] == ["third", "first"]
    assert counters == {
        "hook_errors": 1,
        "hook_errors_ampubsub_machine_discovered": 1,
    }
    (record,) = failure_logs(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        "an ampubsub plugin failed in ampubsub_machine_discovered (faulty)"
    )
    assert record.exc_info is not None
    assert str(record.exc_info[1]) == "faulty plugin"

    # every hook: logged, counted, never raised to the caller
    caplog.clear()
    assert call_every_hook(topic_hooks) == [True, True]  # a failure has no opinion
    assert counters["hook_errors"] == 1 + len(HOOKS)
    assert all(counters[f"hook_errors_{hook}"] >= 1 for hook in HOOKS)
    failed_in = [r.getMessage().split()[5] for r in failure_logs(caplog)]
    assert failed_in == HOOKS


def test_a_refusal_is_never_lost_to_a_failing_plugin(
    plugins: Registry, order: list[tuple[Any, ...]]
) -> None:
    plugins.add(Verdict(False, order))
    plugins.add(Faulty(), name="faulty")  # asked first (pluggy: LIFO)
    topic_hooks, counters = facade()
    assert topic_hooks.accept_remote("peer-1", 0, INFO) is False
    assert order == [("verdict", False)]
    assert counters["hook_errors_ampubsub_accept_remote"] == 1
    # with no other opinion, a failure accepts (as before: fail open)
    assert topic_hooks.accept_export(MACHINE) is True
    assert counters["hook_errors_ampubsub_accept_export"] == 1


def test_the_first_answer_in_pluggys_order_wins(
    plugins: Registry, order: list[tuple[Any, ...]]
) -> None:
    """pluggy's first-result rule: a later refusal is not even asked.

    (The old hand loop let a False from any plugin win; a plugin that must
    veto whatever others say marks its implementation ``tryfirst``.)
    """
    plugins.add(Verdict(False, order))
    plugins.add(Verdict(True, order))
    topic_hooks, _ = facade()
    assert topic_hooks.accept_remote("peer-1", 0, INFO) is True
    assert order == [("verdict", True)]
    plugins.add(TryFirstRefusal())
    assert topic_hooks.accept_remote("peer-1", 0, INFO) is False


@pytest.mark.parametrize(
    "wrapper",
    [
        FaultyWrapperBefore,
        FaultyWrapperAfter,
        WrapperWithoutYield,
        FaultyHookwrapperBefore,
        FaultyHookwrapperAfter,
    ],
)
def test_a_raising_wrapper_is_logged_counted_and_the_call_completes(
    wrapper: type,
    plugins: Registry,
    order: list[tuple[Any, ...]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugins.add(Verdict(False, order))
    plugins.add(wrapper(), name="faulty-wrapper")
    topic_hooks, counters = facade()
    assert topic_hooks.accept_remote("peer-1", 0, INFO) is False  # its refusal stands
    assert order == [("verdict", False)]
    assert counters == {"hook_errors": 1, "hook_errors_ampubsub_accept_remote": 1}
    (record,) = failure_logs(caplog)
    assert record.getMessage() == (
        "an ampubsub plugin failed in ampubsub_accept_remote (faulty-wrapper)"
    )
    assert record.exc_info is not None


def test_a_guarded_wrapper_still_sees_what_the_others_raised(
    plugins: Registry,
) -> None:
    """pluggy throws an inner exception into each wrapper; it may handle it."""

    class Recovers:
        @hookimpl(wrapper=True)
        def ampubsub_accept_remote(
            self, topic: Topic, peer_id: str, index: int, info: Info
        ) -> Generator[None, bool | None, bool | None]:
            try:
                return (yield)
            except LookupError:
                return False

    def unguarded(topic: Topic, peer_id: str, index: int, info: Info) -> None:
        raise LookupError("not one of the registered (guarded) plugins")

    plugins.add(Recovers())
    caller = hooks.get_plugin_manager().hook.ampubsub_accept_remote
    kwargs = {"topic": STAND_IN, "peer_id": "peer-1", "index": 0, "info": INFO}
    assert caller.call_extra([unguarded], kwargs) is False


def test_what_escapes_pluggy_is_logged_and_counted_by_the_facade(
    plugins: Registry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    unguarded = pluggy.PluginManager(hooks.PROJECT)  # no guards: a last resort
    unguarded.add_hookspecs(hooks.TopicSpecs)
    unguarded.register(Faulty(), name="faulty")
    monkeypatch.setattr(hooks, "_manager", unguarded)
    topic_hooks, counters = facade()
    assert topic_hooks.accept_export(MACHINE) is True
    topic_hooks.machine_updated(REMOTE)
    assert counters == {
        "hook_errors": 2,
        "hook_errors_ampubsub_accept_export": 1,
        "hook_errors_ampubsub_machine_updated": 1,
    }
    assert [r.getMessage() for r in failure_logs(caplog)] == [
        "the ampubsub hook call ampubsub_accept_export failed",
        "the ampubsub hook call ampubsub_machine_updated failed",
    ]
    assert all(r.exc_info for r in failure_logs(caplog))


def test_failures_are_counted_on_the_topic_whose_call_failed(
    plugins: Registry,
) -> None:
    """A hook of one topic that calls another topic's hook (nested calls)."""
    other_topic = cast(Topic, StandInTopic())
    other_hooks, other_counters = facade(other_topic)

    class ExportsOnDiscovery:
        @hookimpl
        def ampubsub_machine_discovered(
            self, topic: Topic, remote: RemoteMachine
        ) -> None:
            assert other_hooks.accept_export(MACHINE)  # Faulty fails in there

        @hookimpl
        def ampubsub_accept_export(self, topic: Topic, machine: Machine) -> None:
            raise RuntimeError("faulty export check")

    plugins.add(ExportsOnDiscovery())
    topic_hooks, counters = facade()
    topic_hooks.machine_discovered(REMOTE)
    assert counters == Counter()
    assert other_counters == {
        "hook_errors": 1,
        "hook_errors_ampubsub_accept_export": 1,
    }


def test_plugins_registered_on_the_manager_directly_are_guarded(
    plugins: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    manager = hooks.get_plugin_manager()
    assert isinstance(manager, hooks.GuardedPluginManager)
    manager.register(Faulty(), name="faulty-direct")
    topic_hooks, counters = facade()
    topic_hooks.peer_joined("peer-1")
    assert counters["hook_errors"] == 1
    assert "(faulty-direct)" in failure_logs(caplog)[0].getMessage()


def test_entry_point_plugins_are_guarded(
    plugins: Registry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    faulty = Faulty()
    entry_point = SimpleNamespace(
        group="ampubsub", name="faulty-ep", load=lambda: faulty
    )
    distribution = SimpleNamespace(entry_points=[entry_point])
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [distribution])
    manager = hooks.get_plugin_manager()  # loads the entry point
    assert manager.get_plugin("faulty-ep") is faulty
    topic_hooks, counters = facade()
    topic_hooks.machine_gone(REMOTE)
    assert topic_hooks.accept_export(MACHINE) is True
    assert counters["hook_errors"] == 2
    assert [r.getMessage() for r in failure_logs(caplog)] == [
        "an ampubsub plugin failed in ampubsub_machine_gone (faulty-ep)",
        "an ampubsub plugin failed in ampubsub_accept_export (faulty-ep)",
    ]


# -- end to end: real topics --------------------------------------------------------


def discovery_order(
    order: list[tuple[Any, ...]], topic: Topic, machine_id: str
) -> list[str]:
    return [tag for tag, t, mid in order if t is topic and mid == machine_id]


def test_a_wrapper_wraps_discovery_on_the_memory_transport(
    plugins: Registry, order: list[tuple[Any, ...]], monitor: Monitor
) -> None:
    plugins.add(Plain(order))
    plugins.add(Wrapper(order))

    async def main() -> None:
        net = MemoryNetwork(latency=0.01)
        a = await start_topic(net)
        b = await start_topic(net, a.addrs)
        try:
            a.export(worker("w"))
            await until([b], lambda t: "plain" in discovery_order(order, t, "w"))
            assert discovery_order(order, b, "w") == [
                "wrapper before",
                "plain",
                "wrapper after",
            ]
            assert discovery_order(order, a, "w") == []  # a exports it
            # pluggy's monitoring saw the topic's call, with the topic in it
            seen = [
                kwargs
                for when, name, kwargs in monitor.traced
                if when == "after" and name == "ampubsub_machine_discovered"
            ]
            assert [(k["topic"], k["remote"].id) for k in seen] == [(b, "w")]
        finally:
            await dispose_all([a, b])

    run(main)


def test_a_wrapper_wraps_discovery_on_libp2p(
    plugins: Registry, order: list[tuple[Any, ...]]
) -> None:
    plugins.add(Plain(order))
    plugins.add(Wrapper(order))

    async def start(bootstrap: Sequence[str], machines: Sequence[Machine]) -> Topic:
        topic = Topic(
            "hooks-libp2p-test",
            transport=Libp2pTransport(listen=["/ip4/127.0.0.1/tcp/0"]),
            bootstrap=bootstrap,
            machines=machines,
        )
        topic.start()
        assert await topic.mach.when("Connected"), topic.mach.err
        topic.join()
        assert await topic.mach.when("Joined"), topic.mach.err
        return topic

    async def main() -> None:
        with trio.fail_after(30):
            a = await start([], [worker("w")])
            b = await start(a.addrs, [])
            try:
                assert await b.mach.when_query(
                    lambda _: "plain" in discovery_order(order, b, "w")
                )
                assert discovery_order(order, b, "w") == [
                    "wrapper before",
                    "plain",
                    "wrapper after",
                ]
            finally:
                for topic in (a, b):
                    topic.dispose()
                for topic in (a, b):
                    assert await topic.mach.when_disposed()

    trio.run(main)
