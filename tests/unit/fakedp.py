"""A datapath that records what the app sends, decoded back from the bytes; and the events a switch sends.

Both ways out of the app, ``send_msg(msg)`` and ``send(buf)`` with a whole batch,
end in :meth:`FakeDatapath.send`, as in Ryu's ``Datapath``. It keeps each write
and splits it at message boundaries into ``sent``, so tests inspect one list of
messages however the app sent them, and a message the switch could not decode
fails the test. Ryu parses only flow-mods among the messages a controller sends;
packet-outs, set-config, set-async and barrier requests are decoded here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from ryu_nat.backend import ofp_event
from ryu_nat.backend import ofproto_parser, ofproto_protocol
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

MsgBase = Any  # Ryu ships no type information


class FakeDatapath(ofproto_protocol.ProtocolDesc):  # type: ignore[misc]
    """Enough of ``ryu.controller.controller.Datapath`` for the app: id, ports, address, xids, send."""

    def __init__(self, dpid: int = 1, ports: Iterable[int] = (1, 2, 3)) -> None:
        super().__init__(ofp.OFP_VERSION)
        self.id = dpid
        self.address = ("127.0.0.1", 50000)
        self.ports = {port_no: _port(port_no) for port_no in ports}
        self.xid = 0
        self.writes: list[bytes] = []
        self.sent: list[MsgBase] = []

    def set_xid(self, msg: MsgBase) -> int:
        self.xid = (self.xid + 1) & ofp.MAX_XID
        msg.set_xid(self.xid)
        return self.xid

    def send_msg(self, msg: MsgBase, close_socket: bool = False) -> bool:
        assert isinstance(msg, parser.MsgBase)
        if msg.xid is None:
            self.set_xid(msg)
        msg.serialize()
        return self.send(msg.buf, close_socket)

    def send(self, buf: bytes | bytearray, close_socket: bool = False) -> bool:
        self.writes.append(bytes(buf))
        self.sent.extend(decode(self, bytes(buf)))
        return True


def _port(port_no: int) -> Any:
    mac = f"02:00:00:00:{port_no >> 8 & 0xFF:02x}:{port_no & 0xFF:02x}"
    return parser.OFPPort(port_no, mac, f"eth{port_no}".encode(), 0, 0, 0, 0, 0, 0, 0, 0)


def decode(datapath: FakeDatapath, buf: bytes) -> list[MsgBase]:
    """The messages in one write, in order; AssertionError on bytes that are not whole OpenFlow 1.3 messages."""
    msgs: list[MsgBase] = []
    offset = 0
    while offset < len(buf):
        assert len(buf) - offset >= ofp.OFP_HEADER_SIZE, f"{len(buf) - offset} stray bytes after {len(msgs)} messages"
        version, msg_type, msg_len, xid = ofproto_parser.header(buf[offset:])
        assert version == ofp.OFP_VERSION, f"OpenFlow version {version:#x}"
        assert ofp.OFP_HEADER_SIZE <= msg_len <= len(buf) - offset, f"message length {msg_len} at byte {offset}"
        body = buf[offset:offset + msg_len]
        decoder = _DECODERS.get(msg_type)
        if decoder is None:
            msg = ofproto_parser.msg(datapath, version, msg_type, msg_len, xid, body)
            assert msg is not None, f"message type {msg_type} does not decode"
        else:
            msg = decoder(datapath, body)
            msg.set_headers(version, msg_type, msg_len, xid)
            msg.set_buf(body)
        msgs.append(msg)
        offset += msg_len
    return msgs


def _packet_out(datapath: FakeDatapath, body: bytes) -> MsgBase:
    buffer_id, in_port, actions_len = struct.unpack_from(ofp.OFP_PACKET_OUT_PACK_STR, body, ofp.OFP_HEADER_SIZE)
    end = ofp.OFP_PACKET_OUT_SIZE + actions_len
    assert end <= len(body), "actions run past the message"
    actions, offset = [], ofp.OFP_PACKET_OUT_SIZE
    while offset < end:
        action = parser.OFPAction.parser(body, offset)
        actions.append(action)
        offset += action.len
    assert offset == end, "actions_len does not end at an action boundary"
    return parser.OFPPacketOut(datapath, buffer_id, in_port, actions, body[end:])


def _set_config(datapath: FakeDatapath, body: bytes) -> MsgBase:
    assert len(body) == ofp.OFP_SWITCH_CONFIG_SIZE
    flags, miss_send_len = struct.unpack_from(ofp.OFP_SWITCH_CONFIG_PACK_STR, body, ofp.OFP_HEADER_SIZE)
    return parser.OFPSetConfig(datapath, flags, miss_send_len)


def _set_async(datapath: FakeDatapath, body: bytes) -> MsgBase:
    assert len(body) == ofp.OFP_ASYNC_CONFIG_SIZE
    masks = struct.unpack_from(ofp.OFP_ASYNC_CONFIG_PACK_STR, body, ofp.OFP_HEADER_SIZE)
    return parser.OFPSetAsync(datapath, list(masks[0:2]), list(masks[2:4]), list(masks[4:6]))


def _barrier_request(datapath: FakeDatapath, body: bytes) -> MsgBase:
    assert len(body) == ofp.OFP_HEADER_SIZE
    return parser.OFPBarrierRequest(datapath)


def _multipart_request(datapath: FakeDatapath, body: bytes) -> MsgBase:
    """Flow- and aggregate-statistics requests only: the multipart requests the app sends."""
    stats_type, flags = struct.unpack_from(ofp.OFP_MULTIPART_REQUEST_PACK_STR, body, ofp.OFP_HEADER_SIZE)
    assert stats_type in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE), f"multipart request type {stats_type}"
    fields = struct.unpack_from(ofp.OFP_FLOW_STATS_REQUEST_0_PACK_STR, body, ofp.OFP_MULTIPART_REQUEST_SIZE)
    table_id, out_port, out_group, cookie, cookie_mask = fields
    match = parser.OFPMatch.parser(body, ofp.OFP_MULTIPART_REQUEST_SIZE + ofp.OFP_FLOW_STATS_REQUEST_0_SIZE)
    request = parser.OFPFlowStatsRequest if stats_type == ofp.OFPMP_FLOW else parser.OFPAggregateStatsRequest
    return request(datapath, flags, table_id, out_port, out_group, cookie, cookie_mask, match)


_DECODERS: dict[int, Callable[[FakeDatapath, bytes], MsgBase]] = {
    ofp.OFPT_PACKET_OUT: _packet_out,
    ofp.OFPT_SET_CONFIG: _set_config,
    ofp.OFPT_SET_ASYNC: _set_async,
    ofp.OFPT_BARRIER_REQUEST: _barrier_request,
    ofp.OFPT_MULTIPART_REQUEST: _multipart_request,
}


def _from_switch(datapath: FakeDatapath, msg_type: int, fixed: bytes, match: Any, tail: bytes = b"") -> MsgBase:
    """Bytes as the switch would send them (header, fixed part, match, tail), parsed by Ryu's own parser."""
    buf = bytearray(ofp.OFP_HEADER_SIZE) + fixed
    match.serialize(buf, len(buf))  # appends the match, padded to a multiple of 8 as on the wire
    buf += tail
    struct.pack_into(ofp.OFP_HEADER_PACK_STR, buf, 0, ofp.OFP_VERSION, msg_type, len(buf), 0)
    msg = ofproto_parser.msg(datapath, ofp.OFP_VERSION, msg_type, len(buf), 0, bytes(buf))
    assert msg is not None
    return msg


