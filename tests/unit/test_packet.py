"""Parsing real bytes, typed errors for bad ones, and checksum-correct rewrites."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from ryu_nat.backend import arp, ethernet, icmp, ipv4, tcp, udp
from ryu_nat.core import checksum
from ryu_nat.core.icmp import echo_reply
from ryu_nat.core.packet import (Datagram, Frame, ParseError, parse_frame, parse_ipv4, rewrite)

from .builders import (checksums_ok, echo_bytes, frame, icmp_error_bytes, parsed, tcp_bytes, udp_bytes,
                       with_ip_checksum)
from .hostile import Watchdog

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
    assert parse_ipv4(with_ip_checksum(good[:2] + struct.pack("!H", 22) + good[4:22])) is ParseError.BAD_TRANSPORT
    assert parse_frame(b"\x00" * 5) is ParseError.TRUNCATED
    assert parse_ipv4(icmp_error_bytes(SERVER, PUBLIC, good, quote=5)) is ParseError.TRUNCATED  # 8 bytes needed


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


def test_a_bad_ip_header_checksum_is_its_own_error():
    good = tcp_bytes(H1, 5000, SERVER, 80)
    bad = bytearray(good)
    bad[10] ^= 0x01
    assert parse_ipv4(bytes(bad)) is ParseError.BAD_IP_CHECKSUM
    assert ParseError.BAD_IP_CHECKSUM.value == "bad_ip_checksum"  # its counter name
    # Either form of zero in the checksum field is correct (RFC 1624 section 3), and IP options are summed.
    assert isinstance(parse_ipv4(with_ip_checksum(good[:20] + good[20:])), Datagram)
    with_options = bytearray(b"\x46" + good[1:20] + b"\x01\x01\x01\x00" + good[20:])
    with_options[2:4] = struct.pack("!H", len(with_options))
    assert isinstance(parse_ipv4(with_ip_checksum(bytes(with_options))), Datagram)
    with_options[21] ^= 0x10  # an option byte changed after the checksum was made
    assert parse_ipv4(bytes(with_options)) is ParseError.BAD_IP_CHECKSUM


def test_tcp_options_are_never_read():
    # 40 bytes of options that no parser could make sense of: the ports and flags are still right.
    for options in (b"\x05\x00\x01\x01" * 10, b"\x1d\x00" * 20, b"\xfe\x00" * 20, b"\x02\xff" * 20):
        raw = bytearray(tcp_bytes(H1, 5000, SERVER, 80, bits=0x12))
        raw[32] = 0xF0  # data offset 15 words: the 40 option bytes follow the header
        raw[2:4] = struct.pack("!H", 80)
        with Watchdog(2.0) as watchdog:  # Ryu 4.34's option parser never returned on these
            d = watchdog.run(parse_ipv4, with_ip_checksum(bytes(raw[:40]) + options))
        assert isinstance(d, Datagram) and (d.src_port, d.dst_port, d.tcp_flags) == (5000, 80, 0x12)


def test_untagged_ipv4_and_arp_are_parsed_and_other_ethertypes_only_named():
    raw = udp_bytes(H1, 5000, SERVER, 53)
    for ethertype, inner in ((0x8100, b"\x00\x05\x08\x00" + raw), (0x88A8, b"\x00\x05\x81\x00\x00\x06\x08\x00" + raw),
                             (0x86DD, b"\x60" + bytes(39)), (0x05DC, raw)):
        result = parse_frame(frame("00:00:00:00:00:01", "02:00:00:00:00:02", inner, ethertype))
        assert isinstance(result, Frame)
        assert (result.ethertype, result.datagram, result.arp) == (ethertype, None, None)
    assert parse_frame(frame("00:00:00:00:00:01", "02:00:00:00:00:02", b"\x60" + raw[1:])) is ParseError.NOT_IPV4


def test_arp_fields_read_at_fixed_offsets_as_ryu_names_them():
    request = arp.arp_ip(arp.ARP_REQUEST, "00:00:00:00:00:02", H1, "00:00:00:00:00:00", "10.0.0.1")
    body = bytes(request.serialize(b"", None))
    result = parse_frame(frame("00:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", body, 0x0806))
    assert isinstance(result, Frame) and result.arp is not None
    a = result.arp
    assert (a.hwtype, a.proto, a.hlen, a.plen, a.opcode) == (1, 0x0800, 6, 4, arp.ARP_REQUEST)
    assert (a.src_mac, a.src_ip, a.dst_mac, a.dst_ip) == ("00:00:00:00:00:02", H1, "00:00:00:00:00:00", "10.0.0.1")
    odd = bytearray(body)
    odd[4:6] = b"\xff\x00"  # hlen 255, plen 0: still only the fixed 28 bytes are read
    result = parse_frame(frame("00:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", bytes(odd), 0x0806))
    assert isinstance(result, Frame) and result.arp is not None and (result.arp.hlen, result.arp.plen) == (255, 0)
    for cut in range(28):
        data = frame("00:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", body, 0x0806)[: 14 + cut]
        assert parse_frame(data) is ParseError.TRUNCATED, cut


def test_parsing_calls_no_ryu_parser(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("the framework's packet parser was called on received bytes")

    for cls in (ethernet.ethernet, ipv4.ipv4, tcp.tcp, tcp.TCPOption, udp.udp, icmp.icmp, icmp.echo,
                icmp.dest_unreach, icmp.TimeExceeded, arp.arp):
        monkeypatch.setattr(cls, "parser", classmethod(refuse))
    about = udp_bytes(PUBLIC, 4000, SERVER, 53)
    request = bytes(arp.arp_ip(arp.ARP_REQUEST, "00:00:00:00:00:02", H1, "00:00:00:00:00:00", PUBLIC)
                    .serialize(b"", None))
    for data in (tcp_bytes(H1, 5000, SERVER, 80), udp_bytes(H1, 5000, SERVER, 53), echo_bytes(H1, SERVER, 7),
                 icmp_error_bytes(SERVER, PUBLIC, about), icmp_error_bytes(SERVER, PUBLIC, echo_bytes(PUBLIC, SERVER, 9))):
        result = parse_frame(frame("00:00:00:00:00:01", "02:00:00:00:00:02", data))
        assert isinstance(result, Frame) and result.datagram is not None
    assert isinstance(parse_frame(frame("00:00:00:00:00:02", "ff:ff:ff:ff:ff:ff", request, 0x0806)), Frame)
    reply = echo_reply(parsed(echo_bytes(SERVER, PUBLIC, 7)))
    assert reply is not None


def test_the_echo_reply_keeps_id_sequence_and_data():
    request = parsed(echo_bytes(SERVER, PUBLIC, 4242, seq=17, payload=b"0123456789abcdef!"))
    reply = echo_reply(request)
    assert reply is not None and checksums_ok(reply)
    answer = parsed(reply)
    assert (answer.icmp_type, answer.icmp_code, answer.src_port) == (0, 0, 4242)
    assert (IPv4Address(answer.src), IPv4Address(answer.dst)) == (IPv4Address(PUBLIC), IPv4Address(SERVER))
    assert answer.raw[answer.header_len + 4:] == request.raw[request.header_len + 4:]  # id, sequence, data
