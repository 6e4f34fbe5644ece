"""A NAT at a hostile border (issue 11): what strangers on either side send must not poison the
neighbours, blind live flows, leave zombie mappings, displace real fragments, earn ICMP toward
broadcasts, or turn into private ports. Fates on the simulated switch, as in test_gateway.py."""

from __future__ import annotations

import logging

import pytest

from ryu_nat.core.addresses import Proto
from ryu_nat.core.fragments import fragment
from ryu_nat.core.table import MappingKind
from ryu_nat.gateway import guard, offload
from ryu_nat.gateway.guard import DROP_RULE_S
from ryu_nat.gateway.neighbours import LOCKTIME_S
from ryu_nat.gateway.offload import PENDING_S, RuleState
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import OFPP_ANY, OFPP_CONTROLLER, OFPP_MAX, FlowDelete
from ryu_nat.openflow.reasons import FlowRemovedReason

from .builders import echo_bytes, frame, icmp_error_bytes, parsed, tcp_bytes, udp_bytes, with_ip_checksum
from .lab import (BROADCAST_MAC, GATEWAY, H1, H1_PORT, H2, H2_PORT, INTERNET, MACS, PRIVATE, PUBLIC, ROUTER_MAC,
                  SERVER, UPLINK, Lab, arp_reply, arp_request, from_host)

OFPP_LOCAL = 0xFFFFFFFE
NEW_MAC = "00:00:00:00:99:01"
STRANGER = "203.0.113.66"


def udp_to(lab: Lab, dst: str, sport: int = 5000, dport: int = 53, host: str = H1, port: int = H1_PORT) -> dict:
    """A UDP packet from a private host through the NAT: where it left (must be the uplink), as sent."""
    [(out_port, out)] = lab.send(port, from_host(host, udp_bytes(host, sport, dst, dport)))
    assert out_port == UPLINK
    return out


def arrives(lab: Lab, src: str, sport: int, dport: int, eth_src: str | None = None, payload: bytes = b"hi") -> list:
    """A UDP packet from ``src`` to the public address arrives on the uplink: where it went."""
    sender_mac = eth_src or MACS.get(src, MACS[GATEWAY])
    return lab.send(UPLINK, frame(sender_mac, ROUTER_MAC, udp_bytes(src, sport, PUBLIC, dport, payload=payload)))


def rule(lab: Lab, kind: RuleKind):
    [found] = [r for r in lab.switch.rules() if cookies.kind_of(r.cookie) is kind]
    return found


def eth_dst_of(flow_rule) -> str:
    return next(a.value for a in flow_rule.actions if getattr(a, "field", None) == "eth_dst")


# --- 2. neighbours you can trust -----------------------------------------------------------------------------


@pytest.mark.parametrize("forged_mac", [BROADCAST_MAC, "00:00:00:00:00:00", "01:00:5e:00:00:fb", ROUTER_MAC])
@pytest.mark.parametrize("opcode", ["gratuitous", "request for the NAT"])
def test_an_arp_from_a_mac_no_host_can_have_claiming_the_gateway_is_not_learned(forged_mac, opcode):
    # It was: every new mapping's rule then sent to broadcast, or nowhere (issue 11, problem 2).
    lab = Lab()
    target = GATEWAY if opcode == "gratuitous" else PUBLIC
    lab.send(UPLINK, arp_request(GATEWAY, target, mac=forged_mac))
    out = udp_to(lab, INTERNET)  # the NAT asks who the gateway is, and the real one answers
    assert out["eth_dst"] == MACS[GATEWAY]
    assert eth_dst_of(rule(lab, RuleKind.ORIGINAL)) == MACS[GATEWAY]
    assert lab.gateway.stats.drops["bad_source_mac"] == 1


def test_an_arp_whose_sender_field_holds_a_group_mac_is_dropped_whatever_its_ethernet_source():
    lab = Lab()
    forged = bytearray(arp_request(GATEWAY, PUBLIC))
    forged[22:28] = b"\xff" * 6  # the ARP sender MAC; the Ethernet source stays the gateway's
    assert lab.send(UPLINK, bytes(forged)) == []
    assert lab.gateway.stats.drops["bad_source_mac"] == 1 and lab.gateway.stats.arp["replies_learned"] == 0


