"""Module- and session-scoped networks, each test's machines isolated."""

from __future__ import annotations

import pytest

from .helpers import LEAK_CONFTEST, run, sockets_before_after, threads_left

SCOPED = """
    import pytest

    from asyncmachine import Machine, State

    from pytest_ampubsub import Network

    SCHEMA = {"Foo": State()}
    SEEN = {}


    @pytest.fixture(scope="module", params=["memory", "libp2p"])
    def shared(request, ampubsub_network_factory):
        net = ampubsub_network_factory(peers=3, transport=request.param)
        SEEN.setdefault(request.param, []).append(net)
        return net


    @pytest.fixture
    def net(shared, ampubsub_isolate):
        return ampubsub_isolate(shared)


    def test_a_exports_a_worker(net):
        worker = Machine(SCHEMA, id="worker")
        worker.export_to(net[0])
        worker.add("Foo")
        net.assert_eventually_active("worker", "Foo")
        topic = net.add_peer()
        net.assert_eventually_active("worker", "Foo", peers=[topic])


    def test_b_starts_clean(net, shared):
        assert len(net) == 3  # the peer added by test_a left
        for topic in net:
            assert topic.list_machines(id="worker") == []
        other = Machine(SCHEMA, id="other")
        other.export_to(net[1])
        net.assert_eventually_discovered(1, peers=[0, 2])


    def test_c_failure_reports_the_shared_network(net):
        net.assert_eventually_active("ghost", "Foo", timeout=0.2)


    def test_d_one_network_per_module_and_transport():
        assert {k: len(v) for k, v in SEEN.items()} == {"memory": 1, "libp2p": 1}


    def test_e_public_network_as_a_context_manager():
        with Network(peers=2) as net:
            assert len(net) == 2
        assert all(t.mach.is_disposed for t in net)
"""


def test_module_scoped_networks_isolate_each_test(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(SCOPED)
    result = run(pytester, "-v")
    result.stdout.fnmatch_lines(
        [
            "*test_c_failure_reports_the_shared_network*memory* FAILED*",
            "*test_c_failure_reports_the_shared_network*libp2p* FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "E * no peer exports 'ghost'; exported: nothing",
            "*- ampubsub network 0 (ampubsub-test-*) -*",
        ]
    )
    result.assert_outcomes(passed=6, failed=2)
    assert threads_left(result) == ["MainThread"]
    before, after = sockets_before_after(result)
    assert after == before
