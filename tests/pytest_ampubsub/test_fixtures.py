"""ampubsub_network: what a network looks like, and that it always goes away."""

from __future__ import annotations

import pytest

from .helpers import LEAK_CONFTEST, run, sockets_before_after, threads_left

SYNC_SESSION = """
    import threading
    import time

    import pytest

    from ampubsub_plugin import MemoryTransport
    from asyncmachine import Machine, State

    SCHEMA = {"Foo": State(), "Bar": State()}
    TOPICS = []  # every topic built in this session, checked by the last test
    NAMES = []


    def joined(topic):
        return all(topic.mach.is_active(s) for s in ("Started", "Connected", "Joined"))


    def test_three_joined_peers(ampubsub_network):
        net = ampubsub_network(peers=3)
        TOPICS.extend(net.topics)
        NAMES.append(net.name)
        assert len(net) == 3
        assert net.topics == [net[0], net[1], net[2]] == list(net)
        assert all(joined(t) for t in net)
        assert len({t.peer_id for t in net}) == 3
        assert {t.name for t in net} == {net.name}
        assert net.name.startswith("ampubsub-test-")
        assert net.transport == "memory"
        assert all(isinstance(t.transport, MemoryTransport) for t in net)
        assert all(t.addrs and t.addrs[0].endswith("/p2p/" + t.peer_id) for t in net)


    def test_add_peer(ampubsub_network):
        net = ampubsub_network(peers=2)
        late = Machine(SCHEMA, id="late")
        topic = net.add_peer([late])
        TOPICS.extend(net.topics)
        NAMES.append(net.name)
        assert len(net) == 3 and topic is net[2] and joined(topic)
        assert topic.exported == [late]
        late.add("Foo")
        net.assert_eventually_active("late", "Foo")  # on peers 0 and 1


    def test_networks_get_fresh_names(ampubsub_network):
        a = ampubsub_network(peers=1)
        b = ampubsub_network(peers=1)
        TOPICS.extend(a.topics + b.topics)
        NAMES.extend([a.name, b.name])
        assert a.name != b.name


    def test_fails_after_building(ampubsub_network):
        net = ampubsub_network(peers=2)
        TOPICS.extend(net.topics)
        raise ValueError("the test itself broke")


    def test_check_times_out(ampubsub_network):
        net = ampubsub_network(peers=2)
        TOPICS.extend(net.topics)
        net.assert_eventually_active("nobody", "Foo", timeout=0.3)


    @pytest.mark.timeout(1)
    def test_killed_by_pytest_timeout(ampubsub_network):
        net = ampubsub_network(peers=2)
        TOPICS.extend(net.topics)
        net.assert_eventually_active("nobody", "Foo", timeout=30)


    def test_zz_every_network_was_torn_down():
        assert len(TOPICS) == 3 + 3 + 2 + 2 + 2 + 2
        assert all(t.mach.is_disposed for t in TOPICS)
        assert len(set(NAMES)) == len(NAMES) == 4
        # between tests only the shared trio thread runs (until sessionfinish)
        names = {t.name for t in threading.enumerate()}
        assert names <= {"MainThread", "ampubsub-trio"}, names
"""


def test_networks_are_joined_and_always_torn_down(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(SYNC_SESSION)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*::test_three_joined_peers PASSED*",
            "*::test_add_peer PASSED*",
            "*::test_networks_get_fresh_names PASSED*",
            "*::test_fails_after_building FAILED*",
            "*::test_check_times_out FAILED*",
            "*::test_killed_by_pytest_timeout FAILED*",
            "*::test_zz_every_network_was_torn_down PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E * ValueError: the test itself broke",
            "E * nobody Foo active: not met after 0.3?s*",
            "E * Failed: Timeout (>1.0s) from pytest-timeout.",
        ]
    )
    result.assert_outcomes(passed=4, failed=3)
    threads = threads_left(result)
    before, after = sockets_before_after(result)
    print(f"inner session left threads {threads}, sockets {before} -> {after}")
    assert threads == ["MainThread"]
    assert after <= before


def test_an_unused_factory_builds_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(
        """
        def test_unused(ampubsub_network):
            assert callable(ampubsub_network)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert threads_left(result) == ["MainThread"]
