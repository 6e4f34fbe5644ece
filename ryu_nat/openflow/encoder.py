"""Plan items -> OpenFlow 1.3 messages (Ryu's or os-ken's parser), serialized for one write to the switch.

With :mod:`ryu_nat.openflow.sentlog` (which describes what was sent), the only
module that uses ``ofproto_v1_3_parser`` (from :mod:`ryu_nat.backend`): the core
and the plan know nothing of it, and :mod:`ryu_nat.app` sends what this module builds.
No decisions are made here: each plan item maps to fixed messages, so what the
gateway planned is what the switch receives. No I/O: the adapter writes the bytes.
"""

from __future__ import annotations

import random
import socket
import struct
import sys
from collections.abc import Iterable, Sequence
from dataclasses import replace
from types import ModuleType
from typing import Any, NoReturn, Protocol

from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.openflow.plan import (OFPP_MAX, Action, Barrier, CheckPktLarger, DecTtl, FlowDelete, FlowRule, Match,
                                   MatchValue, Message, Output, PacketOut, SetField, SwitchSetup)

if sys.version_info >= (3, 11):
    from typing import assert_never
else:
    def assert_never(value: NoReturn) -> NoReturn:
        """typing.assert_never, new in Python 3.11: a case the type checker proved unreachable."""
        raise AssertionError(f"unhandled value: {value!r}")

MsgBase = Any  # ryu.ofproto.ofproto_parser.MsgBase; Ryu ships no type information

# Asynchronous messages we want (SwitchSetup), the same for the master/equal and
# the slave word so that a role change cannot silence them. Open vSwitch leaves
# invalid-TTL packet-ins off by default (PLATFORM.md), and the NAT needs them to
# answer time-exceeded.
PACKET_IN_MASK = 1 << ofp.OFPR_NO_MATCH | 1 << ofp.OFPR_ACTION | 1 << ofp.OFPR_INVALID_TTL
PORT_STATUS_MASK = 1 << ofp.OFPPR_ADD | 1 << ofp.OFPPR_DELETE | 1 << ofp.OFPPR_MODIFY
FLOW_REMOVED_MASK = 1 << ofp.OFPRR_IDLE_TIMEOUT | 1 << ofp.OFPRR_HARD_TIMEOUT | 1 << ofp.OFPRR_DELETE

# Open vSwitch's check_pkt_larger, a Nicira experimenter action Ryu has no class for (lib/ofp-actions.c,
# struct nx_action_check_pkt_larger): subtype, pkt_len, the result's bit offset, the destination field's
# NXM header, then zeros to 24 bytes in all. The result goes to bit 0 of register 0 (NXM_NX_REG0).
NX_EXPERIMENTER_ID = 0x00002320
NXAST_CHECK_PKT_LARGER = 49
NXM_NX_REG0 = 0x00010004  # class 1 (NXM_1), field 0, 4 bytes
CHECK_PKT_LARGER_BODY = struct.Struct("!HHHI6x")  # after the 8-byte experimenter action header



class Datapath(Protocol):
    """What this module needs of a datapath: Ryu's ``Datapath``, or a test fake."""

    ofproto: ModuleType
    xid: int

    def set_xid(self, msg: MsgBase) -> int: ...


def to_messages(datapath: Datapath, plan: Iterable[Message]) -> list[MsgBase]:
    """The Ryu messages for ``plan``, in plan order; no xids yet.

    A SwitchSetup gives two messages, a PacketOut without actions none.
    """
    msgs: list[MsgBase] = []
    for item in plan:
        match item:
            case FlowRule():
                msgs.append(_flow_add(datapath, item))
            case FlowDelete(cookie, cookie_mask):
                msgs.append(parser.OFPFlowMod(datapath, cookie=cookie, cookie_mask=cookie_mask,
                                              command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL,
                                              out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                              match=parser.OFPMatch()))
            case PacketOut(data, actions, in_port):
                if not actions:
                    # It would drop the frame; and Ryu 4.34 writes its fixed fields over the
                    # first 16 bytes of a packet-out's data when there are no actions.
                    continue
                # Open vSwitch keeps no buffers (PLATFORM.md): the frame travels with the message.
                msgs.append(parser.OFPPacketOut(datapath, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                                                actions=_actions(actions), data=data))
            case SwitchSetup(miss_send_len):
                msgs.append(parser.OFPSetConfig(datapath, ofp.OFPC_FRAG_NORMAL, miss_send_len))
                msgs.append(parser.OFPSetAsync(datapath, [PACKET_IN_MASK, PACKET_IN_MASK],
                                               [PORT_STATUS_MASK, PORT_STATUS_MASK],
                                               [FLOW_REMOVED_MASK, FLOW_REMOVED_MASK]))
            case Barrier():
                msgs.append(parser.OFPBarrierRequest(datapath))
            case unreachable:
                assert_never(unreachable)
    return msgs


