"""RFC 4787 (NAT behaviour for UDP), requirement by requirement, against the simulated switch.

Each test's name starts with the requirement it proves (docs/rfc.md names them).
Where a behaviour is the same for TCP (RFC 5382 repeats it), one protocol stands
for both unless the test says otherwise.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from ryu_nat.core.addresses import Proto
from ryu_nat.core.fragments import fragment
from ryu_nat.core.ports import PortAllocator, PortRange
from ryu_nat.core.nat import SourceNat
from ryu_nat.core.table import Mapping, MappingKind
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.rules import PRIORITY_FILTER

from .builders import parsed, tcp_bytes, udp_bytes
from .corefix import make_nat
from .lab import GATEWAY, H1, H1_PORT, H2, H2_PORT, INTERNET, PUBLIC, SERVER, UPLINK, Lab, from_host

MODES = ("endpoint-independent", "address-dependent", "address-and-port-dependent")


def open_mapping(lab: Lab, host: str, sport: int, port: int, remote: str = SERVER, rport: int = 53) -> int:
    """``host``:``sport`` sends to ``remote``:``rport``; its public port."""
    [(out_port, out)] = lab.send(port, from_host(host, udp_bytes(host, sport, remote, rport)))
    assert out_port == UPLINK and out["ipv4_src"] == PUBLIC
    return int(out["udp_src"])


def inbound(lab: Lab, src: str, sport: int, public_port: int) -> list[tuple[int, dict]]:
    """A datagram from ``src``:``sport`` (the server, or the internet through the gateway) to PUBLIC."""
    sender = SERVER if src == SERVER else GATEWAY
    return lab.send(UPLINK, from_host(sender, udp_bytes(src, sport, PUBLIC, public_port)))


def filter_rules(lab: Lab) -> list:
    return [r for r in lab.switch.rules() if cookies.kind_of(r.cookie) is RuleKind.FILTER]


# --- REQ-3, REQ-4: port classes and parity --------------------------------------------------------------


def test_rfc4787_req3_a_source_port_below_1024_maps_below_1024_with_the_default_configuration():
    lab = Lab()
    low = [open_mapping(lab, H1, sport, H1_PORT) for sport in (53, 123, 1023)]
    high = [open_mapping(lab, H1, sport, H1_PORT) for sport in (1024, 5000, 60000)]
    assert all(1 <= port < 1024 for port in low), low
    assert all(port >= 1024 for port in high), high


def test_rfc4787_req3_a_range_without_low_ports_gives_high_ones_rather_than_none():
    lab = Lab({"port_range": "20000-20009"})
    assert 20000 <= open_mapping(lab, H1, 53, H1_PORT) <= 20009


def test_rfc4787_req4_port_parity_is_kept_by_default():
    lab = Lab()
    ports = {sport: open_mapping(lab, H1, sport, H1_PORT) for sport in range(5000, 5040)}
    assert all(port % 2 == sport % 2 for sport, port in ports.items()), ports


def test_rfc4787_req4_parity_gives_way_when_no_port_of_that_parity_is_free():
    nat, _ = make_nat(port_range=PortRange(2000, 2001))
    nat.ports.reserve(Proto.UDP, 2000)  # the only even port
    mapping = nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0)
    assert isinstance(mapping, Mapping) and mapping.public_endpoint.port == 2001


def test_rfc4787_req4_port_parity_false_gives_either_parity():
    allocator = PortAllocator(PortRange(1024, 65535), random.Random(1), keep_parity=False)
    assert {allocator.candidate(Proto.UDP, 5000) % 2 for _ in range(64)} == {0, 1}
    keeping = PortAllocator(PortRange(1024, 65535), random.Random(1))
    assert {keeping.candidate(Proto.UDP, 5000) % 2 for _ in range(64)} == {0}
    assert {keeping.candidate(Proto.UDP, 5001) % 2 for _ in range(64)} == {1}


# --- REQ-8: filtering -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, from_other_port, from_other_address", [
    ("endpoint-independent", True, True),
    ("address-dependent", True, False),
    ("address-and-port-dependent", False, False),
])
def test_rfc4787_req8_each_filtering_mode_lets_in_what_it_says(mode, from_other_port, from_other_address):
    lab = Lab({"filtering": mode})
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    reached = inbound(lab, SERVER, 54, public_port)  # the same address, another port
    assert (reached == [(H1_PORT, reached[0][1])] if from_other_port else reached == [])
    if reached:
        assert (reached[0][1]["ipv4_dst"], reached[0][1]["udp_dst"], reached[0][1]["ipv4_src"]) == (H1, 5000, SERVER)
    reached = inbound(lab, INTERNET, 53, public_port)  # another address
    assert [port for port, _ in reached] == ([H1_PORT] if from_other_address else [])
    # Each sender refused on an owned port reaches the controller once: then a drop rule for it alone.
    assert lab.gateway.stats.drops["unsolicited"] == (not from_other_port) + (not from_other_address)
    assert lab.gateway.mapping_count(Proto.UDP) == 1  # filtering made no mapping


def test_rfc4787_req8_address_and_port_dependent_filtering_is_the_exact_remote_only():
    lab = Lab({"filtering": "address-and-port-dependent"})
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    [(port, back)] = inbound(lab, SERVER, 53, public_port)
    assert (port, back["udp_dst"]) == (H1_PORT, 5000)
    assert inbound(lab, SERVER, 54, public_port) == [] and filter_rules(lab) == []


def test_rfc4787_req8_endpoint_independent_filtering_needs_one_inbound_rule_per_public_port():
    lab = Lab({"filtering": "endpoint-independent"})
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    for src, sport in ((SERVER, 54), (INTERNET, 9), (INTERNET, 10), (SERVER, 55)):
        reached = inbound(lab, src, sport, public_port)
        assert [(port, f["ipv4_dst"], f["udp_dst"], f["ip_ttl"]) for port, f in reached] == [(H1_PORT, H1, 5000, 63)]
    [rule] = filter_rules(lab)
    assert rule.priority == PRIORITY_FILTER and rule.match.get("ipv4_src") is None
    assert lab.gateway.stats.packet_ins["admitted"] == 1  # the first; the rule let the others in


def test_rfc4787_req8_address_dependent_filtering_has_one_inbound_rule_per_remote_address():
    lab = Lab()  # the default
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    for sport in (54, 55, 56):
        assert [port for port, _ in inbound(lab, SERVER, sport, public_port)] == [H1_PORT]
    [rule] = filter_rules(lab)
    assert rule.match.get("ipv4_src") == SERVER and rule.match.get("udp_dst") == public_port
    assert inbound(lab, INTERNET, 54, public_port) == []


def test_rfc4787_req8_a_filter_rule_leaves_with_what_let_it_in():
    lab = Lab({"filtering": "endpoint-independent"})
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    inbound(lab, INTERNET, 9, public_port)
    assert len(filter_rules(lab)) == 1
    lab.advance(301)  # the mapping's rules idle out: the port has no owner any more
    assert lab.gateway.mapping_count(Proto.UDP) == 0 and filter_rules(lab) == []
    assert inbound(lab, INTERNET, 9, public_port) == [] and lab.gateway.stats.drops["unsolicited"] == 1


def test_rfc4787_req8_an_address_rule_leaves_with_the_last_mapping_to_that_address():
    lab = Lab()
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    lab.advance(200)
    assert open_mapping(lab, H1, 5000, H1_PORT, INTERNET, 53) == public_port  # REQ-1: the same port
    inbound(lab, SERVER, 54, public_port)
    assert len(filter_rules(lab)) == 1
    lab.advance(101)  # the mapping with SERVER idles out; the one with INTERNET lives
    assert lab.gateway.mapping_count(Proto.UDP) == 1 and filter_rules(lab) == []
    assert [port for port, _ in inbound(lab, INTERNET, 54, public_port)] == [H1_PORT]
    assert inbound(lab, SERVER, 54, public_port) == []


def test_rfc4787_req8_the_answer_to_a_filtered_in_datagram_leaves_from_the_same_public_port():
    lab = Lab({"filtering": "endpoint-independent"})
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    inbound(lab, INTERNET, 9, public_port)
    [(port, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, INTERNET, 9)))
    assert (port, out["ipv4_src"], out["udp_src"]) == (UPLINK, PUBLIC, public_port)
    assert lab.gateway.mapping_count(Proto.UDP) == 2


def test_rfc4787_req8_what_filtering_lets_in_may_come_in_pieces_or_too_big():
    """Pieces carry no ports a rule could match: the controller lets the datagram in whole, cut again, and
    installs no filter rule for it; one too big for the private side with DF set is answered instead."""
    lab = Lab({"filtering": "endpoint-independent", "private_mtu": "1200"})
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    delivered = []
    for piece in fragment(parsed(udp_bytes(INTERNET, 9, PUBLIC, public_port, payload=bytes(4000))), 1480):
        delivered += lab.send(UPLINK, from_host(GATEWAY, piece))
    assert {(port, f["ipv4_src"], f["ipv4_dst"]) for port, f in delivered} == {(H1_PORT, INTERNET, H1)}
    assert len(delivered) == 4 and filter_rules(lab) == []  # 4,000 bytes in pieces of at most 1,180
    big = udp_bytes(INTERNET, 9, PUBLIC, public_port, payload=bytes(1300), flags=0b010)  # DF
    [(port, answer)] = lab.send(UPLINK, from_host(GATEWAY, big))
    assert (port, answer["ipv4_src"], answer["ipv4_dst"], answer["ip_proto"]) == (UPLINK, PUBLIC, INTERNET, 1)
    assert filter_rules(lab) == []

def test_rfc7857_s6_endpoint_independent_filtering_of_a_udp_port_lets_in_no_tcp():
    lab = Lab({"filtering": "endpoint-independent"})
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    assert lab.send(UPLINK, from_host(GATEWAY, tcp_bytes(INTERNET, 9, PUBLIC, public_port))) == []
    assert lab.gateway.stats.drops["unsolicited"] == 1 and filter_rules(lab) == []


def test_rfc7857_s7_traffic_that_filtering_lets_in_refreshes_no_mapping():
    """Only the mapping's own traffic keeps it (RFC 4787 REQ-6): a stranger let in keeps nothing alive."""
    lab = Lab({"filtering": "endpoint-independent"})
    public_port = open_mapping(lab, H1, 5000, H1_PORT)
    for _ in range(2):
        lab.advance(100)
        assert [port for port, _ in inbound(lab, INTERNET, 9, public_port)] == [H1_PORT]
    lab.advance(100)  # 300 s after H1's datagram, the UDP timeout, 100 s after the stranger's
    assert lab.gateway.mapping_count(Proto.UDP) == 0 and filter_rules(lab) == []

