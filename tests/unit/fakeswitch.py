"""A simulated OpenFlow 1.3 switch with flow tables, run on plans (after faucet's ``clib/fakeoftable.py``).

Plan tests assert where packets go, not which messages were sent. The model is
what this project relies on, as OpenFlow 1.3 specifies it and as Open vSwitch
3.1 was seen to do it (PLATFORM.md):

- ADD replaces a rule of identical match and priority, else inserts; DELETE
  removes every rule whose cookie matches under the mask, in all tables.
- Rules are checked as the switch checks them, and a rule it would refuse with
  an OpenFlow error raises AssertionError: match prerequisites (``eth_type``
  before IPv4 and ARP fields, ``ip_proto`` before ports), set-field and dec-TTL
  against the match (Open vSwitch's ``OFPBAC_MATCH_INCONSISTENT``), packet-out
  actions against the packet (it checks them against the frame), no
  ``Output(OFPP_TABLE)`` in a rule.
- A packet starts in table 0 and takes the one highest-priority rule that
  matches it there; two of equal priority both matching is undefined in
  OpenFlow and fails. No rule: dropped (the table-miss is a rule like any
  other). A rule's goto-table goes on in that later table with the packet as
  its actions left it.
- Open vSwitch's check_pkt_larger sets bit 0 of register 0 (field ``reg0``,
  0 when a packet arrives) if the frame is longer than its argument; a packet
  gives its frame length as the pseudo-field ``frame_len`` (a minimum-size
  frame, 60 bytes, if it gives none). Registers never leave the switch.
- Actions run in order on a copy of the packet. DecTtl at TTL <= 1 stops them
  and sends an invalid-TTL packet-in carrying the packet as rewritten so far
  (Open vSwitch commits earlier set-fields first) -- if the asynchronous
  configuration allows it: Open vSwitch starts with invalid-TTL packet-ins off,
  and SwitchSetup turns them on. Output to the arrival port is dropped unless
  it is ``OFPP_IN_PORT``.
- Fragments, in the normal fragment mode SwitchSetup sets, carry L4 fields 0,
  the first one included, so port rules see none of them.
- Time moves only by :meth:`FakeSwitch.advance`, which idles out and hard-times
  out rules; flow-removed events are kept for rules that asked for them.

Packets are dicts of OXM field names (``in_port``, ``eth_src``, ``ipv4_dst``,
``tcp_flags``, ...) plus the pseudo-field ``ip_ttl``. Addresses may be given as
strings or ``IPv4Address``; the switch hands them back as strings, MACs in lower
case, as Ryu does.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, NamedTuple

from ryu_nat.backend import MAIN_DISPATCHER
from ryu_nat.backend import arp, ethernet, icmp, ipv4, tcp, udp
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.openflow.encoder import NX_EXPERIMENTER_ID, NXAST_CHECK_PKT_LARGER, NXM_NX_REG0
from ryu_nat.openflow.plan import (OFPP_CONTROLLER, OFPP_FLOOD, OFPP_IN_PORT, OFPP_TABLE, Action, Barrier,
                                   CheckPktLarger, DecTtl, FlowDelete, FlowRule, Match, Message, Output, PacketOut,
                                   Plan, SetField, SwitchSetup)

from .fakedp import state_change_event

MsgBase = Any  # Ryu ships no type information
Packet = dict[str, Any]

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
NO_RULE_COOKIE = 0xFFFF_FFFF_FFFF_FFFF  # the cookie of a packet-in no rule caused (a packet-out's)

_MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha"})
_IP_FIELDS = frozenset({"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa"})
_INT_FIELDS = frozenset({"in_port", "eth_type", "ip_proto", "tcp_src", "tcp_dst", "tcp_flags", "udp_src",
                         "udp_dst", "icmpv4_type", "icmpv4_code", "arp_op", "reg0"})
MATCH_FIELDS = _MAC_FIELDS | _IP_FIELDS | _INT_FIELDS
# Open vSwitch does not let set-field write these (nor the plan write registers).
SETTABLE_FIELDS = MATCH_FIELDS - {"in_port", "eth_type", "ip_proto", "tcp_flags", "reg0"}
PACKET_FIELDS = MATCH_FIELDS | {"ip_ttl", "frame_len"}
REGISTERS = frozenset({"reg0"})
MIN_FRAME_LEN = 60

_IPV4 = (("eth_type", ETH_TYPE_IPV4),)
_ARP = (("eth_type", ETH_TYPE_ARP),)
_TCP = (*_IPV4, ("ip_proto", 6))
_UDP = (*_IPV4, ("ip_proto", 17))
_ICMP = (*_IPV4, ("ip_proto", 1))
# OpenFlow 1.3 section 7.2.3.6: what a match (or, for actions, the packet) must pin before a field means
# anything. The pseudo-field ip_ttl stands for dec_ttl, which Open vSwitch accepts only on IP matches.
PREREQUISITES: dict[str, tuple[tuple[str, int], ...]] = {
    "ipv4_src": _IPV4, "ipv4_dst": _IPV4, "ip_proto": _IPV4, "ip_ttl": _IPV4,
    "arp_op": _ARP, "arp_spa": _ARP, "arp_tpa": _ARP, "arp_sha": _ARP, "arp_tha": _ARP,
    "tcp_src": _TCP, "tcp_dst": _TCP, "tcp_flags": _TCP,
    "udp_src": _UDP, "udp_dst": _UDP,
    "icmpv4_type": _ICMP, "icmpv4_code": _ICMP,
}
_INCONSISTENT = "OFPBAC_MATCH_INCONSISTENT"
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

# SwitchSetup's asynchronous configuration, spelled out from the spec here rather
# than imported from ryu_nat.openflow.encoder, so that replaying what the app sent checks it.
SETUP_PACKET_IN_REASONS = frozenset({ofp.OFPR_NO_MATCH, ofp.OFPR_ACTION, ofp.OFPR_INVALID_TTL})
SETUP_FLOW_REMOVED_REASONS = frozenset({ofp.OFPRR_IDLE_TIMEOUT, ofp.OFPRR_HARD_TIMEOUT, ofp.OFPRR_DELETE})
SETUP_PORT_STATUS_REASONS = frozenset({ofp.OFPPR_ADD, ofp.OFPPR_DELETE, ofp.OFPPR_MODIFY})


class PacketIn(NamedTuple):
    """A packet the switch sent to the controller, with the fields it had at that point."""

    reason: int  # ofp.OFPR_NO_MATCH, OFPR_ACTION or OFPR_INVALID_TTL
    cookie: int
    in_port: int
    fields: Packet


class FlowRemoved(NamedTuple):
    """A flow-removed message: the rule that went, why (ofp.OFPRR_*), and how many packets it had matched."""

    rule: FlowRule
    reason: int
    packets: int = 0

    @property
    def cookie(self) -> int:
        return self.rule.cookie


@dataclass
class Entry:
    """One installed rule and its counters."""

    rule: FlowRule
    match: Packet  # rule.match with values normalized, masks as (int, int)
    installed_at: float
    last_used: float
    packets: int = 0

    @property
    def is_table_miss(self) -> bool:
        return self.rule.priority == 0 and not self.match


class FakeSwitch:
    """One flow table, its clock, and what it has sent to the controller and out of its ports."""

    def __init__(self, ports: Iterable[int] = (), now: float = 0.0) -> None:
        self.ports = tuple(ports)  # for OFPP_FLOOD
        self.now = now
        self.miss_send_len = 128
        # Open vSwitch's defaults for an equal-role controller (PLATFORM.md: packet-in mask 0x3).
        self.packet_in_reasons = frozenset({ofp.OFPR_NO_MATCH, ofp.OFPR_ACTION})
        self.flow_removed_reasons = SETUP_FLOW_REMOVED_REASONS
        self._table: dict[tuple[int, int, tuple[tuple[str, Any], ...]], Entry] = {}
        self._packet_ins: list[PacketIn] = []
        self._flow_removed: list[FlowRemoved] = []
        self._emitted: list[tuple[int, Packet]] = []

    # --- what the controller sends ------------------------------------------------------------

    def apply(self, plan: Iterable[Message]) -> None:
        """Process plan items in order, as the switch processes messages of one write."""
        for item in plan:
            match item:
                case FlowRule():
                    self._add(item)
                case FlowDelete(cookie, mask):
                    for key, entry in list(self._table.items()):
                        if entry.rule.cookie & mask == cookie & mask:
                            del self._table[key]
                            self._removed(entry, ofp.OFPRR_DELETE)
                case PacketOut(data, actions, in_port):
                    packet = fields_of_frame(data, in_port)
                    _check_actions(actions, packet, f"packet-out {item}")
                    self._emitted += self._run(actions, dict(packet), NO_RULE_COOKIE, ofp.OFPR_ACTION)
                case SwitchSetup(miss_send_len):
                    self.miss_send_len = miss_send_len
                    self.packet_in_reasons = SETUP_PACKET_IN_REASONS
                    self.flow_removed_reasons = SETUP_FLOW_REMOVED_REASONS
                case Barrier():
                    pass
                case unreachable:
                    raise AssertionError(f"not a plan item: {unreachable!r}")

    def apply_ryu(self, msgs: Sequence[MsgBase]) -> None:
        """Process Ryu messages (as a FakeDatapath decoded them) by way of their plan form."""
        self.apply(plan_from_ryu(msgs))

    def _add(self, rule: FlowRule) -> None:
        match = _normalized_match(rule)
        _check_actions(rule.actions, match, f"rule {rule}")
        assert Output(OFPP_TABLE) not in rule.actions, f"rule {rule}: OFPP_TABLE is for packet-outs only"
        assert rule.goto_table is None or rule.goto_table > rule.table_id, f"rule {rule}: goto goes forward only"
        key = (rule.table_id, rule.priority, tuple(sorted(match.items())))
        self._table[key] = Entry(rule, match, self.now, self.now)  # a replaced rule starts afresh

    # --- packets -------------------------------------------------------------------------------

    def fate(self, **fields: Any) -> list[tuple[int, Packet]]:
        """Where a packet arriving with ``fields`` goes: ``(port, fields as sent)`` per copy, in action order.

        Packets sent to the controller are not in the list; :meth:`packet_ins` has
        them. An empty list with no packet-in means the packet was dropped.
        """
        assert "in_port" in fields, "a packet needs an in_port"
        return self._lookup(_normalized_packet(fields))

    def _lookup(self, packet: Packet, table_id: int = 0) -> list[tuple[int, Packet]]:
        hits = [entry for entry in self._table.values()
                if entry.rule.table_id == table_id and _matches(entry.match, packet)]
        if not hits:
            return []
        best = max(entry.rule.priority for entry in hits)
        [entry, *others] = [entry for entry in hits if entry.rule.priority == best]
        assert not others, f"packet {packet} matches {len(others) + 1} rules of priority {best} (undefined in OF)"
        entry.packets += 1
        entry.last_used = self.now
        reason = ofp.OFPR_NO_MATCH if entry.is_table_miss else ofp.OFPR_ACTION
        packet = dict(packet)  # registers start at 0: a packet without ``reg0`` has 0 there
        out = self._run(entry.rule.actions, packet, entry.rule.cookie, reason)
        if entry.rule.goto_table is not None and not packet.get("_stopped"):
            out += self._lookup(packet, entry.rule.goto_table)
        return out

    def _run(self, actions: Sequence[Action], packet: Packet, cookie: int,
             controller_reason: int) -> list[tuple[int, Packet]]:
        """Run ``actions`` on ``packet`` in place (it is the caller's copy); what they sent out of ports."""
        out: list[tuple[int, Packet]] = []
        for action in actions:
            match action:
                case SetField(field, value):
                    _check_prerequisites(packet, field, f"set_field {field} on packet {packet}", _INCONSISTENT)
                    packet[field] = _normalized(field, value)
                case DecTtl():
                    _check_prerequisites(packet, "ip_ttl", f"dec_ttl on packet {packet}", _INCONSISTENT)
                    assert "ip_ttl" in packet, f"dec_ttl on packet {packet}, which gives no ip_ttl"
                    if packet["ip_ttl"] <= 1:
                        self._packet_in(ofp.OFPR_INVALID_TTL, cookie, packet)
                        packet["_stopped"] = True
                        return out  # Open vSwitch stops this table's actions
                    packet["ip_ttl"] -= 1
                case CheckPktLarger(pkt_len):
                    larger = packet.get("frame_len", MIN_FRAME_LEN) > pkt_len
                    packet["reg0"] = (packet.get("reg0", 0) & ~1) | int(larger)
                case Output(port):
                    out += self._output(port, packet, cookie, controller_reason)
                case unreachable:
                    raise AssertionError(f"not an action: {unreachable!r}")
        return out

    def _output(self, port: int, packet: Packet, cookie: int, controller_reason: int) -> list[tuple[int, Packet]]:
        in_port = packet["in_port"]
        packet = {name: value for name, value in packet.items() if name != "_stopped"}
        if port == OFPP_CONTROLLER:
            self._packet_in(controller_reason, cookie, packet)
            return []
        if port == OFPP_TABLE:
            return self._lookup({name: value for name, value in packet.items() if name not in REGISTERS})
        packet = {name: value for name, value in packet.items() if name not in REGISTERS}
        if port == OFPP_IN_PORT:
            return [(in_port, dict(packet))]
        if port == OFPP_FLOOD:
            assert self.ports, "OFPP_FLOOD needs FakeSwitch(ports=...)"
            return [(p, dict(packet)) for p in self.ports if p != in_port]
        if port == in_port:
            return []  # OpenFlow: back out of the arrival port only by OFPP_IN_PORT
        return [(port, dict(packet))]

    def _packet_in(self, reason: int, cookie: int, packet: Packet) -> None:
        if reason in self.packet_in_reasons:
            fields = {name: value for name, value in packet.items() if name not in REGISTERS and name != "_stopped"}
            self._packet_ins.append(PacketIn(reason, cookie, packet["in_port"], fields))

    # --- time ----------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Move the clock to ``now``; rules idle for ``idle_timeout_s`` or installed ``hard_timeout_s`` ago go."""
        assert now >= self.now, f"time goes forward: {now} < {self.now}"
        self.now = now
        for key, entry in list(self._table.items()):
            rule = entry.rule
            if rule.hard_timeout_s and now - entry.installed_at >= rule.hard_timeout_s:
                reason = ofp.OFPRR_HARD_TIMEOUT
            elif rule.idle_timeout_s and now - entry.last_used >= rule.idle_timeout_s:
                reason = ofp.OFPRR_IDLE_TIMEOUT
            else:
                continue
            del self._table[key]
            self._removed(entry, reason)

    def _removed(self, entry: Entry, reason: int) -> None:
        if entry.rule.notify_removed and reason in self.flow_removed_reasons:
            self._flow_removed.append(FlowRemoved(entry.rule, reason, entry.packets))

    # --- what the switch sends back, and introspection -------------------------------------------

    def packet_ins(self) -> list[PacketIn]:
        """Packet-ins since the last call."""
        drained, self._packet_ins = self._packet_ins, []
        return drained

    def flow_removed_events(self) -> list[FlowRemoved]:
        """Flow-removed messages since the last call."""
        drained, self._flow_removed = self._flow_removed, []
        return drained

    def emitted(self) -> list[tuple[int, Packet]]:
        """``(port, fields)`` of packets that packet-outs sent out of ports, since the last call."""
        drained, self._emitted = self._emitted, []
        return drained

    def entries(self) -> list[Entry]:
        """Installed rules with their counters, highest priority first."""
        return sorted(self._table.values(), key=lambda entry: (entry.rule.table_id, -entry.rule.priority))

    def rules(self) -> list[FlowRule]:
        return [entry.rule for entry in self.entries()]

    def stats_reply(self, request: MsgBase) -> list[bytes]:
        """The reply to a flow- or aggregate-statistics request, as bytes: rules selected by cookie and mask,
        a flow-statistics reply cut in parts of at most 64 KiB as Open vSwitch cuts them."""
        from .fakedp import aggregate_reply, flow_stats_entry, multipart_reply

        chosen = [entry for entry in self.entries()
                  if entry.rule.cookie & request.cookie_mask == request.cookie & request.cookie_mask]
        if isinstance(request, parser.OFPAggregateStatsRequest):
            return [aggregate_reply(request.xid, len(chosen))]
        entries = [flow_stats_entry(entry.rule, self.now - entry.installed_at, entry.packets, entry.packets * 100)
                   for entry in chosen]
        parts: list[list[bytes]] = [[]]
        for entry in entries:
            if sum(map(len, parts[-1])) + len(entry) > 65535 - 16:
                parts.append([])
            parts[-1].append(entry)
        return [multipart_reply(request.xid, ofp.OFPMP_FLOW, b"".join(part), more=index < len(parts) - 1)
                for index, part in enumerate(parts)]

    def remove_silently(self, cookie: int) -> list[FlowRule]:
        """Remove the rules with ``cookie`` and tell nobody (as ``ovs-ofctl`` can: replace a rule with one
        without the flow-removed flag, then delete it); the rules removed."""
        gone = [key for key, entry in self._table.items() if entry.rule.cookie == cookie]
        return [self._table.pop(key).rule for key in gone]

    def rules_with_cookie(self, cookie: int, mask: int = (1 << 64) - 1) -> list[FlowRule]:
        """Rules a FlowDelete(cookie, mask) would remove."""
        return [rule for rule in self.rules() if rule.cookie & mask == cookie & mask]


# --- fields ------------------------------------------------------------------------------------


def _normalized(name: str, value: Any) -> Any:
    if name in _MAC_FIELDS:
        text = str(value).lower()
        assert _MAC_RE.fullmatch(text), f"{name}: not a MAC address: {value!r}"
        return text
    if name in _IP_FIELDS:
        return str(IPv4Address(value))
    assert name in _INT_FIELDS or name in ("ip_ttl", "frame_len"), f"field {name!r} is not modelled"
    assert isinstance(value, int) and not isinstance(value, bool), f"{name}: not an int: {value!r}"
    return value


def _as_int(name: str, value: Any) -> int:
    if name in _MAC_FIELDS:
        return int(str(value).replace(":", ""), 16)
    if name in _IP_FIELDS:
        return int(IPv4Address(value))
    return int(value)


def _normalized_match(rule: FlowRule) -> Packet:
    match: Packet = {}
    for name, value in rule.match.fields:
        assert name in MATCH_FIELDS, f"rule {rule}: {name!r} is not an OXM field this switch matches"
        if isinstance(value, tuple):
            match[name] = (_as_int(name, value[0]), _as_int(name, value[1]))
        else:
            match[name] = _normalized(name, value)
    for name in match:
        _check_prerequisites(match, name, f"rule {rule}: {name}", "OFPBMC_BAD_PREREQ")
    return match


def _normalized_packet(fields: Mapping[str, Any]) -> Packet:
    for name in fields:
        assert name in PACKET_FIELDS, f"packet field {name!r} is not modelled"
    return {name: _normalized(name, value) for name, value in fields.items()}


def _check_prerequisites(known: Mapping[str, Any], field: str, what: str, error: str) -> None:
    for need, value in PREREQUISITES.get(field, ()):
        shown = f"{value:#06x}" if need == "eth_type" else value
        assert known.get(need) == value, f"{what} needs {need}={shown} ({error})"


def _check_actions(actions: Sequence[Action], known: Mapping[str, Any], what: str) -> None:
    """Set-field and dec-TTL need the match (or the packet-out's packet) to pin the header they change."""
    for action in actions:
        if isinstance(action, SetField):
            assert action.field in SETTABLE_FIELDS, f"{what}: set_field {action.field} is not allowed"
            _check_prerequisites(known, action.field, f"{what}: set_field {action.field}", _INCONSISTENT)
        elif isinstance(action, DecTtl):
            _check_prerequisites(known, "ip_ttl", f"{what}: dec_ttl", _INCONSISTENT)


def _matches(match: Packet, packet: Packet) -> bool:
    for name, want in match.items():
        have = packet.get(name)
        if have is None:
            return False
        if isinstance(want, tuple):
            value, mask = want
            if _as_int(name, have) & mask != value & mask:
                return False
        elif have != want:
            return False
    return True


def fields_of_frame(data: bytes, in_port: int) -> Packet:
    """The fields the switch matches a frame on, parsed with ryu.lib.packet."""
    eth, _, rest = ethernet.ethernet.parser(data)
    fields: Packet = {"in_port": in_port, "eth_src": eth.src, "eth_dst": eth.dst, "eth_type": eth.ethertype,
                      "frame_len": len(data)}
    if eth.ethertype == ETH_TYPE_ARP:
        req = arp.arp.parser(rest)[0]
        fields.update(arp_op=req.opcode, arp_spa=req.src_ip, arp_tpa=req.dst_ip, arp_sha=req.src_mac,
                      arp_tha=req.dst_mac)
    elif eth.ethertype == ETH_TYPE_IPV4:
        ip, _, body = ipv4.ipv4.parser(rest)
        fields.update(ipv4_src=ip.src, ipv4_dst=ip.dst, ip_proto=ip.proto, ip_ttl=ip.ttl)
        fields.update(_l4_fields(ip, body))
    return _normalized_packet(fields)


def _l4_fields(ip: ipv4.ipv4, body: bytes) -> Packet:
    is_fragment = ip.flags & 0x1 or ip.offset  # more fragments, or not the first
    if ip.proto == 6:
        if is_fragment:
            return {"tcp_src": 0, "tcp_dst": 0, "tcp_flags": 0}
        segment = tcp.tcp.parser(body)[0]
        # Ryu keeps only 6 flag bits; the OXM field has 12.
        (offset_and_flags,) = struct.unpack_from("!H", body, 12)
        return {"tcp_src": segment.src_port, "tcp_dst": segment.dst_port, "tcp_flags": offset_and_flags & 0x0FFF}
    if ip.proto == 17:
        if is_fragment:
            return {"udp_src": 0, "udp_dst": 0}
        datagram = udp.udp.parser(body)[0]
        return {"udp_src": datagram.src_port, "udp_dst": datagram.dst_port}
    if ip.proto == 1:
        if is_fragment:
            return {"icmpv4_type": 0, "icmpv4_code": 0}
        message = icmp.icmp.parser(body)[0]
        return {"icmpv4_type": message.type, "icmpv4_code": message.code}
    return {}


# --- Ryu messages back to plan items -------------------------------------------------------------


def from_ryu(msg: MsgBase) -> Message | None:
    """The plan item a message stands for; None for the set-async half of a SwitchSetup.

    AssertionError on a message (or a field of one) that no plan item produces,
    so replaying what the app sent cannot silently drop something.
    """
    if isinstance(msg, parser.OFPFlowMod):
        return _flow_mod(msg)
    if isinstance(msg, parser.OFPPacketOut):
        assert msg.buffer_id == ofp.OFP_NO_BUFFER, f"{msg}: Open vSwitch keeps no buffers"
        return PacketOut(bytes(msg.data), tuple(_action(a) for a in msg.actions), msg.in_port)
    if isinstance(msg, parser.OFPSetConfig):
        assert msg.flags == ofp.OFPC_FRAG_NORMAL, f"{msg}: fragment handling other than normal"
        return SwitchSetup(msg.miss_send_len)
    if isinstance(msg, parser.OFPSetAsync):
        for name, masks, reasons in (("packet_in", msg.packet_in_mask, SETUP_PACKET_IN_REASONS),
                                     ("port_status", msg.port_status_mask, SETUP_PORT_STATUS_REASONS),
                                     ("flow_removed", msg.flow_removed_mask, SETUP_FLOW_REMOVED_REASONS)):
            want = sum(1 << reason for reason in reasons)
            assert list(masks) == [want, want], f"set_async {name} masks {masks}, want {want:#x} for both roles"
        return None
    if isinstance(msg, parser.OFPBarrierRequest):
        return Barrier()
    raise AssertionError(f"no plan item sends {type(msg).__name__}: {msg}")


def plan_from_ryu(msgs: Sequence[MsgBase]) -> Plan:
    """The plan that ``msgs`` carry out; each set-config must come with its set-async, as SwitchSetup sends them."""
    plan: Plan = []
    for msg, following in zip(msgs, [*msgs[1:], None]):
        if isinstance(msg, parser.OFPSetConfig):
            assert isinstance(following, parser.OFPSetAsync), f"{msg} not followed by its set_async"
        item = from_ryu(msg)
        if item is not None:
            plan.append(item)
    return plan


def _flow_mod(msg: MsgBase) -> FlowRule | FlowDelete:
    if msg.command == ofp.OFPFC_DELETE:
        assert (msg.table_id, msg.out_port, msg.out_group) == (ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY), msg
        assert not msg.match.items(), f"{msg}: FlowDelete selects by cookie only"
        return FlowDelete(msg.cookie, msg.cookie_mask)
    assert msg.command == ofp.OFPFC_ADD, f"{msg}: no plan item sends flow_mod command {msg.command}"
    assert msg.buffer_id == ofp.OFP_NO_BUFFER, msg
    assert msg.flags & ~ofp.OFPFF_SEND_FLOW_REM == 0, f"{msg}: flags {msg.flags:#x}"
    actions: tuple[Action, ...] = ()
    goto_table = None
    for instruction in msg.instructions:
        if isinstance(instruction, parser.OFPInstructionGotoTable):
            assert goto_table is None, msg
            goto_table = instruction.table_id
            continue
        assert isinstance(instruction, parser.OFPInstructionActions) and not actions, instruction
        assert instruction.type == ofp.OFPIT_APPLY_ACTIONS, instruction
        actions = tuple(_action(a) for a in instruction.actions)
    return FlowRule(msg.priority, Match.of(**dict(msg.match.items())), actions, msg.cookie,
                    idle_timeout_s=msg.idle_timeout, hard_timeout_s=msg.hard_timeout,
                    notify_removed=bool(msg.flags & ofp.OFPFF_SEND_FLOW_REM), table_id=msg.table_id,
                    goto_table=goto_table)


def _action(action: MsgBase) -> Action:
    if isinstance(action, parser.OFPActionSetField):
        return SetField(action.key, action.value)
    if isinstance(action, parser.OFPActionDecNwTtl):
        return DecTtl()
    if isinstance(action, parser.OFPActionOutput):
        # A shorter max_len would truncate packet-ins; the gateway needs whole frames.
        assert action.port != OFPP_CONTROLLER or action.max_len == ofp.OFPCML_NO_BUFFER, action
        return Output(action.port)
    if isinstance(action, parser.OFPActionExperimenter) and action.experimenter == NX_EXPERIMENTER_ID:
        # Decoded, Ryu splits the subtype off (NXActionUnknown); as the encoder built it, it leads the data.
        body = bytes(action.data) if not hasattr(action, "subtype") else struct.pack("!H", action.subtype) + bytes(
            action.data)
        subtype, pkt_len, offset, field = struct.unpack_from("!HHHI", body)
        assert subtype == NXAST_CHECK_PKT_LARGER, f"no plan action sends Nicira subtype {subtype}"
        assert (offset, field) == (0, NXM_NX_REG0) and not any(body[10:]), action
        return CheckPktLarger(pkt_len)
    raise AssertionError(f"no plan action sends {action}")


def connect(app: Any, datapath: Any, switch: FakeSwitch | None = None) -> FakeSwitch:
    """Connect ``datapath`` to the Ryu ``app``; a simulated switch (``switch``, or a new empty one) holding
    what the app sent on connect, its statistics requests (reading the rules back) answered."""
    app._state_change(state_change_event(datapath, MAIN_DISPATCHER))
    switch = switch or FakeSwitch(ports=tuple(datapath.ports))
    answer_reads(app, datapath, switch)
    return switch


def answer_reads(app: Any, datapath: Any, switch: FakeSwitch) -> None:
    """Apply what the app sent to ``switch``, answering its statistics requests from the switch's table as the
    switch would (as bytes, onto the app's event thread), until it asks no more."""
    from ryu_nat.app import EventFlowStatsPart

    while True:
        sent = list(datapath.sent)
        datapath.sent.clear()
        asked = [m for m in sent if isinstance(m, (parser.OFPFlowStatsRequest, parser.OFPAggregateStatsRequest))]
        switch.apply_ryu([m for m in sent if m not in asked])
        if not asked:
            return
        for request in asked:
            for part in switch.stats_reply(request):
                app._flow_stats_part(EventFlowStatsPart(datapath, part))