def flow_stats_request(datapath: Datapath, cookie: int, cookie_mask: int) -> MsgBase:
    """A request for the statistics of every rule, in every table, whose cookie matches under the mask."""
    return parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, cookie,
                                      cookie_mask, parser.OFPMatch())


def aggregate_stats_request(datapath: Datapath, cookie: int, cookie_mask: int) -> MsgBase:
    """A request for how many rules, in every table, have a cookie that matches under the mask."""
    return parser.OFPAggregateStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, cookie,
                                           cookie_mask, parser.OFPMatch())


def _flow_add(datapath: Datapath, rule: FlowRule) -> MsgBase:
    # No instructions at all means drop; an empty apply-actions would mean the same, in more bytes.
    instructions = ([parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, _actions(rule.actions))]
                    if rule.actions else [])
    if rule.goto_table is not None:
        instructions.append(parser.OFPInstructionGotoTable(rule.goto_table))
    return parser.OFPFlowMod(datapath, cookie=rule.cookie, command=ofp.OFPFC_ADD, table_id=rule.table_id,
                             idle_timeout=rule.idle_timeout_s, hard_timeout=rule.hard_timeout_s,
                             priority=rule.priority, buffer_id=ofp.OFP_NO_BUFFER,
                             flags=ofp.OFPFF_SEND_FLOW_REM if rule.notify_removed else 0,
                             match=parser.OFPMatch(**dict(rule.match.fields)), instructions=instructions)


def _actions(actions: Sequence[Action]) -> list[MsgBase]:
    out: list[MsgBase] = []
    for action in actions:
        match action:
            case SetField(field, value):
                out.append(parser.OFPActionSetField(**{field: value}))
            case DecTtl():
                out.append(parser.OFPActionDecNwTtl())
            case Output(port):
                # NO_BUFFER: whole packets to the controller (max_len matters for no other port).
                out.append(parser.OFPActionOutput(port, ofp.OFPCML_NO_BUFFER))
            case CheckPktLarger(pkt_len):
                body = CHECK_PKT_LARGER_BODY.pack(NXAST_CHECK_PKT_LARGER, pkt_len, 0, NXM_NX_REG0)
                out.append(parser.OFPActionExperimenterUnknown(NX_EXPERIMENTER_ID, body))
            case unreachable:
                assert_never(unreachable)
    return out


def serialize_batch(datapath: Datapath, msgs: Sequence[MsgBase]) -> bytes:
    """``msgs`` as one buffer for a single ``datapath.send``, each given an xid unless it has one.

    One write instead of one per message: a flow setup (two flow-mods and a
    packet-out) costs one send-queue entry and one socket write.
    """
    for msg in msgs:
        if msg.xid is None:
            datapath.set_xid(msg)
        msg.serialize()
    return b"".join(msg.buf for msg in msgs)


# --- the fast path: templates -------------------------------------------------------------------
#
# Building a flow-mod with Ryu's parser objects costs more than the NAT decision
# behind it (mostly OFPMatch's field conversion). The messages of a flow setup
# come in few shapes (which fields are matched and set, which reserved port is
# output to), so each shape is built once by Ryu with sentinel values, and later
# messages copy those bytes and write their values over the sentinels.
# tests/unit/test_encoder.py checks templated bytes against Ryu's for every shape.

_U16, _U32, _U64, _IPV4, _MAC = "!H", "!I", "!Q", "ipv4", "mac"
_SLOT_KIND = {"in_port": _U32, "ipv4_src": _IPV4, "ipv4_dst": _IPV4, "eth_src": _MAC, "eth_dst": _MAC,
              "tcp_src": _U16, "tcp_dst": _U16, "udp_src": _U16, "udp_dst": _U16}
_SET_KEYS = {name: ("set", name) for name in _SLOT_KIND}
_OUTPUT_KEY = ("output",)
_SENTINEL_TRIES = 8


_WIDTH = {_U16: 2, _U32: 4, _U64: 8, _IPV4: 4, _MAC: 6}


