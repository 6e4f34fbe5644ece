"""The gateway's parts at their edges: port status, ARP retries and give-up, the inbound guard,
each mapping's rule state, and what the operator may ask. Fates on the simulated switch, as in
test_gateway.py."""

from __future__ import annotations

from ipaddress import IPv4Address

from ryu_nat.config import RedirectRule
from ryu_nat.core.addresses import Endpoint, Proto
from ryu_nat.gateway.guard import DROP_RULE_S
from ryu_nat.gateway.offload import RuleState
from ryu_nat.gateway.stats import Stats
from ryu_nat.gateway.switching import PrivateSwitch
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import OFPP_CONTROLLER, FlowDelete
from ryu_nat.openflow.reasons import FlowRemovedReason, PacketInReason

from .builders import frame, tcp_bytes, udp_bytes, with_ip_checksum
from .lab import (GATEWAY, H1, H1_PORT, H2, H2_PORT, INTERNET, MACS, PRIVATE, PUBLIC, ROUTER_MAC, SERVER, UPLINK, Lab,
                  arp_request, from_host)

H3_PORT = 4


def drop_rules(lab: Lab) -> list[int]:
    return sorted(int(r.match.get("udp_dst") or r.match.get("tcp_dst") or 0) for r in lab.switch.rules()
                  if cookies.kind_of(r.cookie) is RuleKind.DROP)


# --- port status -----------------------------------------------------------------------------------------


def test_a_port_that_comes_is_private_and_one_that_goes_is_not_flooded_to():
    lab = Lab()
    lab.apply(lab.gateway.port_changed(H3_PORT, present=True))
    lab.apply(lab.gateway.port_changed(UPLINK, present=True))
    lab.apply(lab.gateway.port_changed(OFPP_CONTROLLER, present=True))
    assert lab.gateway.private_ports == {H1_PORT, H2_PORT, H3_PORT}
    out = lab.gateway.packet_in(H1_PORT, frame(MACS[H1], "02:00:00:00:00:99", udp_bytes(H1, 1, H2, 2)), lab.now)
    assert [action.port for action in out[0].actions] == [H2_PORT, H3_PORT]
    lab.apply(lab.gateway.port_changed(H2_PORT, present=False))
    assert lab.gateway.private_ports == {H1_PORT, H3_PORT}
    out = lab.gateway.packet_in(H1_PORT, frame(MACS[H1], "02:00:00:00:00:99", udp_bytes(H1, 1, H2, 2)), lab.now)
    assert [action.port for action in out[0].actions] == [H3_PORT]


def test_a_frame_for_a_host_behind_its_own_port_is_not_sent_back():
    switch = PrivateSwitch(UPLINK, ROUTER_MAC, Stats())
    switch.host_seen(H1_PORT, MACS[H1])
    switch.host_seen(H1_PORT, MACS[H2])  # both behind one port (a hub or a switch of their own)
    data = frame(MACS[H1], MACS[H2], udp_bytes(H1, 1, H2, 2))
    from ryu_nat.core.packet import parse_frame

    assert switch.forward(H1_PORT, parse_frame(data), data) == []


# --- ARP: retries and give-up ----------------------------------------------------------------------------


def arp_requests(plan) -> list[tuple[int, ...]]:
    return [tuple(action.port for action in item.actions) for item in plan
            if getattr(item, "data", b"")[12:14] == b"\x08\x06"]


def test_an_unanswered_next_hop_is_asked_once_a_second_then_given_up_after_three():
    lab = Lab(answer_arp=False)
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, INTERNET, 53)))
    assert lab.gateway.stats.arp["requests_sent"] == 1 and arp_requests(lab.plans[-1]) == [(UPLINK,)]
    asked = []
    for _ in range(4):
        lab.advance(1)
        asked.append(arp_requests(lab.plans[-1]))
    assert asked == [[(UPLINK,)], [(UPLINK,)], [], []]
    assert lab.gateway.stats.drops["arp_timeout"] == 1
    lab.answer_arp = True
    [(port, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, INTERNET, 53)))
    assert (port, out["eth_dst"]) == (UPLINK, MACS[GATEWAY])


def test_a_private_host_is_asked_for_on_every_private_port_and_a_packet_waits_for_it():
    lab = Lab(answer_arp=False)
    held = lab.gateway.packet_in(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)), lab.now)
    assert arp_requests(held) == [(H1_PORT, H2_PORT)]
    lab.apply(held)
    lab.answer_arp = True
    out = lab.send(H1_PORT, arp_request(H1, PRIVATE))
    assert (H1_PORT, 40000) in [(port, fields.get("tcp_src")) for port, fields in out]


