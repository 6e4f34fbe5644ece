"""Per-mapping counters from flow-statistics polls: totals that only grow, and when they last moved."""

from __future__ import annotations

from ryu_nat.operator.flowstats import DEMAND_S, FlowCounters, RuleCounts, Traffic
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind

from .sweeps import sweep


def swept() -> FlowCounters:
    """Counters that sweep whenever asked, slices back to back (see sweeps.sweep)."""
    return FlowCounters(interval_s=0.0, slice_gap_s=0.0)


def original(mapping_id: int, packets: int, duration_s: float, byte_count: int | None = None) -> RuleCounts:
    return RuleCounts(cookies.make(RuleKind.ORIGINAL, mapping_id), packets,
                      packets * 100 if byte_count is None else byte_count, duration_s)


def reply(mapping_id: int, packets: int, duration_s: float) -> RuleCounts:
    return RuleCounts(cookies.make(RuleKind.REPLY, mapping_id), packets, packets * 100, duration_s)


def test_a_mapping_sums_its_two_rules_and_ignores_other_rules():
    counters = swept()
    sweep(counters, [original(7, 3, 1.0), reply(7, 2, 1.0), original(8, 1, 1.0),
                     RuleCounts(cookies.make(RuleKind.BASE), 99, 9900, 5.0),
                     RuleCounts(cookies.make(RuleKind.L2), 50, 5000, 5.0)], 10.0)
    assert counters.traffic(7) == Traffic(5, 500, 10.0)
    assert counters.traffic(8) == Traffic(1, 100, 10.0)
    assert counters.traffic(9) is None


def test_last_active_is_the_poll_that_saw_the_count_grow():
    counters = swept()
    sweep(counters, [original(7, 0, 0.5), reply(7, 0, 0.5)], 2.0)
    assert counters.traffic(7) == Traffic(0, 0, None)
    sweep(counters, [original(7, 4, 2.5), reply(7, 0, 2.5)], 4.0)
    sweep(counters, [original(7, 4, 4.5), reply(7, 0, 4.5)], 6.0)
    assert counters.traffic(7) == Traffic(4, 400, 4.0)
    sweep(counters, [original(7, 4, 6.5), reply(7, 1, 6.5)], 8.0)
    assert counters.traffic(7).last_active == 8.0


def test_a_rule_installed_again_keeps_the_mappings_total_growing():
    counters = swept()
    sweep(counters, [original(7, 10, 30.0), reply(7, 5, 30.0)], 30.0)
    # The reply rule idled out and came back: younger, and counting from zero again.
    sweep(counters, [original(7, 12, 32.0), reply(7, 1, 0.5)], 32.0)
    assert counters.traffic(7) == Traffic(12 + 5 + 1, (12 + 5 + 1) * 100, 32.0)
    # Replaced with its counters copied (more packets, but younger): the old count is not counted twice.
    sweep(counters, [original(7, 13, 0.2), reply(7, 1, 2.5)], 34.0)
    assert counters.traffic(7).packets == 12 + 13 + 5 + 1


def test_a_rule_that_left_while_its_twin_stays_still_counts():
    counters = swept()
    sweep(counters, [original(7, 10, 30.0), reply(7, 5, 30.0)], 30.0)
    sweep(counters, [original(7, 11, 32.0)], 32.0)
    assert counters.traffic(7) == Traffic(16, 1600, 32.0)


def test_a_mapping_whose_rules_are_all_gone_is_forgotten():
    counters = swept()
    sweep(counters, [original(7, 10, 30.0), reply(7, 5, 30.0)], 30.0)
    sweep(counters, [], 32.0)
    assert counters.traffic(7) is None
    sweep(counters, [original(7, 1, 0.1)], 34.0)  # ids are never reused; nothing of the old totals remains
    assert counters.traffic(7) == Traffic(1, 100, 34.0)


LIVE = [3, 600, 601, 5000]  # mapping ids: blocks 0, 1 and 9 of 512 ids


def next_live(after: int) -> int | None:
    return next((i for i in LIVE if i > after), None)


def run_slice(counters: FlowCounters, now: float, xid: int, rules: list[RuleCounts]) -> int:
    """Ask for the slice due at ``now`` and answer it in one part; the block it covered."""
    due = counters.next_slice(now, next_live)
    assert due is not None
    counters.slice_sent(xid, due, now)
    assert counters.reply(xid, rules, more=False, now=now)
    return due.number


def test_a_sweep_asks_for_each_block_with_live_mappings_once_and_skips_empty_ones():
    swept = []
    counters = FlowCounters(interval_s=2.0, slice_gap_s=0.1, on_sweep=swept.append)
    counters.want(0.0)
    due = counters.next_slice(0.0, next_live)
    assert (due.number, due.cookie, due.cookie_mask) == (0, *cookies.mapping_block(0, 9))
    counters.slice_sent(1, due, 0.0)
    assert counters.next_slice(0.05, next_live) is None  # one at a time
    assert counters.reply(1, [original(3, 2, 1.0)], more=False, now=0.05)
    assert counters.next_slice(0.05, next_live) is None  # at least slice_gap_s apart
    assert run_slice(counters, 0.1, 2, [original(600, 1, 1.0), reply(601, 1, 1.0)]) == 1
    assert run_slice(counters, 0.2, 3, [original(5000, 4, 1.0)]) == 9
    assert counters.polls == 0 and counters.slices == 3
    assert counters.next_slice(0.2, next_live) is None  # nothing after block 9: the sweep ends, gap or not
    assert (counters.polls, counters.last_poll, swept) == (1, 0.2, [0.2])
    assert counters.traffic(3) == Traffic(2, 200, 0.05) and counters.traffic(5000) == Traffic(4, 400, 0.2)
    assert counters.next_slice(1.9, next_live) is None  # the next sweep starts interval_s after the last began
    assert counters.next_slice(2.0, next_live).number == 0


