"""After a restart the table is rebuilt from the switch's rules: connections keep their public ports and their
rules, what cannot be rebuilt is deleted and counted, and routed packets wait until the table is whole."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

from ryu_nat.core import tcp
from ryu_nat.core.addresses import Proto, pack_key, reverse_key
from ryu_nat.core.fragments import fragment
from ryu_nat.core.table import MappingKind
from ryu_nat.gateway.offload import RuleState
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import FlowDelete, FlowRule, Match, Output

from .builders import echo_bytes, parsed, tcp_bytes, udp_bytes
from .lab import H1, H1_PORT, H2, H2_PORT, INTERNET, MACS, PUBLIC, ROUTER_MAC, SERVER, UPLINK, Lab, from_host, ip

FIN_ACK, ACK, SYN_ACK = 0x11, 0x10, 0x12
PORTS = {H1: H1_PORT, H2: H2_PORT}


def udp_rules(mapping_id: int, host: str, port: int, remote: str, remote_port: int,
              public_port: int) -> list[FlowRule]:
    """A UDP source-NAT mapping's two rules, as the gateway installs them."""
    original = pack_key(int(ip(host)), int(ip(remote)), port, remote_port)
    reply = pack_key(int(ip(remote)), int(ip(PUBLIC)), remote_port, public_port)
    return [rules.mapping_rewrite(RuleKind.ORIGINAL, mapping_id, Proto.UDP, original, reverse_key(reply), PORTS[host],
                                  ROUTER_MAC, MACS[SERVER], UPLINK, 300),
            rules.mapping_rewrite(RuleKind.REPLY, mapping_id, Proto.UDP, reply, reverse_key(original), UPLINK,
                                  ROUTER_MAC, MACS[host], PORTS[host], 300)]


def mapping_rules(lab: Lab) -> list[FlowRule]:
    return [r for r in lab.switch.rules() if cookies.kind_of(r.cookie) in (RuleKind.ORIGINAL, RuleKind.REPLY)]


def mappings(lab: Lab) -> dict[int, object]:
    return {m.id: m for m in lab.gateway.mappings()}


def test_tcp_and_udp_mappings_come_back_with_their_ids_ports_kinds_and_rules():
    lab = Lab()
    [(_, udp_out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    [(_, tcp_out)] = lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6000, SERVER, 80)))
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 7000, PUBLIC, 8080)))  # a redirect to H1:80
    before = {m.id: (m.proto, m.original, m.reply, m.kind) for m in lab.gateway.mappings()}
    rules_before = sorted(mapping_rules(lab), key=lambda r: r.cookie)
    lab.now += 30
    lab.restart()
    assert {m.id: (m.proto, m.original, m.reply, m.kind) for m in lab.gateway.mappings()} == before
    assert sorted(m.kind.value for m in lab.gateway.mappings()) == ["nat", "nat", "redirect"]
    assert all(m.created == 0.0 and lab.gateway.rule_state(m) is RuleState.INSTALLED for m in lab.gateway.mappings())
    assert sorted(mapping_rules(lab), key=lambda r: r.cookie) == rules_before  # kept, not installed again
    assert lab.gateway.stats.restore["restored"] == 3 and lab.gateway.stats.flow_setups == 0
    assert str(lab.gateway.port_holder(Proto.UDP, udp_out["udp_src"]).ip) == H1  # the port is held again
    # A FIN from the server reaches the controller: the restored mapping translates it (and starts closing).
    [(port, fin)] = lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 80, PUBLIC, tcp_out["tcp_src"],
                                                                 bits=FIN_ACK)))
    assert (port, fin["ipv4_dst"], fin["tcp_dst"]) == (H2_PORT, H2, 6000)
    # New mappings get ids above every id read back, and ports no restored mapping holds.
    [(_, new)] = lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 5000, SERVER, 53)))
    newest = max(mappings(lab))
    assert newest > max(before) and new["udp_src"] != udp_out["udp_src"]