def test_an_unsolicited_reply_does_not_teach_a_new_neighbour():
    # Linux (arp_accept = 0): a reply creates an entry only when the NAT asked.
    lab = Lab()
    lab.send(UPLINK, arp_reply(GATEWAY, PUBLIC, mac=NEW_MAC))
    assert lab.gateway.stats.arp["replies_learned"] == 0
    assert udp_to(lab, INTERNET)["eth_dst"] == MACS[GATEWAY]


def test_a_forged_arp_does_not_replace_a_known_gateway():
    lab = Lab()
    udp_to(lab, INTERNET)
    lab.advance(LOCKTIME_S + 1)
    lab.send(UPLINK, arp_request(GATEWAY, GATEWAY, mac=BROADCAST_MAC))
    assert udp_to(lab, INTERNET, sport=5001)["eth_dst"] == MACS[GATEWAY]


def test_a_private_host_sending_from_a_group_mac_is_dropped_and_not_learned():
    lab = Lab()
    multicast = "01:00:5e:00:00:01"
    assert lab.send(H1_PORT, frame(multicast, ROUTER_MAC, udp_bytes(H1, 5000, SERVER, 53))) == []
    assert lab.gateway.stats.drops["bad_source_mac"] == 1 and not list(lab.gateway.mappings())
    # A redirect to H1 then asks who H1 is, rather than sending to the group address.
    [(port, inbound)] = lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 4000, PUBLIC, 8080)))
    assert (port, inbound["eth_dst"], inbound["tcp_dst"]) == (H1_PORT, MACS[H1], 80)


def test_no_one_else_may_claim_the_nats_own_address():
    lab = Lab()
    assert lab.send(UPLINK, arp_request(PUBLIC, SERVER, mac=MACS[SERVER])) == []
    assert lab.gateway.stats.drops["spoofed_source"] == 1


def test_a_neighbour_not_heard_from_for_a_minute_is_asked_again_at_its_mac_and_forgotten_if_silent():
    lab = Lab()
    lab.send(UPLINK, arp_request(SERVER, PUBLIC))
    lab.answer_arp = False
    probes = []
    for _ in range(64):
        probes += [(port, fields["eth_dst"], fields["arp_tpa"]) for port, fields in lab.advance(1)
                   if fields.get("arp_op") == 1]
    assert probes == [(UPLINK, MACS[SERVER], SERVER)] * 3
    assert lab.gateway.stats.arp["probes_sent"] == 3 and lab.gateway.stats.arp["forgotten"] == 1
    # Forgotten: a new flow to it asks by broadcast again.
    lab.apply(lab.gateway.packet_in(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)), lab.now))
    [request] = lab.plans[-1]
    assert request.data[:6] == b"\xff" * 6


def test_a_neighbour_that_answers_its_re_check_stays_known():
    lab = Lab()
    lab.send(UPLINK, arp_request(SERVER, PUBLIC))
    for _ in range(70):
        lab.advance(1)
    assert lab.gateway.stats.arp["probes_sent"] == 1 and lab.gateway.stats.arp["forgotten"] == 0
    requests = lab.gateway.stats.arp["requests_sent"]
    udp_to(lab, SERVER)
    assert lab.gateway.stats.arp["requests_sent"] == requests  # no need to ask: known


def test_traffic_from_a_neighbour_confirms_it_so_it_is_not_asked_again():
    lab = Lab()
    lab.send(UPLINK, arp_request(SERVER, PUBLIC))
    for second in range(70):
        lab.advance(1)
        arrives(lab, SERVER, 53, 7000 + second)  # each reaches the controller (and is refused)
    assert lab.gateway.stats.arp["probes_sent"] == 0


