"""Templated messages are byte for byte what Ryu builds, for every shape the gateway sends."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ryu_nat.openflow import encoder
from ryu_nat.core.addresses import Proto, pack_key
from ryu_nat.core.packet import TCP_FIN
from ryu_nat.openflow import rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import PacketOut

from .builders import frame, udp_bytes
from .fakedp import FakeDatapath

addresses = st.integers(0x01000000, 0xDFFFFFFF)
ports = st.integers(1, 65535)
switch_ports = st.integers(1, 0xFFFFFEFF)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in bytes([b[0] & 0xFE]) + b[1:]))
FRAME = frame("02:00:00:00:00:01", "02:00:00:00:00:02", udp_bytes("10.0.0.2", 5000, "192.0.2.9", 53))


def ryu_bytes(item, xid_start: int) -> bytes:
    dp = FakeDatapath()
    dp.xid = xid_start
    return encoder.serialize_batch(dp, encoder.to_messages(dp, [item]))


def template_bytes(enc: encoder.Encoder, item, xid_start: int) -> bytes:
    dp = FakeDatapath()
    dp.xid = xid_start
    data, sent = enc.encode(dp, [item])
    assert [entry for _, entry in sent] == [item]
    return data


ENCODER = encoder.Encoder()


@settings(max_examples=400, deadline=None)
@given(proto=st.sampled_from([Proto.TCP, Proto.UDP]), keys=st.tuples(addresses, addresses, ports, ports),
       new=st.tuples(addresses, addresses, ports, ports), change=st.sampled_from(["src", "dst", "both"]),
       in_port=switch_ports, out_port=switch_ports, same_port=st.booleans(), mapping_id=st.integers(1, 2**40 - 1),
       kind=st.sampled_from([RuleKind.ORIGINAL, RuleKind.REPLY]), idle=st.integers(1, 65535), mac=macs,
       xid=st.integers(0, 2**32 - 2))
def test_mapping_rules_and_their_packet_outs_match_ryu(proto, keys, new, change, in_port, out_port, same_port,
                                                       mapping_id, kind, idle, mac, xid):
    src, dst, sport, dport = keys
    if change == "src":
        leaving = (new[0], dst, new[2], dport)
    elif change == "dst":
        leaving = (src, new[1], sport, new[3])
    else:
        leaving = new
    rule = rules.mapping_rewrite(kind, mapping_id, proto, pack_key(src, dst, sport, dport), pack_key(*leaving),
                                 in_port, "02:4e:41:54:00:01", mac, in_port if same_port else out_port, idle)
    assert template_bytes(ENCODER, rule, xid) == ryu_bytes(rule, xid)
    packet_out = PacketOut(FRAME, rule.actions, in_port)
    assert template_bytes(ENCODER, packet_out, xid) == ryu_bytes(packet_out, xid)


@settings(max_examples=100, deadline=None)
@given(mac=macs, port=switch_ports, uplink=switch_ports, public=addresses, dport=ports, proto=st.sampled_from([Proto.TCP, Proto.UDP]))
def test_other_rules_and_frames_match_ryu(mac, port, uplink, public, dport, proto):
    for item in (rules.private_l2(mac, port, 300), rules.drop_unsolicited(uplink, public, proto, dport, 10),
                 rules.send_frame(FRAME, [port, uplink], port), rules.send_frame(FRAME, [port]),
                 rules.table_miss(), rules.uplink_to_controller(uplink),
                 rules.tcp_flag_to_controller(mac, TCP_FIN)):
        assert template_bytes(ENCODER, item, 5) == ryu_bytes(item, 5)


def test_a_plan_is_one_buffer_with_consecutive_xids():
    dp = FakeDatapath()
    plan = [rules.table_miss(), rules.delete_ours(), rules.send_frame(FRAME, [2])]
    data, sent = encoder.Encoder().encode(dp, plan)
    assert [xid for xid, _ in sent] == [1, 2, 3] and [item for _, item in sent] == plan
    dp.send(data)
    assert [msg.xid for msg in dp.sent] == [1, 2, 3]


def test_shapes_that_differ_only_in_where_a_field_is_set_get_different_templates():
    from ryu_nat.openflow.plan import FlowRule, Match, Output, SetField, OFPP_CONTROLLER

    enc = encoder.Encoder()
    matched = FlowRule(10, Match.of(in_port=1, eth_src="02:00:00:00:00:01"), (Output(OFPP_CONTROLLER),), 1)
    rewritten = FlowRule(10, Match.of(in_port=1), (SetField("eth_src", "02:00:00:00:00:01"),
                                                   Output(OFPP_CONTROLLER)), 1)
    for item in (matched, rewritten, matched):
        assert template_bytes(enc, item, 9) == ryu_bytes(item, 9)
