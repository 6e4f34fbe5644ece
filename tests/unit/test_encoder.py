"""Plan items become the OpenFlow 1.3 messages they promise, byte for byte: checked on the decoded wire form."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.openflow import cookies, encoder, sentlog
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import (OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT, OFPP_TABLE, Barrier, DecTtl,
                                   FlowDelete, FlowRule, Match, Message, Output, PacketOut, SetField, SwitchSetup,
                                   TABLE_NAT)

from .builders import frame, udp_bytes
from .fakedp import FakeDatapath
from .fakeswitch import from_ryu, plan_from_ryu

ROUTER_MAC, NEXT_HOP_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
REWRITE = FlowRule(
    200, Match.of(in_port=1, eth_type=0x0800, ip_proto=17, ipv4_src="10.0.0.2", ipv4_dst="192.0.2.9", udp_src=5000,
                  udp_dst=53),
    (SetField("ipv4_src", "198.51.100.1"), SetField("udp_src", 40000), SetField("eth_src", ROUTER_MAC),
     SetField("eth_dst", NEXT_HOP_MAC), DecTtl(), Output(2)),
    cookies.make(RuleKind.ORIGINAL, 7), idle_timeout_s=30, notify_removed=True)
FIN_TO_CONTROLLER = FlowRule(300, Match.of(eth_dst=ROUTER_MAC, eth_type=0x0800, ip_proto=6, tcp_flags=(1, 1)),
                             (Output(OFPP_CONTROLLER),), cookies.make(RuleKind.BASE))
DROP = FlowRule(150, Match.of(in_port=2, eth_type=0x0800, ip_proto=6, ipv4_dst="198.51.100.1", tcp_dst=8080), (),
                cookies.make(RuleKind.DROP), hard_timeout_s=10)
TABLE_MISS = FlowRule(0, Match(), (Output(OFPP_CONTROLLER),), cookies.make(RuleKind.BASE))
DELETE_OURS = FlowDelete(cookies.OURS, cookies.OURS_MASK)
FRAME = frame("02:00:00:00:00:01", ROUTER_MAC, udp_bytes("10.0.0.2", 5000, "192.0.2.9", 53))
RESUBMIT = PacketOut(FRAME, (Output(OFPP_TABLE),), in_port=1)
SEND = PacketOut(FRAME, (SetField("eth_dst", NEXT_HOP_MAC), Output(3)))


@pytest.fixture
def dp() -> FakeDatapath:
    return FakeDatapath()


def sent(dp: FakeDatapath, *plan: Message) -> list:
    """What the switch receives for ``plan``, decoded from the bytes of one write."""
    dp.send(encoder.serialize_batch(dp, encoder.to_messages(dp, plan)))
    return dp.sent


@pytest.mark.parametrize("item, kinds", [
    (REWRITE, [parser.OFPFlowMod]), (DROP, [parser.OFPFlowMod]), (DELETE_OURS, [parser.OFPFlowMod]),
    (RESUBMIT, [parser.OFPPacketOut]), (SwitchSetup(), [parser.OFPSetConfig, parser.OFPSetAsync]),
    (Barrier(), [parser.OFPBarrierRequest]),
])
def test_each_plan_item_becomes_messages_that_serialize_and_decode(dp, item, kinds):
    for msg in encoder.to_messages(dp, [item]):
        dp.send_msg(msg)
    assert [type(msg) for msg in dp.sent] == kinds


def test_flow_rule_is_an_add_to_the_nat_table_applying_its_actions(dp):
    [msg] = sent(dp, REWRITE)
    assert (msg.command, msg.table_id, msg.priority, msg.cookie, msg.idle_timeout, msg.hard_timeout) == (
        ofp.OFPFC_ADD, TABLE_NAT, 200, REWRITE.cookie, 30, 0)
    assert (msg.flags, msg.buffer_id) == (ofp.OFPFF_SEND_FLOW_REM, ofp.OFP_NO_BUFFER)
    assert dict(msg.match.items()) == REWRITE.match.as_dict()
    [instruction] = msg.instructions
    assert instruction.type == ofp.OFPIT_APPLY_ACTIONS
    assert [type(a) for a in instruction.actions] == [parser.OFPActionSetField] * 4 + [
        parser.OFPActionDecNwTtl, parser.OFPActionOutput]
    assert (instruction.actions[-1].port, instruction.actions[-1].max_len) == (2, ofp.OFPCML_NO_BUFFER)


def test_output_to_controller_sends_whole_packets(dp):
    [msg] = sent(dp, TABLE_MISS)
    [output] = msg.instructions[0].actions
    assert (output.port, output.max_len) == (ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)
    assert msg.match.items() == []


def test_no_actions_is_a_rule_without_instructions(dp):
    [msg] = sent(dp, DROP)
    assert (msg.instructions, msg.flags, msg.hard_timeout) == ([], 0, 10)


def test_masked_tcp_flags_is_the_standard_match_field(dp):
    [msg] = sent(dp, FIN_TO_CONTROLLER)
    assert dict(msg.match.items()) == {"eth_dst": ROUTER_MAC, "eth_type": 0x0800, "ip_proto": 6, "tcp_flags": (1, 1)}


def test_flow_delete_selects_by_cookie_in_every_table(dp):
    [msg] = sent(dp, DELETE_OURS)
    assert (msg.command, msg.table_id, msg.out_port, msg.out_group) == (
        ofp.OFPFC_DELETE, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert (msg.cookie, msg.cookie_mask, msg.match.items()) == (cookies.OURS, cookies.OURS_MASK, [])


def test_packet_out_carries_the_whole_frame(dp):
    [msg] = sent(dp, SEND)
    assert (msg.buffer_id, msg.in_port, bytes(msg.data)) == (ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, FRAME)
    assert [(a.key, a.value) for a in msg.actions[:1]] == [("eth_dst", NEXT_HOP_MAC)]
    assert msg.actions[1].port == 3


def test_switch_setup_asks_for_whole_packets_and_invalid_ttl_packet_ins(dp):
    config, async_ = sent(dp, SwitchSetup())
    assert (config.flags, config.miss_send_len) == (ofp.OFPC_FRAG_NORMAL, 0xFFFF)
    packet_in = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION | 1 << ofp.OFPR_INVALID_TTL
    port_status = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
    flow_removed = 1 << ofp.OFPRR_IDLE_TIMEOUT | 1 << ofp.OFPRR_HARD_TIMEOUT | 1 << ofp.OFPRR_DELETE
    assert async_.packet_in_mask == [packet_in, packet_in]
    assert async_.port_status_mask == [port_status, port_status]
    assert async_.flow_removed_mask == [flow_removed, flow_removed]


def test_a_batch_is_one_write_of_the_messages_in_order_with_distinct_xids(dp):
    plan = [DELETE_OURS, SwitchSetup(), TABLE_MISS, REWRITE, RESUBMIT, Barrier()]
    msgs = encoder.to_messages(dp, plan)
    dp.send(encoder.serialize_batch(dp, msgs))
    assert len(dp.writes) == 1
    assert [type(m) for m in dp.sent] == [type(m) for m in msgs]
    xids = [m.xid for m in dp.sent]
    assert xids == [m.xid for m in msgs] and len(set(xids)) == len(xids)
    assert plan_from_ryu(dp.sent) == plan


def test_a_batch_keeps_an_xid_already_given(dp):
    [first, second] = encoder.to_messages(dp, [TABLE_MISS, Barrier()])
    first.set_xid(1000)
    dp.send(encoder.serialize_batch(dp, [first, second]))
    assert dp.sent[0].xid == 1000 and dp.sent[1].xid not in (None, 1000)


# --- round trip: every plan the builders could make comes back unchanged --------------------------

port_numbers = st.integers(1, 0xFFFFFF00)
macs = st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b))
ipv4s = st.ip_addresses(v=4).map(str)
l4_ports = st.integers(0, 0xFFFF)


@st.composite
def matches(draw: st.DrawFn) -> Match:
    fields: dict = {}
    if draw(st.booleans()):
        fields["in_port"] = draw(port_numbers)
    if draw(st.booleans()):
        fields["eth_dst"] = draw(macs)
    kind = draw(st.sampled_from(["any", "arp", "ip", "tcp", "udp", "icmp", "tcp_flags"]))
    if kind == "arp":
        fields.update(eth_type=0x0806, arp_tpa=draw(ipv4s))
    elif kind != "any":
        fields.update(eth_type=0x0800, ipv4_src=draw(ipv4s), ipv4_dst=draw(ipv4s))
    if kind in ("tcp", "udp"):
        fields.update(ip_proto=6 if kind == "tcp" else 17, **{f"{kind}_src": draw(l4_ports),
                                                                f"{kind}_dst": draw(l4_ports)})
    elif kind == "icmp":
        fields.update(ip_proto=1, icmpv4_type=draw(st.integers(0, 255)))
    elif kind == "tcp_flags":
        mask = draw(st.integers(1, 0xFFF))
        fields.update(ip_proto=6, tcp_flags=(draw(st.integers(0, 0xFFF)) & mask, mask))
    return Match.of(**fields)


actions = st.lists(st.one_of(
    st.builds(SetField, st.sampled_from(["ipv4_src", "ipv4_dst"]), ipv4s),
    st.builds(SetField, st.sampled_from(["eth_src", "eth_dst"]), macs),
    st.builds(SetField, st.sampled_from(["tcp_src", "tcp_dst", "udp_src", "udp_dst"]), l4_ports),
    st.just(DecTtl()),
    st.builds(Output, st.one_of(port_numbers, st.sampled_from([OFPP_CONTROLLER, OFPP_IN_PORT, OFPP_FLOOD]))),
), max_size=6).map(tuple)
u16 = st.integers(0, 0xFFFF)
u64 = st.integers(0, (1 << 64) - 1)
plan_items = st.one_of(
    st.builds(FlowRule, u16, matches(), actions, u64, u16, u16, st.booleans()),
    st.builds(FlowDelete, u64, u64),
    st.builds(PacketOut, st.binary(min_size=14, max_size=1500), actions,
              st.one_of(port_numbers, st.just(OFPP_CONTROLLER))),
    st.builds(SwitchSetup, u16),
    st.just(Barrier()),
)


@given(plan=st.lists(plan_items, max_size=8))
def test_plans_come_back_from_the_wire_unchanged(plan):
    dp = FakeDatapath()
    no_ops = [item for item in plan if isinstance(item, PacketOut) and not item.actions]
    assert plan_from_ryu(sent(dp, *plan)) == [item for item in plan if item not in no_ops]


def test_a_packet_out_without_actions_is_not_sent(dp):
    """It would drop its frame anyway, and Ryu 4.34 garbles the data of one without actions."""
    assert encoder.to_messages(dp, [PacketOut(FRAME, ())]) == []


def test_a_flow_mod_comes_back_as_its_rule(dp):
    [msg] = sent(dp, REWRITE)
    assert from_ryu(msg) == REWRITE


# --- describing what was sent, for OpenFlow errors ---------------------------------------------------


def test_describe_gives_one_line_with_what_explains_an_error(dp):
    [rewrite, fin, drop, delete, send, config, async_, barrier] = encoder.to_messages(
        dp, [REWRITE, FIN_TO_CONTROLLER, DROP, DELETE_OURS, SEND, SwitchSetup(), Barrier()])
    text = sentlog.describe(rewrite)
    assert text.startswith("flow_mod add table=1 priority=200 ")
    assert f"cookie={REWRITE.cookie:#x} idle_timeout=30 " in text
    assert "ipv4_src=10.0.0.2" in text and "udp_dst=53" in text
    assert text.endswith("actions=set_field:ipv4_src=198.51.100.1,set_field:udp_src=40000,"
                         f"set_field:eth_src={ROUTER_MAC},set_field:eth_dst={NEXT_HOP_MAC},dec_ttl,output:2")
    assert "tcp_flags=1/1" in sentlog.describe(fin) and "actions=output:CONTROLLER" in sentlog.describe(fin)
    assert sentlog.describe(drop).endswith("actions=drop")
    assert f"cookie={cookies.OURS:#x}/{cookies.OURS_MASK:#x}" in sentlog.describe(delete)
    assert "match=any" in sentlog.describe(delete)
    assert sentlog.describe(send) == (f"packet_out in_port=CONTROLLER actions=set_field:eth_dst={NEXT_HOP_MAC},"
                                    f"output:3 data={len(FRAME)} bytes")
    assert sentlog.describe(config) == "set_config flags=0x0 miss_send_len=65535"
    assert sentlog.describe(async_) == "set_async packet_in=0x7/0x7 port_status=0x7/0x7 flow_removed=0x7/0x7"
    assert sentlog.describe(barrier) == "barrier_request"


def test_sent_log_describes_only_the_last_messages(dp):
    log = sentlog.SentLog(size=32)
    data, sent = encoder.Encoder().encode(dp, [Barrier()] * 39 + [REWRITE])
    log.record(sent)
    [rewrite] = encoder.to_messages(dp, [REWRITE])
    assert log.describe(sent[-1][0]) == sentlog.describe(rewrite)
    assert log.describe(sent[-32][0]) == "barrier_request"
    assert log.describe(sent[-33][0]) == "(not among the last 32 messages sent)"
