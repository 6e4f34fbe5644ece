"""The ceiling for flow set-up in Ryu: every packet-in answered by one pre-built packet-out.

What Ryu itself costs per packet-in (read, parse into ``OFPPacketIn``, dispatch
to an app, write) with as little app work as possible: the packet-out's header
and its single FLOOD action are serialized once by Ryu's parser at start-up;
per packet only the length and in_port are patched and the packet's bytes
appended (so a load generator can tell which flow it answers). The only
rule it installs is the table-miss (OpenFlow 1.3 drops a miss without one), so
every packet comes up. On the NAT switch of the Mininet topology, which
has two ports, FLOOD makes it a wire through the controller: every packet of
every connection costs one packet-in and one packet-out. Load it with
``ryu-manager bench/ceiling_app.py``.
"""

from __future__ import annotations

import struct

from ryu_nat.backend import (CONFIG_DISPATCHER, MAIN_DISPATCHER, BaseApp, ofp_event, ofproto_protocol, ofproto_v1_3,
                             set_ev_cls)
from ryu_nat.backend import ofproto_v1_3_parser as parser

_LENGTH_AT = 2
_IN_PORT_AT = 12


def packet_out_head() -> bytes:
    """An OpenFlow 1.3 packet-out that floods, without data, as Ryu's parser serializes it."""
    desc = ofproto_protocol.ProtocolDesc(ofproto_v1_3.OFP_VERSION)
    msg = parser.OFPPacketOut(desc, buffer_id=ofproto_v1_3.OFP_NO_BUFFER, in_port=ofproto_v1_3.OFPP_CONTROLLER,
                              actions=[parser.OFPActionOutput(ofproto_v1_3.OFPP_FLOOD)], data=b"")
    msg.set_xid(0)
    msg.serialize()
    return bytes(msg.buf)


class CeilingApp(BaseApp):  # type: ignore[misc]
    """Answers each packet-in with the pre-built packet-out, its in_port and the packet's own bytes."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._head = packet_out_head()

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev: ofp_event.EventOFPSwitchFeatures) -> None:
        dp = ev.msg.datapath
        to_controller = parser.OFPActionOutput(ofproto_v1_3.OFPP_CONTROLLER, ofproto_v1_3.OFPCML_NO_BUFFER)
        dp.send_msg(parser.OFPFlowMod(dp, priority=0, match=parser.OFPMatch(), instructions=[
            parser.OFPInstructionActions(ofproto_v1_3.OFPIT_APPLY_ACTIONS, [to_controller])]))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: ofp_event.EventOFPPacketIn) -> None:
        msg = ev.msg
        data = msg.data
        head = bytearray(self._head)
        struct.pack_into("!H", head, _LENGTH_AT, len(head) + len(data))
        struct.pack_into("!I", head, _IN_PORT_AT, msg.match["in_port"])
        msg.datapath.send(bytes(head) + data)
