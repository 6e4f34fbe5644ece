"""Flow-statistics replies (OpenFlow 1.3 multipart, OFPMP_FLOW and OFPMP_AGGREGATE) read from their bytes.

A reply for a few hundred rules, parsed by Ryu, is a few hundred ``OFPFlowStats``
objects with their matches and instructions. The counter polls want each rule's
cookie and counters only (:func:`decode_flow_stats`); reading the rules back
after a restart, or to audit them, wants their matches and actions too
(:func:`decode_flow_entries`, through :mod:`ryu_nat.openflow.flowentries`); the
search for which slices hold rules wants a count (:func:`decode_aggregate`).
All read at fixed offsets with ``struct``. The bytes come from the switch, so
they are checked like any untrusted input: every length is bounded by what is
left, each entry moves the offset forward by at least :data:`MIN_ENTRY_LEN`, so
a part of n bytes costs at most n / 56 steps (Ryu's own parser loops forever on
an entry of length 0). No Ryu imports, no I/O.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from collections.abc import Iterator
from typing import NamedTuple

from ryu_nat.openflow.flowentries import OFPMT_OXM, SwitchRule, read_instructions, read_match

OFP_VERSION = 0x04
OFPT_MULTIPART_REPLY = 19
OFPMP_FLOW = 1
OFPMP_AGGREGATE = 2
OFPMPF_REPLY_MORE = 1

# ofp_header, then ofp_multipart_reply's type, flags and padding.
_REPLY_HEAD = struct.Struct("!BBHIHH4x")
# ofp_flow_stats up to the match's length: length, (table_id, pad), duration_sec, duration_nsec,
# (priority, idle_timeout, hard_timeout, flags, pad), cookie, packet_count, byte_count, (match type), match length.
_ENTRY = struct.Struct("!H2xII12xQQQ2xH")
# The same, whole: ... priority, idle_timeout, hard_timeout, flags, pad, cookie, counters, match type and length.
_FULL_ENTRY = struct.Struct("!HBxIIHHHH4xQQQHH")
# ofp_aggregate_stats_reply: packet_count, byte_count, flow_count, pad.
_AGGREGATE = struct.Struct("!QQI4x")
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


@dataclass(frozen=True, slots=True)
class FlowEntriesPart:
    """One message of a flow-statistics reply, each rule read whole (see :mod:`ryu_nat.openflow.flowentries`)."""

    xid: int
    more: bool
    rules: list[SwitchRule]


@dataclass(frozen=True, slots=True)
class AggregatePart:
    """An aggregate-statistics reply: how many rules the request selected."""

    xid: int
    flow_count: int


def decode_flow_stats(data: bytes) -> FlowStatsPart | DecodeError:
    """The rules in one OFPMP_FLOW reply message (header included); a DecodeError if any part of it is wrong.

    A part is taken whole or not at all, so a bad entry never leaves half a poll.
    """
    framed = _flow_reply(data)
    if isinstance(framed, DecodeError):
        return framed
    xid, more, offsets = framed
    rules: list[RuleCounts] = []
    unpack = _ENTRY.unpack_from
    for offset in offsets:
        _, seconds, nanoseconds, cookie, packets, byte_count, _ = unpack(data, offset)
        rules.append(RuleCounts(cookie, packets, byte_count, seconds + nanoseconds / 1e9))
    return FlowStatsPart(xid, more, rules)


def decode_flow_entries(data: bytes) -> FlowEntriesPart | DecodeError:
    """The rules in one OFPMP_FLOW reply message, each with its match and actions (None where they are
    not the NAT's kind); a DecodeError if the part's framing is wrong, as for :func:`decode_flow_stats`."""
    framed = _flow_reply(data)
    if isinstance(framed, DecodeError):
        return framed
    xid, more, offsets = framed
    rules: list[SwitchRule] = []
    unpack = _FULL_ENTRY.unpack_from
    for offset in offsets:
        (entry_len, table_id, seconds, nanoseconds, priority, idle, hard, flags, cookie, packets, byte_count,
         match_type, match_len) = unpack(data, offset)
        match_at = offset + FIXED_ENTRY_LEN
        match = read_match(data, match_at + 4, match_at + match_len) if match_type == OFPMT_OXM else None
        actions = read_instructions(data, match_at + (match_len + 7) // 8 * 8, offset + entry_len)
        rules.append(SwitchRule(cookie, priority, idle, hard, flags, seconds + nanoseconds / 1e9, packets,
                                byte_count, match, actions, table_id))
    return FlowEntriesPart(xid, more, rules)


def decode_aggregate(data: bytes) -> AggregatePart | DecodeError:
    """The rule count in one OFPMP_AGGREGATE reply message (header included)."""
    head = _reply_head(data, OFPMP_AGGREGATE)
    if isinstance(head, DecodeError):
        return head
    xid, _, length = head
    if length != HEAD_LEN + _AGGREGATE.size:
        return DecodeError.SHORT
    return AggregatePart(xid, _AGGREGATE.unpack_from(data, HEAD_LEN)[2])


def is_aggregate(data: bytes) -> bool:
    """True for the bytes of an aggregate-statistics reply (the multipart type says; the rest is not checked)."""
    return data[8:10] == OFPMP_AGGREGATE.to_bytes(2, "big")


def _reply_head(data: bytes, mp_type: int) -> tuple[int, bool, int] | DecodeError:
    """(xid, more parts follow, length) of a multipart reply of ``mp_type``."""
    if len(data) < HEAD_LEN:
        return DecodeError.SHORT
    version, msg_type, length, xid, reply_type, flags = _REPLY_HEAD.unpack_from(data)
    if version != OFP_VERSION or msg_type != OFPT_MULTIPART_REPLY or reply_type != mp_type:
        return DecodeError.NOT_FLOW_STATS
    if length < HEAD_LEN or length > len(data):
        return DecodeError.SHORT
    return xid, bool(flags & OFPMPF_REPLY_MORE), length


def _flow_reply(data: bytes) -> tuple[int, bool, list[int]] | DecodeError:
    """A flow-statistics reply message's xid, whether more parts follow, and the offset of each entry; a
    DecodeError if its header or any entry's framing is wrong (a part is taken whole or not at all)."""
    head = _reply_head(data, OFPMP_FLOW)
    if isinstance(head, DecodeError):
        return head
    xid, more, length = head
    offsets = []
    for offset in _entries(data, length):
        if isinstance(offset, DecodeError):
            return offset
        offsets.append(offset)
    return xid, more, offsets


def _entries(data: bytes, length: int) -> Iterator[int | DecodeError]:
    """The offset of each ofp_flow_stats entry, lengths checked; a DecodeError ends it."""
    unpack = _ENTRY.unpack_from
    offset = HEAD_LEN
    while offset < length:
        left = length - offset
        if left < MIN_ENTRY_LEN:
            yield DecodeError.BAD_ENTRY_LENGTH
            return
        entry_len, *_, match_len = unpack(data, offset)
        if entry_len < MIN_ENTRY_LEN or entry_len > left or entry_len % 8:
            yield DecodeError.BAD_ENTRY_LENGTH
            return
        if match_len < 4 or FIXED_ENTRY_LEN + (match_len + 7) // 8 * 8 > entry_len:
            yield DecodeError.BAD_MATCH_LENGTH
            return
        yield offset
        offset += entry_len