# --- REQ-9: hairpinning ---------------------------------------------------------------------------------


def hairpin(lab: Lab, host: str, port: int, sport: int, public_port: int) -> list[tuple[int, dict]]:
    return lab.send(port, from_host(host, udp_bytes(host, sport, PUBLIC, public_port)))


def test_rfc4787_req9_udp_hairpin_between_two_private_hosts_through_their_public_mappings():
    """Address-dependent filtering (the default): the first try is filtered; once the other side has
    tried too, both reach each other, each from the other's public endpoint."""
    lab = Lab()
    p1 = open_mapping(lab, H1, 5000, H1_PORT)
    p2 = open_mapping(lab, H2, 6000, H2_PORT)
    assert hairpin(lab, H1, H1_PORT, 5000, p2) == []  # H2 never sent to the public address
    assert lab.gateway.stats.drops["hairpin_filtered"] == 1
    [(port, at_h1)] = hairpin(lab, H2, H2_PORT, 6000, p1)  # H1 tried to reach PUBLIC: it may hear from it
    assert (port, at_h1["ipv4_src"], at_h1["udp_src"], at_h1["ipv4_dst"], at_h1["udp_dst"]) == (
        H1_PORT, PUBLIC, p2, H1, 5000)
    [(port, at_h2)] = hairpin(lab, H1, H1_PORT, 5000, p2)
    assert (port, at_h2["ipv4_src"], at_h2["udp_src"], at_h2["ipv4_dst"], at_h2["udp_dst"]) == (
        H2_PORT, PUBLIC, p1, H2, 6000)
    [mapping] = [m for m in lab.gateway.mappings(Proto.UDP) if m.kind is MappingKind.HAIRPIN]
    assert lab.gateway.rule_state(mapping).has_rules  # later datagrams stay in the switch
    [(port, again)] = lab.switch.fate(in_port=H1_PORT, eth_src="00:00:00:00:00:02", eth_dst="02:4e:41:54:00:01",
                                      eth_type=0x0800, ipv4_src=H1, ipv4_dst=PUBLIC, ip_proto=17, udp_src=5000,
                                      udp_dst=p2, ip_ttl=64)
    assert (port, again["ipv4_src"], again["udp_src"], again["ipv4_dst"]) == (H2_PORT, PUBLIC, p1, H2)


