"""The raw gossipsub baseline publishes what an owner publishes, byte for byte."""

from __future__ import annotations

from netbench.common import owner_update, updates_payload_size

from ampubsub_plugin.protocol import UpdatesMsg, decode, encode


def test_the_raw_payload_is_as_large_as_a_signed_stamped_update() -> None:
    msg = owner_update(3)
    assert isinstance(msg, UpdatesMsg)
    ((owner, clocks),) = msg.peer_clocks.items()
    assert list(clocks) == [2]  # the last machine's clock
    # what every update an owner sends carries: its proof and its stamp
    assert len(msg.proofs[owner].signatures[2]) == 64
    assert msg.proofs[owner].incarnation > 0 and msg.sent_at > 0
    data = encode(msg)
    assert decode(data) == msg
    assert updates_payload_size(3) == len(data) > 200