def test_a_tcp_connections_state_comes_back_as_far_as_its_rules_show_it():
    lab = Lab({"tcp_transitory_timeout": "240"})
    [(_, half_open)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 6000, SERVER, 80)))
    [(_, answered)] = lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6001, SERVER, 80)))
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 80, PUBLIC, answered["tcp_src"], bits=SYN_ACK)))
    assert {r.idle_timeout_s for r in mapping_rules(lab)} == {240}  # until answered: the transitory timeout
    lab.restart()
    by_host = {str(IPv4Address(m.initiator)): m for m in lab.gateway.mappings()}
    assert not tcp.is_established(by_host[H1]) and tcp.is_established(by_host[H2])  # its reply rule counted
    lab.advance(241)  # the rules idle out: the half-open one ends, the established one lives on in the table
    assert list(mappings(lab)) == [by_host[H2].id] and mapping_rules(lab) == []
    lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6001, SERVER, 80, bits=ACK)))
    assert {r.idle_timeout_s for r in mapping_rules(lab)} == {7440}  # installed again, established
    lab.restart()
    [mapping] = lab.gateway.mappings()
    assert tcp.is_established(mapping) and lab.gateway.rule_state(mapping) is RuleState.INSTALLED
    lab.advance(241)
    assert list(lab.gateway.mappings()) == [mapping]  # its rules keep the established timeout


def test_a_udp_mapping_with_one_rule_left_comes_back_and_a_tcp_one_is_deleted():
    lab = Lab({"udp_idle_timeout": "100"})
    [(_, udp)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6000, SERVER, 80)))
    udp_id, tcp_id = sorted(mappings(lab))
    lab.switch.remove_silently(cookies.make(RuleKind.REPLY, udp_id))  # one-way traffic: the reply rule idled out
    lab.switch.remove_silently(cookies.make(RuleKind.ORIGINAL, tcp_id))
    lab.restart()
    [mapping] = lab.gateway.mappings()
    assert mapping.id == udp_id and lab.gateway.rule_state(mapping) is RuleState.ORIGINAL_ONLY
    assert lab.gateway.stats.restore["restored_one_rule"] == 1 and lab.gateway.stats.restore["one_rule_missing"] == 1
    assert {cookies.mapping_id_of(r.cookie) for r in mapping_rules(lab)} == {udp_id}
    # A reply misses the missing rule, reaches the controller, and brings both rules back.
    [(port, back)] = lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, udp["udp_src"])))
    assert (port, back["ipv4_dst"], back["udp_dst"]) == (H1_PORT, H1, 5000)
    assert lab.gateway.rule_state(mapping) is RuleState.INSTALLED and len(mapping_rules(lab)) == 2


def test_rules_that_rebuild_nothing_are_deleted_and_counted():
    lab = Lab()
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    [good] = mappings(lab)
    original = next(r for r in mapping_rules(lab) if cookies.kind_of(r.cookie) is RuleKind.ORIGINAL)
    reply = next(r for r in mapping_rules(lab) if cookies.kind_of(r.cookie) is RuleKind.REPLY)
    # Mapping 900: the same public port, for another private endpoint and another remote (a port owned twice).
    stolen = udp_rules(900, H2, 5000, INTERNET, 53, out["udp_src"])
    strange_kind = FlowRule(10, Match(), (), cookies.OURS | 0x77 << 40 | 3)
    odd_shape = FlowRule(200, Match.of(eth_type=0x0800, in_port=H2_PORT, ip_proto=17), (Output(UPLINK),),
                         cookies.make(RuleKind.ORIGINAL, 950), 300, 0, True)
    lab.apply([*stolen, strange_kind, odd_shape])
    lab.restart()
    assert list(mappings(lab)) == [good]
    restore = lab.gateway.stats.restore
    assert (restore["restored"], restore["port_owned_twice"], restore["outside_layout"]) == (1, 2, 2)
    assert {r.cookie for r in lab.switch.rules() if cookies.is_ours(r.cookie)
            and cookies.kind_of(r.cookie) is not RuleKind.BASE} == {original.cookie, reply.cookie}
    assert max(m.id for m in lab.gateway.mappings()) == good
    lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 7000, SERVER, 53)))
    assert max(mappings(lab)) > 950  # ids of rules deleted unrebuilt are not given out again


def test_rules_made_for_another_configuration_are_not_rebuilt():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.overrides = {"router_mac": "02:00:00:00:00:77"}  # rules that write the old MAC would be wrong now
    lab.restart()
    assert list(lab.gateway.mappings()) == [] and mapping_rules(lab) == []
    assert lab.gateway.stats.restore["outside_layout"] == 2


def test_a_mapping_rule_outside_the_nats_table_is_not_rebuilt():
    """Table 0 only measures frames: a pair whose rules sit there rewrites nothing the NAT would install."""
    lab = Lab()
    outside = [dataclasses.replace(rule, table_id=rules.TABLE_SIZE)
               for rule in udp_rules(7, H1, 5000, SERVER, 53, 30000)]
    lab.apply(outside)
    lab.restart()
    assert list(lab.gateway.mappings()) == [] and mapping_rules(lab) == []
    assert lab.gateway.stats.restore["outside_layout"] == 2