class _Template:
    """The bytes of one message shape, cut where its variable values go.

    Rendering joins the fixed pieces with the values' bytes: no copy of the
    whole message to patch, one ``bytes.join``.
    """

    __slots__ = ("length", "pieces", "order")

    def __init__(self, head: bytes, slots: list[tuple[int, str]]) -> None:
        """``slots``: (offset, kind) of each value, in the order :func:`_shape` lists the values."""
        self.length = len(head)
        by_offset = sorted((offset, kind, index) for index, (offset, kind) in enumerate(slots))
        # (kind, index of the value) in the order the values appear in the message.
        self.order = [(kind, index) for _, kind, index in by_offset]
        # The OpenFlow header's length and xid (bytes 2..8) are written per message too.
        bounds = [(2, 8)] + [(offset, offset + _WIDTH[kind]) for offset, kind, _ in by_offset]
        if any(end > start for (_, end), (start, _) in zip(bounds, bounds[1:])):
            raise ValueError("template slots overlap")
        cuts = [0, *(edge for bound in bounds for edge in bound), len(head)]
        self.pieces = [head[cuts[i]:cuts[i + 1]] for i in range(0, len(cuts), 2)]

    def render(self, xid: int, values: Sequence[tuple[str, Any]], data: bytes = b"") -> bytes:
        """The message with ``values`` (:func:`_shape`'s) in their slots.

        A value's kind says its type (a string for ``_IPV4`` and ``_MAC``, an int
        otherwise), hence ``Any``: a type check per value would cost more than the
        rest of the loop, on every set-up's path.
        """
        pieces = self.pieces
        out = [pieces[0], (self.length + len(data)).to_bytes(2, "big") + xid.to_bytes(4, "big")]
        for position, (kind, index) in enumerate(self.order, 1):
            value = values[index][1]
            out.append(pieces[position])
            if kind is _IPV4:
                out.append(socket.inet_aton(value))
            elif kind is _MAC:
                out.append(bytes.fromhex(value.replace(":", "")))
            else:
                out.append(value.to_bytes(_WIDTH[kind], "big"))
        out.append(pieces[-1])
        if data:
            out.append(data)
        return b"".join(out)


def _variable(name: str, value: object) -> bool:
    return name in _SLOT_KIND and not isinstance(value, tuple)


def _shape(item: FlowRule | PacketOut,
           actions_shape: tuple[tuple[object, ...], list[tuple[str, int | str]]] | None = None,
           ) -> tuple[tuple[object, ...], list[tuple[str, int | str]]]:
    """The shape key of a message and its variable values (kind, value), in one fixed order.

    On every flow setup's path: plain loops and dict lookups, no helper calls.
    ``actions_shape`` is :func:`_actions_shape` of ``item.actions`` if the caller has it.
    """
    slot_kind = _SLOT_KIND
    key: list[object]
    values: list[tuple[str, int | str]]
    if isinstance(item, FlowRule):
        key = ["flow", item.table_id, item.goto_table, item.priority, item.notify_removed, len(item.match.fields),
               len(item.actions)]
        values = [(_U64, item.cookie), (_U16, item.idle_timeout_s), (_U16, item.hard_timeout_s)]
        for name, value in item.match.fields:
            kind = slot_kind.get(name)
            if kind is None or isinstance(value, tuple):
                key.append((name, value))
            else:
                key.append(name)
                values.append((kind, value))
    else:
        key = ["packet_out", len(item.actions)]
        values = [(_U32, item.in_port)]
    action_key, action_values = actions_shape or _actions_shape(item.actions)
    return (*key, *action_key), values + action_values


def _actions_shape(actions: Sequence[Action]) -> tuple[tuple[object, ...], list[tuple[str, int | str]]]:
    slot_kind = _SLOT_KIND
    key: list[object] = []
    values: list[tuple[str, int | str]] = []
    for action in actions:
        if isinstance(action, SetField):
            kind = slot_kind.get(action.field)
            if kind is not None:
                key.append(_SET_KEYS[action.field])
                values.append((kind, action.value))
                continue
        elif isinstance(action, Output) and action.port < OFPP_MAX:
            key.append(_OUTPUT_KEY)
            values.append((_U32, action.port))
            continue
        key.append(action)
    return tuple(key), values


