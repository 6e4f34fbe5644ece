"""Per-mapping packet and byte counts from the switch's flow statistics, and when they last moved.

A TCP or UDP mapping's packets after the first never reach the controller: its
two rewrite rules carry them, so the core's ``last_used`` stays at the last
packet the controller saw. While someone reads the mappings (the REST API asked
within :data:`DEMAND_S` seconds), the app polls the switch for the statistics of
our rules (cookie ``OURS`` under ``OURS_MASK``) every :data:`POLL_INTERVAL_S`
seconds; this module sums each mapping's two rules and notes the poll at which
their packet count last changed. Nobody asking, no polls: a reply covers every
rule of ours, and decoding tens of thousands of them would stall the event loop
that sets up new flows.

OpenFlow 1.3 flow statistics give a rule's age, not its idle time: a mapping
counts as used at the poll that first sees its packet count grow, so an idle
time built on it is short by at most one poll interval.

Rules come and go under a mapping (one idles out and is installed again, a
switch reconnect reinstalls both): the counts of a rule that left, or was
replaced (its age or packet count went down), are kept, so a mapping's totals
only grow. A mapping none of whose rules is in a poll is forgotten. No I/O;
time is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ryu_nat.openflow import cookies

POLL_INTERVAL_S = 2.0
POLL_TIMEOUT_S = 10.0  # a poll unanswered this long is given up, and the next one sent
DEMAND_S = 30.0  # polls go on this long after the last time someone read the counters


@dataclass(frozen=True, slots=True)
class RuleCounts:
    """One rule's entry in a flow-statistics reply."""

    cookie: int
    packets: int
    bytes: int
    duration_s: float


@dataclass(frozen=True, slots=True)
class Traffic:
    """What a mapping's rules carried, and the poll time at which they were last seen in use."""

    packets: int
    bytes: int
    last_active: float | None


class FlowCounters:
    """Packet and byte totals per mapping id, fed one flow-statistics poll at a time."""

    def __init__(self, interval_s: float = POLL_INTERVAL_S, timeout_s: float = POLL_TIMEOUT_S) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.polls = 0
        self.last_poll: float | None = None
        self._rules: dict[int, tuple[int, RuleCounts]] = {}  # cookie -> (mapping id, counts)
        self._left: dict[int, tuple[int, int]] = {}
        self._active: dict[int, float] = {}
        self._totals: dict[int, Traffic] = {}
        self._pending: tuple[int, float, list[RuleCounts]] | None = None
        self._next_poll = 0.0
        self._wanted_until = float("-inf")

    # --- the poll: request, reply parts, totals ---------------------------------------------

    def want(self, now: float) -> None:
        """Someone reads the counters: keep polling for the next ``DEMAND_S`` seconds."""
        self._wanted_until = now + DEMAND_S

    def poll_due(self, now: float) -> bool:
        """True if a request should go out now: someone wants the counters, the interval
        passed and none is outstanding (or the outstanding one went unanswered for ``timeout_s``)."""
        if now >= self._wanted_until:
            return False
        if self._pending is not None and now - self._pending[1] < self.timeout_s:
            return False
        return now >= self._next_poll

    def poll_sent(self, xid: int, now: float) -> None:
        """A request with ``xid`` went out; its reply parts are collected until the last."""
        self._pending = (xid, now, [])
        self._next_poll = now + self.interval_s

    def cancel_poll(self) -> None:
        """Forget the outstanding request (the switch went away; a new one reuses xids)."""
        self._pending = None

    def reply(self, xid: int, rules: Iterable[RuleCounts], more: bool, now: float) -> bool:
        """One part of the reply to request ``xid``; the totals change when the last part
        (``more`` false) arrives. False for a part of no outstanding request."""
        if self._pending is None or self._pending[0] != xid:
            return False
        self._pending[2].extend(rules)
        if not more:
            self.update(self._pending[2], now)
            self._pending = None
        return True

    def update(self, rules: Iterable[RuleCounts], now: float) -> None:
        """A whole poll: every rule of ours on the switch, at ``now``."""
        current: dict[int, tuple[int, RuleCounts]] = {}
        for rule in rules:
            mapping_id = cookies.mapping_id_of(rule.cookie)
            if mapping_id is not None:
                current[rule.cookie] = (mapping_id, rule)
        present = {mapping_id for mapping_id, _ in current.values()}
        for cookie, (mapping_id, before) in self._rules.items():
            now_there = current.get(cookie)
            if now_there is None:
                if mapping_id in present:
                    self._retire(mapping_id, before)  # this rule left; its twin is still there
            elif self._was_replaced(before, now_there[1]):
                self._retire(mapping_id, before)  # installed again: it counts from zero
        for gone in (self._left.keys() | self._active.keys()) - present:
            self._left.pop(gone, None)
            self._active.pop(gone, None)
        totals: dict[int, tuple[int, int]] = {}
        for cookie, (mapping_id, rule) in current.items():
            if rule.packets > self._packets_before(cookie, rule):
                self._active[mapping_id] = now
            packets, byte_count = totals.get(mapping_id) or self._left.get(mapping_id, (0, 0))
            totals[mapping_id] = (packets + rule.packets, byte_count + rule.bytes)
        self._totals = {mapping_id: Traffic(packets, byte_count, self._active.get(mapping_id))
                        for mapping_id, (packets, byte_count) in totals.items()}
        self._rules = current
        self.polls += 1
        self.last_poll = now

    def traffic(self, mapping_id: int) -> Traffic | None:
        """The totals of a mapping; None if the last poll saw none of its rules."""
        return self._totals.get(mapping_id)

    def _packets_before(self, cookie: int, rule: RuleCounts) -> int:
        """The count the last poll saw for this very rule; 0 for a rule new since then."""
        seen = self._rules.get(cookie)
        if seen is None or self._was_replaced(seen[1], rule):
            return 0
        return seen[1].packets

    @staticmethod
    def _was_replaced(before: RuleCounts, after: RuleCounts) -> bool:
        """A rule's age and counts only grow; if either fell, the rule was installed again."""
        return after.duration_s < before.duration_s or after.packets < before.packets

    def _retire(self, mapping_id: int, rule: RuleCounts) -> None:
        packets, byte_count = self._left.get(mapping_id, (0, 0))
        self._left[mapping_id] = (packets + rule.packets, byte_count + rule.bytes)