def test_a_slice_unanswered_for_the_timeout_is_given_up_and_the_sweep_goes_on():
    counters = FlowCounters(timeout_s=10.0, slice_gap_s=0.1)
    counters.want(0.0)
    run_slice(counters, 0.0, 1, [original(3, 1, 1.0)])
    due = counters.next_slice(1.0, next_live)
    counters.slice_sent(2, due, 1.0)
    assert counters.next_slice(10.9, next_live) is None
    assert counters.next_slice(11.0, next_live).number == 9 and counters.abandoned == 1
    assert not counters.reply(2, [original(600, 1, 1.0)], more=False, now=11.0)  # too late: not taken


def test_a_block_without_live_mappings_is_forgotten_when_the_sweep_ends():
    counters = swept()
    counters.want(0.0)
    run_slice(counters, 0.0, 1, [original(3, 1, 1.0)])
    run_slice(counters, 0.0, 2, [original(600, 1, 1.0)])
    run_slice(counters, 0.0, 3, [])
    assert counters.next_slice(0.0, next_live) is None and counters.traffic(600) is not None
    LIVE.remove(600)
    LIVE.remove(601)
    try:
        counters.want(0.0)
        run_slice(counters, 1.0, 1, [original(3, 2, 2.0)])
        run_slice(counters, 1.0, 2, [original(5000, 2, 2.0)])
        assert counters.next_slice(1.0, next_live) is None
    finally:
        LIVE[1:1] = [600, 601]
    assert counters.traffic(600) is None and counters.traffic(3).packets == 2


def test_rules_outside_the_block_asked_for_are_ignored():
    counters = FlowCounters(slice_gap_s=0.0)
    counters.want(0.0)
    run_slice(counters, 0.0, 1, [original(3, 1, 1.0), original(600, 5, 1.0),
                                 RuleCounts(cookies.make(RuleKind.BASE), 9, 900, 1.0)])
    assert counters.traffic(3) == Traffic(1, 100, 0.0) and counters.traffic(600) is None


def test_a_reply_with_more_rules_than_a_block_holds_is_given_up():
    counters = FlowCounters(slice_gap_s=0.0, block_bits=2)  # 4 mapping ids, 8 rules at most
    counters.want(0.0)
    due = counters.next_slice(0.0, lambda after: 1 if after < 1 else None)
    counters.slice_sent(7, due, 0.0)
    assert counters.reply(7, [original(1, n, 1.0) for n in range(8)], more=True, now=0.0)
    assert counters.reply(7, [original(2, 1, 1.0)], more=True, now=0.0)
    assert counters.abandoned == 1 and counters.pending_xid is None and counters.traffic(1) is None


def test_a_slice_whose_reply_does_not_decode_is_given_up():
    counters = FlowCounters(slice_gap_s=0.0)
    counters.want(0.0)
    counters.slice_sent(5, counters.next_slice(0.0, next_live), 0.0)
    counters.reply_failed(4)
    assert counters.pending_xid == 5
    counters.reply_failed(5)
    assert counters.pending_xid is None and counters.abandoned == 1
    assert counters.next_slice(0.0, next_live).number == 1


def test_a_reply_in_parts_counts_once_the_last_part_is_in():
    counters = FlowCounters()
    counters.want(0.0)
    counters.slice_sent(9, counters.next_slice(0.0, next_live), 0.0)
    assert counters.reply(9, [original(3, 3, 1.0)], more=True, now=0.1)
    assert counters.traffic(3) is None and counters.slices == 0
    assert counters.reply(9, [reply(3, 2, 1.0)], more=False, now=0.2)
    assert counters.traffic(3) == Traffic(5, 500, 0.2) and counters.slices == 1


def test_parts_of_other_or_cancelled_requests_are_ignored():
    counters = FlowCounters()
    counters.want(0.0)
    counters.slice_sent(9, counters.next_slice(0.0, next_live), 0.0)
    assert not counters.reply(8, [original(3, 3, 1.0)], more=False, now=0.1)
    counters.cancel_poll()
    assert not counters.reply(9, [original(3, 3, 1.0)], more=False, now=0.1)
    assert counters.traffic(3) is None and counters.slices == 0


def test_no_requests_unless_someone_read_the_counters_lately():
    counters = FlowCounters()
    assert counters.next_slice(0.0, next_live) is None
    counters.want(1.0)
    assert counters.next_slice(1.0, next_live) is not None
    assert counters.next_slice(1.0 + DEMAND_S, next_live) is None and not counters.wanted(1.0 + DEMAND_S)


def test_an_empty_table_sweeps_without_a_request():
    swept = []
    counters = FlowCounters(on_sweep=swept.append)
    counters.want(0.0)
    assert counters.next_slice(0.0, lambda after: None) is None
    assert counters.polls == 1 and swept == [0.0]


def test_a_block_cookie_selects_both_rules_of_its_mappings_and_nothing_else():
    cookie, mask = cookies.mapping_block(3, 9)
    selected = {kind: [i for i in range(0, 4 * 512) if cookies.make(kind, i) & mask == cookie]
                for kind in RuleKind}
    assert selected[RuleKind.ORIGINAL] == selected[RuleKind.REPLY] == list(range(3 * 512, 4 * 512))
    assert all(not ids for kind, ids in selected.items() if kind not in (RuleKind.ORIGINAL, RuleKind.REPLY))
    assert (0x1234 << 48 | 2 << 40 | 3 * 512) & mask != cookie  # another app's rule
