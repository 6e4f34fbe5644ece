"""Fragmentation needed, cutting to the MTU, IP ids, and ICMP errors checked and translated within their quote.

RFC 4787 REQ-13/13a, RFC 5508 REQ-3/3a/3d/5c/10, RFC 7857 section 10, and
mirage-nat's stricter add and fragment: against the simulated switch (which
runs Open vSwitch's length check in table 0), the core, and the encoder.
"""

from __future__ import annotations

import logging
import struct
from ipaddress import IPv4Address

from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import packet_utils

from ryu_nat.core.addresses import Endpoint
from ryu_nat.core.fragments import FragmentError, fragment
from ryu_nat.core.nat import Hairpin, Redirect, SourceNat
from ryu_nat.core.packet import ParseError, parse_frame, parse_ipv4
from ryu_nat.core.table import AddError
from ryu_nat.openflow import cookies, encoder
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import CheckPktLarger, FlowRule, Match, Output

from .builders import checksums_ok, icmp_error_bytes, parsed, tcp_bytes, udp_bytes
from .corefix import make_nat
from .fakedp import FakeDatapath, decode
from .fakeswitch import from_ryu
from .lab import H1, H1_PORT, H2, H2_PORT, PRIVATE, PUBLIC, SERVER, UPLINK, Lab, from_host

DF = 0b010  # the IPv4 flags field as Ryu takes it: Don't Fragment


def icmp_messages(lab: Lab) -> list:
    """The ICMP datagrams of the last plan's packet-outs, parsed."""
    return [d for d in (parse_frame(data).datagram for data in lab.last_packet_outs()) if d.proto == 1]


def next_hop_mtu(d) -> int:
    (mtu,) = struct.unpack_from("!H", d.raw, d.header_len + 6)
    return mtu


def open_udp(lab: Lab) -> int:
    """A UDP mapping H1:5000 -> SERVER:53 with both rules on the switch; its public port."""
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    return out["udp_src"]


# --- RFC 4787 REQ-13, RFC 5508 REQ-10: fragmentation needed ---------------------------------------


def test_the_switch_sends_only_frames_over_the_mtu_to_the_controller():
    lab = Lab({"public_mtu": "1400"})
    open_udp(lab)
    plans = len(lab.plans)
    fits = udp_bytes(H1, 5000, SERVER, 53, payload=bytes(1372), flags=DF)  # exactly 1400 bytes
    [(port, _)] = lab.send(H1_PORT, from_host(H1, fits))
    assert port == UPLINK and lab.switch.packet_ins() == [] and len(lab.plans) == plans  # no new plan: the fast path
    over = udp_bytes(H1, 5000, SERVER, 53, payload=bytes(1373), flags=DF)
    lab.switch.fate(**_fields(over, H1_PORT))
    [packet_in] = lab.switch.packet_ins()
    assert (packet_in.reason, packet_in.cookie) == (ofp.OFPR_ACTION, cookies.make(RuleKind.BASE))


def _fields(ip: bytes, port: int) -> dict:
    from .fakeswitch import fields_of_frame

    return fields_of_frame(from_host(H1 if port != UPLINK else SERVER, ip), port)


def test_fragmentation_needed_quotes_the_datagram_and_comes_from_the_nats_private_address():
    lab = Lab({"public_mtu": "1400"})
    open_udp(lab)
    big = udp_bytes(H1, 5000, SERVER, 53, payload=bytes(1400), flags=DF)
    delivered = lab.send(H1_PORT, from_host(H1, big))
    [error] = icmp_messages(lab)
    assert [port for port, _ in delivered] == [H1_PORT]
    assert (error.icmp_type, error.icmp_code, next_hop_mtu(error)) == (3, 4, 1400)
    assert (IPv4Address(error.src), IPv4Address(error.dst)) == (IPv4Address(PRIVATE), IPv4Address(H1))
    assert error.embedded.raw == big[:28] and checksums_ok(error.raw)
    assert lab.gateway.stats.icmp_sent["fragmentation_needed"] == 1
    assert lab.gateway.stats.drops["dont_fragment"] == 1


