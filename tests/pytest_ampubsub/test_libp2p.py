"""LIBP2P: the plugin over real py-libp2p peers on 127.0.0.1 (one inner session).

Everything else in this folder uses the in-memory transport; this is the one
test that starts real py-libp2p hosts (ampubsub_plugin.libp2p_transport). It
checks the run-level option selects libp2p, ports are picked by the OS
(tcp/0), checks pass in sync and trio tests, and nothing is left running.
"""

from __future__ import annotations

import pytest

from .helpers import LEAK_CONFTEST, run, sockets_before_after, threads_left

LIBP2P_SESSION = """
    import os

    import pytest

    from ampubsub_plugin import Libp2pTransport, MemoryTransport
    from asyncmachine import Machine, State

    SCHEMA = {"Foo": State(), "Bar": State()}


    def ports(net):
        found = []
        for topic in net:
            for addr in topic.addrs:
                parts = addr.split("/")
                assert parts[1:4] == ["ip4", "127.0.0.1", "tcp"], addr
                assert addr.endswith("/p2p/" + topic.peer_id), addr
                found.append(int(parts[4]))
        return found


    def sockets():
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                pass
        return count


    def test_sync_over_libp2p(ampubsub_network):
        net = ampubsub_network(peers=3)
        assert net.transport == "libp2p"
        assert all(isinstance(t.transport, Libp2pTransport) for t in net)
        used = ports(net)
        assert 0 not in used and len(set(used)) == len(used) == 3
        assert sockets() >= 3  # so "no socket left" after the session means something
        worker = Machine(SCHEMA, id="worker")
        worker.export_to(net[0])
        worker.add("Foo")
        net.assert_eventually_active("worker", "Foo")
        net.assert_converged()


    @pytest.mark.trio
    async def test_trio_over_libp2p(ampubsub_network_trio):
        net = await ampubsub_network_trio(peers=2)
        assert net.transport == "libp2p"
        worker = Machine(SCHEMA, id="worker")
        worker.export_to(net[1])
        worker.add("Bar")
        await net.assert_eventually_active("worker", "Bar")


    @pytest.mark.ampubsub(transport="memory")
    def test_marker_picks_memory(ampubsub_network):
        net = ampubsub_network(peers=1)
        assert isinstance(net[0].transport, MemoryTransport)
"""


def test_libp2p_transport_end_to_end(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_CONFTEST)
    pytester.makepyfile(LIBP2P_SESSION)
    result = run(pytester, "-v", "--ampubsub-transport", "libp2p")
    result.stdout.fnmatch_lines(["ampubsub: * transport=libp2p, timeout=10s"])
    result.assert_outcomes(passed=3)
    threads = threads_left(result)
    before, after = sockets_before_after(result)
    print(f"inner session left threads {threads}, sockets {before} -> {after}")
    assert after <= before
    assert threads == ["MainThread"]