@pytest.mark.parametrize("how", ["request for the NAT", "gratuitous", "reply"])
def test_a_private_host_with_a_new_mac_gets_its_mappings_rules_moved(how):
    # After Mininet restarted without the controller, forwards went to the old MAC (issue 11).
    lab = Lab()
    out = udp_to(lab, SERVER)
    lab.advance(LOCKTIME_S)
    lab.macs[H1] = NEW_MAC
    announce = {"request for the NAT": arp_request(H1, PRIVATE, mac=NEW_MAC),
                "gratuitous": arp_request(H1, H1, mac=NEW_MAC), "reply": arp_reply(H1, PRIVATE, mac=NEW_MAC)}
    lab.send(H1_PORT, announce[how])
    [(port, back)] = arrives(lab, SERVER, 53, out["udp_src"])
    assert (port, back["eth_dst"], back["ipv4_dst"]) == (H1_PORT, NEW_MAC, H1)
    assert lab.gateway.rule_state(next(lab.gateway.mappings())) is RuleState.INSTALLED
    assert lab.gateway.stats.arp["mac_changes"] == 1 and lab.gateway.stats.arp["mappings_moved"] == 1


def test_a_gateway_with_a_new_mac_gets_every_mapping_behind_it_moved():
    lab = Lab()
    udp_to(lab, INTERNET)
    udp_to(lab, INTERNET, sport=5001)
    udp_to(lab, SERVER)  # a direct neighbour: not behind the gateway
    lab.advance(LOCKTIME_S)
    lab.send(UPLINK, arp_request(GATEWAY, GATEWAY, mac=NEW_MAC))
    to_gateway = [r for r in lab.switch.rules() if cookies.kind_of(r.cookie) is RuleKind.ORIGINAL]
    assert sorted(eth_dst_of(r) for r in to_gateway) == sorted([NEW_MAC, NEW_MAC, MACS[SERVER]])
    assert lab.gateway.stats.arp["mappings_moved"] == 2


def test_rules_follow_a_moving_neighbour_a_budget_at_a_time(monkeypatch):
    monkeypatch.setattr(offload, "MOVES_PER_TICK", 2)
    lab = Lab()
    for sport in (5000, 5001, 5002):
        udp_to(lab, INTERNET, sport=sport)
    lab.advance(LOCKTIME_S)
    lab.send(UPLINK, arp_request(GATEWAY, GATEWAY, mac=NEW_MAC))
    assert lab.gateway.stats.arp["mappings_moved"] == 2
    lab.advance(1)
    assert lab.gateway.stats.arp["mappings_moved"] == 3
    assert {eth_dst_of(r) for r in lab.switch.rules() if cookies.kind_of(r.cookie) is RuleKind.ORIGINAL} == {NEW_MAC}


def test_back_to_back_answers_the_first_wins_and_a_packet_never_changes_a_known_mac():
    lab = Lab()
    udp_to(lab, SERVER)
    lab.send(UPLINK, arp_reply(SERVER, PUBLIC, mac=NEW_MAC))  # less than a second after the first answer
    assert lab.gateway.stats.arp["mac_changes"] == 0
    lab.advance(LOCKTIME_S)
    arrives(lab, SERVER, 53, 40000, eth_src=NEW_MAC)  # an IP packet claiming the server from another MAC
    assert lab.gateway.stats.arp["mac_changes"] == 0
    assert udp_to(lab, SERVER, sport=5001)["eth_dst"] == MACS[SERVER]


def test_after_a_reconnect_hosts_that_were_replaced_are_found_again_and_rules_follow():
    # Mininet restarted (new hosts, new MACs) while the controller ran on.
    lab = Lab()
    out = udp_to(lab, SERVER)
    lab.macs[SERVER] = NEW_MAC  # the new server answers only to its new MAC (or broadcast)
    lab.switch = type(lab.switch)(ports=(UPLINK, H1_PORT, H2_PORT))
    lab.apply(lab.gateway.switch_connected([UPLINK, H1_PORT, H2_PORT], lab.now))
    assert eth_dst_of(rule(lab, RuleKind.ORIGINAL)) == MACS[SERVER]  # what was known, for now
    for _ in range(6):
        lab.advance(1)
    assert lab.gateway.stats.arp["forgotten"] >= 1 and lab.gateway.stats.arp["mappings_moved"] == 1
    assert eth_dst_of(rule(lab, RuleKind.ORIGINAL)) == NEW_MAC
    [(port, again)] = lab.switch.fate(in_port=H1_PORT, eth_src=MACS[H1], eth_dst=ROUTER_MAC, eth_type=0x0800,
                                      ipv4_src=H1, ipv4_dst=SERVER, ip_proto=17, udp_src=5000, udp_dst=53, ip_ttl=64)
    assert (port, again["eth_dst"], again["udp_src"]) == (UPLINK, NEW_MAC, out["udp_src"])