def test_a_reply_too_big_for_the_private_side_is_answered_from_the_public_address():
    lab = Lab({"private_mtu": "1200"})
    public_port = open_udp(lab)
    big = udp_bytes(SERVER, 53, PUBLIC, public_port, payload=bytes(1300), flags=DF)
    delivered = lab.send(UPLINK, from_host(SERVER, big))
    [error] = icmp_messages(lab)
    assert [port for port, _ in delivered] == [UPLINK]
    assert (str(IPv4Address(error.src)), str(IPv4Address(error.dst)), next_hop_mtu(error)) == (PUBLIC, SERVER, 1200)


def test_the_first_packet_too_big_still_makes_the_mapping_and_its_rules():
    lab = Lab({"public_mtu": "1400"})
    syn = tcp_bytes(H1, 5000, SERVER, 80, payload=bytes(1400), flags=DF)
    assert [port for port, _ in lab.send(H1_PORT, from_host(H1, syn))] == [H1_PORT]
    [error] = icmp_messages(lab)
    assert next_hop_mtu(error) == 1400
    [(port, out)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 5000, SERVER, 80, flags=DF)))
    assert (port, out["ipv4_src"]) == (UPLINK, PUBLIC) and lab.switch.packet_ins() == []


def test_without_df_a_datagram_too_big_is_cut_to_the_mtu():
    lab = Lab({"public_mtu": "1000"})
    open_udp(lab)
    payload = bytes(range(256)) * 10
    delivered = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53, payload=payload)))
    assert [port for port, _ in delivered] == [UPLINK] * 3
    pieces = [parse_frame(data).datagram for data in lab.last_packet_outs()]
    assert all(len(piece.raw) <= 1000 for piece in pieces)
    whole = _reassemble(pieces)
    assert whole.raw[28:] == payload and whole.src == int(IPv4Address(PUBLIC))


def test_a_reassembled_datagram_leaves_in_pieces_that_fit_the_mtu():
    lab = Lab({"public_mtu": "576"})
    payload = bytes(3000)
    for piece in fragment(parsed(udp_bytes(H1, 5000, SERVER, 9000, payload=payload)), 1480):
        lab.send(H1_PORT, from_host(H1, piece))
    pieces = [parse_frame(data).datagram for data in lab.last_packet_outs()]
    assert len(pieces) == 6 and all(len(piece.raw) <= 576 for piece in pieces)
    assert _reassemble(pieces).raw[28:] == payload


def test_no_fragmentation_needed_about_an_icmp_error():
    lab = Lab({"private_mtu": "576"})
    public_port = open_udp(lab)
    about = udp_bytes(PUBLIC, public_port, SERVER, 53, payload=bytes(1000))
    error = icmp_error_bytes(SERVER, PUBLIC, about, quote=1000)
    with_df = bytearray(error)
    with_df[6] |= 0x40
    from .builders import with_ip_checksum

    assert lab.send(UPLINK, from_host(SERVER, with_ip_checksum(bytes(with_df)))) == []
    assert lab.gateway.stats.icmp_sent["fragmentation_needed"] == 0
    assert lab.gateway.stats.drops["dont_fragment"] == 1


def _reassemble(pieces):
    from ryu_nat.core.fragments import FragmentCache, Reassembled

    cache = FragmentCache()
    results = [cache.add(piece, now=0.0) for piece in pieces]
    assert isinstance(results[-1], Reassembled)
    assert checksums_ok(results[-1].datagram.raw)
    return results[-1].datagram


# --- RFC 7857 section 10: IP ids of datagrams cut on the way out ------------------------------------


def test_two_hosts_datagrams_with_one_ip_id_leave_with_different_ids():
    lab = Lab({"public_mtu": "1000"})
    ids = []
    for host, port in ((H1, H1_PORT), (H2, H2_PORT)):
        lab.send(port, from_host(host, udp_bytes(host, 5000, SERVER, 53)))
        lab.send(port, from_host(host, udp_bytes(host, 5000, SERVER, 53, payload=bytes(1500), ident=0x4242)))
        pieces = [parse_frame(data).datagram for data in lab.last_packet_outs()]
        assert len(pieces) == 2 and pieces[0].ident == pieces[1].ident
        ids.append(pieces[0].ident)
    assert ids[0] != ids[1]


# --- RFC 5508 REQ-3, 3a, 3d: ICMP errors checked, and rewritten only within their quote ---------------


