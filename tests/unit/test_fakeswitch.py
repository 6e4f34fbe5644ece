"""The simulated switch itself: a wrong simulator would make every plan test lie."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from ryu_nat.backend import arp, ethernet, packet
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.openflow import encoder
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import (OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT, OFPP_TABLE, Barrier, DecTtl,
                                   FlowDelete, FlowRule, Match, Output, PacketOut, SetField, SwitchSetup)

from .builders import echo_bytes, frame, tcp_bytes, udp_bytes
from .fakedp import FakeDatapath
from .fakeswitch import FakeSwitch, FlowRemoved, PacketIn, fields_of_frame, from_ryu, plan_from_ryu

H1, SERVER, PUBLIC = "10.0.0.2", "192.0.2.9", "198.51.100.1"
H1_MAC, ROUTER_MAC, GATEWAY_MAC = "02:00:00:00:00:01", "02:00:00:00:00:0a", "02:00:00:00:00:fe"
BASE = cookies.make(RuleKind.BASE)
IPV4, ARP = 0x0800, 0x0806


def udp_fields(src: str, sport: int, dst: str, dport: int, ttl: int = 64, in_port: int = 1) -> dict:
    return dict(in_port=in_port, eth_src=H1_MAC, eth_dst=ROUTER_MAC, eth_type=IPV4, ipv4_src=src, ipv4_dst=dst,
                ip_proto=17, ip_ttl=ttl, udp_src=sport, udp_dst=dport)


def udp_match(in_port: int = 1, **extra) -> Match:
    return Match.of(in_port=in_port, eth_type=IPV4, ip_proto=17, **extra)


def rule(priority: int, match: Match, *actions, cookie: int = BASE, **timeouts) -> FlowRule:
    """A rule in table 0, where every packet starts (these tests use one table)."""
    return FlowRule(priority, match, tuple(actions), cookie, table_id=0, **timeouts)


def mapping_rule(mapping_id: int, kind: RuleKind = RuleKind.ORIGINAL, idle_timeout_s: int = 30) -> FlowRule:
    return FlowRule(200, udp_match(udp_src=mapping_id, udp_dst=53 + kind), (Output(2),),
                    cookies.make(kind, mapping_id), idle_timeout_s=idle_timeout_s, notify_removed=True, table_id=0)


TABLE_MISS = rule(0, Match(), Output(OFPP_CONTROLLER))
SNAT = rule(200, udp_match(ipv4_src=H1, udp_src=5000),
            SetField("ipv4_src", PUBLIC), SetField("udp_src", 40000), SetField("eth_src", ROUTER_MAC),
            SetField("eth_dst", GATEWAY_MAC), DecTtl(), Output(2), cookie=cookies.make(RuleKind.ORIGINAL, 1))


@pytest.fixture
def switch() -> FakeSwitch:
    return FakeSwitch(ports=(1, 2, 3))


# --- table semantics -------------------------------------------------------------------------------


def test_a_rule_rewrites_and_forwards(switch):
    switch.apply([TABLE_MISS, SNAT])
    [(port, out)] = switch.fate(**udp_fields(H1, 5000, SERVER, 53, ttl=64))
    assert port == 2
    assert out == udp_fields(PUBLIC, 40000, SERVER, 53, ttl=63) | {"eth_src": ROUTER_MAC, "eth_dst": GATEWAY_MAC}
    assert switch.packet_ins() == []


def test_add_with_the_same_match_and_priority_replaces_the_rule(switch):
    first = rule(100, udp_match(), Output(2), cookie=1, idle_timeout_s=5)
    second = rule(100, udp_match(), Output(3), cookie=2, idle_timeout_s=50)
    switch.apply([first])
    switch.fate(**udp_fields(H1, 5000, SERVER, 53))
    switch.apply([second])
    assert switch.rules() == [second]
    assert switch.entries()[0].packets == 0
    assert [port for port, _ in switch.fate(**udp_fields(H1, 5000, SERVER, 53))] == [3]


def test_the_same_match_at_another_priority_is_another_rule_and_the_higher_wins(switch):
    low, high = rule(100, udp_match(), Output(2)), rule(101, udp_match(), Output(3))
    switch.apply([high, low])
    assert switch.rules() == [high, low]
    assert [port for port, _ in switch.fate(**udp_fields(H1, 5000, SERVER, 53))] == [3]
    assert [entry.packets for entry in switch.entries()] == [1, 0]


def test_two_rules_of_equal_priority_matching_one_packet_fail(switch):
    switch.apply([rule(100, udp_match(), Output(2)), rule(100, udp_match(udp_dst=53), Output(3))])
    assert switch.fate(**udp_fields(H1, 5000, SERVER, 54)) == [(2, udp_fields(H1, 5000, SERVER, 54))]
    with pytest.raises(AssertionError, match="undefined"):
        switch.fate(**udp_fields(H1, 5000, SERVER, 53))


def test_no_matching_rule_drops_silently(switch):
    switch.apply([rule(100, udp_match(in_port=2), Output(3))])
    assert switch.fate(**udp_fields(H1, 5000, SERVER, 53)) == []
    assert switch.packet_ins() == []


def test_masked_tcp_flags_match_any_packet_with_the_bit(switch):
    fin = rule(300, Match.of(eth_type=IPV4, ip_proto=6, tcp_flags=(0x001, 0x001)), Output(OFPP_CONTROLLER))
    switch.apply([fin])
    tcp = dict(in_port=1, eth_type=IPV4, ip_proto=6, tcp_src=5000, tcp_dst=80)
    switch.fate(**tcp, tcp_flags=0x011)  # FIN|ACK
    switch.fate(**tcp, tcp_flags=0x010)  # ACK
    assert [(p.reason, p.cookie, p.fields["tcp_flags"]) for p in switch.packet_ins()] == [(ofp.OFPR_ACTION, BASE,
                                                                                            0x011)]


def test_addresses_compare_normalized(switch):
    switch.apply([rule(100, Match.of(eth_dst=ROUTER_MAC.upper(), eth_type=IPV4, ipv4_dst=SERVER), Output(2))])
    fields = udp_fields(H1, 5000, SERVER, 53) | {"ipv4_dst": IPv4Address(SERVER)}
    [(port, out)] = switch.fate(**fields)
    assert (port, out["ipv4_dst"], out["eth_dst"]) == (2, SERVER, ROUTER_MAC)


@pytest.mark.parametrize("bad", [
    rule(100, Match.of(ipv4_src=H1), Output(2)),  # no eth_type
    rule(100, Match.of(eth_type=ARP, ipv4_src=H1), Output(2)),
    rule(100, Match.of(eth_type=IPV4, arp_spa=H1), Output(2)),
    rule(100, Match.of(eth_type=IPV4, udp_dst=53), Output(2)),  # no ip_proto
    rule(100, Match.of(eth_type=IPV4, ip_proto=17, tcp_dst=80), Output(2)),
    rule(100, Match.of(eth_type=IPV4, ip_proto=17, tcp_flags=(1, 1)), Output(2)),
    rule(100, Match.of(eth_type=IPV4, ip_proto=6, icmpv4_type=8), Output(2)),
    rule(100, Match.of(ip_proto=6), Output(2)),
    rule(100, Match.of(ip_src=H1), Output(2)),  # not an OXM name
    rule(100, Match.of(eth_type=IPV4, ip_ttl=1), Output(2)),  # not matchable in OF 1.3
    rule(100, udp_match(), SetField("tcp_src", 1), Output(2)),  # set-field without its prerequisite
    rule(100, Match.of(eth_type=IPV4), SetField("udp_dst", 1), Output(2)),
    rule(100, Match(), SetField("ipv4_dst", H1), Output(2)),
    rule(100, Match.of(eth_type=ARP), DecTtl(), Output(2)),
    rule(100, udp_match(), SetField("eth_type", ARP), Output(2)),  # not writable
    rule(100, udp_match(), Output(OFPP_TABLE)),  # packet-outs only
    rule(100, Match.of(eth_dst="02:00:00:00:00"), Output(2)),
], ids=lambda r: str(r.match.fields) + str(r.actions))
def test_rules_the_switch_would_refuse_fail(switch, bad):
    with pytest.raises((AssertionError, ValueError)):
        switch.apply([bad])
    assert switch.rules() == []


# --- actions -----------------------------------------------------------------------------------------


def test_dec_ttl_at_ttl_1_stops_and_sends_an_invalid_ttl_packet_in_with_the_rewrites_so_far(switch):
    switch.apply([SwitchSetup(), SNAT])
    assert switch.fate(**udp_fields(H1, 5000, SERVER, 53, ttl=1)) == []
    rewritten = udp_fields(PUBLIC, 40000, SERVER, 53, ttl=1) | {"eth_src": ROUTER_MAC, "eth_dst": GATEWAY_MAC}
    assert switch.packet_ins() == [PacketIn(ofp.OFPR_INVALID_TTL, SNAT.cookie, 1, rewritten)]
    [(_, out)] = switch.fate(**udp_fields(H1, 5000, SERVER, 53, ttl=2))
    assert out["ip_ttl"] == 1


def test_invalid_ttl_packet_ins_stay_off_until_switch_setup(switch):
    """Open vSwitch's default packet-in mask leaves them out (PLATFORM.md)."""
    switch.apply([SNAT])
    assert switch.fate(**udp_fields(H1, 5000, SERVER, 53, ttl=1)) == []
    assert switch.packet_ins() == []


