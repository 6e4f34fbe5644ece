"""Per-mapping packet and byte counts from the switch's flow statistics, fetched a slice at a time.

A TCP or UDP mapping's packets after the first never reach the controller: its
two rewrite rules carry them, so the core's ``last_used`` stays at the last
packet the controller saw. While someone reads the mappings (the REST API asked
within :data:`DEMAND_S` seconds), the app sweeps the switch's counters: one
request per *slice*, the rules of the mappings whose ids fall in one block of
``2**block_bits`` ids (a cookie range, :func:`ryu_nat.openflow.cookies.mapping_block`),
blocks without live mappings skipped, at most one request outstanding and at
least ``slice_gap_s`` between requests, so a full table costs the event thread
many small bites rather than one long one. A sweep starts every ``interval_s``
(or when the last one ends, if it took longer). Nobody asking, no requests.

This module sums each mapping's two rules and notes the sweep time at which
their packet count last changed. OpenFlow 1.3 flow statistics give a rule's
age, not its idle time: a mapping counts as used at the slice reply that first
sees its packet count grow, so an idle time built on it is short by at most
one sweep.

Rules come and go under a mapping (one idles out and is installed again, a
switch reconnect reinstalls both): the counts of a rule that left, or was
replaced (its age or packet count went down), are kept, so a mapping's totals
only grow. A mapping none of whose rules is in its block's reply is forgotten.
No I/O; time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from ryu_nat.openflow import cookies
from ryu_nat.openflow.multipart import RuleCounts

POLL_INTERVAL_S = 2.0
POLL_TIMEOUT_S = 10.0  # a slice unanswered this long is given up, and the sweep goes on
DEMAND_S = 30.0  # sweeps go on this long after the last time someone read the counters
SLICE_GAP_S = 0.25  # at least this long between two slice requests
BLOCK_BITS = 9  # a slice: the rules of 512 consecutive mapping ids, at most 1,024 rules

__all__ = ["BLOCK_BITS", "DEMAND_S", "FlowCounters", "POLL_INTERVAL_S", "POLL_TIMEOUT_S", "RuleCounts",
           "SLICE_GAP_S", "Slice", "Traffic"]


class Traffic(NamedTuple):
    """What a mapping's rules carried, and the poll time at which they were last seen in use."""

    packets: int
    bytes: int
    last_active: float | None


@dataclass(frozen=True, slots=True)
class Slice:
    """One request of a sweep: the rules of the mappings with ids in block ``number``."""

    number: int
    cookie: int
    cookie_mask: int


@dataclass
class _Pending:
    """The outstanding slice request, and what its reply parts brought so far."""

    xid: int
    slice: Slice
    sent_at: float
    rules: list[tuple[int, RuleCounts]] = field(default_factory=list)  # (mapping id, counts)


class _BlockCounts:
    """The counters of the mappings of one block of ids, as of that block's last reply."""

    __slots__ = ("rules", "left", "active", "totals")

    def __init__(self) -> None:
        self.rules: dict[int, tuple[int, RuleCounts]] = {}  # cookie -> (mapping id, counts)
        self.left: dict[int, tuple[int, int]] = {}  # mapping id -> counts of its rules that left or were replaced
        self.active: dict[int, float] = {}  # mapping id -> when its packet count last grew
        self.totals: dict[int, Traffic] = {}

    def update(self, rules: Iterable[tuple[int, RuleCounts]], now: float) -> None:
        """Every rule of this block on the switch, at ``now``: (mapping id, counts) each."""
        before, left, active = self.rules, self.left, self.active
        current: dict[int, tuple[int, RuleCounts]] = {}
        for mapping_id, rule in rules:
            current[rule.cookie] = (mapping_id, rule)
            seen = before.get(rule.cookie)
            if seen is None:
                grew = rule.packets > 0  # new since the last reply
            elif _was_replaced(seen[1], rule):
                self._retire(mapping_id, seen[1])  # installed again: it counts from zero
                grew = rule.packets > 0
            else:
                grew = rule.packets > seen[1].packets
            if grew:
                active[mapping_id] = now
        present = {mapping_id for mapping_id, _ in current.values()}
        for cookie, (mapping_id, gone_rule) in before.items():
            if cookie not in current and mapping_id in present:
                self._retire(mapping_id, gone_rule)  # this rule left; its twin is still there
        for gone in (left.keys() | active.keys()) - present:
            left.pop(gone, None)
            active.pop(gone, None)
        totals: dict[int, tuple[int, int]] = {}
        for mapping_id, rule in current.values():
            packets, byte_count = totals.get(mapping_id) or left.get(mapping_id, (0, 0))
            totals[mapping_id] = (packets + rule.packets, byte_count + rule.bytes)
        self.totals = {mapping_id: Traffic(packets, byte_count, active.get(mapping_id))
                       for mapping_id, (packets, byte_count) in totals.items()}
        self.rules = current

    def _retire(self, mapping_id: int, rule: RuleCounts) -> None:
        packets, byte_count = self.left.get(mapping_id, (0, 0))
        self.left[mapping_id] = (packets + rule.packets, byte_count + rule.bytes)


def _was_replaced(before: RuleCounts, after: RuleCounts) -> bool:
    """A rule's age and counts only grow; if either fell, the rule was installed again."""
    return after.duration_s < before.duration_s or after.packets < before.packets