def _sentinels(kinds: Sequence[str], rng: random.Random) -> list[int | str]:
    out: list[int | str] = []
    for kind in kinds:
        if kind == _IPV4:
            out.append(".".join(str(rng.randint(1, 223)) for _ in range(4)))
        elif kind == _MAC:
            out.append(":".join(f"{rng.randint(0, 255) & 0xFE if i == 0 else rng.randint(0, 255):02x}"
                                for i in range(6)))
        else:
            out.append(rng.randint(0x1001, {_U16: 0xFFFE, _U32: 0xFFFFFEFF, _U64: 2**63}[kind]))
    return out


def _with_values(item: FlowRule | PacketOut, values: Sequence[int | str]) -> FlowRule | PacketOut:
    """``item`` with its variable values replaced, in :func:`_shape` order."""
    pending = list(values)

    def number() -> int:
        value = pending.pop(0)
        assert isinstance(value, int), value
        return value

    actions: list[Action] = []
    if isinstance(item, FlowRule):
        cookie, idle, hard = number(), number(), number()
        fields: list[tuple[str, MatchValue]] = []
        for name, value in item.match.fields:
            fields.append((name, pending.pop(0) if _variable(name, value) else value))
        head: FlowRule | PacketOut = replace(item, cookie=cookie, idle_timeout_s=idle, hard_timeout_s=hard,
                                             match=Match(tuple(fields)))
    else:
        head = replace(item, in_port=number(), data=b"")
    for action in item.actions:
        if isinstance(action, SetField) and _variable(action.field, action.value):
            actions.append(SetField(action.field, pending.pop(0)))
        elif isinstance(action, Output) and action.port < OFPP_MAX:
            actions.append(Output(number()))
        else:
            actions.append(action)
    return replace(head, actions=tuple(actions))


def _pattern(kind: str, value: int | str) -> bytes:
    if kind == _IPV4:
        return socket.inet_aton(str(value))
    if kind == _MAC:
        return bytes.fromhex(str(value).replace(":", ""))
    return struct.pack(kind, value)


def _build_template(datapath: Datapath, item: FlowRule | PacketOut) -> _Template | None:
    """Serialize ``item``'s shape with sentinel values through Ryu and find each sentinel."""
    _, values = _shape(item)
    kinds = [kind for kind, _ in values]
    rng = random.Random(len(kinds))
    for _ in range(_SENTINEL_TRIES):
        sentinels = _sentinels(kinds, rng)
        [msg] = to_messages(datapath, [_with_values(item, sentinels)])
        msg.set_xid(0)
        msg.serialize()
        head = bytes(msg.buf)
        slots = []
        for kind, sentinel in zip(kinds, sentinels):
            pattern = _pattern(kind, sentinel)
            if head.count(pattern) != 1:
                break
            slots.append((head.index(pattern), kind))
        else:
            return _Template(head, slots)
    return None


class Encoder:
    """Turns plans into the bytes of one write, with templates for flow rules and packet-outs."""

    def __init__(self) -> None:
        self._templates: dict[tuple[object, ...], _Template | None] = {}

    def encode(self, datapath: Datapath, plan: Iterable[Message]) -> tuple[bytes, list[tuple[int, Message]]]:
        """The bytes of ``plan`` and, per message, its xid and plan item (for error reports)."""
        chunks: list[bytes] = []
        sent: list[tuple[int, Message]] = []
        # A flow setup's packet-out carries its rule's very actions tuple: shape it once.
        seen_actions: dict[int, tuple[tuple[object, ...], list[tuple[str, int | str]]]] = {}
        for item in plan:
            if isinstance(item, (FlowRule, PacketOut)) and (isinstance(item, FlowRule) or item.actions):
                actions_shape = seen_actions.get(id(item.actions))
                if actions_shape is None:
                    actions_shape = seen_actions[id(item.actions)] = _actions_shape(item.actions)
                key, values = _shape(item, actions_shape)
                try:
                    template = self._templates[key]
                except KeyError:
                    template = self._templates[key] = _build_template(datapath, item)
                if template is not None:
                    xid = _next_xid(datapath)
                    data = item.data if isinstance(item, PacketOut) else b""
                    chunks.append(template.render(xid, values, data))
                    sent.append((xid, item))
                    continue
            msgs = to_messages(datapath, [item])
            chunks.append(serialize_batch(datapath, msgs))
            sent += [(msg.xid, item) for msg in msgs]
        return b"".join(chunks), sent



def _next_xid(datapath: Datapath) -> int:
    datapath.xid = (datapath.xid + 1) & 0xFFFFFFFF
    return datapath.xid
