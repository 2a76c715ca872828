"""Signed peer records: checked once per peer and record, not once per RPC."""

from __future__ import annotations

from typing import Any

import libp2p.pubsub.gossipsub as gossipsub_module
import libp2p.pubsub.pubsub as pubsub_module
import pytest
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from ampubsub_plugin._libp2p import records
from ampubsub_plugin._libp2p.pubsub import HostConfig, new_gossipsub


class Host:
    """Stands for a py-libp2p host: only its identity matters here."""


class Checks:
    def __init__(self, verdict: bool = True) -> None:
        self.calls = 0
        self.verdict = verdict

    def __call__(self, msg: rpc_pb2.RPC, host: Any, peer_id: ID) -> bool:
        self.calls += 1
        return self.verdict


def rpc(record: bytes | None) -> rpc_pb2.RPC:
    msg = rpc_pb2.RPC()
    if record is not None:
        msg.senderRecord = record
    return msg


PEER = ID(b"\x00\x24" + bytes(36))
OTHER = ID(b"\x00\x24" + bytes(35) + b"\x01")


def test_a_repeated_record_from_the_same_peer_is_checked_once() -> None:
    host, check = Host(), Checks()
    for _ in range(5):
        assert records.consume_once(rpc(b"rec-1"), host, PEER, check)
    assert check.calls == 1
    # a new record, another peer, another host: each checked
    assert records.consume_once(rpc(b"rec-2"), host, PEER, check)
    assert records.consume_once(rpc(b"rec-2"), host, OTHER, check)
    assert records.consume_once(rpc(b"rec-2"), Host(), PEER, check)
    assert check.calls == 4
    # no record: nothing to check, as in py-libp2p
    assert records.consume_once(rpc(None), host, PEER, check)
    assert check.calls == 4


def test_a_refused_record_is_refused_every_time() -> None:
    host, check = Host(), Checks(verdict=False)
    assert not records.consume_once(rpc(b"bad"), host, PEER, check)
    assert not records.consume_once(rpc(b"bad"), host, PEER, check)
    assert check.calls == 2


def test_an_accepted_record_is_checked_again_after_recheck(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host, check = Host(), Checks()
    now = [1000.0]
    monkeypatch.setattr(records.time, "monotonic", lambda: now[0])
    records.consume_once(rpc(b"rec"), host, PEER, check)
    now[0] += records.RECHECK - 1
    records.consume_once(rpc(b"rec"), host, PEER, check)
    assert check.calls == 1
    now[0] += 2  # the peerstore's TTL is renewed through py-libp2p
    records.consume_once(rpc(b"rec"), host, PEER, check)
    assert check.calls == 2


def test_our_record_is_reused_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    issued: list[int] = []

    def issue(h: Any) -> tuple[bytes, bool]:
        issued.append(1)
        return b"ours-%d" % len(issued), True

    now = [50.0]
    monkeypatch.setattr(records.time, "monotonic", lambda: now[0])
    assert records.issue_reused(host, issue) == (b"ours-1", True)
    assert records.issue_reused(host, issue) == (b"ours-1", False)
    now[0] += records.REUSE  # addresses may have changed: derived again
    assert records.issue_reused(host, issue) == (b"ours-2", True)


def test_building_a_router_routes_pubsub_through_the_cache() -> None:
    config = HostConfig(
        listen=[],
        key_pair=None,  # a router is built without a host
        muxer="MPLEX",
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1.0,
    )
    new_gossipsub(config)
    assert pubsub_module.maybe_consume_signed_record is records.consume_once
    assert gossipsub_module.maybe_consume_signed_record is records.consume_once
    assert pubsub_module.env_to_send_in_RPC is records.issue_reused