# --- 3. the inbound guard never hurts a live mapping ----------------------------------------------------------


def one_way_flow_whose_reply_rule_idled_out(lab: Lab) -> int:
    """H1 streams UDP to the server, which never answers, until the reply rule idles out; the public port."""
    public_port = udp_to(lab, SERVER)["udp_src"]
    for _ in range(4):
        lab.advance(100)
        lab.switch.fate(in_port=H1_PORT, eth_src=MACS[H1], eth_dst=ROUTER_MAC, eth_type=0x0800, ipv4_src=H1,
                        ipv4_dst=SERVER, ip_proto=17, udp_src=5000, udp_dst=53, ip_ttl=64)
    assert lab.gateway.rule_state(next(lab.gateway.mappings())) is RuleState.ORIGINAL_ONLY
    return public_port


def test_a_strangers_packet_does_not_blind_a_one_way_flow_whose_reply_rule_idled_out():
    # RFC 4787 REQ-11: one stranger's packet made a drop rule for the whole port, which dropped the
    # real remote's replies for 10 s (issue 11, problem 3).
    lab = Lab()
    public_port = one_way_flow_whose_reply_rule_idled_out(lab)
    assert arrives(lab, STRANGER, 999, public_port) == []
    assert lab.gateway.stats.drops["unsolicited"] == 1
    [(port, back)] = arrives(lab, SERVER, 53, public_port)
    assert (port, back["ipv4_dst"], back["udp_dst"]) == (H1_PORT, H1, 5000)
    assert lab.gateway.rule_state(next(lab.gateway.mappings())) is RuleState.INSTALLED


def test_a_flood_costs_one_packet_in_per_sender_and_port_and_the_switch_drops_are_counted():
    lab = Lab()
    public_port = one_way_flow_whose_reply_rule_idled_out(lab)
    for _ in range(5):
        arrives(lab, STRANGER, 999, public_port)  # a port with an owner: this sender only
        arrives(lab, STRANGER, 1000, public_port)
        arrives(lab, STRANGER, 999, 7777)  # a port without one: the whole port
        arrives(lab, INTERNET, 999, 7777)
    assert lab.gateway.stats.drops["unsolicited"] == 3  # three packet-ins, one per rule
    lab.advance(DROP_RULE_S)
    assert lab.gateway.stats.drops["unsolicited"] == 20  # the switch's 17 counted when its rules ended


def test_drop_rules_are_bounded_and_past_the_bound_one_warning_says_so(monkeypatch, caplog):
    monkeypatch.setattr(guard, "MAX_DROP_RULES", 2)
    lab = Lab()
    with caplog.at_level(logging.WARNING, logger="ryu_nat.gateway.guard"):
        for port in range(7000, 7010):
            arrives(lab, STRANGER, 999, port)
    assert len([r for r in lab.switch.rules() if cookies.kind_of(r.cookie) is RuleKind.DROP]) == 2
    assert lab.gateway.stats.drops["unsolicited"] == 10
    [line] = caplog.messages
    assert line == "inbound guard: 2 drop rules on the switch; more unsolicited traffic reaches the controller"


def test_a_port_that_gains_an_owner_loses_its_drop_rules_at_once():
    lab = Lab({"port_range": "3000-3000"})
    arrives(lab, SERVER, 53, 3000)  # nobody holds 3000 yet: the whole port is dropped
    before = len(lab.plans)
    assert udp_to(lab, SERVER)["udp_src"] == 3000
    assert lab.plans[before][0] == FlowDelete(cookies.for_drops(Proto.UDP, 3000), cookies.EXACT_MASK)
    lab.apply([FlowDelete(rule(lab, RuleKind.REPLY).cookie, cookies.EXACT_MASK)])  # the reply rule goes
    [(port, back)] = arrives(lab, SERVER, 53, 3000)
    assert (port, back["udp_dst"]) == (H1_PORT, 5000)


# --- 4. no zombies ----------------------------------------------------------------------------------------------


