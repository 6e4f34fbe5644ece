"""RFC 5382 (NAT behaviour for TCP) and RFC 7857 sections 2.1-2.2 (TCP state), against the simulated switch.

Each test's name starts with the requirement it proves (docs/rfc.md names them).
The default timeouts: established 7440 s, transitory 240 s.
"""

from __future__ import annotations

import pytest

from ryu_nat.core import tcp
from ryu_nat.core.addresses import Proto
from ryu_nat.core.table import ANSWERED, TRANSITORY, Mapping, MappingKind
from ryu_nat.core.tcp import TcpChange
from ryu_nat.gateway.offload import RuleState
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind

from .builders import tcp_bytes
from .lab import GATEWAY, H1, H1_PORT, H2, H2_PORT, INTERNET, PUBLIC, SERVER, UPLINK, Lab, from_host

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10


def mapping_rules(lab: Lab) -> list:
    return [r for r in lab.switch.rules() if cookies.kind_of(r.cookie) in (RuleKind.ORIGINAL, RuleKind.REPLY)]


def timeouts(lab: Lab) -> set[int]:
    return {r.idle_timeout_s for r in mapping_rules(lab)}


def only_tcp(lab: Lab) -> Mapping:
    [mapping] = lab.gateway.mappings(Proto.TCP)
    return mapping


def from_h1(lab: Lab, bits: int, dport: int = 80, seq: int = 1000) -> list:
    return lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 5000, SERVER, dport, bits=bits, seq=seq)))


def from_server(lab: Lab, public_port: int, bits: int, sport: int = 80, seq: int = 5000) -> list:
    return lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, sport, PUBLIC, public_port, bits=bits, seq=seq)))


def connect(lab: Lab) -> int:
    """H1:5000 -> SERVER:80, SYN, SYN-ACK (through the switch), ACK; the public port."""
    [(_, syn)] = from_h1(lab, SYN)
    public_port = syn["tcp_src"]
    [(port, _)] = from_server(lab, public_port, SYN | ACK)
    assert port == H1_PORT and lab.switch.packet_ins() == []  # the answer stayed in the switch
    from_h1(lab, ACK)
    return int(public_port)


# --- REQ-5: half open, established, reopened ---------------------------------------------------------------


def test_rfc5382_req5_a_connection_seen_only_as_a_syn_lives_by_the_transitory_timeout():
    lab = Lab()
    from_h1(lab, SYN)
    assert timeouts(lab) == {240}
    lab.advance(100)
    from_h1(lab, SYN)  # a retransmission, through the controller (the SYN rule): the rules' timers start again
    assert [type(item).__name__ for item in lab.plans[-1]] == ["FlowRule", "FlowRule", "PacketOut"]
    lab.advance(239)
    assert lab.gateway.mapping_count(Proto.TCP) == 1
    lab.advance(2)
    assert lab.gateway.mapping_count(Proto.TCP) == 0 and lab.gateway.stats.mappings_removed["expired"] == 1


def test_rfc5382_req5_an_answered_connection_lives_by_the_established_timeout():
    lab = Lab()
    connect(lab)
    lab.advance(241)  # its rules (transitory) idle out; the replier's carried the SYN-ACK
    mapping = only_tcp(lab)
    assert mapping_rules(lab) == [] and lab.gateway.rule_state(mapping) is RuleState.ABSENT
    assert mapping.flags & ANSWERED and not mapping.closing
    lab.advance(7440 - 241 - 1)
    assert lab.gateway.mapping_count(Proto.TCP) == 1
    lab.advance(2)  # 7,441 s idle: past the established timeout, counted from the last packet
    assert lab.gateway.mapping_count(Proto.TCP) == 0 and lab.gateway.stats.mappings_removed["expired"] == 1


def test_rfc5382_req5_an_established_connection_that_speaks_again_gets_rules_with_the_established_timeout():
    lab = Lab()
    public_port = connect(lab)
    lab.advance(3000)
    [(port, out)] = from_h1(lab, ACK, seq=2000)
    assert (port, out["tcp_src"]) == (UPLINK, public_port)
    assert timeouts(lab) == {7440} and only_tcp(lab).expires_by_itself is False
    lab.advance(7439)
    assert lab.gateway.mapping_count(Proto.TCP) == 1
    lab.advance(2)
    assert lab.gateway.mapping_count(Proto.TCP) == 0


