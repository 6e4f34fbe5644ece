"""Explaining a packet: the answer of the packet path's own checks and decision, for every outcome and every
reason a routed packet can be dropped for, and nothing in the gateway changes for asking."""

from __future__ import annotations

import pytest

from ryu_nat.core.addresses import Proto
from ryu_nat.core.fragments import fragment
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.explain import Outcome, question
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind

from .builders import parsed, tcp_bytes, udp_bytes
from .lab import GATEWAY, H1, H1_PORT, H2, H2_PORT, INTERNET, PRIVATE, PUBLIC, SERVER, UPLINK, Lab, from_host, ip


def ask(lab: Lab, proto: Proto, src: str, dst: str, src_port: int = 0, dst_port: int = 0):
    return lab.gateway.review.explain(question(proto, int(ip(src)), int(ip(dst)), src_port, dst_port), lab.now)


def snapshot(lab: Lab) -> tuple:
    """Everything asking could change: mappings (and their clocks), ports, counters, the LRU order."""
    gateway = lab.gateway
    mappings = [(m.id, m.last_used, m.closing) for m in gateway.mappings()]
    return (mappings, gateway.stats.as_dict(), [gateway.ports_in_use(p) for p in Proto],
            [m.id for m in gateway.mappings_page(0, 100).mappings], repr(gateway._nat._nat.table._tables[Proto.UDP]
                                                                       .recency._order))


def test_a_packet_of_a_live_mapping_is_translated_by_it_with_its_rules_and_nothing_changes():
    lab = Lab()
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 5000, SERVER, 53)))
    before = snapshot(lab)
    lab.now += 10
    answer = ask(lab, Proto.UDP, SERVER, PUBLIC, 53, out["udp_src"])
    assert (answer.outcome, answer.from_private, answer.rule_state) == (Outcome.TRANSLATED, False, "installed")
    assert str(answer.leaves_as) == f"udp {SERVER}:53 -> {H1}:5000"
    assert [cookies.kind_of(rule.cookie) for rule in answer.rules] == [RuleKind.ORIGINAL, RuleKind.REPLY]
    assert answer.rules[1] in lab.switch.rules()  # the rule the switch holds, as it holds it
    assert snapshot(lab) == before


def test_a_new_conversation_would_start_a_mapping_that_is_not_made():
    lab = Lab()
    before = snapshot(lab)
    answer = ask(lab, Proto.TCP, H1, SERVER, 6000, 80)
    assert answer.outcome is Outcome.NEW_MAPPING and answer.mapping.id == 0 and answer.rules == ()
    assert str(answer.leaves_as).startswith(f"tcp {PUBLIC}:") and str(answer.leaves_as).endswith(f"{SERVER}:80")
    assert snapshot(lab) == before
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    assert max(m.id for m in lab.gateway.mappings()) == 1  # asking took no id


def test_what_filtering_lets_in_goes_to_the_private_endpoint_without_a_mapping_of_its_own():
    lab = Lab({"filtering": "endpoint-independent", "port_range": "2000-2000"})
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    before = snapshot(lab)
    answer = ask(lab, Proto.UDP, INTERNET, PUBLIC, 7000, 2000)  # a stranger, to H1's public port
    assert answer.outcome is Outcome.ADMITTED and str(answer.leaves_as) == f"udp {INTERNET}:7000 -> {H1}:5000"
    assert snapshot(lab) == before


def test_a_redirected_port_names_its_redirect():
    lab = Lab()
    answer = ask(lab, Proto.TCP, INTERNET, PUBLIC, 7000, 8080)
    assert answer.outcome is Outcome.NEW_MAPPING and str(answer.redirect) == f"tcp:8080={H1}:80"
    assert answer.mapping.kind.value == "redirect"


def test_an_ended_mapping_is_named_with_why_and_when():
    lab = Lab({"udp_idle_timeout": "30"})
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.advance(31)
    answer = ask(lab, Proto.UDP, SERVER, PUBLIC, 53, out["udp_src"])
    assert (answer.outcome, answer.reason) == (Outcome.DROPPED, DropReason.UNSOLICITED)
    mapping, reason, at = answer.ended
    assert (mapping.id, reason.value, at) == (1, "expired", 31.0)