def test_routed_packets_wait_for_the_table_and_then_go_through_it():
    lab = Lab()
    [(_, out)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 6000, SERVER, 80)))
    lab.restart(read_back=False)
    assert lab.gateway.review.restoring
    assert lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 80, PUBLIC, out["tcp_src"], bits=FIN_ACK))) == []
    assert lab.send(H2_PORT, from_host(H2, echo_bytes(H2, INTERNET, 7))) == []
    assert lab.gateway.stats.restore["held"] == 2 and lab.gateway.mapping_count(Proto.ICMP) == 0
    sent = [(port, fields.get("ipv4_dst")) for port, fields in lab.read_back()]
    assert (H1_PORT, H1) in sent and (UPLINK, INTERNET) in sent  # the FIN, translated; the ping, sent on
    assert not lab.gateway.review.restoring and lab.gateway.stats.restore["runs"] == 1


def test_icmp_mappings_are_lost_and_a_reconnect_during_the_read_starts_it_again():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, echo_bytes(H1, SERVER, 7)))
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    assert lab.gateway.mapping_count(Proto.ICMP) == 1
    lab.restart(read_back=False)
    lab.connect()  # the switch came back before anything was read: the read starts over, and ends
    assert [m.proto for m in lab.gateway.mappings()] == [Proto.UDP]
    assert lab.gateway.stats.restore["runs"] == 1


def test_a_slice_that_cannot_be_read_is_deleted():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.restart(read_back=False)
    review = lab.gateway.review
    lab.apply(review.restore_unreadable(cookies.OURS, cookies.OURS_MASK))
    lab.apply(review.restore_done(lab.now))
    assert mapping_rules(lab) == [] and lab.gateway.stats.restore["unreadable"] == 1
    assert lab.plans[-2] == [FlowDelete(cookies.OURS, cookies.OURS_MASK)]


def test_more_mappings_than_the_table_holds_are_evicted_with_their_rules_first():
    lab = Lab()
    for sport in (5000, 5001, 5002):
        lab.send(H1_PORT, from_host(H1, udp_bytes(H1, sport, SERVER, 53)))
    lab.overrides = {"udp_table_size": "2"}
    lab.restart()
    assert lab.gateway.mapping_count(Proto.UDP) == 2 and len(mapping_rules(lab)) == 4
    assert lab.gateway.stats.mappings_removed["evicted"] == 1


def test_a_hairpin_mapping_comes_back_as_one():
    lab = Lab()
    lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6000, PUBLIC, 8080)))  # H2 -> the redirect to H1:80
    [before] = lab.gateway.mappings()
    assert before.kind is MappingKind.HAIRPIN
    lab.restart()
    [after] = lab.gateway.mappings()
    assert (after.id, after.kind, after.original, after.reply) == (before.id, before.kind, before.original,
                                                                  before.reply)


def test_a_restored_mappings_remote_is_trusted_with_fragments_after_it_ends_and_comes_back():
    """The fragments cache trusts pieces without ports from the remote of a live mapping: a restored mapping
    counts as one, and its end takes exactly its own count away (a new mapping to that remote is trusted)."""
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 9000)))
    lab.restart()
    assert len(list(lab.gateway.mappings())) == 1
    lab.advance(301)  # its rules idle out: it ends
    assert list(lab.gateway.mappings()) == []
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5001, SERVER, 9000)))
    first, *later = fragment(parsed(udp_bytes(SERVER, 9000, PUBLIC, out["udp_src"], payload=bytes(4000))), 1480)
    for piece in reversed(later):  # the pieces without ports first
        assert lab.send(UPLINK, from_host(SERVER, piece)) == []
    for i in range(100):  # one-piece junk from many spoofed outside sources
        junk = fragment(parsed(udp_bytes(f"198.18.{i // 250}.{i % 250 + 1}", 53, PUBLIC, 40000, payload=bytes(2000),
                                         ident=i)), 1480)[0]
        assert lab.send(UPLINK, from_host(SERVER, junk)) == []
    delivered = lab.send(UPLINK, from_host(SERVER, first))
    assert [(port, fields["ipv4_dst"]) for port, fields in delivered] == [(H1_PORT, H1)] * (1 + len(later))