def test_with_no_private_port_known_nobody_is_asked():
    lab = Lab(answer_arp=False)
    lab.connect(ports=(UPLINK,))
    plan = lab.gateway.packet_in(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)), lab.now)
    assert arp_requests(plan) == [] and lab.gateway.stats.arp["queued"] == 1


def test_a_known_public_next_hop_is_not_learned_again_from_its_packets():
    lab = Lab()
    lab.send(UPLINK, arp_request(SERVER, PUBLIC))
    learned = lab.gateway.stats.arp["replies_learned"]
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000)))
    assert lab.gateway.stats.arp["replies_learned"] == learned


def test_a_private_source_on_the_uplink_is_spoofed():
    lab = Lab()
    assert lab.send(UPLINK, from_host(SERVER, udp_bytes(H1, 53, PUBLIC, 40000))) == []
    assert lab.gateway.stats.drops["spoofed_source"] == 1


# --- the inbound guard -----------------------------------------------------------------------------------


def test_drop_rules_last_ten_seconds_and_only_for_tcp_and_udp():
    lab = Lab()
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000)))
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 53, PUBLIC, 40001)))
    gre = bytearray(udp_bytes(SERVER, 53, PUBLIC, 40002))
    gre[9] = 47
    lab.send(UPLINK, from_host(SERVER, with_ip_checksum(bytes(gre))))
    assert drop_rules(lab) == [40000, 40001] and lab.gateway.stats.drops["unsolicited"] == 3
    # One that reached the controller before its port's drop rule did: dropped, no second rule.
    assert lab.gateway.packet_in(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000)), lab.now) == []
    assert lab.gateway.stats.drops["unsolicited"] == 4
    lab.advance(DROP_RULE_S)
    assert drop_rules(lab) == []
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000)))
    assert drop_rules(lab) == [40000] and lab.gateway.stats.drops["unsolicited"] == 5


def test_a_redirect_on_a_dropped_port_deletes_the_drop_rules_and_one_elsewhere_does_not():
    lab = Lab()
    lab.send(H2_PORT, arp_request(H2, PRIVATE))  # H2 known on its port
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 4000, PUBLIC, 9090)))
    assert lab.gateway.add_redirect(RedirectRule(Proto.TCP, 9091, Endpoint(IPv4Address(H2), 22))) == []
    plan = lab.gateway.add_redirect(RedirectRule(Proto.TCP, 9090, Endpoint(IPv4Address(H2), 22)))
    assert plan == [FlowDelete(cookies.for_drops(Proto.TCP, 9090), cookies.EXACT_MASK)]
    lab.apply(plan)
    [(port, inbound)] = lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 4000, PUBLIC, 9090)))
    assert (port, inbound["ipv4_dst"], inbound["tcp_dst"]) == (H2_PORT, H2, 22)


def test_a_reconnect_forgets_the_drop_rules_the_switch_lost():
    lab = Lab()
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000)))
    lab.switch = type(lab.switch)(ports=(UPLINK, H1_PORT, H2_PORT))
    lab.connect(ports=(UPLINK, H1_PORT, H2_PORT))
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000)))
    assert drop_rules(lab) == [40000] and lab.gateway.stats.drops["unsolicited"] == 2


# --- each mapping's rule state -----------------------------------------------------------------------------


def only_mapping(lab: Lab):
    [mapping] = lab.gateway.mappings()
    return mapping


def rule_of(lab: Lab, kind: RuleKind):
    return next(r for r in lab.switch.rules() if cookies.kind_of(r.cookie) is kind)