def test_a_port_the_switch_drops_says_so_and_fragments_waiting_are_counted():
    lab = Lab()
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000)))
    assert ask(lab, Proto.UDP, SERVER, PUBLIC, 53, 40000).drop_rule
    first = fragment(parsed(udp_bytes(H1, 5000, SERVER, 53, payload=b"x" * 100)), 48)[0]
    lab.send(H1_PORT, from_host(H1, first))
    assert ask(lab, Proto.UDP, H1, SERVER, 5000, 53).fragments_waiting == 1


def test_pings_to_the_nat_are_answered_and_while_the_table_is_read_back_packets_are_held():
    lab = Lab()
    assert ask(lab, Proto.ICMP, H1, PRIVATE, 7).outcome is Outcome.ANSWERED
    assert ask(lab, Proto.ICMP, SERVER, PUBLIC, 7).outcome is Outcome.ANSWERED
    lab.restart(read_back=False)
    assert ask(lab, Proto.UDP, H1, SERVER, 5000, 53).outcome is Outcome.HELD


def _nothing(lab: Lab) -> None:
    """No traffic before the question."""


def _h1_has_the_only_port(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))


def _server_port_forwarded(lab: Lab) -> None:
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)))


# Each reason a routed packet can be dropped for before it is handled: the traffic that leads to it, and the
# question that earns it (the same packets earn it on the packet path: tests/unit/test_drops.py).
QUESTIONS = {
    DropReason.SPOOFED_SOURCE: (_nothing, (Proto.UDP, PUBLIC, PUBLIC, 53, 9), {}),
    DropReason.NOT_FOR_US: (_nothing, (Proto.UDP, SERVER, GATEWAY, 53, 9), {}),
    DropReason.PRIVATE_DESTINATION: (_nothing, (Proto.UDP, H1, H2, 5000, 53), {}),
    DropReason.CANNOT_NAT: (_nothing, (Proto.UDP, H1, "192.168.3.255", 5000, 53), {}),
    DropReason.LOCAL: (_nothing, (Proto.UDP, H1, PRIVATE, 5000, 53), {}),
    DropReason.UNSOLICITED: (_nothing, (Proto.UDP, SERVER, PUBLIC, 53, 40000), {}),
    DropReason.PORTS_EXHAUSTED: (_h1_has_the_only_port, (Proto.UDP, H2, SERVER, 5000, 53), {"port_range": "2000-2000"}),
    DropReason.OVERLAP: (_server_port_forwarded, (Proto.TCP, SERVER, PUBLIC, 40000, 8081),
                         {"redirects": f"tcp:8080={H1}:80, tcp:8081={H1}:80"}),
    DropReason.TABLE_FULL: (_h1_has_the_only_port, (Proto.UDP, H2, SERVER, 5000, 53),
                            {"udp_table_size": "1", "when_full": "refuse"}),
    DropReason.HOST_LIMIT: (_h1_has_the_only_port, (Proto.UDP, H1, SERVER, 5001, 53),
                            {"max_mappings_per_host": "1", "when_full": "refuse"}),
    DropReason.HAIRPIN_FILTERED: (_h1_has_the_only_port, (Proto.UDP, H2, PUBLIC, 6000, 2000),
                                  {"port_range": "2000-2000"}),
}


@pytest.mark.parametrize("reason", list(QUESTIONS), ids=lambda reason: reason.value)
def test_explain_gives_the_reason_the_packet_path_drops_the_packet_for(reason):
    traffic, (proto, src, dst, src_port, dst_port), overrides = QUESTIONS[reason]
    lab = Lab(overrides)
    traffic(lab)
    answer = ask(lab, proto, src, dst, src_port, dst_port)
    assert (answer.outcome, answer.reason) == (Outcome.DROPPED, reason)
    drops = dict(lab.gateway.stats.drops)
    packet = question(proto, int(ip(src)), int(ip(dst)), src_port, dst_port).raw
    port, sender = {H1: (H1_PORT, H1), H2: (H2_PORT, H2)}.get(src, (UPLINK, SERVER))
    lab.send(port, from_host(sender, packet))
    assert lab.gateway.stats.drops[reason.value] == drops.get(reason.value, 0) + 1  # and so does the packet path
