"""A rule read back from the switch: a flow-statistics entry's match and actions, from its bytes.

Rebuilding the table after a restart, and auditing it, needs more of each rule
than its counters (:mod:`ryu_nat.openflow.multipart`): its match, its actions,
its timeouts and flags, in the plan's own terms (:class:`~ryu_nat.openflow.plan.Match`,
:class:`~ryu_nat.openflow.plan.SetField`, ...), so that a rule read back
compares with the rule the NAT would install. Only what the NAT itself installs
is read: a masked field, a field of another class, an instruction or action it
never uses makes the match or the actions None ("not one of ours"), never an
error. The bytes come from the switch: each loop moves forward by at least 4
bytes and never past the end it was given. No Ryu imports, no I/O.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ryu_nat.openflow.plan import TABLE_NAT, Action, DecTtl, FlowRule, Match, MatchValue, Output, SetField

OFPMT_OXM = 1
OFPIT_APPLY_ACTIONS = 4
OFPAT_OUTPUT, OFPAT_DEC_NW_TTL, OFPAT_SET_FIELD = 0, 24, 25
OFPFF_SEND_FLOW_REM = 1
_OXM_BASIC = 0x8000

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TYPE_LEN = struct.Struct("!HH")


def _number(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _mac(raw: bytes) -> str:
    return raw.hex(":")


# OpenFlow-basic fields the NAT's rules match on or set: OXM field number -> (OXM name, bytes, reader).
_FIELDS: dict[int, tuple[str, int, Callable[[bytes], MatchValue]]] = {
    0: ("in_port", 4, _number), 3: ("eth_dst", 6, _mac), 4: ("eth_src", 6, _mac), 5: ("eth_type", 2, _number),
    10: ("ip_proto", 1, _number), 11: ("ipv4_src", 4, socket.inet_ntoa), 12: ("ipv4_dst", 4, socket.inet_ntoa),
    13: ("tcp_src", 2, _number), 14: ("tcp_dst", 2, _number), 15: ("udp_src", 2, _number),
    16: ("udp_dst", 2, _number),
}
# The whole OXM header (class, field, no mask, length) -> (name, length, reader): one lookup per field.
_BY_HEADER = {_OXM_BASIC << 16 | number << 9 | size: (name, size, read)
              for number, (name, size, read) in _FIELDS.items()}


@dataclass(frozen=True, slots=True)
class SwitchRule:
    """One rule as the switch reports it: identity, timeouts, flags, age, counters, match and actions.

    ``match`` is None when the rule matches on something the NAT never matches on
    (or masks a field); ``actions`` is None when its instructions hold anything
    but one apply-actions list of outputs, set-fields and TTL decrements.
    """

    cookie: int
    priority: int
    idle_timeout_s: int
    hard_timeout_s: int
    flags: int
    duration_s: float
    packets: int
    bytes: int
    match: Match | None
    actions: tuple[Action, ...] | None
    table_id: int = TABLE_NAT

    def as_rule(self) -> FlowRule | None:
        """The plan's form of this rule, if it is one the NAT could have installed."""
        if self.match is None or self.actions is None:
            return None
        return FlowRule(self.priority, self.match, self.actions, self.cookie, self.idle_timeout_s,
                        self.hard_timeout_s, bool(self.flags & OFPFF_SEND_FLOW_REM), self.table_id)


def read_match(data: bytes, start: int, end: int) -> Match | None:
    """The OXM fields between ``start`` and ``end`` (after ofp_match's type and length); None if one is
    not a field the NAT matches on, is masked, is given twice, or runs past ``end``."""
    fields: dict[str, MatchValue] = {}
    while start < end:
        if end - start < 4:
            return None
        known = _BY_HEADER.get(_U32.unpack_from(data, start)[0])
        if known is None:
            return None
        name, size, read = known
        start += 4
        if end - start < size or name in fields:
            return None
        fields[name] = read(data[start:start + size])
        start += size
    return Match(tuple(sorted(fields.items())))


def read_instructions(data: bytes, start: int, end: int) -> tuple[Action, ...] | None:
    """The actions of the instructions between ``start`` and ``end``: none (a drop rule), or those of
    one apply-actions instruction; None for anything else."""
    if start == end:
        return ()
    if end - start < 8:
        return None
    kind, length = _TYPE_LEN.unpack_from(data, start)
    if kind != OFPIT_APPLY_ACTIONS or length != end - start or length % 8:
        return None
    return _read_actions(data, start + 8, end)


def _read_actions(data: bytes, start: int, end: int) -> tuple[Action, ...] | None:
    actions: list[Action] = []
    while start < end:
        if end - start < 8:
            return None
        kind, length = _TYPE_LEN.unpack_from(data, start)
        if length < 8 or length % 8 or length > end - start:
            return None
        if kind == OFPAT_OUTPUT and length == 16:
            actions.append(Output(_U32.unpack_from(data, start + 4)[0]))
        elif kind == OFPAT_DEC_NW_TTL and length == 8:
            actions.append(DecTtl())
        elif kind == OFPAT_SET_FIELD:
            known = _BY_HEADER.get(_U32.unpack_from(data, start + 4)[0])
            if known is None or 8 + known[1] > length:
                return None
            name, size, read = known
            value = read(data[start + 8:start + 8 + size])
            assert not isinstance(value, tuple)
            actions.append(SetField(name, value))
        else:
            return None
        start += length
    return tuple(actions)