def _error_with_extension(quoted: bytes, field_len: int) -> bytes:
    """A destination unreachable from SERVER to PUBLIC: ``quoted`` zero-padded to ``field_len`` bytes (its RFC
    4884 length), then an extension structure with one object."""
    field = quoted + bytes(field_len - len(quoted))
    extension = struct.pack("!BBH", 0x20, 0, 0) + struct.pack("!HBB", 8, 2, 1) + b"\x00\x00\x00\x07"
    extension = extension[:2] + struct.pack("!H", packet_utils.checksum(extension)) + extension[4:]
    body = struct.pack("!BBHBBH", 3, 3, 0, 0, len(field) // 4, 0) + field + extension
    body = body[:2] + struct.pack("!H", packet_utils.checksum(body)) + body[4:]
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 7, 0, 64, 1, 0,
                                   IPv4Address(SERVER).packed, IPv4Address(PUBLIC).packed))
    header[10:12] = struct.pack("!H", packet_utils.checksum(bytes(header)))
    return bytes(header) + body


def _open_tcp(lab: Lab) -> bytes:
    """A TCP mapping H1:5000 -> SERVER:80; the SYN as it left the NAT."""
    [(_, out)] = lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 5000, SERVER, 80)))
    return tcp_bytes(PUBLIC, out["tcp_src"], SERVER, 80)


def test_an_icmp_error_with_rfc_4884_extensions_is_translated_within_its_quote():
    lab = Lab()
    sent = _open_tcp(lab)  # 44 bytes: quoted whole, zero-padded to 128, as RFC 4884 asks
    error = _error_with_extension(sent, 128)
    assert [port for port, _ in lab.send(UPLINK, from_host(SERVER, error))] == [H1_PORT]
    [back] = icmp_messages(lab)
    assert checksums_ok(back.raw)
    quote_at = back.header_len + 8
    assert back.raw[quote_at + len(sent):] == error[28 + len(sent):]  # padding and extension untouched
    inner = parse_ipv4(back.raw[quote_at:quote_at + len(sent)])
    assert (str(IPv4Address(inner.src)), inner.src_port, checksums_ok(inner.raw)) == (H1, 5000, True)


def test_a_quote_shorter_than_the_transport_checksum_leaves_the_bytes_after_it_alone():
    lab = Lab()
    sent = _open_tcp(lab)
    error = _error_with_extension(sent[:28], 28)  # only header + 8 bytes, the extension right after
    lab.send(UPLINK, from_host(SERVER, error))
    [back] = icmp_messages(lab)
    assert back.raw[back.header_len + 8 + 28:] == error[28 + 28:]  # the TCP checksum's place is the extension's
    assert checksums_ok(back.raw)


def test_the_quote_of_a_plain_icmp_error_is_the_rest_of_the_message():
    about = udp_bytes(PUBLIC, 40000, SERVER, 53, payload=bytes(500))
    d = parsed(icmp_error_bytes(SERVER, PUBLIC, about, quote=100))
    assert d.embedded.raw == about[:120]


def test_the_quote_stops_at_the_quoted_packets_own_length():
    about = udp_bytes(PUBLIC, 40000, SERVER, 53, payload=b"x" * 12)  # 40 bytes in all
    error = icmp_error_bytes(SERVER, PUBLIC, about + bytes(24), quote=44)  # a router padded its quote
    assert parsed(error).embedded.raw == about


def test_icmp_errors_with_a_bad_checksum_or_a_bad_quoted_header_are_refused():
    about = udp_bytes(PUBLIC, 40000, SERVER, 53)
    error = bytearray(icmp_error_bytes(SERVER, PUBLIC, about))
    error[-1] ^= 0x01
    assert parse_ipv4(bytes(error)) is ParseError.BAD_ICMP_CHECKSUM
    bad_quote = bytearray(about)
    bad_quote[8] -= 1  # the TTL, as a router that forgot the checksum would leave it
    assert parse_ipv4(icmp_error_bytes(SERVER, PUBLIC, bytes(bad_quote))) is ParseError.BAD_EMBEDDED_CHECKSUM


# --- RFC 5508 REQ-5c: errors from behind the NAT speak for its public address --------------------------