@pytest.mark.parametrize("mode", MODES)
def test_rfc4787_req9_a_hairpin_comes_from_the_senders_own_public_port_in_every_mode(mode):
    lab = Lab({"filtering": mode})
    p1 = open_mapping(lab, H1, 5000, H1_PORT)
    p2 = open_mapping(lab, H2, 6000, H2_PORT)
    hairpin(lab, H1, H1_PORT, 5000, p2)  # refused, except endpoint-independent: remembered
    [(port, at_h1)] = hairpin(lab, H2, H2_PORT, 6000, p1)
    assert (port, at_h1["ipv4_src"], at_h1["udp_src"]) == (H1_PORT, PUBLIC, p2)


def test_rfc4787_req9_a_hairpin_to_a_port_nobody_holds_is_for_the_nat():
    lab = Lab()
    assert hairpin(lab, H1, H1_PORT, 5000, 40000) == []
    assert lab.gateway.stats.drops["local"] == 1


def test_rfc4787_req9_a_hairpin_holds_the_targets_public_port_while_it_lives():
    lab = Lab({"filtering": "endpoint-independent"})
    p2 = open_mapping(lab, H2, 6000, H2_PORT)
    lab.advance(200)
    hairpin(lab, H1, H1_PORT, 5000, p2)
    lab.advance(101)  # H2's own mapping idles out; the hairpin lives (200 s younger)
    assert lab.gateway.port_holder(Proto.UDP, p2) is not None
    assert str(lab.gateway.port_holder(Proto.UDP, p2).ip) == H2
    lab.advance(200)
    assert lab.gateway.mapping_count(Proto.UDP) == 0 and lab.gateway.ports_in_use(Proto.UDP) == 0


def test_rfc4787_req9_a_sender_with_no_public_port_yet_gets_one_for_its_hairpin():
    lab = Lab({"filtering": "endpoint-independent"})
    p2 = open_mapping(lab, H2, 6000, H2_PORT)
    [(port, at_h2)] = hairpin(lab, H1, H1_PORT, 5000, p2)
    assert port == H2_PORT and at_h2["udp_src"] == lab.gateway.mapping_of(
        Proto.UDP, _key(H1, PUBLIC, 5000, p2)).public_endpoint.port
    [(port, back)] = lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, at_h2["udp_src"])))
    assert port == H1_PORT and back["udp_dst"] == 5000  # endpoint-independent filtering lets the server in too


def _key(src: str, dst: str, sport: int, dport: int) -> int:
    from ryu_nat.core.addresses import pack_key

    return pack_key(int(IPv4Address(src)), int(IPv4Address(dst)), sport, dport)
