"""The exact OpenFlow messages the app sends for each behaviour: matches, actions, timeouts, cookies.

Events are built from real packet bytes and fed to the Ryu app; the fake datapath
decodes what the app wrote, as the switch would.
"""

from __future__ import annotations

import time

import pytest
from ryu_nat.backend import MAIN_DISPATCHER
from ryu_nat.backend import arp, ethernet, icmp, ipv4, packet
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.core.addresses import Proto
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind

from .builders import echo_bytes, icmp_error_bytes, tcp_bytes, udp_bytes
from .fakedp import FakeDatapath, flow_removed_event, packet_in_event, state_change_event
from .fakeswitch import connect
from .lab import BASE_CONFIG, H1, H1_PORT, MACS, PRIVATE, PUBLIC, ROUTER_MAC, SERVER, UPLINK, arp_reply, \
    arp_request, from_host

OPTIONS = {**BASE_CONFIG, "udp_table_size": "1", "udp_idle_timeout": "30", "tcp_idle_timeout": "600"}


@pytest.fixture
def app(make_app):
    return make_app(OPTIONS)


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """The app's clock, moved by hand."""
    now = [time.monotonic()]
    monkeypatch.setattr("ryu_nat.app.time.monotonic", lambda: now[0])
    return now


@pytest.fixture
def dp(app) -> FakeDatapath:
    datapath = FakeDatapath(ports=(UPLINK, H1_PORT))
    connect(app, datapath)
    app._packet_in(packet_in_event(datapath, UPLINK, arp_request(SERVER, PUBLIC)))  # SERVER asks for us: its MAC is known
    datapath.sent.clear()
    return datapath


def actions_of(msg) -> list[tuple]:
    [instruction] = msg.instructions
    return [_action(a) for a in instruction.actions]


def _action(a) -> tuple:
    if isinstance(a, parser.OFPActionSetField):
        return ("set", a.key, a.value)
    if isinstance(a, parser.OFPActionOutput):
        return ("output", a.port)
    return (type(a).__name__,)


def test_arp_request_for_the_private_address_gets_a_reply_packet_out(app, dp):
    app._packet_in(packet_in_event(dp, H1_PORT, arp_request(H1, PRIVATE)))
    [out] = dp.sent
    assert isinstance(out, parser.OFPPacketOut) and out.in_port == H1_PORT
    assert [(a.port) for a in out.actions] == [ofp.OFPP_IN_PORT]
    frame = packet.Packet(out.data)
    reply = frame.get_protocol(arp.arp)
    assert (reply.opcode, reply.src_mac, reply.src_ip, reply.dst_mac, reply.dst_ip) == (
        arp.ARP_REPLY, ROUTER_MAC, PRIVATE, MACS[H1], H1)
    assert frame.get_protocol(ethernet.ethernet).dst == MACS[H1]


def test_new_udp_flow_is_two_flow_mods_then_a_packet_out(app, dp):
    frame = from_host(H1, udp_bytes(H1, 5000, SERVER, 53))
    app._packet_in(packet_in_event(dp, H1_PORT, frame))
    original, reply, out = dp.sent
    assert [m.command for m in (original, reply)] == [ofp.OFPFC_ADD] * 2
    mapping_id = cookies.mapping_id_of(original.cookie)
    assert original.cookie == cookies.make(RuleKind.ORIGINAL, mapping_id)
    assert reply.cookie == cookies.make(RuleKind.REPLY, mapping_id)
    assert all((m.idle_timeout, m.hard_timeout, m.flags, m.priority, m.table_id) ==
               (30, 0, ofp.OFPFF_SEND_FLOW_REM, 200, rules.TABLE_NAT) for m in (original, reply))
    assert dict(original.match.items()) == {"in_port": H1_PORT, "eth_type": 0x0800, "ip_proto": 17,
                                            "ipv4_src": H1, "ipv4_dst": SERVER, "udp_src": 5000, "udp_dst": 53}
    public_port = actions_of(original)[2][2]
    assert actions_of(original) == [("OFPActionDecNwTtl",), ("set", "ipv4_src", PUBLIC),
                                    ("set", "udp_src", public_port), ("set", "eth_src", ROUTER_MAC),
                                    ("set", "eth_dst", MACS[SERVER]), ("output", UPLINK)]
    assert dict(reply.match.items()) == {"in_port": UPLINK, "eth_type": 0x0800, "ip_proto": 17,
                                         "ipv4_src": SERVER, "ipv4_dst": PUBLIC, "udp_src": 53,
                                         "udp_dst": public_port}
    assert actions_of(reply) == [("OFPActionDecNwTtl",), ("set", "ipv4_dst", H1), ("set", "udp_dst", 5000),
                                 ("set", "eth_src", ROUTER_MAC), ("set", "eth_dst", MACS[H1]),
                                 ("output", H1_PORT)]
    assert isinstance(out, parser.OFPPacketOut) and out.in_port == H1_PORT and out.data == frame
    assert [_action(a) for a in out.actions] == actions_of(original)


def test_eviction_deletes_the_old_mappings_rules_before_the_new_ones(app, dp):
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    old_id = cookies.mapping_id_of(dp.sent[0].cookie)
    dp.sent.clear()
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5001, SERVER, 53))))
    delete, *rest = dp.sent
    assert (delete.command, delete.cookie, delete.cookie_mask, delete.table_id) == (
        ofp.OFPFC_DELETE, cookies.for_mapping(old_id), cookies.MAPPING_MASK, ofp.OFPTT_ALL)
    assert [type(m).__name__ for m in rest] == ["OFPFlowMod", "OFPFlowMod", "OFPPacketOut"]


