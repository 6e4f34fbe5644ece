"""The fake datapath decodes what it is sent the same way for single messages and batches, and refuses garbage."""

from __future__ import annotations

import pytest
from ryu_nat.backend import ofproto_v1_3 as ofp

from ryu_nat.openflow import encoder
from ryu_nat.openflow.plan import OFPP_TABLE, Barrier, FlowDelete, Output, PacketOut, SwitchSetup

from .builders import frame, udp_bytes
from .fakedp import FakeDatapath, flow_removed_event, packet_in_event

FRAME = frame("02:00:00:00:00:01", "02:00:00:00:00:0a", udp_bytes("10.0.0.2", 5000, "192.0.2.9", 53))
PLAN = [FlowDelete(1, 1), SwitchSetup(), PacketOut(FRAME, (Output(OFPP_TABLE),), 1), Barrier()]


def test_single_messages_and_a_batch_decode_alike():
    one_by_one, batched = FakeDatapath(), FakeDatapath()
    for msg in encoder.to_messages(one_by_one, PLAN):
        one_by_one.send_msg(msg)
    batched.send(encoder.serialize_batch(batched, encoder.to_messages(batched, PLAN)))
    assert (len(one_by_one.writes), len(batched.writes)) == (5, 1)
    assert b"".join(one_by_one.writes) == batched.writes[0]
    assert [m.to_jsondict() for m in one_by_one.sent] == [m.to_jsondict() for m in batched.sent]


@pytest.mark.parametrize("cut", [1, 7, 30])
def test_a_write_that_is_not_whole_messages_fails(cut):
    dp = FakeDatapath()
    buf = encoder.serialize_batch(dp, encoder.to_messages(dp, PLAN))
    with pytest.raises(AssertionError):
        dp.send(buf[:-cut])


def test_ports_and_ids_look_like_a_connected_switch():
    dp = FakeDatapath(dpid=0x2A, ports=[1, 7])
    assert (dp.id, sorted(dp.ports), dp.ports[7].port_no) == (0x2A, [1, 7], 7)
    assert [dp.set_xid(msg) for msg in encoder.to_messages(dp, [Barrier(), Barrier()])] == [1, 2]


def test_packet_in_event_is_what_ryu_decodes_from_the_switch():
    dp = FakeDatapath()
    msg = packet_in_event(dp, 3, FRAME, reason=ofp.OFPR_INVALID_TTL, cookie=0x4E41).msg
    assert (msg.datapath, msg.match["in_port"], msg.reason, msg.cookie, bytes(msg.data)) == (
        dp, 3, ofp.OFPR_INVALID_TTL, 0x4E41, FRAME)
    assert (msg.buffer_id, msg.total_len) == (ofp.OFP_NO_BUFFER, len(FRAME))


def test_flow_removed_event_carries_cookie_reason_and_match():
    msg = flow_removed_event(FakeDatapath(), 0x4E41, ofp.OFPRR_IDLE_TIMEOUT, priority=200, idle_timeout_s=30,
                             in_port=1, eth_type=0x0800).msg
    assert (msg.cookie, msg.reason, msg.priority, msg.idle_timeout) == (0x4E41, ofp.OFPRR_IDLE_TIMEOUT, 200, 30)
    assert dict(msg.match.items()) == {"in_port": 1, "eth_type": 0x0800}
