"""The gateway against a simulated switch: where packets go, not which messages were sent."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from ryu_nat.core.addresses import Proto
from ryu_nat.core.fragments import fragment
from ryu_nat.core.packet import parse_frame
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import Barrier, FlowDelete, FlowRule, SwitchSetup
from ryu_nat.openflow.reasons import FlowRemovedReason

from .builders import checksums_ok, echo_bytes, icmp_error_bytes, parsed, tcp_bytes, udp_bytes
from .lab import (GATEWAY, H1, H1_PORT, H2, H2_PORT, INTERNET, MACS, PRIVATE, PUBLIC, ROUTER_MAC, SERVER, UPLINK,
                  Lab, arp_request, from_host)


def mapping_rules(lab: Lab) -> list[FlowRule]:
    return [r for r in lab.switch.rules() if cookies.kind_of(r.cookie) in (RuleKind.ORIGINAL, RuleKind.REPLY)]


def test_connect_clears_our_session_rules_then_installs_the_base_rules():
    lab = Lab()
    first_plan = lab.plans[0]
    assert isinstance(first_plan[0], SwitchSetup)
    deletes = len(rules.SESSION_KINDS)
    assert first_plan[1:1 + deletes] == [FlowDelete(cookies.make(kind), cookies.KIND_MASK)
                                         for kind in rules.SESSION_KINDS]
    assert isinstance(first_plan[1 + deletes], Barrier)
    assert sorted((r.table_id, r.priority) for r in lab.switch.rules()) == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 51), (1, 100), (1, 299), (1, 300), (1, 301), (1, 400)]
    assert lab.gateway.private_ports == {H1_PORT, H2_PORT}


def test_arp_for_the_nat_is_answered_on_each_side():
    lab = Lab()
    [(port, reply)] = lab.send(H1_PORT, arp_request(H1, PRIVATE))
    assert (port, reply["arp_op"], reply["arp_spa"], reply["arp_sha"], reply["eth_dst"]) == (
        H1_PORT, 2, PRIVATE, ROUTER_MAC, MACS[H1])
    [(port, reply)] = lab.send(UPLINK, arp_request(SERVER, PUBLIC))
    assert (port, reply["arp_spa"], reply["arp_tpa"]) == (UPLINK, PUBLIC, SERVER)
    assert lab.send(UPLINK, arp_request(SERVER, PRIVATE)) == []  # the private address is not on the uplink


def test_arp_between_private_hosts_is_relayed_on_private_ports_only():
    lab = Lab()
    out = lab.send(H1_PORT, arp_request(H1, H2))
    assert [port for port, _ in out] == [H2_PORT]


def test_first_udp_packet_opens_both_directions():
    lab = Lab()
    [(port, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    assert (port, out["ipv4_src"], out["ipv4_dst"], out["ip_ttl"]) == (UPLINK, PUBLIC, SERVER, 63)
    assert (out["eth_src"], out["eth_dst"], out["udp_dst"]) == (ROUTER_MAC, MACS[SERVER], 53)
    public_port = out["udp_src"]
    # Later packets never reach the controller.
    [(port, again)] = lab.switch.fate(in_port=H1_PORT, eth_src=MACS[H1], eth_dst=ROUTER_MAC, eth_type=0x0800,
                                      ipv4_src=H1, ipv4_dst=SERVER, ip_proto=17, udp_src=5000, udp_dst=53, ip_ttl=64)
    assert (port, again["udp_src"]) == (UPLINK, public_port) and lab.switch.packet_ins() == []
    [(port, back)] = lab.switch.fate(in_port=UPLINK, eth_src=MACS[SERVER], eth_dst=ROUTER_MAC, eth_type=0x0800,
                                     ipv4_src=SERVER, ipv4_dst=PUBLIC, ip_proto=17, udp_src=53, udp_dst=public_port,
                                     ip_ttl=64)
    assert (port, back["ipv4_dst"], back["udp_dst"], back["eth_dst"], back["ip_ttl"]) == (H1_PORT, H1, 5000, MACS[H1], 63)
    assert len(mapping_rules(lab)) == 2
    assert all(r.idle_timeout_s == 300 and r.notify_removed for r in mapping_rules(lab))
    assert lab.gateway.stats.mappings_created["nat"] == 1


def test_off_subnet_destinations_go_to_the_public_gateway():
    lab = Lab()
    [(port, out)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 5000, INTERNET, 80)))
    assert (port, out["eth_dst"], out["ipv4_dst"], out["ipv4_src"]) == (UPLINK, MACS[GATEWAY], INTERNET, PUBLIC)
    assert all(r.idle_timeout_s == 240 for r in mapping_rules(lab))  # half open until the server answers


def test_unsolicited_inbound_is_dropped_and_then_dropped_by_the_switch():
    lab = Lab()
    assert lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000))) == []
    assert lab.gateway.stats.drops["unsolicited"] == 1
    assert lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 54, PUBLIC, 40000))) == []
    assert lab.gateway.stats.drops["unsolicited"] == 1  # the drop rule took the second one
    assert lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 4000, PUBLIC, 22))) == []


def test_redirect_reaches_the_private_server_which_sees_the_client():
    lab = Lab()
    [(port, inbound)] = lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)))
    assert (port, inbound["ipv4_src"], inbound["tcp_src"], inbound["ipv4_dst"], inbound["tcp_dst"]) == (
        H1_PORT, SERVER, 40000, H1, 80)
    [(port, answer)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 80, SERVER, 40000, bits=0x12)))
    assert (port, answer["ipv4_src"], answer["tcp_src"], answer["eth_dst"]) == (UPLINK, PUBLIC, 8080, MACS[SERVER])
    assert lab.gateway.stats.mappings_created["redirect"] == 1


def test_hairpin_private_host_reaches_the_forwarded_port():
    lab = Lab()
    lab.send(H1_PORT, arp_request(H1, PRIVATE))  # H1 known
    [(port, to_server)] = lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 7000, PUBLIC, 8080)))
    assert (port, to_server["ipv4_src"], to_server["ipv4_dst"], to_server["tcp_dst"]) == (H1_PORT, PUBLIC, H1, 80)
    mapped = to_server["tcp_src"]
    [(port, to_client)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 80, PUBLIC, mapped, bits=0x12)))
    assert (port, to_client["ipv4_src"], to_client["tcp_src"], to_client["ipv4_dst"], to_client["tcp_dst"]) == (
        H2_PORT, PUBLIC, 8080, H2, 7000)


def test_hairpin_between_hosts_behind_one_port_goes_back_out_of_it():
    lab = Lab()
    lab.send(H1_PORT, arp_request(H1, PRIVATE))
    h3 = "10.0.0.4"
    MACS[h3] = "00:00:00:00:00:04"
    try:
        [(port, to_server)] = lab.send(H1_PORT, from_host(h3, tcp_bytes(h3, 7000, PUBLIC, 8080)))
        assert (port, to_server["ipv4_dst"]) == (H1_PORT, H1)
    finally:
        del MACS[h3]


def test_ping_through_the_nat_translates_the_id_both_ways():
    lab = Lab()
    [(port, out)] = lab.send(H1_PORT, from_host(H1, echo_bytes(H1, INTERNET, 4242)))
    assert (port, out["ipv4_src"]) == (UPLINK, PUBLIC)
    sent = parse_frame(lab.last_packet_outs()[-1]).datagram
    assert sent is not None and checksums_ok(sent.raw)
    [(port, back)] = lab.send(UPLINK, from_host(GATEWAY, echo_bytes(INTERNET, PUBLIC, sent.src_port, request=False)))
    delivered = parse_frame(lab.last_packet_outs()[-1]).datagram
    assert (port, back["ipv4_dst"], delivered.src_port, delivered.ttl) == (H1_PORT, H1, 4242, 63)


def test_pings_to_the_nat_itself_are_answered():
    lab = Lab()
    [(port, reply)] = lab.send(H1_PORT, from_host(H1, echo_bytes(H1, PRIVATE, 1)))
    assert (port, reply["ipv4_src"], reply["icmpv4_type"]) == (H1_PORT, PRIVATE, 0)
    [(port, reply)] = lab.send(UPLINK, from_host(SERVER, echo_bytes(SERVER, PUBLIC, 1)))
    assert (port, reply["ipv4_src"], reply["ipv4_dst"]) == (UPLINK, PUBLIC, SERVER)


def test_icmp_error_about_a_translated_flow_reaches_the_private_sender():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 33434, INTERNET, 33434, ttl=2)))
    public_port = next(r.match.get("udp_dst") for r in mapping_rules(lab) if r.match.get("in_port") == UPLINK)
    sent = udp_bytes(PUBLIC, public_port, INTERNET, 33434, ttl=1)
    [(port, error)] = lab.send(UPLINK, from_host(GATEWAY, icmp_error_bytes(GATEWAY, PUBLIC, sent, kind=11, code=0)))
    assert (port, error["ipv4_src"], error["ipv4_dst"], error["icmpv4_type"]) == (H1_PORT, GATEWAY, H1, 11)
    inner = parse_frame(lab.last_packet_outs()[-1]).datagram.embedded
    assert (IPv4Address(inner.src), inner.src_port) == (IPv4Address(H1), 33434)


def test_ttl_one_on_a_new_flow_gets_time_exceeded_from_the_private_address():
    lab = Lab()
    [(port, error)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 33434, INTERNET, 33434, ttl=1)))
    assert (port, error["ipv4_src"], error["ipv4_dst"], error["icmpv4_type"]) == (H1_PORT, PRIVATE, H1, 11)
    assert mapping_rules(lab) == []


def test_ttl_one_on_a_mapped_flow_gets_time_exceeded_through_the_switch():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    [(port, error)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53, ttl=1)))
    assert (port, error["ipv4_src"], error["icmpv4_type"]) == (H1_PORT, PRIVATE, 11)
    assert lab.gateway.stats.packet_ins["invalid_ttl"] == 1


def test_both_rules_idle_out_then_the_mapping_goes():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.advance(301)
    assert mapping_rules(lab) == [] and lab.gateway.mapping_count(Proto.UDP) == 0
    assert lab.gateway.stats.mappings_removed["expired"] == 1


def test_one_way_traffic_keeps_the_mapping():
    """RFC 4787 REQ-6: outbound packets refresh the mapping even with no replies."""
    lab = Lab()
    [(_, first)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 514)))
    for _ in range(4):
        lab.advance(200)
        lab.switch.fate(in_port=H1_PORT, eth_src=MACS[H1], eth_dst=ROUTER_MAC, eth_type=0x0800, ipv4_src=H1,
                        ipv4_dst=SERVER, ip_proto=17, udp_src=5000, udp_dst=514, ip_ttl=64)
    assert lab.gateway.mapping_count(Proto.UDP) == 1
    [(_, later)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 514)))
    assert later["udp_src"] == first["udp_src"]


def test_eviction_deletes_the_evicted_mapping_rules():
    lab = Lab({"udp_table_size": "1"})
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    [old] = {cookies.mapping_id_of(r.cookie) for r in mapping_rules(lab)}
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5001, SERVER, 53)))
    ids = {cookies.mapping_id_of(r.cookie) for r in mapping_rules(lab)}
    assert old not in ids and len(mapping_rules(lab)) == 2
    assert lab.gateway.stats.mappings_removed["evicted"] == 1


def test_reconnect_reinstalls_live_mappings():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    before = sorted(mapping_rules(lab), key=lambda r: r.cookie)
    lab.switch = type(lab.switch)(ports=(UPLINK, H1_PORT, H2_PORT))  # a switch that lost its rules
    lab.apply(lab.gateway.switch_connected([UPLINK, H1_PORT, H2_PORT], lab.now))
    assert sorted(mapping_rules(lab), key=lambda r: r.cookie) == before


def test_remove_connections_deletes_that_hosts_rules():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 5000, SERVER, 53)))
    freed, plan = lab.gateway.remove_connections(IPv4Address(H1))
    lab.apply(plan)
    assert len(freed.udp) == 1 and len(mapping_rules(lab)) == 2
    assert all(r.match.get("ipv4_src") != H1 for r in mapping_rules(lab))


def test_private_hosts_talk_at_layer_2():
    lab = Lab()
    lab.send(H2_PORT, arp_request(H2, PRIVATE))
    [(port, _)] = lab.send(H1_PORT, udp_frame_between(H1, H2))
    assert port == H2_PORT
    assert lab.switch.fate(in_port=H1_PORT, eth_src=MACS[H1], eth_dst=MACS[H2], eth_type=0x0800) == [(H2_PORT, {
        "in_port": H1_PORT, "eth_src": MACS[H1], "eth_dst": MACS[H2], "eth_type": 0x0800})]


def test_uplink_frames_never_take_private_l2_rules():
    lab = Lab()
    lab.send(H2_PORT, arp_request(H2, PRIVATE))
    lab.send(H1_PORT, udp_frame_between(H1, H2))
    assert lab.switch.fate(in_port=UPLINK, eth_src=MACS[SERVER], eth_dst=MACS[H2], eth_type=0x0800,
                           ipv4_src=SERVER, ipv4_dst=H2, ip_proto=17, udp_src=1, udp_dst=2, ip_ttl=9) == []


def test_fragmented_datagram_crosses_whole_both_ways():
    lab = Lab()
    big = bytes(range(256)) * 16
    delivered = []
    for piece in fragment(parsed(udp_bytes(H1, 5000, SERVER, 9000, payload=big)), 1480):
        delivered += lab.send(H1_PORT, from_host(H1, piece))
    assert [(port, fields["ipv4_src"], fields["ipv4_dst"]) for port, fields in delivered] == [(UPLINK, PUBLIC, SERVER)] * 3
    out = reassemble(lab.last_packet_outs())
    assert out.src_port != 0 and out.raw[28:] == big and out.ttl == 63
    delivered = []
    for piece in fragment(parsed(udp_bytes(SERVER, 9000, PUBLIC, out.src_port, payload=big[::-1])), 1480):
        delivered += lab.send(UPLINK, from_host(SERVER, piece))
    assert [(port, fields["ipv4_dst"]) for port, fields in delivered] == [(H1_PORT, H1)] * 3
    back = reassemble(lab.last_packet_outs())
    assert (back.dst_port, back.raw[28:]) == (5000, big[::-1])
    assert len(mapping_rules(lab)) == 2  # later unfragmented packets take the switch path


def reassemble(frames: list[bytes]):
    from ryu_nat.core.fragments import FragmentCache, Reassembled

    cache = FragmentCache()
    results = [cache.add(parse_frame(data).datagram, now=0.0) for data in frames]
    assert isinstance(results[-1], Reassembled)
    assert checksums_ok(results[-1].datagram.raw)
    return results[-1].datagram


def test_spoofed_sources_and_strangers_are_dropped():
    lab = Lab()
    assert lab.send(H1_PORT, from_host(H1, udp_bytes(SERVER, 5000, INTERNET, 53))) == []
    assert lab.gateway.stats.drops["spoofed_source"] == 1
    assert lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, "192.168.3.77", 53))) == []
    assert lab.gateway.stats.drops["not_for_us"] == 1


@settings(max_examples=300, deadline=None)
@given(port=st.sampled_from([UPLINK, H1_PORT]), data=st.binary(max_size=120))
def test_any_bytes_from_the_switch_never_raise(port, data):
    lab = Lab()
    lab.gateway.packet_in(port, data, 0.0)
    lab.gateway.packet_in(port, from_host(H1, data), 0.0)


def udp_frame_between(src: str, dst: str) -> bytes:
    from .builders import frame

    return frame(MACS[src], MACS[dst], udp_bytes(src, 4000, dst, 4001))


def test_a_later_fin_is_forwarded_without_installing_the_rules_again():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 5000, SERVER, 80)))
    public_port = next(r.match.get("tcp_dst") for r in mapping_rules(lab) if r.match.get("in_port") == UPLINK)
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 80, PUBLIC, public_port, bits=0x11)))
    [(port, fin)] = lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 80, PUBLIC, public_port, bits=0x11,
                                                                   seq=2000)))
    assert (port, fin["ipv4_dst"], fin["tcp_dst"]) == (H1_PORT, H1, 5000)
    assert [type(item).__name__ for item in lab.plans[-1]] == ["PacketOut"]


def test_a_rule_deleted_by_someone_else_comes_back_with_the_next_packet():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    original = next(r for r in mapping_rules(lab) if cookies.kind_of(r.cookie) is RuleKind.ORIGINAL)
    lab.apply([FlowDelete(original.cookie, (1 << 64) - 1)])
    lab.apply(lab.gateway.flow_removed(original.cookie, FlowRemovedReason.DELETE, lab.now))
    assert lab.gateway.mapping_count(Proto.UDP) == 1
    [(port, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    assert port == UPLINK and len(mapping_rules(lab)) == 2


def test_channel_match_is_what_match_of_builds():
    from ryu_nat.core.addresses import pack_key
    from ryu_nat.openflow import rules
    from ryu_nat.openflow.plan import Match

    for proto, names in ((Proto.TCP, ("tcp_src", "tcp_dst")), (Proto.UDP, ("udp_src", "udp_dst"))):
        built = rules.channel_match(proto, pack_key(0x0A000002, 0xC0A8030A, 5000, 53), 7)
        assert built == Match.of(in_port=7, eth_type=0x0800, ip_proto=int(proto), ipv4_src="10.0.0.2",
                                 ipv4_dst="192.168.3.10", **{names[0]: 5000, names[1]: 53})


def test_a_mac_flood_on_a_private_port_keeps_the_l2_table_bounded():
    from ryu_nat.gateway.stats import Stats
    from ryu_nat.gateway.switching import L2_TABLE_SIZE, PrivateSwitch

    from .builders import frame

    switch = PrivateSwitch(UPLINK, ROUTER_MAC, Stats())
    for i in range(L2_TABLE_SIZE + 50):
        mac = f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
        data = frame(mac, MACS[H2], udp_bytes(H1, 4000, H2, 4001))
        switch.host_seen(H1_PORT, mac)
        switch.forward(H1_PORT, parse_frame(data), data)
    assert switch.known_macs() == L2_TABLE_SIZE
