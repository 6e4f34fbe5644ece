"""Replies to the app's own flow- and aggregate-statistics requests, taken off Ryu's receive path as bytes.

Ryu (and os-ken) parses every message from the switch before any app sees it; for a
flow-statistics reply that means an ``OFPFlowStats`` object, with its match and
instructions, per rule, when the NAT wants cookies and counters, or its rules
in its own terms (:mod:`ryu_nat.openflow.multipart` reads them from the bytes).
A :class:`FlowStatsTap` expects a few replies (datapath and xid each: the
counter poll's, and a restore's or an audit's); their parts are handed over as
bytes and never reach Ryu's parser, nor other apps. Every other message,
statistics replies to other requests included, is parsed by Ryu as before.

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
_TAKEN = frozenset(kind.to_bytes(2, "big") for kind in (multipart.OFPMP_FLOW, multipart.OFPMP_AGGREGATE))
MAX_EXPECTED = 8  # replies expected at once; the oldest is forgotten beyond that

_taps: weakref.WeakSet[FlowStatsTap] = weakref.WeakSet()


class FlowStatsTap:
    """Expects the replies to a few statistics requests, and hands their parts to ``deliver``."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._expected: dict[int, Datapath] = {}  # xid -> the datapath it was sent to, oldest first
        install()
        _taps.add(self)

    def expect(self, datapath: Datapath, xid: int) -> None:
        """The reply to ``xid`` from ``datapath`` is ours."""
        self._expected[xid] = datapath
        if len(self._expected) > MAX_EXPECTED:
            del self._expected[next(iter(self._expected))]

    def expecting(self, xid: int) -> bool:
        return xid in self._expected

    def done(self, xid: int) -> None:
        """The reply to ``xid`` is no longer wanted (given up): its later parts go to Ryu's parser."""
        self._expected.pop(xid, None)

    def forget(self) -> None:
        """Expect nothing (the switch went away)."""
        self._expected.clear()

    def take(self, datapath: Datapath, xid: int, buf: bytes | bytearray, msg_len: int) -> bool:
        """If the message in ``buf`` is a part of an expected reply, hand it over and say so; after its
        last part (or one too short to say), that reply is expected no more."""
        if self._expected.get(xid) is not datapath or bytes(buf[_MP_TYPE]) not in _TAKEN:
            return False
        data = bytes(buf[:msg_len])
        if len(data) < multipart.HEAD_LEN or not data[11] & multipart.OFPMPF_REPLY_MORE:
            del self._expected[xid]
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
