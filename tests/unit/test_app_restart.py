"""A controller restarted against a switch that kept its rules: the new app reads them back through the real
message path (requests encoded, replies as the switch's bytes), and the connections go on."""

from __future__ import annotations

from ryu_nat.core.addresses import Proto
from ryu_nat.openflow import cookies

from .builders import tcp_bytes, udp_bytes
from .fakedp import FakeDatapath, packet_in_event
from .fakeswitch import answer_reads, connect
from .lab import BASE_CONFIG, H1, H1_PORT, MACS, PUBLIC, ROUTER_MAC, SERVER, UPLINK, arp_reply, from_host

OPTIONS = {**BASE_CONFIG, "audit_interval": "0"}


def mapping_rules(switch) -> list:
    return sorted((r for r in switch.rules() if cookies.mapping_id_of(r.cookie)), key=lambda r: r.cookie)


def test_a_restarted_controller_keeps_the_switchs_rules_and_puts_the_mappings_back(make_app):
    first = make_app(OPTIONS)
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    switch = connect(first, dp)
    first._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    first._packet_in(packet_in_event(dp, UPLINK, arp_reply(SERVER, PUBLIC)))
    first._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, tcp_bytes(H1, 6000, SERVER, 80))))
    switch.apply_ryu(dp.sent)
    rules_before = mapping_rules(switch)
    [udp] = first.gateway.mappings(Proto.UDP)
    assert len(rules_before) == 4

    second = make_app(OPTIONS)  # the restarted controller: an empty table
    again = FakeDatapath(ports=(UPLINK, H1_PORT))
    connect(second, again, switch)
    assert mapping_rules(switch) == rules_before  # kept as they were, not deleted and installed again
    [restored] = second.gateway.mappings(Proto.UDP)
    assert (restored.id, restored.original, restored.reply) == (udp.id, udp.original, udp.reply)
    assert second.gateway.mapping_count(Proto.TCP) == 1 and not second.gateway.review.restoring
    report = second.facade.consistency()
    assert report["last_restore"]["counts"] == {"restored": 2} and report["last_restore"]["unreadable"] == 0
    # The same channel still goes out of the same public port, through the rules kept.
    [(port, out)] = switch.fate(in_port=H1_PORT, eth_src=MACS[H1], eth_dst=ROUTER_MAC, eth_type=0x0800,
                                ip_proto=17, ipv4_src=H1, ipv4_dst=SERVER, udp_src=5000, udp_dst=53, ip_ttl=64)
    assert (port, out["udp_src"]) == (UPLINK, udp.public_endpoint.port)


def test_an_audit_runs_through_the_switch_and_repairs_a_deleted_rule(make_app):
    app = make_app(OPTIONS)
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    switch = connect(app, dp)
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    app._packet_in(packet_in_event(dp, UPLINK, arp_reply(SERVER, PUBLIC)))
    switch.apply_ryu(dp.sent)
    dp.sent.clear()
    [mapping] = app.gateway.mappings()
    [gone] = switch.remove_silently(cookies.make(cookies.RuleKind.REPLY, mapping.id))
    assert app._start_audit()
    answer_reads(app, dp, switch)
    assert gone in switch.rules() and app.stats.audit["missing_rule"] == 1 and app.stats.audit["runs"] == 1
