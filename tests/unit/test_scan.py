"""The search of our cookies on the switch: every rule of ours is read exactly once, in slices of bounded
size, pairs together and in id order, at a cost of few requests; lost or lying replies end as unreadable."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.flowentries import SwitchRule
from ryu_nat.openflow.scan import (DEPTH, RETRIES, SLICE_LIMIT, SLICE_RULES, Ask, Empty, Node, Request, Scan, Slice,
                                   Unreadable)


def rule(cookie: int) -> SwitchRule:
    return SwitchRule(cookie, 200, 300, 0, 1, 0.0, 0, 0, None, None)


def mapping_cookies(ids) -> list[int]:
    return [cookies.make(kind, i) for i in ids for kind in (RuleKind.ORIGINAL, RuleKind.REPLY)]


def run(scan: Scan, on_switch: list[int], now: float = 0.0) -> list:
    """Answer every request from ``on_switch`` (cookies) until the scan is done; its results."""
    results, xid = [], 0
    while (request := scan.next_request(now)) is not None:
        xid += 1
        scan.sent(request, xid, now)
        selected = [c for c in on_switch if c & request.node.mask == request.node.cookie]
        if request.ask is Ask.COUNT:
            assert scan.counted(xid, len(selected))
        else:
            half = len(selected) // 2
            assert scan.part(xid, [rule(c) for c in selected[:half]], more=True)
            assert scan.part(xid, [rule(c) for c in selected[half:]], more=False)
        results += scan.take_results()
    assert scan.done
    return results + scan.take_results()


def slices(results) -> list[Slice]:
    return [r for r in results if isinstance(r, Slice)]


def test_a_dense_table_is_read_in_bounded_slices_in_id_order_with_pairs_together():
    base = [cookies.make(RuleKind.BASE)] * 5 + [cookies.make(RuleKind.L2)] * 3
    on_switch = base + mapping_cookies(range(1, 5001))
    scan = Scan()
    results = run(scan, on_switch)
    read = [r.cookie for s in slices(results) for r in s.rules]
    assert sorted(read) == sorted(on_switch) and len(read) == len(on_switch)
    assert all(len(s.rules) <= SLICE_RULES for s in slices(results))
    ids = [cookies.mapping_id_of(c) for c in read if cookies.mapping_id_of(c)]
    assert ids == sorted(ids)  # slices come in id order (pairs may come in any order inside one)
    for s in slices(results):
        in_slice = {cookies.mapping_id_of(r.cookie) for r in s.rules} - {None}
        assert all(sum(cookies.mapping_id_of(r.cookie) == i for r in s.rules) == 2 for i in in_slice)
    assert scan.requests < 60 and scan.rules_read == len(on_switch)


def test_sparse_ids_cost_counts_only_where_rules_are():
    ids = [1, 2**20 + 5, 2**33 + 7, 2**39 + 1]
    scan = Scan()
    results = run(scan, mapping_cookies(ids))
    assert [cookies.mapping_id_of(r.cookie) for s in slices(results) for r in s.rules][::2] == ids or \
        sorted({cookies.mapping_id_of(r.cookie) for s in slices(results) for r in s.rules}) == ids
    assert scan.requests < 40


def test_rules_of_unknown_kinds_and_of_id_zero_are_found_too():
    strange = [cookies.OURS | 0x80 << 40 | 5, cookies.OURS | 0x02 << 40, cookies.OURS | 0x77 << 40 | 2**39]
    results = run(Scan(), strange + mapping_cookies([3]))
    assert sorted(r.cookie for s in slices(results) for r in s.rules) == sorted(strange + mapping_cookies([3]))


def test_an_empty_switch_costs_one_count():
    scan = Scan()
    assert run(scan, []) == [Empty(Node())] and scan.requests == 1


def test_a_crowded_range_is_split_even_with_no_rules_so_each_piece_is_small_on_both_sides():
    table = set(range(1, 3001))  # the caller holds these ids; the switch has no rule of theirs

    def crowded(first: int, last: int) -> bool:
        return sum(first <= i <= last for i in table) > 512

    scan = Scan(crowded)
    results = run(scan, mapping_cookies([7]))
    mapping_pieces = [r.node.mapping_ids for r in results if r.node.mapping_ids is not None]
    assert all(sum(a <= i <= b for i in table) <= 512 for a, b in mapping_pieces)
    covered = sorted(i for i in table if any(a <= i <= b for a, b in mapping_pieces))
    assert covered == sorted(table)


def test_an_unanswered_request_is_asked_again_then_its_node_is_unreadable():
    scan = Scan(timeout_s=5.0)
    first = scan.next_request(0.0)
    scan.sent(first, 1, 0.0)
    assert scan.next_request(1.0) is None
    for attempt in range(RETRIES):
        again = scan.next_request(10.0 * (attempt + 1))
        assert again == first
        scan.sent(again, attempt + 2, 10.0 * (attempt + 1))
    assert not scan.counted(1, 5)  # a late answer to an earlier xid is not taken
    assert scan.next_request(100.0) is None and scan.done
    assert scan.take_results() == [Unreadable(Node())]


def test_an_undecodable_or_oversized_slice_is_unreadable():
    scan = Scan()
    request = scan.next_request(0.0)
    scan.sent(request, 1, 0.0)
    scan.counted(1, 10)
    request = scan.next_request(0.0)
    assert request == Request(Ask.RULES, Node())
    scan.sent(request, 2, 0.0)
    assert not scan.part(1, [], more=False)
    scan.part(2, [rule(cookies.make(RuleKind.BASE))] * (SLICE_LIMIT + 1), more=True)
    assert scan.take_results() == [Unreadable(Node())] and scan.done
    other = Scan()
    other.sent(other.next_request(0.0), 1, 0.0)
    other.failed(1)
    assert other.take_results() == [Unreadable(Node())] and other.done


def test_one_cookie_with_more_rules_than_a_slice_is_unreadable_not_split_forever():
    cookie = cookies.make(RuleKind.ORIGINAL, 9)
    results = run(Scan(), [cookie] * (SLICE_LIMIT + 1))
    [unreadable] = [r for r in results if isinstance(r, Unreadable)]
    assert unreadable.node.depth == DEPTH and unreadable.node.mapping_ids == (9, 9)


@given(st.integers(0, 2**47 - 1), st.integers(0, DEPTH), st.integers(0, 2**48 - 1))
def test_a_node_selects_exactly_the_cookies_under_it(value, depth, low):
    node = Node(value & ((1 << depth) - 1), depth)
    cookie = cookies.OURS | low
    key = (low >> 41) << 40 | (low & (2**40 - 1))  # the searched bits, in order
    assert (cookie & node.mask == node.cookie) == (key >> (DEPTH - depth) == node.value)
    ids = node.mapping_ids
    if ids is not None and cookie & node.mask == node.cookie and cookies.mapping_id_of(cookie) is not None:
        assert ids[0] <= cookies.mapping_id_of(cookie) <= ids[1]