def packet_in_event(datapath: FakeDatapath, in_port: int | None, data: bytes, reason: int = ofp.OFPR_NO_MATCH,
                    cookie: int = 0, table_id: int = 0) -> ofp_event.EventOFPPacketIn:
    """A packet-in as Open vSwitch sends it (whole frame, no buffer, match with in_port), as Ryu decodes it;
    ``in_port`` None: a match without one, as a broken or hostile switch might send."""
    fixed = struct.pack(ofp.OFP_PACKET_IN_PACK_STR, ofp.OFP_NO_BUFFER, len(data), reason, table_id, cookie)
    match = parser.OFPMatch() if in_port is None else parser.OFPMatch(in_port=in_port)
    msg = _from_switch(datapath, ofp.OFPT_PACKET_IN, fixed, match, b"\0\0" + data)
    return ofp_event.EventOFPPacketIn(msg)


def flow_removed_event(datapath: FakeDatapath, cookie: int, reason: int, priority: int = 0,
                       idle_timeout_s: int = 0, hard_timeout_s: int = 0, packets: int = 0,
                       **match_fields: Any) -> ofp_event.EventOFPFlowRemoved:
    """A flow-removed as the switch sends it for a rule with the given cookie, priority, timeouts, packet
    count and match."""
    fixed = struct.pack(ofp.OFP_FLOW_REMOVED_PACK_STR0, cookie, priority, reason, 0, 0, 0, idle_timeout_s,
                        hard_timeout_s, packets, 0)
    msg = _from_switch(datapath, ofp.OFPT_FLOW_REMOVED, fixed, parser.OFPMatch(**match_fields))
    return ofp_event.EventOFPFlowRemoved(msg)


def state_change_event(datapath: FakeDatapath, state: str) -> ofp_event.EventOFPStateChange:
    """The event Ryu sends when a datapath reaches ``state`` (MAIN_DISPATCHER: connected, ports known)."""
    ev = ofp_event.EventOFPStateChange(datapath)
    ev.state = state
    return ev


# --- flow and aggregate statistics, as the switch answers them --------------------------------------


def flow_stats_entry(rule: Any, duration_s: float = 0.0, packets: int = 0, byte_count: int = 0) -> bytes:
    """One ofp_flow_stats for a plan FlowRule, its match and instructions serialized by Ryu from the
    flow-mod the app would send for it."""
    from ryu_nat.openflow import encoder

    [flow_mod] = encoder.to_messages(FakeDatapath(), [rule])
    match = bytearray()
    flow_mod.match.serialize(match, 0)
    instructions = bytearray()
    for instruction in flow_mod.instructions:
        instruction.serialize(instructions, len(instructions))
    length = ofp.OFP_FLOW_STATS_0_SIZE + len(match) + len(instructions)
    return struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, length, flow_mod.table_id, int(duration_s), int(duration_s % 1 * 1e9),
                       flow_mod.priority, flow_mod.idle_timeout, flow_mod.hard_timeout, flow_mod.flags,
                       flow_mod.cookie, packets, byte_count) + bytes(match) + bytes(instructions)


def multipart_reply(xid: int, mp_type: int, body: bytes, more: bool = False) -> bytes:
    head = struct.pack(ofp.OFP_HEADER_PACK_STR, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY,
                       ofp.OFP_MULTIPART_REPLY_SIZE + len(body), xid)
    return head + struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, mp_type, ofp.OFPMPF_REPLY_MORE if more else 0) + body


def aggregate_reply(xid: int, flow_count: int) -> bytes:
    return multipart_reply(xid, ofp.OFPMP_AGGREGATE, struct.pack("!QQI4x", 0, 0, flow_count))
