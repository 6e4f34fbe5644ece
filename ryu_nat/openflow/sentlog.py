"""Which message an OpenFlow error answers: the last plan items sent, by xid, described as ``ovs-ofctl`` would.

An OpenFlow error names only the xid of the message it answers; :class:`SentLog`
keeps the last few plan items sent, and :func:`describe` turns one into a line
for the log beside the error (faucet's ``Valve.oferror``). Besides
:mod:`ryu_nat.openflow.encoder`, the only module that reads Ryu's message classes.
"""

from __future__ import annotations

from collections.abc import Iterable

from ryu_nat.backend import ofproto_protocol
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.openflow.encoder import MsgBase, to_messages
from ryu_nat.openflow.plan import Message

_PORT_NAMES = {ofp.OFPP_IN_PORT: "IN_PORT", ofp.OFPP_TABLE: "TABLE", ofp.OFPP_NORMAL: "NORMAL",
               ofp.OFPP_FLOOD: "FLOOD", ofp.OFPP_ALL: "ALL", ofp.OFPP_CONTROLLER: "CONTROLLER",
               ofp.OFPP_LOCAL: "LOCAL", ofp.OFPP_ANY: "ANY"}
_FLOW_MOD_COMMANDS = {ofp.OFPFC_ADD: "add", ofp.OFPFC_MODIFY: "modify", ofp.OFPFC_MODIFY_STRICT: "modify_strict",
                      ofp.OFPFC_DELETE: "delete", ofp.OFPFC_DELETE_STRICT: "delete_strict"}


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
