"""Replies to the app's own flow-statistics requests, taken off Ryu's receive path as bytes.

Ryu (and os-ken) parses every message from the switch before any app sees it; for a
flow-statistics reply that means an ``OFPFlowStats`` object, with its match and
instructions, per rule, when the NAT wants only cookies and counters
(:mod:`ryu_nat.openflow.multipart` reads those from the bytes). A
:class:`FlowStatsTap` expects one reply (datapath and xid); its part(s) are
handed over as bytes and never reach Ryu's parser, nor other apps. Every other
message, flow-statistics replies to other requests included, is parsed by
Ryu as before.

:func:`install` wraps Ryu's OpenFlow 1.3 parser for multipart replies, once per
process. It runs in the datapath's receive loop: it only hands bytes over, and
the app decodes them on its own event thread.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser
from ryu_nat.openflow import multipart

Datapath = Any  # ryu.controller.controller.Datapath, or a test fake
Deliver = Callable[[Datapath, bytes], None]
_MP_TYPE = slice(8, 10)
_FLOW = multipart.OFPMP_FLOW.to_bytes(2, "big")

_taps: weakref.WeakSet[FlowStatsTap] = weakref.WeakSet()


class FlowStatsTap:
    """Expects the reply to one flow-statistics request at a time, and hands its parts to ``deliver``."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._expected: tuple[Datapath, int] | None = None
        install()
        _taps.add(self)

    def expect(self, datapath: Datapath, xid: int) -> None:
        """The reply to ``xid`` from ``datapath`` is ours (it replaces any reply expected before)."""
        self._expected = (datapath, xid)

    def forget(self) -> None:
        """Expect nothing (the switch went away)."""
        self._expected = None

    def take(self, datapath: Datapath, xid: int, buf: bytes | bytearray, msg_len: int) -> bool:
        """If the message in ``buf`` is a part of the expected reply, hand it over and say so; after its
        last part (or one too short to say), expect nothing more."""
        expected = self._expected
        if expected is None or expected[1] != xid or expected[0] is not datapath or buf[_MP_TYPE] != _FLOW:
            return False
        data = bytes(buf[:msg_len])
        if len(data) < multipart.HEAD_LEN or not data[11] & multipart.OFPMPF_REPLY_MORE:
            self._expected = None
        self._deliver(datapath, data)
        return True


def install() -> None:
    """Route multipart replies through the taps before Ryu's own parser (once per process)."""
    original = parser._MSG_PARSERS[ofp.OFPT_MULTIPART_REPLY]
    if getattr(original, "ryu_nat_tap", False):
        return

    def parse(datapath: Datapath, version: int, msg_type: int, msg_len: int, xid: int, buf: bytes) -> Any:
        if any(tap.take(datapath, xid, buf, msg_len) for tap in list(_taps)):
            return None  # handed over: Ryu dispatches no event for it
        return original(datapath, version, msg_type, msg_len, xid, buf)

    parse.ryu_nat_tap = True  # type: ignore[attr-defined]
    parser._MSG_PARSERS[ofp.OFPT_MULTIPART_REPLY] = parse
