"""Parsing real bytes, typed errors for bad ones, and checksum-correct rewrites."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from ryu_nat.core import checksum
from ryu_nat.core.packet import (Datagram, Frame, ParseError, parse_frame, parse_ipv4, rewrite)

from .builders import checksums_ok, echo_bytes, frame, icmp_error_bytes, parsed, tcp_bytes, udp_bytes

H1, SERVER, PUBLIC = "10.0.0.2", "192.168.3.10", "192.168.3.1"


def test_udp_fields():
    d = parsed(udp_bytes(H1, 5000, SERVER, 53, ttl=17))
    assert (IPv4Address(d.src), IPv4Address(d.dst), d.proto, d.src_port, d.dst_port, d.ttl) == (
        IPv4Address(H1), IPv4Address(SERVER), 17, 5000, 53, 17)
    assert not d.is_fragment and d.embedded is None


def test_tcp_flags_and_ports():
    d = parsed(tcp_bytes(H1, 5000, SERVER, 80, bits=0x11))
    assert (d.src_port, d.dst_port, d.tcp_flags) == (5000, 80, 0x11)


def test_frame_carries_the_datagram_and_macs():
    raw = udp_bytes(H1, 5000, SERVER, 53)
    result = parse_frame(frame("00:00:00:00:00:01", "02:00:00:00:00:02", raw + b"\x00" * 6))
    assert isinstance(result, Frame)
    assert (result.eth_src, result.eth_dst) == ("00:00:00:00:00:01", "02:00:00:00:00:02")
    assert result.datagram is not None and result.datagram.raw == raw  # Ethernet padding dropped


def test_icmp_error_exposes_the_embedded_header_and_ports():
    about = udp_bytes(PUBLIC, 4000, SERVER, 53)
    d = parsed(icmp_error_bytes(SERVER, PUBLIC, about))
    assert d.embedded is not None
    assert (IPv4Address(d.embedded.src), d.embedded.src_port, d.embedded.dst_port) == (IPv4Address(PUBLIC), 4000, 53)
    assert d.embedded.raw == about[:28]


def test_truncated_and_malformed_inputs_are_typed_errors():
    good = udp_bytes(H1, 5000, SERVER, 53)
    assert parse_ipv4(good[:10]) is ParseError.TRUNCATED
    assert parse_ipv4(good[:-1]) is ParseError.TRUNCATED
    assert parse_ipv4(b"\x60" + good[1:]) is ParseError.NOT_IPV4
    assert parse_ipv4(b"\x44" + good[1:]) is ParseError.BAD_HEADER  # IHL 4 < 5
    short_udp = bytearray(good)
    short_udp[24:26] = struct.pack("!H", 4)  # UDP length below its header
    assert parse_ipv4(bytes(short_udp)) is ParseError.BAD_TRANSPORT
    assert parse_ipv4(good[:20] [:2] + struct.pack("!H", 22) + good[4:22]) is ParseError.BAD_TRANSPORT
    assert parse_frame(b"\x00" * 5) is ParseError.TRUNCATED
    truncated_error = icmp_error_bytes(SERVER, PUBLIC, good)[:-3]
    fixed = bytearray(truncated_error)
    fixed[2:4] = struct.pack("!H", len(fixed))
    assert parse_ipv4(bytes(fixed)) is ParseError.TRUNCATED


def assert_parsed_as_its_bytes_say(data: bytes) -> Datagram | ParseError:
    """Parse ``data``: a typed error, or a datagram whose fields are what its header's bytes say."""
    result = parse_ipv4(data)
    if isinstance(result, ParseError):
        return result
    header_len, total_len = (data[0] & 0xF) * 4, int.from_bytes(data[2:4], "big")
    assert (data[0] >> 4, result.header_len, len(result.raw)) == (4, header_len, total_len)
    assert 20 <= header_len <= total_len <= len(data) and result.raw == data[:total_len]
    assert (result.ttl, result.proto, result.ident) == (data[8], data[9], int.from_bytes(data[4:6], "big"))
    assert (result.src, result.dst) == (int.from_bytes(data[12:16], "big"), int.from_bytes(data[16:20], "big"))
    assert result.frag_offset == (int.from_bytes(data[6:8], "big") & 0x1FFF) * 8
    return result


@given(st.binary(max_size=200))
def test_any_bytes_parse_to_a_typed_error_or_to_what_they_say(data):
    assert_parsed_as_its_bytes_say(data)
    result = parse_frame(data)
    if isinstance(result, Frame):
        assert (result.eth_dst, result.eth_src) == (data[:6].hex(":"), data[6:12].hex(":"))
        assert result.ethertype == int.from_bytes(data[12:14], "big")
    else:
        assert len(data) < 14 or int.from_bytes(data[12:14], "big") in (0x0800, 0x0806)


@given(st.binary(min_size=0, max_size=80))
def test_corrupted_real_packets_parse_to_a_typed_error_or_to_what_they_say(tail):
    for base in (udp_bytes(H1, 5000, SERVER, 53), tcp_bytes(H1, 5000, SERVER, 80),
                 icmp_error_bytes(SERVER, PUBLIC, udp_bytes(PUBLIC, 4000, SERVER, 53))):
        assert_parsed_as_its_bytes_say(base[:20] + tail)
        assert_parsed_as_its_bytes_say(base[:28] + tail)


def test_every_cut_of_a_real_packet_is_an_error_and_the_whole_is_not():
    for whole in (udp_bytes(H1, 5000, SERVER, 53), tcp_bytes(H1, 5000, SERVER, 80), echo_bytes(H1, SERVER, 7)):
        assert isinstance(assert_parsed_as_its_bytes_say(whole), Datagram)
        for cut in range(len(whole)):
            assert isinstance(parse_ipv4(whole[:cut]), ParseError), cut


def test_rewrite_keeps_every_checksum_right_and_payload_intact():
    for raw in (udp_bytes(H1, 5000, SERVER, 53, payload=b"x" * 33), tcp_bytes(H1, 5000, SERVER, 80, payload=b"abc"),
                echo_bytes(H1, SERVER, 99)):
        d = parsed(raw)
        out = rewrite(d, int(IPv4Address(PUBLIC)), d.dst, 40000, d.dst_port if d.proto != 1 else 40000, 63)
        assert checksums_ok(out.raw)
        assert out == parsed(out.raw)  # the view matches the bytes
        assert out.raw[-3:] == raw[-3:]


def test_rewrite_keeps_a_corrupted_checksum_corrupted():
    raw = bytearray(udp_bytes(H1, 5000, SERVER, 53))
    raw[-1] ^= 0xFF  # payload damaged in transit
    d = parsed(bytes(raw))
    out = rewrite(d, int(IPv4Address(PUBLIC)), d.dst, 40000, 53, 63)
    assert not checksums_ok(out.raw)


def test_udp_without_checksum_stays_without():
    raw = bytearray(udp_bytes(H1, 5000, SERVER, 53))
    raw[26:28] = b"\x00\x00"
    out = rewrite(parsed(bytes(raw)), int(IPv4Address(PUBLIC)), int(IPv4Address(SERVER)), 40000, 53, 63)
    assert out.raw[26:28] == b"\x00\x00"


def test_incremental_adjust_matches_full_recompute():
    data = bytearray(b"\x12\x34\x56\x78\x9a\xbc\xde\xf0")
    csum = checksum.checksum(bytes(data))
    new = bytearray(data)
    new[2:4] = b"\xff\xff"
    adjusted = checksum.adjust(csum, (0x5678,), (0xFFFF,))
    assert adjusted == checksum.checksum(bytes(new))
