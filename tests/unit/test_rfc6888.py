"""RFC 6888 REQ-4 and REQ-11 (resource limits) and RFC 5508 REQ-8 (ICMP 3/13 when no mapping can be made).

Each test's name starts with the requirement it proves (docs/rfc.md names them).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from ryu_nat.core.addresses import Proto
from ryu_nat.core.packet import parse_frame
from ryu_nat.gateway.local import PROHIBITED_PER_S

from .builders import checksums_ok, echo_bytes, tcp_bytes, udp_bytes
from .lab import H1, H1_PORT, H2, H2_PORT, INTERNET, PRIVATE, PUBLIC, SERVER, UPLINK, Lab, from_host


def udp_from(lab: Lab, host: str, port: int, sport: int, dst: str = SERVER) -> list[tuple[int, dict]]:
    return lab.send(port, from_host(host, udp_bytes(host, sport, dst, 53)))


def is_prohibited(delivered: list[tuple[int, dict]], port: int, host: str) -> bool:
    """The one packet delivered is an ICMP 3/13 from the NAT's private address to ``host`` on ``port``."""
    return [(p, f["ipv4_src"], f["ipv4_dst"], f["icmpv4_type"], f["icmpv4_code"]) for p, f in delivered] == [
        (port, PRIVATE, host, 3, 13)]


def sources(lab: Lab, proto: Proto, host: str) -> set[int]:
    return {m.private_endpoint.port for m in lab.gateway.mappings(proto) if str(m.private_endpoint.ip) == host}


# --- REQ-4: mappings per host -------------------------------------------------------------------------------


def test_rfc6888_req4_a_host_at_its_limit_evicts_its_own_oldest_mapping_by_default():
    lab = Lab({"max_mappings_per_host": "3"})
    for sport in (5000, 5001, 5002):
        udp_from(lab, H1, H1_PORT, sport)
    udp_from(lab, H2, H2_PORT, 7000)
    [(port, _)] = udp_from(lab, H1, H1_PORT, 5003)
    assert port == UPLINK
    assert sources(lab, Proto.UDP, H1) == {5001, 5002, 5003} and sources(lab, Proto.UDP, H2) == {7000}
    assert lab.gateway.stats.mappings_removed["host_limit"] == 1


def test_rfc6888_req4_the_limit_is_per_protocol():
    lab = Lab({"max_mappings_per_host": "1", "when_full": "refuse"})
    udp_from(lab, H1, H1_PORT, 5000)
    [(port, _)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 5000, SERVER, 80)))
    assert port == UPLINK and lab.gateway.mapping_count(Proto.TCP) == 1


def test_rfc6888_req4_with_refuse_a_host_at_its_limit_is_answered_3_13_and_keeps_its_mappings():
    lab = Lab({"max_mappings_per_host": "2", "when_full": "refuse"})
    udp_from(lab, H1, H1_PORT, 5000)
    udp_from(lab, H1, H1_PORT, 5001)
    assert is_prohibited(udp_from(lab, H1, H1_PORT, 5002), H1_PORT, H1)
    assert sources(lab, Proto.UDP, H1) == {5000, 5001}
    assert lab.gateway.stats.drops["host_limit"] == 1 and lab.gateway.stats.icmp_sent["prohibited"] == 1
    [(port, _)] = udp_from(lab, H2, H2_PORT, 5002)  # another host is not limited by H1's mappings
    assert port == UPLINK


def test_rfc6888_req4_a_hairpin_counts_for_its_client_only():
    lab = Lab({"max_mappings_per_host": "1", "when_full": "refuse", "filtering": "endpoint-independent"})
    [(_, out)] = udp_from(lab, H2, H2_PORT, 7000)
    [(port, _)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, PUBLIC, out["udp_src"])))
    assert port == H2_PORT  # H1's one mapping: the hairpin; H2's one: its own, the hairpin is not H2's
    assert is_prohibited(udp_from(lab, H2, H2_PORT, 7001), H2_PORT, H2)


