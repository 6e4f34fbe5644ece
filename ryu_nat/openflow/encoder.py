"""Plan items -> OpenFlow 1.3 messages (Ryu's or os-ken's parser), serialized for one write to the switch.

The only module that uses ``ofproto_v1_3_parser`` (from :mod:`ryu_nat.backend`): the core and the
plan know nothing of it, and :mod:`ryu_nat.app` sends what this module builds.
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

from ryu_nat.backend import ofproto_protocol
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.openflow.plan import (Action, Barrier, DecTtl, FlowDelete, FlowRule, Message, Output, PacketOut,
                                   SetField, SwitchSetup)

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

_PORT_NAMES = {ofp.OFPP_IN_PORT: "IN_PORT", ofp.OFPP_TABLE: "TABLE", ofp.OFPP_NORMAL: "NORMAL",
               ofp.OFPP_FLOOD: "FLOOD", ofp.OFPP_ALL: "ALL", ofp.OFPP_CONTROLLER: "CONTROLLER",
               ofp.OFPP_LOCAL: "LOCAL", ofp.OFPP_ANY: "ANY"}
_FLOW_MOD_COMMANDS = {ofp.OFPFC_ADD: "add", ofp.OFPFC_MODIFY: "modify", ofp.OFPFC_MODIFY_STRICT: "modify_strict",
                      ofp.OFPFC_DELETE: "delete", ofp.OFPFC_DELETE_STRICT: "delete_strict"}


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


def _flow_add(datapath: Datapath, rule: FlowRule) -> MsgBase:
    # No instructions at all means drop; an empty apply-actions would mean the same, in more bytes.
    instructions = ([parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, _actions(rule.actions))]
                    if rule.actions else [])
    return parser.OFPFlowMod(datapath, cookie=rule.cookie, command=ofp.OFPFC_ADD, table_id=0,
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
OFPP_MAX = 0xFFFFFF00


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

    def render(self, xid: int, values: Sequence[tuple[str, int | str]], data: bytes = b"") -> bytes:
        pieces = self.pieces
        out = [pieces[0], (self.length + len(data)).to_bytes(2, "big") + xid.to_bytes(4, "big")]
        for position, (kind, index) in enumerate(self.order, 1):
            value = values[index][1]
            out.append(pieces[position])
            if kind is _IPV4:
                out.append(socket.inet_aton(value))  # type: ignore[arg-type]
            elif kind is _MAC:
                out.append(bytes.fromhex(value.replace(":", "")))  # type: ignore[union-attr]
            else:
                out.append(value.to_bytes(_WIDTH[kind], "big"))  # type: ignore[union-attr]
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
    if type(item) is FlowRule:
        key = ["flow", item.priority, item.notify_removed, len(item.match.fields), len(item.actions)]
        values = [(_U64, item.cookie), (_U16, item.idle_timeout_s), (_U16, item.hard_timeout_s)]
        for name, value in item.match.fields:
            kind = slot_kind.get(name)
            if kind is None or type(value) is tuple:
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
        action_type = type(action)
        if action_type is SetField:
            kind = slot_kind.get(action.field)  # type: ignore[union-attr]
            if kind is not None and type(action.value) is not tuple:  # type: ignore[union-attr]
                key.append(_SET_KEYS[action.field])  # type: ignore[union-attr]
                values.append((kind, action.value))  # type: ignore[union-attr]
                continue
        elif action_type is Output and action.port < OFPP_MAX:  # type: ignore[union-attr]
            key.append(_OUTPUT_KEY)
            values.append((_U32, action.port))  # type: ignore[union-attr]
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
    actions = []
    if isinstance(item, FlowRule):
        cookie, idle, hard = pending[:3]
        del pending[:3]
        fields = []
        for name, value in item.match.fields:
            fields.append((name, pending.pop(0) if _variable(name, value) else value))
        head: FlowRule | PacketOut = replace(item, cookie=cookie, idle_timeout_s=idle, hard_timeout_s=hard,
                                             match=type(item.match)(tuple(fields)))
    else:
        head = replace(item, in_port=pending.pop(0), data=b"")
    for action in item.actions:
        if isinstance(action, SetField) and _variable(action.field, action.value):
            actions.append(SetField(action.field, pending.pop(0)))
        elif isinstance(action, Output) and action.port < OFPP_MAX:
            actions.append(Output(pending.pop(0)))  # type: ignore[arg-type]
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
                template = self._templates.get(key, _MISSING)
                if template is _MISSING:
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


_MISSING: Any = object()


def _next_xid(datapath: Datapath) -> int:
    datapath.xid = (datapath.xid + 1) & 0xFFFFFFFF
    return datapath.xid


def describe(msg: MsgBase) -> str:
    """One line for a log: the fields that explain an OpenFlow error, named as ``ovs-ofctl`` names them."""
    if isinstance(msg, parser.OFPFlowMod):
        cookie = f"{msg.cookie:#x}/{msg.cookie_mask:#x}" if msg.cookie_mask else f"{msg.cookie:#x}"
        actions = [action for ins in msg.instructions for action in getattr(ins, "actions", ())]
        return (f"flow_mod {_FLOW_MOD_COMMANDS.get(msg.command, msg.command)} table={msg.table_id} "
                f"priority={msg.priority} cookie={cookie} idle_timeout={msg.idle_timeout} "
                f"hard_timeout={msg.hard_timeout} flags={msg.flags:#x} match={_match_text(msg.match)} "
                f"actions={_actions_text(actions)}")
    if isinstance(msg, parser.OFPPacketOut):
        return (f"packet_out in_port={_port_text(msg.in_port)} actions={_actions_text(msg.actions)} "
                f"data={len(msg.data or b'')} bytes")
    if isinstance(msg, parser.OFPSetConfig):
        return f"set_config flags={msg.flags:#x} miss_send_len={msg.miss_send_len}"
    if isinstance(msg, parser.OFPSetAsync):
        return ("set_async packet_in={:#x}/{:#x} port_status={:#x}/{:#x} flow_removed={:#x}/{:#x}"
                .format(*msg.packet_in_mask, *msg.port_status_mask, *msg.flow_removed_mask))
    if isinstance(msg, parser.OFPBarrierRequest):
        return "barrier_request"
    return str(msg)


def _match_text(match: MsgBase) -> str:
    return ",".join(f"{name}={value[0]}/{value[1]}" if isinstance(value, tuple) else f"{name}={value}"
                    for name, value in match.items()) or "any"


def _actions_text(actions: Iterable[MsgBase]) -> str:
    words = []
    for action in actions:
        if isinstance(action, parser.OFPActionOutput):
            words.append(f"output:{_port_text(action.port)}")
        elif isinstance(action, parser.OFPActionSetField):
            words.append(f"set_field:{action.key}={action.value}")
        elif isinstance(action, parser.OFPActionDecNwTtl):
            words.append("dec_ttl")
        else:
            words.append(str(action))
    return ",".join(words) or "drop"


def _port_text(port: int) -> str:
    return _PORT_NAMES.get(port, str(port))


class SentLog:
    """The last ``size`` plan items sent, by xid.

    An OpenFlow error names only the xid of the message it answers; this lets
    the adapter log that message beside the error (faucet's ``Valve.oferror``).
    Recording is a dict insert; an item is turned into words only when an error asks.
    """

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._by_xid: dict[int, Message] = {}

    def record(self, sent: Iterable[tuple[int, Message]]) -> None:
        for xid, item in sent:
            self._by_xid[xid] = item
        while len(self._by_xid) > self._size:
            del self._by_xid[next(iter(self._by_xid))]

    def describe(self, xid: int) -> str:
        """The message sent with ``xid``, described; or a note that it is no longer (or never was) kept."""
        item = self._by_xid.get(xid)
        if item is None:
            return f"(not among the last {self._size} messages sent)"
        return "; ".join(describe(msg) for msg in to_messages(_PROTOCOL, [item]))


_PROTOCOL = ofproto_protocol.ProtocolDesc(ofp.OFP_VERSION)