def test_table_miss_and_output_to_controller_differ_in_reason(switch):
    arp_rule = rule(100, Match.of(eth_type=ARP), Output(OFPP_CONTROLLER), cookie=7)
    switch.apply([TABLE_MISS, arp_rule])
    switch.fate(**udp_fields(H1, 5000, SERVER, 53))
    switch.fate(in_port=2, eth_type=ARP, arp_op=1)
    assert [(p.reason, p.cookie, p.in_port) for p in switch.packet_ins()] == [
        (ofp.OFPR_NO_MATCH, BASE, 1), (ofp.OFPR_ACTION, 7, 2)]
    assert switch.packet_ins() == []


def test_output_to_the_arrival_port_needs_ofpp_in_port(switch):
    switch.apply([rule(100, udp_match(in_port=1), Output(1), Output(2)),
                  rule(100, udp_match(in_port=3), Output(OFPP_IN_PORT))])
    assert [port for port, _ in switch.fate(**udp_fields(H1, 5000, SERVER, 53, in_port=1))] == [2]
    assert [port for port, _ in switch.fate(**udp_fields(H1, 5000, SERVER, 53, in_port=3))] == [3]


def test_flood_leaves_by_every_port_but_the_arrival_one(switch):
    switch.apply([rule(100, Match(), Output(OFPP_FLOOD))])
    assert [port for port, _ in switch.fate(in_port=2, eth_type=ARP)] == [1, 3]