def test_rule_state_follows_installs_and_removals():
    lab = Lab(answer_arp=False)
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    mapping = only_mapping(lab)
    assert lab.gateway.rule_state(mapping) is RuleState.PENDING  # waits for the server's MAC
    lab.answer_arp = True
    lab.send(UPLINK, arp_request(SERVER, PUBLIC))
    assert lab.gateway.rule_state(mapping) is RuleState.INSTALLED
    reply = rule_of(lab, RuleKind.REPLY)
    lab.apply([FlowDelete(reply.cookie, (1 << 64) - 1)])
    lab.apply(lab.gateway.flow_removed(reply.cookie, FlowRemovedReason.DELETE, lab.now))
    assert lab.gateway.rule_state(mapping) is RuleState.ORIGINAL_ONLY
    lab.apply(lab.gateway.flow_removed(reply.cookie, FlowRemovedReason.DELETE, lab.now))  # told twice
    assert lab.gateway.rule_state(mapping) is RuleState.ORIGINAL_ONLY
    original = rule_of(lab, RuleKind.ORIGINAL)
    lab.apply([FlowDelete(original.cookie, (1 << 64) - 1)])
    lab.apply(lab.gateway.flow_removed(original.cookie, FlowRemovedReason.DELETE, lab.now))
    assert lab.gateway.rule_state(mapping) is RuleState.ABSENT and lab.gateway.mapping_count(Proto.UDP) == 1
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    assert lab.gateway.rule_state(mapping) is RuleState.INSTALLED


def test_a_reconnect_keeps_a_pending_mapping_pending_and_marks_unreachable_ones_absent():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    installed = only_mapping(lab)
    fresh = Lab()
    fresh.gateway = type(lab.gateway)(lab.gateway.config)
    fresh.answer_arp = False
    fresh.connect(ports=(UPLINK, H1_PORT, H2_PORT))
    fresh.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    pending = only_mapping(fresh)
    fresh.connect(ports=(UPLINK, H1_PORT, H2_PORT))
    assert fresh.gateway.rule_state(pending) is RuleState.PENDING
    assert lab.gateway.rule_state(installed) is RuleState.INSTALLED


def test_a_rule_idling_out_alone_leaves_the_other_and_an_icmp_mapping_has_no_rule_state():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    mapping = only_mapping(lab)
    original = rule_of(lab, RuleKind.ORIGINAL)
    lab.apply(lab.gateway.flow_removed(original.cookie, FlowRemovedReason.IDLE_TIMEOUT, lab.now))
    assert lab.gateway.rule_state(mapping) is RuleState.REPLY_ONLY
    lab.apply(lab.gateway.flow_removed(cookies.make(RuleKind.L2), FlowRemovedReason.IDLE_TIMEOUT, lab.now))
    assert lab.gateway.rule_state(mapping) is RuleState.REPLY_ONLY
    from .builders import echo_bytes

    lab.send(H1_PORT, from_host(H1, echo_bytes(H1, INTERNET, 7)))
    [ping] = lab.gateway.mappings(Proto.ICMP)
    assert lab.gateway.rule_state(ping) is None


# --- what the operator may ask -----------------------------------------------------------------------------


def test_the_operator_queries_answer_from_the_table_ports_and_redirects():
    lab = Lab({"port_range": "3000-3009"})
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    port = out["udp_src"]
    server = Endpoint(IPv4Address(SERVER), 53)
    assert lab.gateway.port_holder(Proto.UDP, port) == Endpoint(IPv4Address(H1), 5000)
    assert lab.gateway.ports_in_use(Proto.UDP) == 1 and lab.gateway.table_size(Proto.UDP) == 16384
    assert not lab.gateway.is_port_free(Proto.UDP, server, port)
    assert [str(rule) for rule in lab.gateway.redirects()] == [f"tcp:8080={H1}:80", f"udp:5353={H2}:53"]
    assert lab.gateway.is_port_reserved(Proto.TCP, 8080) and lab.gateway.redirect(Proto.TCP, 8080) is not None
    removed = lab.gateway.remove_redirect(Proto.TCP, 8080)
    assert str(removed) == f"tcp:8080={H1}:80" and lab.gateway.remove_redirect(Proto.TCP, 8080) is None
    assert not lab.gateway.is_port_reserved(Proto.TCP, 8080) and lab.gateway.redirect(Proto.TCP, 8080) is None
    lab.apply(lab.gateway.reset())
    assert lab.gateway.mapping_count(Proto.UDP) == 0 and lab.gateway.is_port_free(Proto.UDP, server, port)
    assert lab.gateway.stats.mappings_removed["reset"] == 1
    assert lab.gateway.stats.as_dict()["mappings_removed"] == {"reset": 1}


def test_an_invalid_ttl_packet_in_is_counted_once_whatever_it_releases():
    lab = Lab()
    lab.apply(lab.gateway.packet_in(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53, ttl=1)), lab.now,
                                    PacketInReason.INVALID_TTL))
    assert lab.gateway.stats.packet_ins["invalid_ttl"] == 1
