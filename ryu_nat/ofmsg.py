"""Plan items -> Ryu OpenFlow 1.3 messages, serialized for one write to the switch.

The only module that imports ``ryu.ofproto.ofproto_v1_3_parser``: the core and the
plan know nothing of Ryu, and :mod:`ryu_nat.app` sends what this module builds.
No decisions are made here: each plan item maps to fixed messages, so what the
gateway planned is what the switch receives. No I/O: the adapter writes the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any, Protocol, assert_never

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from ryu_nat.openflow.plan import (Action, Barrier, DecTtl, FlowDelete, FlowRule, Message, Output, PacketOut,
                                   SetField, SwitchSetup)

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
    """The last ``size`` messages sent, by xid.

    An OpenFlow error names only the xid of the message it answers; this lets
    the adapter log that message beside the error (faucet's ``Valve.oferror``).
    Recording is a dict insert; messages are described only when an error asks.
    """

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._by_xid: dict[int, MsgBase] = {}

    def record(self, msgs: Iterable[MsgBase]) -> None:
        for msg in msgs:
            self._by_xid[msg.xid] = msg
        while len(self._by_xid) > self._size:
            del self._by_xid[next(iter(self._by_xid))]

    def describe(self, xid: int) -> str:
        """The message sent with ``xid``, described; or a note that it is no longer (or never was) kept."""
        msg = self._by_xid.get(xid)
        return describe(msg) if msg is not None else f"(not among the last {self._size} messages sent)"