# --- REQ-11d, and RFC 4787 REQ-11: full tables --------------------------------------------------------------


def test_rfc6888_req11_when_full_evict_is_the_tables_least_recently_used():
    lab = Lab({"udp_table_size": "2"})
    udp_from(lab, H1, H1_PORT, 5000)
    udp_from(lab, H1, H1_PORT, 5001)
    udp_from(lab, H2, H2_PORT, 7000)
    assert sources(lab, Proto.UDP, H1) == {5001} and lab.gateway.stats.mappings_removed["evicted"] == 1


def test_rfc6888_req11_when_full_refuse_never_deletes_a_live_mapping_to_make_room():
    lab = Lab({"udp_table_size": "2", "when_full": "refuse"})
    udp_from(lab, H1, H1_PORT, 5000)
    udp_from(lab, H1, H1_PORT, 5001)
    assert is_prohibited(udp_from(lab, H2, H2_PORT, 7000), H2_PORT, H2)
    assert sources(lab, Proto.UDP, H1) == {5000, 5001} and lab.gateway.stats.mappings_removed == {}
    assert lab.gateway.stats.drops["table_full"] == 1


def test_rfc4787_req11_a_stranger_cannot_evict_a_live_mapping_through_a_redirect():
    lab = Lab({"tcp_table_size": "1"})
    lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 5000, SERVER, 80)))
    [mapping] = lab.gateway.mappings(Proto.TCP)
    assert lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080))) == []
    assert list(lab.gateway.mappings(Proto.TCP)) == [mapping] and lab.gateway.stats.drops["table_full"] == 1
    assert lab.gateway.stats.icmp_sent["prohibited"] == 0  # only private hosts are told


# --- RFC 5508 REQ-8 (RFC 6888 REQ-11b): destination unreachable, administratively prohibited ------------------


def test_rfc5508_req8_ports_exhausted_answers_the_private_host_with_3_13_quoting_its_packet():
    lab = Lab({"port_range": "40000-40001"})
    udp_from(lab, H1, H1_PORT, 5000)
    udp_from(lab, H1, H1_PORT, 5001)
    delivered = udp_from(lab, H1, H1_PORT, 5002)
    assert is_prohibited(delivered, H1_PORT, H1) and delivered[0][1]["eth_dst"] == "00:00:00:00:00:02"
    answer = parse_frame(lab.last_packet_outs()[-1]).datagram
    assert answer is not None and checksums_ok(answer.raw)
    assert (IPv4Address(answer.embedded.src), answer.embedded.src_port, answer.embedded.dst_port) == (
        IPv4Address(H1), 5002, 53)
    assert lab.gateway.stats.drops["ports_exhausted"] == 1


def test_rfc5508_req8_an_icmp_query_with_no_id_left_is_answered_too():
    lab = Lab({"port_range": "40000-40000"})
    lab.send(H1_PORT, from_host(H1, echo_bytes(H1, INTERNET, 7)))
    assert is_prohibited(lab.send(H2_PORT, from_host(H2, echo_bytes(H2, INTERNET, 9))), H2_PORT, H2)


def test_rfc5508_req8_the_answers_are_rate_limited():
    lab = Lab({"port_range": "40000-40000"})
    udp_from(lab, H1, H1_PORT, 5000)
    answered = sum(bool(udp_from(lab, H2, H2_PORT, 6000 + i)) for i in range(int(PROHIBITED_PER_S) + 5))
    assert answered == PROHIBITED_PER_S and lab.gateway.stats.icmp_suppressed["prohibited"] == 5
    assert lab.gateway.stats.drops["ports_exhausted"] == PROHIBITED_PER_S + 5
    lab.advance(0.5)
    answered = sum(bool(udp_from(lab, H2, H2_PORT, 7000 + i)) for i in range(10))
    assert answered == PROHIBITED_PER_S / 2