def test_rfc5382_req5_a_simultaneous_open_is_established_at_once():
    lab = Lab()
    [(_, syn)] = from_h1(lab, SYN)
    [(port, _)] = from_server(lab, syn["tcp_src"], SYN)  # the other side's own SYN, through the controller
    assert port == H1_PORT and timeouts(lab) == {7440}


def test_rfc5382_req5_a_new_syn_reopens_a_transitory_mapping_with_the_established_timeout():
    lab = Lab()
    public_port = connect(lab)
    from_h1(lab, FIN | ACK)
    from_server(lab, public_port, FIN | ACK)
    assert only_tcp(lab).closing and timeouts(lab) == {240}
    lab.advance(100)
    [(port, out)] = from_h1(lab, SYN, seq=90000)  # the same ports, within the transitory timeout
    assert (port, out["tcp_src"]) == (UPLINK, public_port)
    assert not only_tcp(lab).closing and timeouts(lab) == {7440}
    lab.advance(241)
    assert lab.gateway.mapping_count(Proto.TCP) == 1  # it would be gone with the transitory timeout


# --- RFC 7857 section 2.1 and 2.2: FIN both ways, RST --------------------------------------------------------


def test_rfc7857_s2_1_one_fin_leaves_the_connection_established():
    lab = Lab()
    public_port = connect(lab)
    [(port, fin)] = from_h1(lab, FIN | ACK)  # the private side's FIN reaches the controller too
    assert (port, fin["tcp_flags"]) == (UPLINK, FIN | ACK) and lab.gateway.stats.packet_ins["tcp_closing"] == 1
    assert not only_tcp(lab).closing
    from_server(lab, public_port, ACK)  # a half-closed connection may go on sending the other way
    assert not only_tcp(lab).closing


def test_rfc7857_s2_1_fin_both_ways_makes_it_transitory_with_no_rule_sent():
    lab = Lab()
    public_port = connect(lab)
    from_h1(lab, FIN | ACK)
    [(port, fin)] = from_server(lab, public_port, FIN | ACK)
    assert (port, fin["ipv4_dst"], fin["tcp_dst"]) == (H1_PORT, H1, 5000)
    assert only_tcp(lab).closing
    # The rules still have the transitory timeout they were installed with: a packet-out, no flow-mod.
    assert [type(item).__name__ for item in lab.plans[-1]] == ["PacketOut"]
    lab.advance(241)
    assert lab.gateway.mapping_count(Proto.TCP) == 0


def test_rfc7857_s2_1_fin_both_ways_on_rules_with_the_established_timeout_installs_them_transitory():
    lab = Lab()
    public_port = connect(lab)
    lab.advance(500)
    from_h1(lab, ACK, seq=2000)  # back on the switch, with the established timeout
    assert timeouts(lab) == {7440}
    from_server(lab, public_port, FIN | ACK)
    assert timeouts(lab) == {7440}
    from_h1(lab, FIN | ACK, seq=2001)
    assert timeouts(lab) == {240} and only_tcp(lab).closing
    lab.advance(241)
    assert lab.gateway.mapping_count(Proto.TCP) == 0


@pytest.mark.parametrize("side", ["private", "public"])
def test_rfc7857_s2_2_after_an_rst_both_directions_keep_the_transitory_timeout_while_packets_flow(side):
    lab = Lab()
    public_port = connect(lab)
    lab.advance(500)
    from_h1(lab, ACK, seq=2000)  # the established timeout on the switch
    if side == "private":
        from_h1(lab, RST, seq=2001)
    else:
        from_server(lab, public_port, RST)
    assert only_tcp(lab).closing and timeouts(lab) == {240}
    for _ in range(3):  # the server goes on sending (its RST was lost, say): the mapping lives
        lab.advance(200)
        [(port, _)] = from_server(lab, public_port, ACK, seq=7000)
        assert port == H1_PORT
    assert lab.gateway.mapping_count(Proto.TCP) == 1  # 600 s after the RST
    lab.advance(241)
    assert lab.gateway.mapping_count(Proto.TCP) == 0


def test_rfc7857_s2_1_a_refused_connection_turns_transitory_without_a_rule_sent():
    lab = Lab()
    [(_, syn)] = from_h1(lab, SYN)
    [(port, rst)] = from_server(lab, syn["tcp_src"], RST | ACK)
    assert port == H1_PORT and only_tcp(lab).closing
    assert [type(item).__name__ for item in lab.plans[-1]] == ["PacketOut"]


