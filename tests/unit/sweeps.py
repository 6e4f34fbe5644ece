"""A whole flow-statistics sweep at one moment, as the app makes it slice by slice (for tests)."""

from __future__ import annotations

from collections.abc import Iterable

from ryu_nat.openflow import cookies
from ryu_nat.operator.flowstats import FlowCounters, RuleCounts


def sweep(counters: FlowCounters, rules: Iterable[RuleCounts], now: float) -> None:
    """Every slice the sweep asks for at ``now``, answered from ``rules`` (the switch's rules of ours).

    ``counters`` must take slices back to back (``slice_gap_s=0``) and start a
    sweep whenever asked (``interval_s=0``), so one call is one whole sweep.
    """
    assert counters.slice_gap_s == 0 and counters.interval_s == 0
    rules = list(rules)
    ids = sorted({i for i in map(cookies.mapping_id_of, (rule.cookie for rule in rules)) if i is not None})
    counters.want(now)
    xid = 0
    while (due := counters.next_slice(now, lambda after: next((i for i in ids if i > after), None))) is not None:
        xid += 1
        counters.slice_sent(xid, due, now)
        assert counters.reply(xid, [rule for rule in rules if rule.cookie & due.cookie_mask == due.cookie],
                              more=False, now=now)