class FlowCounters:
    """Packet and byte totals per mapping id, fed one slice of a sweep at a time."""

    def __init__(self, interval_s: float = POLL_INTERVAL_S, timeout_s: float = POLL_TIMEOUT_S,
                 slice_gap_s: float = SLICE_GAP_S, block_bits: int = BLOCK_BITS,
                 on_sweep: Callable[[float], None] | None = None) -> None:
        """``on_sweep`` is told the duration of each sweep that completes."""
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.slice_gap_s = slice_gap_s
        self.block_bits = block_bits
        self.polls = 0  # complete sweeps
        self.slices = 0  # slice replies taken in
        self.abandoned = 0  # slices given up: unanswered, or a reply too big or undecodable
        self.last_poll: float | None = None
        self._on_sweep = on_sweep
        self._blocks: dict[int, _BlockCounts] = {}
        self._pending: _Pending | None = None
        self._cursor = 0  # the first mapping id this sweep has not covered yet
        self._visited: set[int] = set()
        self._sweep_started: float | None = None
        self._next_sweep = float("-inf")
        self._next_slice = float("-inf")
        self._wanted_until = float("-inf")

    # --- the sweep: which slice next, its reply parts, the totals ---------------------------------

    def want(self, now: float) -> None:
        """Someone reads the counters: keep sweeping for the next ``DEMAND_S`` seconds."""
        if not self.wanted(now):  # a sweep left off when nobody asked any more starts afresh
            self._sweep_started = None
            self._next_sweep = float("-inf")
        self._wanted_until = now + DEMAND_S

    def wanted(self, now: float) -> bool:
        return now < self._wanted_until

    def next_slice(self, now: float, next_mapping_id: Callable[[int], int | None]) -> Slice | None:
        """The slice to request now, if any: someone wants the counters, none is outstanding (or the
        outstanding one went unanswered for ``timeout_s``: it is given up), a sweep is under way or due,
        and ``slice_gap_s`` passed since the last request. A sweep with no block left ends here, gap or
        not. ``next_mapping_id(after)`` is the lowest id above ``after`` of a live mapping whose rules the
        switch counts, or None."""
        if not self.wanted(now):
            return None
        pending = self._pending
        if pending is not None:
            if now - pending.sent_at < self.timeout_s:
                return None
            self._give_up(pending)
        if self._sweep_started is None:
            if now < self._next_sweep:
                return None
            self._sweep_started, self._cursor, self._visited = now, 0, set()
        first = next_mapping_id(self._cursor - 1)
        if first is None:
            self._end_sweep(now)
            return None
        if now < self._next_slice:
            return None
        number = first >> self.block_bits
        cookie, mask = cookies.mapping_block(number, self.block_bits)
        return Slice(number, cookie, mask)

    def slice_sent(self, xid: int, request: Slice, now: float) -> None:
        """The request for ``request`` went out with ``xid``; its reply parts are collected until the last."""
        self._pending = _Pending(xid, request, now)
        self._next_slice = now + self.slice_gap_s

    def cancel_poll(self) -> None:
        """Forget the outstanding request (the switch went away; a new one reuses xids)."""
        self._pending = None

    @property
    def pending_xid(self) -> int | None:
        return None if self._pending is None else self._pending.xid

    def reply(self, xid: int, rules: Iterable[RuleCounts], more: bool, now: float) -> bool:
        """One part of the reply to request ``xid``; the block's totals change when the last part
        (``more`` false) arrives. Rules outside the block asked for are ignored; a reply of more rules
        than a block can hold is given up. False for a part of no outstanding request."""
        pending = self._pending
        if pending is None or pending.xid != xid:
            return False
        bits = self.block_bits
        wanted, mask = pending.slice.cookie, pending.slice.cookie_mask
        kept = pending.rules
        kept += [(rule.cookie & cookies.ID_MASK, rule) for rule in rules if rule.cookie & mask == wanted]
        if len(kept) > 2 << bits:  # two rules per mapping: a switch that says more is not to be believed
            self._give_up(pending)
            return True
        if not more:
            number = pending.slice.number
            self._update_block(number, kept, now)
            self._visited.add(number)
            self._cursor = (number + 1) << bits
            self._pending = None
            self.slices += 1
        return True

    def reply_failed(self, xid: int) -> None:
        """A part of the reply to ``xid`` could not be read: the slice is given up."""
        if self._pending is not None and self._pending.xid == xid:
            self._give_up(self._pending)

    def traffic(self, mapping_id: int) -> Traffic | None:
        """The totals of a mapping; None if its block's last reply had none of its rules."""
        block = self._blocks.get(mapping_id >> self.block_bits)
        return None if block is None else block.totals.get(mapping_id)

    # --- internals ---------------------------------------------------------------------------

    def _update_block(self, number: int, rules: list[tuple[int, RuleCounts]], now: float) -> None:
        block = self._blocks.get(number)
        if block is None:
            if not rules:
                return
            block = self._blocks[number] = _BlockCounts()
        block.update(rules, now)
        if not block.totals and not block.rules:
            del self._blocks[number]

    def _give_up(self, pending: _Pending) -> None:
        """Abandon a slice: its block keeps its last counts, and the sweep moves past it."""
        self.abandoned += 1
        self._visited.add(pending.slice.number)
        self._cursor = (pending.slice.number + 1) << self.block_bits
        self._pending = None

    def _end_sweep(self, now: float) -> None:
        """Every block with live mappings was asked for: blocks not asked for have none any more."""
        for number in self._blocks.keys() - self._visited:
            del self._blocks[number]
        started = self._sweep_started if self._sweep_started is not None else now
        if self._on_sweep is not None:
            self._on_sweep(now - started)
        self._sweep_started = None
        self._next_sweep = started + self.interval_s
        self.polls += 1
        self.last_poll = now
