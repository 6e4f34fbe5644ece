"""The app's statistics requests to the switch, and their replies: the counter poll's slices
(:mod:`ryu_nat.operator.flowstats`) and the reads of the switch's rules (:mod:`ryu_nat.operator.switchread`:
the restore after a restart, and audits).

Each request goes out with its xid expected by the tap (:mod:`ryu_nat.operator.stats_tap`), which takes
the reply's parts off Ryu's receive path as bytes; each part comes back here on the app's event thread, is
decoded at fixed offsets (:mod:`ryu_nat.openflow.multipart`) and handed to its consumer, and the plans the
gateway answers with go out with the app's send. A switch that answers garbage gets its warnings through the
app's one log limiter (:mod:`ryu_nat.ratelimit`), not one per part. The only I/O: the datapath's ``send_msg`` (through the app's send for plans).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ryu_nat.openflow import encoder, multipart, scan
from ryu_nat.openflow.plan import Plan
from ryu_nat.operator.flowstats import FlowCounters
from ryu_nat.operator.stats_tap import FlowStatsTap
from ryu_nat.operator.switchread import Purpose, SwitchReader
from ryu_nat.ratelimit import LogLimiter

LOG = logging.getLogger(__name__)

Datapath = Any  # ryu.controller.controller.Datapath, or a test fake


class StatsRequests:
    """What to ask the switch for, and what becomes of each reply part."""

    def __init__(self, counters: FlowCounters, reader: SwitchReader, tap: FlowStatsTap,
                 next_counted_mapping: Callable[[int], int | None], send: Callable[[Datapath, Plan], None],
                 limiter: LogLimiter) -> None:
        """``next_counted_mapping(after)``: the lowest id above ``after`` of a mapping whose rules are counted."""
        self._counters = counters
        self._reader = reader
        self._tap = tap
        self._next_counted_mapping = next_counted_mapping
        self._send = send
        self._limiter = limiter

    def ask_next_slice(self, dp: Datapath) -> None:
        """The counter poll's next slice, if one is due."""
        now = time.monotonic()
        due = self._counters.next_slice(now, self._next_counted_mapping)
        if due is not None:
            self._counters.slice_sent(self._request(dp, encoder.flow_stats_request, due.cookie, due.cookie_mask),
                                      due, now)

    def start(self, dp: Datapath, purpose: Purpose) -> bool:
        """Begin a read of the switch's rules (False: another runs) and send its first request."""
        if not self._reader.start(purpose, time.monotonic()):
            return False
        self.ask_reader(dp)
        return True

    def ask_reader(self, dp: Datapath) -> None:
        """The read's next request, if one is due (and the plan for whatever a timeout settled)."""
        now = time.monotonic()
        request, plan = self._reader.next_request(now)
        self._send(dp, plan)
        if request is not None:
            build = encoder.aggregate_stats_request if request.ask is scan.Ask.COUNT else encoder.flow_stats_request
            self._reader.sent(request, self._request(dp, build, request.node.cookie, request.node.mask), now)

    def part(self, dp: Datapath, data: bytes) -> None:
        """One part of a reply to one of our requests, as bytes."""
        xid = int.from_bytes(data[4:8], "big")
        if xid == self._reader.pending_xid:
            self._read_back(dp, xid, data)
            return
        counted = multipart.decode_flow_stats(data)
        if isinstance(counted, multipart.DecodeError):
            self._warn("dpid=%016x: flow-statistics reply xid=%d refused: %s", dp.id, xid, counted.value)
            self._counters.reply_failed(xid)
            return
        if not self._counters.reply(counted.xid, counted.rules, counted.more, time.monotonic()):
            return
        if self._counters.pending_xid is None:
            self._tap.done(counted.xid)  # done, or given up: further parts are not ours to read
            self.ask_next_slice(dp)  # or end the sweep, if no block is left

    def _read_back(self, dp: Datapath, xid: int, data: bytes) -> None:
        """A count or a part of a slice for the read in progress: the gateway's answer sent, the next asked."""
        now = time.monotonic()
        part = multipart.decode_aggregate(data) if multipart.is_aggregate(data) else multipart.decode_flow_entries(data)
        if isinstance(part, multipart.DecodeError):
            self._warn("dpid=%016x: statistics reply xid=%d refused: %s", dp.id, xid, part.value)
            self._tap.done(xid)
            plan = self._reader.failed(xid, now)
        elif isinstance(part, multipart.AggregatePart):
            plan = self._reader.counted(xid, part.flow_count, now) or []
        else:
            plan = self._reader.part(xid, part.rules, part.more, now) or []
        self._send(dp, plan)
        self.ask_reader(dp)

    def _request(self, dp: Datapath, build: Callable[[Datapath, int, int], Any], cookie: int, mask: int) -> int:
        """Send a statistics request built by ``build``, its reply expected by the tap; its xid."""
        message = build(dp, cookie, mask)
        dp.set_xid(message)
        self._tap.expect(dp, message.xid)
        dp.send_msg(message)
        xid: int = message.xid
        return xid

    def _warn(self, message: str, *args: object) -> None:
        """Through the limiter: a switch sending garbage must not flood the log."""
        self._limiter.log(LOG, logging.WARNING, "flow_stats_reply", time.monotonic(), message, *args)