def test_outputs_are_copies_taken_when_they_happen(switch):
    switch.apply([rule(100, udp_match(), Output(2), SetField("udp_dst", 99), Output(3))])
    [(_, first), (_, second)] = switch.fate(**udp_fields(H1, 5000, SERVER, 53))
    assert (first["udp_dst"], second["udp_dst"]) == (53, 99)


# --- packet-outs ---------------------------------------------------------------------------------------


def test_packet_out_to_table_is_looked_up_as_arriving_on_its_in_port(switch):
    switch.apply([TABLE_MISS, SNAT, PacketOut(frame(H1_MAC, ROUTER_MAC, udp_bytes(H1, 5000, SERVER, 53, ttl=9)),
                                              (Output(OFPP_TABLE),), in_port=1)])
    [(port, out)] = switch.emitted()
    assert (port, out["ipv4_src"], out["udp_src"], out["ip_ttl"]) == (2, PUBLIC, 40000, 8)
    assert switch.entries()[0].packets == 1
    assert switch.emitted() == []


def test_packet_out_to_table_with_no_rule_reaches_the_table_miss(switch):
    switch.apply([TABLE_MISS, PacketOut(frame(H1_MAC, ROUTER_MAC, udp_bytes(H1, 7, SERVER, 53)),
                                        (Output(OFPP_TABLE),), in_port=3)])
    assert [(p.reason, p.cookie, p.in_port) for p in switch.packet_ins()] == [(ofp.OFPR_NO_MATCH, BASE, 3)]