def test_a_mapping_whose_next_hop_never_answers_is_removed_and_its_port_freed():
    # It was: the mapping waited for its rules forever and held its port (issue 11, problem 4).
    lab = Lab({"port_range": "3000-3001"}, answer_arp=False)
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, INTERNET, 53)))
    assert lab.gateway.rule_state(next(lab.gateway.mappings())) is RuleState.PENDING
    lab.advance(4)  # ARP gives up after 3 s
    assert list(lab.gateway.mappings()) == [] and lab.gateway.ports_in_use(Proto.UDP) == 0
    assert lab.gateway.stats.arp["mappings_unreachable"] == 1
    assert lab.gateway.stats.mappings_removed["expired"] == 1


def test_a_mapping_whose_rules_never_reach_the_switch_expires_on_the_controllers_clock():
    # 256 next hops already wait for ARP: the next one is not even asked for, and its mapping would
    # never hear that ARP gave up.
    lab = Lab({"public_ipv4": "192.168.0.1/16", "public_ipv4_gateway": "192.168.255.254"}, answer_arp=False)
    for i in range(257):
        lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, f"192.168.{1 + i // 200}.{1 + i % 200}", 53)))
    assert lab.gateway.mapping_count(Proto.UDP) == 257 and lab.gateway.stats.drops["arp_queue_full"] == 1
    lab.advance(4)
    assert lab.gateway.mapping_count(Proto.UDP) == 1
    lab.advance(PENDING_S - 4)
    assert lab.gateway.mapping_count(Proto.UDP) == 0 and lab.gateway.ports_in_use(Proto.UDP) == 0


def test_a_redirect_to_a_private_server_that_never_answers_leaves_no_mapping():
    lab = Lab(answer_arp=False)
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 4000, PUBLIC, 5353)))
    [mapping] = lab.gateway.mappings()
    assert mapping.kind is MappingKind.REDIRECT
    lab.advance(4)
    assert list(lab.gateway.mappings()) == []


# --- 5. fragments: a stranger's junk never displaces a real reply (RFC 4787 REQ-14a) ---------------------------


def test_a_real_replys_fragments_out_of_order_survive_a_flood_of_strangers_fragments():
    lab = Lab()
    public_port = udp_to(lab, SERVER, dport=9000)["udp_src"]
    reply = fragment(parsed(udp_bytes(SERVER, 9000, PUBLIC, public_port, payload=bytes(4000), ident=77)), 1480)
    first, *later = reply
    for piece in reversed(later):  # out of order: the pieces without ports first
        assert lab.send(UPLINK, from_host(SERVER, piece)) == []
    for i in range(100):  # one-piece junk (UDP, and GRE) from many spoofed outside sources
        junk = bytearray(fragment(parsed(udp_bytes(f"198.18.{i // 250}.{i % 250 + 1}", 53, PUBLIC, 40000,
                                                   payload=bytes(2000), ident=i)), 1480)[0])
        if i % 2:
            junk[9] = 47
        assert lab.send(UPLINK, from_host(SERVER, with_ip_checksum(bytes(junk)))) == []
    delivered = lab.send(UPLINK, from_host(SERVER, first))
    assert [(port, fields["ipv4_dst"]) for port, fields in delivered] == [(H1_PORT, H1)] * len(reply)
    assert lab.gateway.stats.drops["fragment_evicted"] == 100 - 63  # junk displaced only junk


def test_a_datagram_whose_last_piece_comes_too_late_is_counted_once():
    lab = Lab()
    first, second, _ = fragment(parsed(udp_bytes(H1, 5000, SERVER, 9000, payload=bytes(4000))), 1480)
    lab.send(H1_PORT, from_host(H1, first))
    lab.now += 11  # before the tick: the late piece finds its datagram stale
    lab.send(H1_PORT, from_host(H1, second))
    assert lab.gateway.stats.drops["fragment_timeout"] == 1


def test_a_private_hosts_fragments_are_trusted_but_bounded_per_source():
    lab = Lab()
    for ident in range(20):
        piece = fragment(parsed(udp_bytes(H1, 5000, SERVER, 9000, payload=bytes(3000), ident=ident)), 1480)[0]
        lab.send(H1_PORT, from_host(H1, piece))
    assert lab.gateway.stats.drops["fragment_evicted"] == 4  # 16 datagrams per source


