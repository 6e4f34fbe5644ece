"""Flow-statistics replies (OpenFlow 1.3 multipart, OFPMP_FLOW) read from their bytes.

A reply for a few hundred rules, parsed by Ryu, is a few hundred ``OFPFlowStats``
objects with their matches and instructions, which the NAT never reads: it
wants each rule's cookie and counters. This module reads those at fixed offsets
with ``struct``. The bytes come from the switch, so they are checked like any
untrusted input: every length is bounded by what is left, each entry moves the
offset forward by at least :data:`MIN_ENTRY_LEN`, so a part of n bytes costs at
most n / 56 steps (Ryu's own parser loops forever on an entry of length 0).
No Ryu imports, no I/O.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

OFP_VERSION = 0x04
OFPT_MULTIPART_REPLY = 19
OFPMP_FLOW = 1
OFPMPF_REPLY_MORE = 1

# ofp_header, then ofp_multipart_reply's type, flags and padding.
_REPLY_HEAD = struct.Struct("!BBHIHH4x")
# ofp_flow_stats up to the match's length: length, (table_id, pad), duration_sec, duration_nsec,
# (priority, idle_timeout, hard_timeout, flags, pad), cookie, packet_count, byte_count, (match type), match length.
_ENTRY = struct.Struct("!H2xII12xQQQ2xH")
HEAD_LEN = _REPLY_HEAD.size  # 16
FIXED_ENTRY_LEN = 48  # ofp_flow_stats before its match
MIN_ENTRY_LEN = FIXED_ENTRY_LEN + 8  # an empty match still takes 8 bytes (4, padded)


class RuleCounts(NamedTuple):
    """One rule's entry in a flow-statistics reply: its cookie and counters, and its age."""

    cookie: int
    packets: int
    bytes: int
    duration_s: float


class DecodeError(enum.Enum):
    """Why a reply part was refused; values name the problem in a log line or a counter."""

    SHORT = "short"  # fewer bytes than a multipart reply header, or than its length field says
    NOT_FLOW_STATS = "not_flow_stats"  # another version, message type or multipart type
    BAD_ENTRY_LENGTH = "bad_entry_length"  # an entry shorter than the smallest, past the end, or not 8-aligned
    BAD_MATCH_LENGTH = "bad_match_length"  # a match that does not fit in its entry


@dataclass(frozen=True, slots=True)
class FlowStatsPart:
    """One message of a flow-statistics reply: its xid, whether more parts follow, and its rules."""

    xid: int
    more: bool
    rules: list[RuleCounts]


def decode_flow_stats(data: bytes) -> FlowStatsPart | DecodeError:
    """The rules in one OFPMP_FLOW reply message (header included); a DecodeError if any part of it is wrong.

    A part is taken whole or not at all, so a bad entry never leaves half a poll.
    """
    if len(data) < HEAD_LEN:
        return DecodeError.SHORT
    version, msg_type, length, xid, mp_type, flags = _REPLY_HEAD.unpack_from(data)
    if version != OFP_VERSION or msg_type != OFPT_MULTIPART_REPLY or mp_type != OFPMP_FLOW:
        return DecodeError.NOT_FLOW_STATS
    if length < HEAD_LEN or length > len(data):
        return DecodeError.SHORT
    rules: list[RuleCounts] = []
    unpack = _ENTRY.unpack_from
    offset = HEAD_LEN
    while offset < length:
        left = length - offset
        if left < MIN_ENTRY_LEN:
            return DecodeError.BAD_ENTRY_LENGTH
        entry_len, seconds, nanoseconds, cookie, packets, byte_count, match_len = unpack(data, offset)
        if entry_len < MIN_ENTRY_LEN or entry_len > left or entry_len % 8:
            return DecodeError.BAD_ENTRY_LENGTH
        if match_len < 4 or FIXED_ENTRY_LEN + (match_len + 7) // 8 * 8 > entry_len:
            return DecodeError.BAD_MATCH_LENGTH
        rules.append(RuleCounts(cookie, packets, byte_count, seconds + nanoseconds / 1e9))
        offset += entry_len
    return FlowStatsPart(xid, bool(flags & OFPMPF_REPLY_MORE), rules)