def test_packet_out_runs_its_actions_on_the_frame(switch):
    data = frame(H1_MAC, ROUTER_MAC, udp_bytes(H1, 5000, SERVER, 53))
    switch.apply([PacketOut(data, (SetField("eth_dst", GATEWAY_MAC), Output(2), Output(OFPP_CONTROLLER)))])
    [(port, out)] = switch.emitted()
    assert (port, out["eth_dst"], out["in_port"]) == (2, GATEWAY_MAC, OFPP_CONTROLLER)
    [packet_in] = switch.packet_ins()
    assert (packet_in.reason, packet_in.cookie) == (ofp.OFPR_ACTION, 0xFFFF_FFFF_FFFF_FFFF)


def test_packet_out_actions_are_checked_against_its_frame(switch):
    arp_frame = arp_request(H1_MAC, H1, PUBLIC)
    with pytest.raises(AssertionError, match="set_field ipv4_src"):
        switch.apply([PacketOut(arp_frame, (SetField("ipv4_src", PUBLIC), Output(2)))])


# --- time and deletion ------------------------------------------------------------------------------


def test_idle_timeout_counts_from_the_last_packet(switch):
    quiet = rule(100, udp_match(in_port=2), Output(3), idle_timeout_s=10)  # no notify_removed
    switch.apply([mapping_rule(1, idle_timeout_s=10), quiet])
    switch.advance(5.0)
    switch.fate(**udp_fields(H1, 1, SERVER, 55))
    assert switch.entries()[0].last_used == 5.0
    switch.advance(14.9)
    assert len(switch.rules()) == 1 and switch.rules()[0].cookie == cookies.make(RuleKind.ORIGINAL, 1)
    switch.advance(15.0)
    assert switch.rules() == []
    assert switch.flow_removed_events() == [FlowRemoved(mapping_rule(1, idle_timeout_s=10), ofp.OFPRR_IDLE_TIMEOUT, 1)]
    assert switch.flow_removed_events() == []


def test_hard_timeout_counts_from_install_whatever_the_traffic(switch):
    drop = rule(150, udp_match(), hard_timeout_s=10, notify_removed=True)
    switch.apply([drop])
    switch.advance(9.9)
    assert switch.fate(**udp_fields(H1, 5000, SERVER, 53)) == []
    switch.advance(10.0)
    assert switch.rules() == []
    assert [(e.cookie, e.reason) for e in switch.flow_removed_events()] == [(BASE, ofp.OFPRR_HARD_TIMEOUT)]


def test_delete_by_cookie_mask_removes_one_mapping_and_reports_it(switch):
    keep = [TABLE_MISS, mapping_rule(2)]
    gone = [mapping_rule(1, RuleKind.ORIGINAL), mapping_rule(1, RuleKind.REPLY)]
    switch.apply([*keep, *gone])
    assert switch.rules_with_cookie(cookies.for_mapping(1), cookies.MAPPING_MASK) == gone
    switch.apply([FlowDelete(cookies.for_mapping(1), cookies.MAPPING_MASK)])
    assert sorted(switch.rules(), key=lambda r: r.cookie) == sorted(keep, key=lambda r: r.cookie)
    assert switch.flow_removed_events() == [FlowRemoved(r, ofp.OFPRR_DELETE) for r in gone]


def test_delete_with_mask_0_removes_everything(switch):
    switch.apply([TABLE_MISS, SNAT, FlowDelete(0, 0)])
    assert switch.rules() == []


