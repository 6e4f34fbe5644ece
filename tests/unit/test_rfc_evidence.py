"""Behaviours docs/rfc.md cites that no other test pinned down: each names its requirement."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from ryu_nat.backend import packet_utils

from ryu_nat.core.addresses import Endpoint
from ryu_nat.core.nat import Redirect, SourceNat, Translated
from ryu_nat.core.packet import TCP_ACK, TCP_SYN, Datagram, parse_frame

from .builders import checksums_ok, echo_bytes, icmp_error_bytes, parsed, tcp_bytes, udp_bytes, with_ip_checksum
from .corefix import H1, PUBLIC, REMOTE, SERVER, make_nat
from .lab import H1 as LAB_H1, H1_PORT, H2 as LAB_H2, H2_PORT, PUBLIC as LAB_PUBLIC, SERVER as LAB_SERVER, UPLINK
from .lab import Lab, from_host


def _translated(result: object) -> Translated:
    assert isinstance(result, Translated), result
    return result


def test_icmp_errors_never_end_a_mapping():
    """RFC 4787 REQ-12, RFC 5382 REQ-10: an error about a flow is forwarded; the flow goes on."""
    lab = Lab()
    [(_, out)] = lab.send(H1_PORT, from_host(LAB_H1, tcp_bytes(LAB_H1, 5000, LAB_SERVER, 80)))
    about = tcp_bytes(LAB_PUBLIC, out["tcp_src"], LAB_SERVER, 80)
    for kind, code in ((3, 1), (3, 3), (11, 0), (12, 0)):
        assert [port for port, _ in lab.send(UPLINK, from_host(LAB_SERVER, icmp_error_bytes(
            LAB_SERVER, LAB_PUBLIC, about, kind=kind, code=code)))] == [H1_PORT]
    [(port, again)] = lab.send(H1_PORT, from_host(LAB_H1, tcp_bytes(LAB_H1, 5000, LAB_SERVER, 80, bits=TCP_ACK)))
    assert (port, again["tcp_src"]) == (UPLINK, out["tcp_src"]) and lab.switch.packet_ins() == []


def test_simultaneous_open_a_syn_from_the_remote_reaches_the_host():
    """RFC 5382 REQ-2a: both ends send a SYN; the remote's arrives through the mapping the host's made."""
    lab = Lab()
    [(_, out)] = lab.send(H1_PORT, from_host(LAB_H1, tcp_bytes(LAB_H1, 5000, LAB_SERVER, 7000, bits=TCP_SYN)))
    syn_in = tcp_bytes(LAB_SERVER, 7000, LAB_PUBLIC, out["tcp_src"], bits=TCP_SYN)
    [(port, delivered)] = lab.send(UPLINK, from_host(LAB_SERVER, syn_in))
    assert (port, delivered["ipv4_dst"], delivered["tcp_dst"]) == (H1_PORT, LAB_H1, 5000)


def test_an_icmp_query_id_keeps_its_public_id_for_every_remote():
    """RFC 5508 REQ-1a: the id mapping is external-host independent."""
    nat, _ = make_nat()
    ids = []
    for remote in (SERVER, REMOTE):
        ping = parsed(echo_bytes(H1, remote, 4242))
        nat.add(ping, SourceNat(), now=0.0)
        ids.append(_translated(nat.translate(ping, now=0.0)).packet.src_port)
    assert ids[0] == ids[1]


def test_an_error_about_a_ping_neither_refreshes_nor_ends_its_mapping():
    """RFC 5508 REQ-6."""
    nat, _ = make_nat()
    ping = parsed(echo_bytes(H1, REMOTE, 77))
    mapping = nat.add(ping, SourceNat(), now=0.0)
    sent = _translated(nat.translate(ping, now=0.0)).packet
    error = parsed(icmp_error_bytes(IPv4Address("192.168.3.254"), PUBLIC, sent.raw, kind=3, code=1))
    _translated(nat.translate(error, now=30.0))
    assert mapping.last_used == 0.0
    assert nat.expire(now=61.0) == 1  # it idled out from the ping, not from the error


def test_a_hairpinned_icmp_error_goes_to_the_hairpin_client_from_the_public_address():
    """RFC 5508 REQ-7 and 7a: the error's outer destination is the quoted packet's source after translation."""
    lab = Lab({"redirects": f"tcp:8080={LAB_H1}:80"})
    [(port, delivered)] = lab.send(H2_PORT, from_host(LAB_H2, tcp_bytes(LAB_H2, 6000, LAB_PUBLIC, 8080)))
    assert (port, delivered["ipv4_src"]) == (H1_PORT, LAB_PUBLIC)
    about = tcp_bytes(LAB_PUBLIC, delivered["tcp_src"], LAB_H1, 80)
    [(port, error)] = lab.send(H1_PORT, from_host(LAB_H1, icmp_error_bytes(LAB_H1, LAB_PUBLIC, about)))
    assert (port, error["ipv4_src"], error["ipv4_dst"]) == (H2_PORT, LAB_PUBLIC, LAB_H2)
    [back] = [parse_frame(data).datagram for data in lab.last_packet_outs()]
    assert (str(IPv4Address(back.embedded.src)), back.embedded.src_port, back.embedded.dst_port) == (
        LAB_H2, 6000, 8080)


def test_the_quote_of_an_error_with_ip_options_is_read_past_them():
    """RFC 5508 REQ-3b: the quoted transport header starts after the quoted IP options."""
    plain = udp_bytes(PUBLIC, 40000, SERVER, 53)
    with_options = bytearray(b"\x46" + plain[1:20] + b"\x01\x01\x01\x00" + plain[20:])
    with_options[2:4] = struct.pack("!H", len(with_options))
    error = parsed(icmp_error_bytes(SERVER, PUBLIC, with_ip_checksum(bytes(with_options))))
    assert isinstance(error, Datagram) and error.embedded is not None
    assert (error.embedded.header_len, error.embedded.src_port, error.embedded.dst_port) == (24, 40000, 53)


def test_a_quoted_transport_checksum_is_never_checked():
    """RFC 5508 REQ-3c: a router may quote a datagram it cut; its UDP checksum cannot hold and need not."""
    nat, _ = make_nat()
    pkt = parsed(udp_bytes(H1, 5000, SERVER, 9999))
    nat.add(pkt, SourceNat(), now=0.0)
    sent = bytearray(_translated(nat.translate(pkt, now=0.0)).packet.raw)
    sent[26:28] = struct.pack("!H", 0x1234)  # a UDP checksum that does not add up
    error = parsed(icmp_error_bytes(SERVER, PUBLIC, bytes(sent)))
    out = _translated(nat.translate(error, now=1.0)).packet
    assert IPv4Address(out.dst) == H1 and checksums_ok(out.raw)


def test_public_ports_are_random_within_the_range():
    """RFC 6056 via RFC 7857 section 9 (and RFC 6888 REQ-13): ports are drawn at random from the range."""
    nat, _ = make_nat()
    ports = []
    for sport in range(5000, 5050):
        mapping = nat.add(parsed(udp_bytes(H1, sport, SERVER, 53)), SourceNat(), now=0.0)
        ports.append(mapping.public_endpoint.port)
    assert all(1024 <= port <= 65535 for port in ports) and len(set(ports)) == 50
    assert sorted(ports) != ports and max(ports) - min(ports) > 20_000


def test_a_redirect_target_answers_from_the_forwarded_port():
    """RFC 4787 REQ-1 for port forwards: the reply leaves from the public address and the forwarded port."""
    nat, _ = make_nat()
    request = parsed(udp_bytes(REMOTE, 6000, PUBLIC, 5353))
    nat.add(request, Redirect(Endpoint(H1, 53)), now=0.0)
    _translated(nat.translate(request, now=0.0))
    reply = _translated(nat.translate(parsed(udp_bytes(H1, 53, REMOTE, 6000)), now=0.0)).packet
    assert (IPv4Address(reply.src), reply.src_port) == (PUBLIC, 5353)
    assert packet_utils.checksum(reply.raw[:20]) == 0