def test_both_rules_idled_out_deletes_nothing_more_but_forgets_the_mapping(app, dp, clock):
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    original, reply, _ = dp.sent
    dp.sent.clear()
    clock[0] += 31
    app._flow_removed(flow_removed_event(dp, original.cookie, ofp.OFPRR_IDLE_TIMEOUT, idle_timeout_s=30))
    assert dp.sent == [] and app.gateway.mapping_count(Proto.UDP) == 1
    app._flow_removed(flow_removed_event(dp, reply.cookie, ofp.OFPRR_IDLE_TIMEOUT, idle_timeout_s=30))
    [delete] = dp.sent
    assert delete.command == ofp.OFPFC_DELETE and delete.cookie == cookies.for_mapping(
        cookies.mapping_id_of(original.cookie))


@pytest.mark.parametrize("reply_packets, lives", [(0, False), (2, True)])
def test_rfc5382_req5_the_adapter_hands_on_a_removed_rules_packet_count_and_idle_timeout(app, dp, clock,
                                                                                        reply_packets, lives):
    """The replier's rule carried packets: an answered connection outlives its transitory rules."""
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, tcp_bytes(H1, 5000, SERVER, 80))))
    original, reply, _ = dp.sent
    assert original.idle_timeout == reply.idle_timeout == 240
    dp.sent.clear()
    clock[0] += 241
    app._flow_removed(flow_removed_event(dp, original.cookie, ofp.OFPRR_IDLE_TIMEOUT, idle_timeout_s=240,
                                         packets=3))
    app._flow_removed(flow_removed_event(dp, reply.cookie, ofp.OFPRR_IDLE_TIMEOUT, idle_timeout_s=240,
                                         packets=reply_packets))
    assert app.gateway.mapping_count(Proto.TCP) == (1 if lives else 0)
    assert [msg.command for msg in dp.sent] == ([] if lives else [ofp.OFPFC_DELETE])


def test_redirect_rules_keep_the_client_address(app, dp):
    app._packet_in(packet_in_event(dp, H1_PORT, arp_request(H1, PRIVATE)))
    dp.sent.clear()
    app._packet_in(packet_in_event(dp, UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080))))
    inbound, outbound, _ = dp.sent
    assert dict(inbound.match.items())["tcp_dst"] == 8080 and inbound.idle_timeout == 240  # half open so far
    assert actions_of(inbound)[1:3] == [("set", "ipv4_dst", H1), ("set", "tcp_dst", 80)]
    assert actions_of(outbound)[1:3] == [("set", "ipv4_src", PUBLIC), ("set", "tcp_src", 8080)]


def test_unsolicited_inbound_gets_a_short_drop_rule(app, dp):
    app._packet_in(packet_in_event(dp, UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000))))
    [drop] = dp.sent
    assert (drop.priority, drop.hard_timeout, drop.idle_timeout, drop.instructions) == (150, 10, 0, [])
    assert dict(drop.match.items()) == {"in_port": UPLINK, "eth_type": 0x0800, "ip_proto": 17,
                                        "ipv4_dst": PUBLIC, "udp_dst": 40000}
    assert cookies.kind_of(drop.cookie) is RuleKind.DROP


def test_icmp_query_and_error_are_translated_packet_outs(app, dp):
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, echo_bytes(H1, SERVER, 77))))
    [out] = dp.sent
    sent = packet.Packet(out.data)
    echo = sent.get_protocol(icmp.icmp).data
    assert (sent.get_protocol(ipv4.ipv4).src, [a.port for a in out.actions]) == (PUBLIC, [UPLINK])
    [ping] = app.gateway.mappings(Proto.ICMP)
    assert echo.id == ping.public_endpoint.port
    dp.sent.clear()
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 6000, SERVER, 9))))
    public_port = actions_of(dp.sent[0])[2][2]
    dp.sent.clear()
    error = icmp_error_bytes(SERVER, PUBLIC, udp_bytes(PUBLIC, public_port, SERVER, 9))
    app._packet_in(packet_in_event(dp, UPLINK, from_host(SERVER, error)))
    [out] = dp.sent
    back = packet.Packet(out.data).get_protocol(ipv4.ipv4)
    assert (back.src, back.dst, [a.port for a in out.actions]) == (SERVER, H1, [H1_PORT])


def test_ttl_one_gets_time_exceeded_from_the_nat(app, dp):
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53, ttl=1)),
                                   reason=ofp.OFPR_INVALID_TTL))
    [out] = dp.sent
    reply = packet.Packet(out.data)
    ip = reply.get_protocol(ipv4.ipv4)
    assert (ip.src, ip.dst, reply.get_protocol(icmp.icmp).type, [a.port for a in out.actions]) == (
        PRIVATE, H1, 11, [ofp.OFPP_IN_PORT])


def test_reconnect_deletes_ours_then_installs_base_and_live_mapping_rules(app, dp):
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    first_rules = [(m.cookie, dict(m.match.items())) for m in dp.sent[:2]]
    again = FakeDatapath(ports=(UPLINK, H1_PORT))
    app._state_change(state_change_event(again, MAIN_DISPATCHER))
    kinds = [type(m).__name__ for m in again.sent]
    assert kinds[:4] == ["OFPSetConfig", "OFPSetAsync", "OFPFlowMod", "OFPBarrierRequest"]
    assert again.sent[2].command == ofp.OFPFC_DELETE and again.sent[2].cookie == cookies.OURS
    reinstalled = [(m.cookie, dict(m.match.items())) for m in again.sent
                   if isinstance(m, parser.OFPFlowMod) and cookies.mapping_id_of(m.cookie)]
    assert reinstalled == first_rules
