"""Per-mapping counters from flow-statistics polls: totals that only grow, and when they last moved."""

from __future__ import annotations

from ryu_nat.operator.flowstats import DEMAND_S, FlowCounters, RuleCounts, Traffic
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind


def original(mapping_id: int, packets: int, duration_s: float, byte_count: int | None = None) -> RuleCounts:
    return RuleCounts(cookies.make(RuleKind.ORIGINAL, mapping_id), packets,
                      packets * 100 if byte_count is None else byte_count, duration_s)


def reply(mapping_id: int, packets: int, duration_s: float) -> RuleCounts:
    return RuleCounts(cookies.make(RuleKind.REPLY, mapping_id), packets, packets * 100, duration_s)


def test_a_mapping_sums_its_two_rules_and_ignores_other_rules():
    counters = FlowCounters()
    counters.update([original(7, 3, 1.0), reply(7, 2, 1.0), original(8, 1, 1.0),
                     RuleCounts(cookies.make(RuleKind.BASE), 99, 9900, 5.0),
                     RuleCounts(cookies.make(RuleKind.L2), 50, 5000, 5.0)], now=10.0)
    assert counters.traffic(7) == Traffic(5, 500, 10.0)
    assert counters.traffic(8) == Traffic(1, 100, 10.0)
    assert counters.traffic(9) is None


def test_last_active_is_the_poll_that_saw_the_count_grow():
    counters = FlowCounters()
    counters.update([original(7, 0, 0.5), reply(7, 0, 0.5)], now=2.0)
    assert counters.traffic(7) == Traffic(0, 0, None)
    counters.update([original(7, 4, 2.5), reply(7, 0, 2.5)], now=4.0)
    counters.update([original(7, 4, 4.5), reply(7, 0, 4.5)], now=6.0)
    assert counters.traffic(7) == Traffic(4, 400, 4.0)
    counters.update([original(7, 4, 6.5), reply(7, 1, 6.5)], now=8.0)
    assert counters.traffic(7).last_active == 8.0


def test_a_rule_installed_again_keeps_the_mappings_total_growing():
    counters = FlowCounters()
    counters.update([original(7, 10, 30.0), reply(7, 5, 30.0)], now=30.0)
    # The reply rule idled out and came back: younger, and counting from zero again.
    counters.update([original(7, 12, 32.0), reply(7, 1, 0.5)], now=32.0)
    assert counters.traffic(7) == Traffic(12 + 5 + 1, (12 + 5 + 1) * 100, 32.0)
    # Replaced with its counters copied (more packets, but younger): the old count is not counted twice.
    counters.update([original(7, 13, 0.2), reply(7, 1, 2.5)], now=34.0)
    assert counters.traffic(7).packets == 12 + 13 + 5 + 1


def test_a_rule_that_left_while_its_twin_stays_still_counts():
    counters = FlowCounters()
    counters.update([original(7, 10, 30.0), reply(7, 5, 30.0)], now=30.0)
    counters.update([original(7, 11, 32.0)], now=32.0)
    assert counters.traffic(7) == Traffic(16, 1600, 32.0)


def test_a_mapping_whose_rules_are_all_gone_is_forgotten():
    counters = FlowCounters()
    counters.update([original(7, 10, 30.0), reply(7, 5, 30.0)], now=30.0)
    counters.update([], now=32.0)
    assert counters.traffic(7) is None
    counters.update([original(7, 1, 0.1)], now=34.0)  # ids are never reused; nothing of the old totals remains
    assert counters.traffic(7) == Traffic(1, 100, 34.0)


def test_a_poll_is_due_every_interval_and_one_at_a_time():
    counters = FlowCounters(interval_s=2.0, timeout_s=10.0)
    counters.want(0.0)
    assert counters.poll_due(0.0)
    counters.poll_sent(xid=5, now=0.0)
    assert not counters.poll_due(3.0)  # the reply is still outstanding
    assert counters.reply(5, [original(7, 1, 1.0)], more=False, now=3.0)
    assert counters.poll_due(3.0) and counters.polls == 1
    counters.poll_sent(xid=6, now=3.0)
    assert not counters.poll_due(12.9) and counters.poll_due(13.0)  # unanswered: given up after timeout_s


def test_a_reply_in_parts_counts_once_the_last_part_is_in():
    counters = FlowCounters()
    counters.poll_sent(xid=9, now=0.0)
    assert counters.reply(9, [original(7, 3, 1.0)], more=True, now=0.1)
    assert counters.traffic(7) is None and counters.polls == 0
    assert counters.reply(9, [reply(7, 2, 1.0)], more=False, now=0.2)
    assert counters.traffic(7) == Traffic(5, 500, 0.2) and counters.last_poll == 0.2


def test_parts_of_other_or_cancelled_requests_are_ignored():
    counters = FlowCounters()
    counters.poll_sent(xid=9, now=0.0)
    assert not counters.reply(8, [original(7, 3, 1.0)], more=False, now=0.1)
    counters.cancel_poll()
    assert not counters.reply(9, [original(7, 3, 1.0)], more=False, now=0.1)
    assert counters.traffic(7) is None and counters.polls == 0


def test_no_polls_unless_someone_read_the_counters_lately():
    counters = FlowCounters(interval_s=2.0, timeout_s=10.0)
    assert not counters.poll_due(0.0)
    counters.want(1.0)
    assert counters.poll_due(1.0)
    assert not counters.poll_due(1.0 + DEMAND_S)