# --- 6. the smaller ones ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dst", ["224.0.0.5", "255.255.255.255"])
def test_no_time_exceeded_about_a_packet_to_a_multicast_or_broadcast_address(dst):
    lab = Lab()
    assert lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, dst, 53, ttl=1))) == []
    assert lab.gateway.stats.icmp_sent["time_exceeded"] == 0 and lab.gateway.stats.drops["ttl_exceeded"] == 1


@pytest.mark.parametrize("kind", [4, 5, 42])  # source quench, redirect, a type nobody knows
def test_no_time_exceeded_about_an_icmp_message_that_may_be_an_error(kind):
    lab = Lab()
    message = bytearray(icmp_error_bytes(H1, INTERNET, udp_bytes(INTERNET, 53, H1, 5000), kind=kind, code=0, ttl=1))
    assert lab.send(H1_PORT, from_host(H1, bytes(message))) == []
    assert lab.gateway.stats.icmp_sent["time_exceeded"] == 0


@pytest.mark.parametrize("src", ["192.168.3.255", "192.168.3.0", "224.0.0.1", "0.0.0.0", "255.255.255.255"])
def test_no_echo_reply_to_a_broadcast_multicast_network_or_unspecified_source(src):
    lab = Lab()
    assert lab.send(UPLINK, from_host(SERVER, echo_bytes(src, PUBLIC, 7))) == []
    assert lab.gateway.stats.icmp_sent["echo_reply"] == 0 and lab.gateway.stats.drops["spoofed_source"] == 1


def test_the_icmp_check_refuses_an_echo_reply_to_no_single_host_even_if_asked_directly():
    from ryu_nat.core.addresses import Subnet
    from ryu_nat.core.neighbours import Location
    from ryu_nat.gateway.local import LocalTraffic
    from ryu_nat.gateway.stats import Stats
    from ipaddress import IPv4Interface

    stats = Stats()
    local = LocalTraffic(ROUTER_MAC, Subnet.of(IPv4Interface(f"{PUBLIC}/24")), Subnet.of(IPv4Interface(f"{PRIVATE}/24")),
                         stats)
    assert local.answer(parsed(echo_bytes("10.0.0.255", PRIVATE, 7)), Location(H1_PORT, MACS[H1])) == []
    assert stats.drops["spoofed_source"] == 1 and stats.icmp_sent["echo_reply"] == 0


@pytest.mark.parametrize("src, port", [(PRIVATE, H1_PORT), ("10.0.0.0", H1_PORT), ("10.0.0.255", H1_PORT),
                                       ("192.168.3.255", UPLINK), ("192.168.3.0", UPLINK)])
def test_no_mapping_for_a_source_that_is_the_nats_own_a_network_or_a_broadcast_address(src, port):
    lab = Lab()
    if port == UPLINK:
        data = from_host(SERVER, udp_bytes(src, 4000, PUBLIC, 5353))  # to a redirect
    else:
        data = from_host(H1, udp_bytes(src, 4000, SERVER, 53))
    assert lab.send(port, data) == []
    assert list(lab.gateway.mappings()) == [] and lab.gateway.stats.drops["spoofed_source"] == 1


@pytest.mark.parametrize("in_port", [None, 0, OFPP_MAX + 1, OFPP_CONTROLLER, OFPP_LOCAL, OFPP_ANY])
def test_a_packet_in_without_a_physical_in_port_is_dropped_and_never_becomes_a_private_port(in_port):
    lab = Lab()
    data = frame(MACS[H1], "02:00:00:00:00:99", udp_bytes(H1, 1, H2, 2))
    assert lab.gateway.packet_in(in_port, data, lab.now) == []
    assert lab.gateway.stats.drops["bad_in_port"] == 1 and lab.gateway.private_ports == {H1_PORT, H2_PORT}
    flood = lab.gateway.packet_in(H2_PORT, frame(MACS[H2], "02:00:00:00:00:98", udp_bytes(H2, 1, H1, 2)), lab.now)
    assert [action.port for action in flood[0].actions] == [H1_PORT]