def test_time_only_goes_forward(switch):
    switch.advance(3.0)
    with pytest.raises(AssertionError):
        switch.advance(2.0)


# --- frames to fields --------------------------------------------------------------------------------


def arp_request(mac: str, spa: str, tpa: str) -> bytes:
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet("ff:ff:ff:ff:ff:ff", mac, ARP))
    pkt.add_protocol(arp.arp_ip(arp.ARP_REQUEST, mac, spa, "00:00:00:00:00:00", tpa))
    pkt.serialize()
    return bytes(pkt.data)


def test_fields_of_frames():
    udp = fields_of_frame(frame(H1_MAC.upper(), ROUTER_MAC, udp_bytes(H1, 5000, SERVER, 53, ttl=7)), 1)
    assert udp == udp_fields(H1, 5000, SERVER, 53, ttl=7) | {"frame_len": 60}
    syn = fields_of_frame(frame(H1_MAC, ROUTER_MAC, tcp_bytes(H1, 5000, SERVER, 80, bits=0x0C2)), 1)
    assert (syn["ip_proto"], syn["tcp_src"], syn["tcp_dst"], syn["tcp_flags"]) == (6, 5000, 80, 0x0C2)
    echo = fields_of_frame(frame(H1_MAC, ROUTER_MAC, echo_bytes(H1, SERVER, ident=9)), 1)
    assert (echo["ip_proto"], echo["icmpv4_type"], echo["icmpv4_code"]) == (1, 8, 0)
    who_has = fields_of_frame(arp_request(H1_MAC, H1, PUBLIC), 4)
    assert who_has == dict(in_port=4, eth_src=H1_MAC, eth_dst="ff:ff:ff:ff:ff:ff", eth_type=ARP, arp_op=1,
                           arp_spa=H1, arp_tpa=PUBLIC, arp_sha=H1_MAC, arp_tha="00:00:00:00:00:00", frame_len=60)


@pytest.mark.parametrize("flags, offset", [(0x1, 0), (0x0, 185)])
def test_fragments_carry_l4_fields_0_as_in_the_normal_frag_mode(flags, offset):
    raw = bytearray(udp_bytes(H1, 5000, SERVER, 53, flags=flags))
    raw[6:8] = (flags << 13 | offset).to_bytes(2, "big")  # header checksum is not checked by the parser
    fields = fields_of_frame(frame(H1_MAC, ROUTER_MAC, bytes(raw)), 1)
    assert (fields["udp_src"], fields["udp_dst"]) == (0, 0)


# --- replaying what the app sent -----------------------------------------------------------------------


def test_replaying_the_wire_equals_applying_the_plan(switch):
    plan = [FlowDelete(cookies.OURS, cookies.OURS_MASK), SwitchSetup(), TABLE_MISS, SNAT, Barrier()]
    dp = FakeDatapath()
    dp.send(encoder.serialize_batch(dp, encoder.to_messages(dp, plan)))
    switch.apply_ryu(dp.sent)
    assert switch.rules() == [SNAT, TABLE_MISS]
    assert (switch.miss_send_len, ofp.OFPR_INVALID_TTL in switch.packet_in_reasons) == (0xFFFF, True)


def test_replay_refuses_what_no_plan_item_sends():
    dp = FakeDatapath()
    with pytest.raises(AssertionError, match="set_async packet_in"):
        from_ryu(parser.OFPSetAsync(dp, [3, 3], [7, 7], [7, 7]))
    with pytest.raises(AssertionError, match="not followed by its set_async"):
        plan_from_ryu([parser.OFPSetConfig(dp, ofp.OFPC_FRAG_NORMAL, 0xFFFF), parser.OFPBarrierRequest(dp)])
    truncating = parser.OFPFlowMod(dp, instructions=[parser.OFPInstructionActions(
        ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(ofp.OFPP_CONTROLLER, 128)])])
    with pytest.raises(AssertionError):
        from_ryu(truncating)
    with pytest.raises(AssertionError):
        from_ryu(parser.OFPFlowMod(dp, command=ofp.OFPFC_MODIFY))