def test_an_error_from_a_private_router_about_a_redirected_flow_leaves_from_the_public_address():
    lab = Lab()
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)))  # redirect to H1:80
    router = H2  # a router between the NAT and the server would answer from its own private address
    about = tcp_bytes(SERVER, 40000, H1, 80, ttl=1)
    delivered = lab.send(H2_PORT, from_host(router, icmp_error_bytes(router, SERVER, about, kind=11, code=0)))
    assert [port for port, _ in delivered] == [UPLINK]
    [error] = icmp_messages(lab)
    assert str(IPv4Address(error.src)) == PUBLIC and str(IPv4Address(error.dst)) == SERVER
    assert (str(IPv4Address(error.embedded.dst)), error.embedded.dst_port) == (PUBLIC, 8080)
    assert checksums_ok(error.raw)


def test_an_error_from_a_private_router_about_a_reply_leaves_from_the_public_address():
    lab = Lab()
    public_port = open_udp(lab)
    about = udp_bytes(SERVER, 53, H1, 5000, ttl=1)
    lab.send(H2_PORT, from_host(H2, icmp_error_bytes(H2, SERVER, about, kind=11, code=0)))
    [error] = icmp_messages(lab)
    assert (str(IPv4Address(error.src)), error.embedded.dst_port) == (PUBLIC, public_port)


# --- mirage-nat's stricter add and fragment --------------------------------------------------------


def test_adding_a_conversation_again_in_another_mode_or_to_another_target_is_an_overlap():
    nat, _ = make_nat()
    first = parsed(tcp_bytes(SERVER, 40000, PUBLIC, 8080))
    mapping = nat.add(first, Redirect(Endpoint(IPv4Address(H1), 80)), now=0.0)
    assert nat.add(first, Redirect(Endpoint(IPv4Address(H1), 80)), now=1.0) is mapping
    assert nat.add(first, Redirect(Endpoint(IPv4Address(H2), 80)), now=1.0) is AddError.OVERLAP
    assert nat.add(first, Redirect(Endpoint(IPv4Address(H1), 81)), now=1.0) is AddError.OVERLAP
    assert nat.add(first, SourceNat(), now=1.0) is AddError.OVERLAP
    out = parsed(udp_bytes(H1, 5000, SERVER, 53))
    nat_mapping = nat.add(out, SourceNat(), now=0.0)
    assert nat.add(out, SourceNat(), now=1.0) is nat_mapping
    assert nat.add(out, Hairpin(Endpoint(IPv4Address(H2), 53)), now=1.0) is AddError.OVERLAP


def test_fragment_refuses_a_df_datagram_that_does_not_fit():
    big = parsed(udp_bytes(H1, 5000, SERVER, 53, payload=bytes(2000), flags=DF))
    assert fragment(big, 1480) is FragmentError.DONT_FRAGMENT
    small = udp_bytes(H1, 5000, SERVER, 53, flags=DF)
    assert fragment(parsed(small), 1480) == [small]


# --- RFC 6888 REQ-12: no destinations in the log at the default level --------------------------------


def test_a_refused_mapping_is_logged_without_its_destination(caplog):
    lab = Lab({"port_range": "2000-2000"})
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    with caplog.at_level(logging.WARNING):
        lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 5000, "198.51.100.77", 4242)))
    [line] = [record.getMessage() for record in caplog.records if "refused" in record.getMessage()]
    assert "10.0.0.3:5000" in line and "198.51.100.77" not in line and "4242" not in line


# --- the switch's length check on the wire ---------------------------------------------------------


def test_check_pkt_larger_is_encoded_as_open_vswitch_decodes_it():
    rule = FlowRule(1, Match.of(eth_type=0x0800), (CheckPktLarger(1514),), cookies.make(RuleKind.BASE),
                    table_id=0, goto_table=1)
    dp = FakeDatapath()
    data = encoder.serialize_batch(dp, encoder.to_messages(dp, [rule]))
    # `echo ... | ovs-ofctl parse-actions OpenFlow13` on Open vSwitch 3.1 prints
    # actions=check_pkt_larger(1514)->NXM_NX_REG0[0] for these 24 bytes.
    assert bytes.fromhex("ffff001800002320003105ea000000010004000000000000") in data
    [msg] = decode(dp, data)
    assert (msg.table_id, from_ryu(msg)) == (0, rule)


def test_templated_rules_keep_their_table_and_goto():
    plan = [FlowRule(5, Match.of(in_port=3), (Output(2),), 1, table_id=table, goto_table=goto)
            for table, goto in ((0, None), (1, None), (0, 1), (1, None))]
    data, _ = encoder.Encoder().encode(FakeDatapath(), plan)
    assert [from_ryu(msg) for msg in decode(FakeDatapath(), data)] == plan