def test_rfc7857_s2_1_the_state_machine_of_one_mapping():
    mapping = Mapping(1, Proto.TCP, 1, 2, MappingKind.NAT, 0.0, 240.0)
    assert tcp.track(mapping, True, SYN) is None and not tcp.is_established(mapping)
    assert tcp.track(mapping, False, SYN | ACK) is TcpChange.ANSWERED and tcp.is_established(mapping)
    assert tcp.track(mapping, False, SYN | ACK) is None
    assert tcp.track(mapping, True, FIN | ACK) is None and tcp.is_established(mapping)
    assert tcp.track(mapping, True, FIN | ACK) is None  # the same side again
    assert tcp.track(mapping, False, FIN | ACK) is TcpChange.TRANSITORY and mapping.flags & TRANSITORY
    assert tcp.track(mapping, False, RST) is None  # already transitory
    assert tcp.track(mapping, False, SYN | ACK) is None  # an answer is no reopening
    assert tcp.track(mapping, True, SYN) is TcpChange.REOPENED and tcp.is_established(mapping)
    assert tcp.track(mapping, False, RST | ACK) is TcpChange.TRANSITORY
    tcp.answered(mapping)
    assert mapping.closing  # a late count of the replier's packets does not reopen it


# --- REQ-3 (filtering) and REQ-8 (hairpinning) for TCP ----------------------------------------------------


@pytest.mark.parametrize("mode, admitted", [
    ("endpoint-independent", True), ("address-dependent", True), ("address-and-port-dependent", False)])
def test_rfc5382_req3_an_inbound_syn_from_another_port_of_the_server_follows_the_filtering_mode(mode, admitted):
    lab = Lab({"filtering": mode})
    public_port = connect(lab)
    reached = from_server(lab, public_port, SYN, sport=8443)
    assert [(port, f["ipv4_dst"], f["tcp_dst"]) for port, f in reached] == ([(H1_PORT, H1, 5000)] if admitted else [])
    assert lab.gateway.mapping_count(Proto.TCP) == 1


@pytest.mark.parametrize("mode", ["endpoint-independent", "address-dependent"])
def test_rfc5382_req3_an_inbound_syn_from_another_address_is_let_in_only_endpoint_independently(mode):
    lab = Lab({"filtering": mode})
    public_port = connect(lab)
    reached = lab.send(UPLINK, from_host(GATEWAY, tcp_bytes(INTERNET, 4444, PUBLIC, public_port, bits=SYN)))
    assert [port for port, _ in reached] == ([H1_PORT] if mode == "endpoint-independent" else [])


def test_rfc5382_req8_tcp_hairpin_between_two_private_hosts_through_their_public_mappings():
    lab = Lab({"filtering": "endpoint-independent"})
    [(_, out)] = lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 7000, SERVER, 80, bits=SYN)))
    p2 = out["tcp_src"]
    [(port, syn)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 5000, PUBLIC, p2, bits=SYN)))
    assert (port, syn["ipv4_src"], syn["ipv4_dst"], syn["tcp_dst"]) == (H2_PORT, PUBLIC, H2, 7000)
    p1 = syn["tcp_src"]
    [(port, synack)] = lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 7000, PUBLIC, p1, bits=SYN | ACK)))
    assert (port, synack["ipv4_src"], synack["tcp_src"], synack["ipv4_dst"], synack["tcp_dst"]) == (
        H1_PORT, PUBLIC, p2, H1, 5000)
    [hairpin] = [m for m in lab.gateway.mappings(Proto.TCP) if m.kind is MappingKind.HAIRPIN]
    assert lab.gateway.rule_state(hairpin) is RuleState.INSTALLED
    assert lab.gateway.port_holder(Proto.TCP, p1) is not None and str(lab.gateway.port_holder(Proto.TCP, p1).ip) == H1


def test_rfc5382_req8_a_tcp_hairpin_to_a_redirect_still_reaches_its_server():
    lab = Lab()
    lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 80, SERVER, 9999, bits=ACK)))  # H1 known
    [(port, syn)] = lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 7000, PUBLIC, 8080, bits=SYN)))
    assert (port, syn["ipv4_src"], syn["ipv4_dst"], syn["tcp_dst"]) == (H1_PORT, PUBLIC, H1, 80)
