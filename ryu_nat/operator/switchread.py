"""Our rules read back from the switch, a slice at a time: after a restart (restore) and in audits.

The app owns the switch connection; this decides what to ask next
(:class:`~ryu_nat.openflow.scan.Scan`: counts, then slices of bounded size,
one request outstanding) and hands each slice to the gateway's review, whose
plans the app sends: mappings put back and rules that rebuild nothing deleted
(restore), or disagreements repaired (audit). A slice's reply comes as bytes
(:mod:`ryu_nat.operator.stats_tap`), one part per event, so a table of any size
costs the event thread bites of at most one part (64 KiB). A restore ends with
the packets that waited for it. What each run did, and how long it took, is
kept for ``GET /nat/consistency``. No I/O; time is passed in.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ryu_nat.gateway import Gateway
from ryu_nat.openflow import scan
from ryu_nat.openflow.flowentries import SwitchRule
from ryu_nat.openflow.plan import Plan

AUDIT_SLICE_MAPPINGS = scan.SLICE_RULES // 2  # mappings an audit compares at once, as a slice holds their rules
DEFAULT_AUDIT_INTERVAL_S = 600


class Purpose(enum.Enum):
    RESTORE = "restore"
    AUDIT = "audit"


@dataclass
class Run:
    """One read of the switch's rules: why, when, what it cost and what it found."""

    purpose: Purpose
    started: float
    finished: float | None = None
    requests: int = 0
    slices: int = 0
    rules_read: int = 0
    unreadable: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # the gateway's restore or audit counters, this run's

    def as_dict(self, now: float) -> dict[str, Any]:
        end = now if self.finished is None else self.finished
        return {"purpose": self.purpose.value, "running": self.finished is None,
                "seconds": round(end - self.started, 3), "ago_s": round(now - end, 1), "requests": self.requests,
                "slices": self.slices, "rules_read": self.rules_read, "unreadable": self.unreadable,
                "counts": dict(sorted(self.counts.items()))}


class SwitchReader:
    """At most one read at a time; the last restore and the last two audits (the running one and the last done)."""

    def __init__(self, gateway: Gateway, audit_interval_s: float = DEFAULT_AUDIT_INTERVAL_S) -> None:
        self._gateway = gateway
        self.audit_interval_s = audit_interval_s
        self._scan: scan.Scan | None = None
        self.current: Run | None = None
        self.last_restore: Run | None = None
        self.last_audit: Run | None = None
        self._before: Counter[str] = Counter()
        self._next_audit = float("inf")

    @property
    def pending_xid(self) -> int | None:
        return None if self._scan is None else self._scan.pending_xid

    def start(self, purpose: Purpose, now: float) -> bool:
        """Begin a read; False (and nothing changes) while another is running, or an audit during a restore."""
        if self._scan is not None or (purpose is Purpose.AUDIT and self._gateway.review.restoring):
            return False
        review = self._gateway.review
        crowded = None if purpose is Purpose.RESTORE else \
            (lambda first, last: review.audit_crowded(first, last, AUDIT_SLICE_MAPPINGS))
        self._scan = scan.Scan(crowded)
        self.current = Run(purpose, now)
        self._before = Counter(self._counters(purpose))
        return True

    def audit_due(self, now: float) -> bool:
        """True when the periodic audit should start (``audit_interval_s`` after the last read ended)."""
        return self._scan is None and now >= self._next_audit

    def stop(self) -> None:
        """The switch went away: the read in progress is dropped (a restore starts again on the next connect)."""
        self._scan = self.current = None

    def next_request(self, now: float) -> tuple[scan.Request | None, Plan]:
        """The request to send now, if any, and the plan for anything a timeout settled meanwhile."""
        if self._scan is None:
            return None, []
        request = self._scan.next_request(now)
        plan = self._settle(now)
        if request is not None and request.ask is scan.Ask.RULES and self.current is not None \
                and self.current.purpose is Purpose.AUDIT:
            self._gateway.review.audit_watch()
        return request, plan

    def sent(self, request: scan.Request, xid: int, now: float) -> None:
        assert self._scan is not None and self.current is not None
        self._scan.sent(request, xid, now)
        self.current.requests += 1

    def counted(self, xid: int, count: int, now: float) -> Plan | None:
        """A count arrived; None if it answers no request of ours."""
        if self._scan is None or not self._scan.counted(xid, count):
            return None
        return self._settle(now)

    def part(self, xid: int, rules: list[SwitchRule], more: bool, now: float) -> Plan | None:
        """A part of a slice arrived; None if it answers no request of ours."""
        if self._scan is None or not self._scan.part(xid, rules, more):
            return None
        return self._settle(now)

    def failed(self, xid: int, now: float) -> Plan:
        """A reply to ``xid`` did not decode: its slice is unreadable."""
        if self._scan is None:
            return []
        self._scan.failed(xid)
        return self._settle(now)

    def report(self, now: float) -> dict[str, Any]:
        """What ``GET /nat/consistency`` shows: the read running, the last restore and the last audit."""
        def shown(run: Run | None) -> dict[str, Any] | None:
            return None if run is None else run.as_dict(now)

        running = self.current if self._scan is not None else None
        next_audit = None if self.audit_interval_s <= 0 or self._next_audit == float("inf") else \
            round(max(self._next_audit - now, 0.0), 1)
        return {"running": shown(running), "last_restore": shown(self.last_restore),
                "last_audit": shown(self.last_audit), "audit_interval_s": self.audit_interval_s,
                "next_audit_in_s": next_audit}

    def _settle(self, now: float) -> Plan:
        """Hand what the replies revealed to the gateway; end the run when nothing is left to ask."""
        assert self._scan is not None and self.current is not None
        run, review, plan = self.current, self._gateway.review, []
        for result in self._scan.take_results():
            match result:
                case scan.Slice(node, rules):
                    run.slices += 1
                    run.rules_read += len(rules)
                    plan += review.restore_slice(rules, now) if run.purpose is Purpose.RESTORE else \
                        review.audit_slice(node.mapping_ids, rules, AUDIT_SLICE_MAPPINGS)
                case scan.Empty(node) if run.purpose is Purpose.AUDIT and node.mapping_ids is not None:
                    plan += review.audit_slice(node.mapping_ids, [], AUDIT_SLICE_MAPPINGS)
                case scan.Unreadable(node):
                    run.unreadable += 1
                    if run.purpose is Purpose.RESTORE:
                        plan += review.restore_unreadable(node.cookie, node.mask)
        if self._scan.done:
            plan += self._finish(run, now)
        return plan

    def _finish(self, run: Run, now: float) -> Plan:
        plan = self._gateway.review.restore_done(now) if run.purpose is Purpose.RESTORE else []
        if run.purpose is Purpose.AUDIT:
            self._gateway.stats.audit["runs"] += 1
        run.finished = now
        run.counts = Counter(self._counters(run.purpose)) - self._before
        del run.counts["runs"]
        if run.purpose is Purpose.RESTORE:
            self.last_restore = run
        else:
            self.last_audit = run
        self._scan = None
        self._next_audit = now + self.audit_interval_s if self.audit_interval_s > 0 else float("inf")
        return plan

    def _counters(self, purpose: Purpose) -> Counter[str]:
        stats = self._gateway.stats
        return stats.restore if purpose is Purpose.RESTORE else stats.audit
