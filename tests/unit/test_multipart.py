"""Flow-statistics replies read from their bytes: what Ryu's parser reads, without its objects, and
hostile bytes refused in bounded time."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ryu_nat.backend import ofproto_parser
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.multipart import MIN_ENTRY_LEN, DecodeError, FlowStatsPart, RuleCounts, decode_flow_stats

from .fakedp import FakeDatapath


def entry(cookie: int, packets: int, byte_count: int, seconds: int, nanoseconds: int = 0) -> bytes:
    """One ofp_flow_stats with a real match and instructions, serialized by Ryu."""
    match = bytearray()
    parser.OFPMatch(in_port=2, eth_type=0x0800, ip_proto=17, ipv4_src="10.0.0.2", udp_src=5000).serialize(match, 0)
    instructions = bytearray()
    actions = [parser.OFPActionSetField(ipv4_src="192.168.3.1"), parser.OFPActionDecNwTtl(),
               parser.OFPActionOutput(1)]
    parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions).serialize(instructions, 0)
    length = ofp.OFP_FLOW_STATS_0_SIZE + len(match) + len(instructions)
    return struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, length, 0, seconds, nanoseconds, 200, 300, 0, 1, cookie,
                       packets, byte_count) + bytes(match) + bytes(instructions)


def reply(body: bytes, xid: int = 7, more: bool = False, mp_type: int = ofp.OFPMP_FLOW) -> bytes:
    head = struct.pack(ofp.OFP_HEADER_PACK_STR, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY,
                       ofp.OFP_MULTIPART_REPLY_SIZE + len(body), xid)
    return head + struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, mp_type, ofp.OFPMPF_REPLY_MORE if more else 0) + body


def test_the_counters_are_those_ryus_parser_reads():
    rules = [(cookies.make(RuleKind.ORIGINAL, 12), 7, 700, 3, 500_000_000),
             (cookies.make(RuleKind.REPLY, 12), 0, 0, 0, 0), (2**64 - 1, 2**64 - 1, 2**64 - 2, 2**32 - 1, 999_999_999)]
    data = reply(b"".join(entry(*rule) for rule in rules), xid=41, more=True)
    ryu = ofproto_parser.msg(FakeDatapath(), ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(data), 41, data)
    expected = [RuleCounts(s.cookie, s.packet_count, s.byte_count, s.duration_sec + s.duration_nsec / 1e9)
                for s in ryu.body]
    assert decode_flow_stats(data) == FlowStatsPart(41, True, expected)
    assert expected[0] == RuleCounts(cookies.make(RuleKind.ORIGINAL, 12), 7, 700, 3.5)


def test_an_empty_reply_has_no_rules():
    assert decode_flow_stats(reply(b"")) == FlowStatsPart(7, False, [])


def test_bytes_after_the_length_field_are_not_read():
    data = reply(entry(1, 2, 3, 4))
    assert decode_flow_stats(data + b"\xff" * 40) == decode_flow_stats(data)


@pytest.mark.parametrize(("change", "error"), [
    (lambda d: d[:15], DecodeError.SHORT),
    (lambda d: d[:-8], DecodeError.SHORT),  # the header says more than there is
    (lambda d: b"\x05" + d[1:], DecodeError.NOT_FLOW_STATS),  # OpenFlow 1.4
    (lambda d: d[:1] + b"\x0a" + d[2:], DecodeError.NOT_FLOW_STATS),  # a packet-in
    (lambda d: d[:8] + b"\x00\x02" + d[10:], DecodeError.NOT_FLOW_STATS),  # aggregate statistics
    (lambda d: d[:16] + b"\x00\x00" + d[18:], DecodeError.BAD_ENTRY_LENGTH),  # Ryu's parser loops on this
    (lambda d: d[:16] + b"\x00\x37" + d[18:], DecodeError.BAD_ENTRY_LENGTH),  # 55: shorter than any entry
    (lambda d: d[:16] + struct.pack("!H", len(d) - 16 + 8) + d[18:], DecodeError.BAD_ENTRY_LENGTH),  # past the end
    (lambda d: d[:16] + struct.pack("!H", len(d) - 16 - 4) + d[18:], DecodeError.BAD_ENTRY_LENGTH),  # not aligned
    (lambda d: d[:66] + b"\x01\x00" + d[68:], DecodeError.BAD_MATCH_LENGTH),  # a match longer than its entry
    (lambda d: d[:66] + b"\x00\x02" + d[68:], DecodeError.BAD_MATCH_LENGTH),  # shorter than its own header
])
def test_a_malformed_part_is_refused_whole(change, error):
    data = reply(entry(cookies.make(RuleKind.ORIGINAL, 1), 1, 60, 1))
    assert decode_flow_stats(data) != error
    assert decode_flow_stats(change(data)) == error


def test_a_trailing_scrap_shorter_than_an_entry_is_refused():
    data = reply(entry(1, 2, 3, 4) + b"\0" * 8)
    assert decode_flow_stats(data) == DecodeError.BAD_ENTRY_LENGTH


@given(st.binary(max_size=600))
def test_any_bytes_decode_or_are_refused_without_raising(noise):
    head = reply(b"")[:16]
    for data in (noise, head[:2] + struct.pack("!H", 16 + len(noise)) + head[4:] + noise):
        part = decode_flow_stats(data)
        assert isinstance(part, (FlowStatsPart, DecodeError))
        if isinstance(part, FlowStatsPart):
            assert len(part.rules) <= len(data) // MIN_ENTRY_LEN
