"""The LRU store itself: recency per mapping, the touch shortcut, evictions in pairs."""

from __future__ import annotations

from ipaddress import IPv4Address

import cachetools
import pytest

from ryu_nat.core.addresses import Proto
from ryu_nat.core.lru_table import LruNatTable, _MappingLRU
from ryu_nat.core.table import Mapping, MappingKind, RemovalReason


def mapping(i: int) -> Mapping:
    return Mapping(i, Proto.UDP, original=(i << 64) | 1, reply=(i << 64) | 2, kind=MappingKind.NAT, now=0.0,
                   idle_timeout_s=60.0)


class _RecordingLRU(cachetools.LRUCache[int, Mapping]):
    """cachetools' own LRU, as the reference: which keys it evicts, in order."""

    def __init__(self, maxsize: int, evicted: list[int]) -> None:
        super().__init__(maxsize)
        self.evicted = evicted

    def popitem(self) -> tuple[int, Mapping]:
        key, value = super().popitem()
        self.evicted.append(key)
        return key, value


def test_touch_is_what_a_cache_hit_does_to_the_order():
    evicted: dict[str, list[int]] = {"touch": [], "hit": []}
    by_touch = _MappingLRU(3, lambda m: evicted["touch"].append(m.id))
    by_hit = _RecordingLRU(3, evicted["hit"])
    for cache in (by_touch, by_hit):
        for i in (1, 2, 3):
            cache[i] = mapping(i)
    by_touch.touch(1)
    assert by_hit[1].id == 1  # a hit in cachetools' LRUCache
    for cache in (by_touch, by_hit):
        for i in (4, 5, 6):
            cache[i] = mapping(i)
    assert evicted["touch"] == evicted["hit"] == [2, 3, 1]


def test_delete_and_clear_keep_the_order_and_the_bound_in_step():
    evicted: list[int] = []
    cache = _MappingLRU(2, lambda m: evicted.append(m.id))
    cache[1], cache[2] = mapping(1), mapping(2)
    del cache[1]
    cache[3] = mapping(3)
    assert evicted == [] and sorted(cache) == [2, 3]
    cache.clear()
    cache[4], cache[5], cache[6] = mapping(4), mapping(5), mapping(6)
    assert evicted == [4] and sorted(cache) == [5, 6]


def test_a_reply_hit_keeps_the_mapping_from_eviction():
    removed = []
    table = LruNatTable({Proto.TCP: 2, Proto.UDP: 2, Proto.ICMP: 1},
                        listener=lambda m, reason: removed.append((m.id, reason)))
    first, second = mapping(1), mapping(2)
    assert table.insert(first) is None and table.insert(second) is None
    assert table.lookup(Proto.UDP, first.reply) is first
    assert table.insert(mapping(3)) is None
    assert removed == [(2, RemovalReason.EVICTED)]
    assert table.lookup(Proto.UDP, second.original) is None and table.lookup(Proto.UDP, second.reply) is None


def test_overlap_on_either_channel_adds_nothing():
    table = LruNatTable({p: 4 for p in Proto})
    first = mapping(1)
    table.insert(first)
    clash = Mapping(9, Proto.UDP, original=first.reply, reply=(9 << 64), kind=MappingKind.NAT, now=0.0,
                    idle_timeout_s=60.0)
    assert table.insert(clash).value == "overlap"
    assert table.count(Proto.UDP) == 1 and table.lookup(Proto.UDP, 9 << 64) is None


def of_host(i: int, host: int, proto: Proto = Proto.UDP) -> Mapping:
    return Mapping(i, proto, original=(host << 64) | (i << 16), reply=(i << 64) | 2, kind=MappingKind.NAT,
                   now=0.0, idle_timeout_s=60.0)


def walk(table: LruNatTable, limit: int, **filters: object) -> list[list[int]]:
    """Every page from the start, as lists of ids."""
    pages, after = [], -1
    while True:
        page = table.page(after, limit, **filters)
        pages.append([m.id for m in page.mappings])
        if page.next_after is None:
            return pages
        after = page.next_after


def test_pages_follow_id_order_across_protocols_blocks_and_removals():
    table = LruNatTable({p: 5000 for p in Proto})
    protos = [Proto.TCP, Proto.UDP, Proto.ICMP]
    made = [of_host(i, 10, protos[i % 3]) for i in range(1, 2000)]
    for m in made:
        table.insert(m)
    for m in made[::3] + made[500:1500]:  # holes, and whole blocks of 512 ids emptied
        table.delete(m)
    live = sorted(m.id for m in table.mappings())
    assert sum(walk(table, 1000), []) == live and [len(p) for p in walk(table, 1000)] == [len(live)]
    assert sum(walk(table, 7), []) == live and all(len(p) == 7 for p in walk(table, 7)[:-1])
    assert sum(walk(table, 50, proto=Proto.ICMP), []) == [i for i in live if i % 3 == 2]
    assert table.page(live[-1], 10).mappings == () and table.page(live[-1], 10).next_after is None
    middle = live[len(live) // 2]
    assert [m.id for m in table.page(middle, 3).mappings] == live[live.index(middle) + 1:][:3]
    assert [m.id for m in table.page(1050, 2).mappings] == [i for i in live if i > 1050][:2]  # from inside a hole


def test_a_page_of_exactly_what_is_left_says_nothing_follows():
    table = LruNatTable({p: 10 for p in Proto})
    for i in (1, 2, 3):
        table.insert(of_host(i, 10))
    first = table.page(-1, 2)
    assert ([m.id for m in first.mappings], first.next_after) == ([1, 2], 2)
    last = table.page(2, 1)
    assert ([m.id for m in last.mappings], last.next_after) == ([3], None)


def test_pages_of_one_host_and_protocol():
    table = LruNatTable({p: 100 for p in Proto})
    for i in range(1, 41):
        table.insert(of_host(i, 10 + i % 2, Proto.TCP if i % 4 < 2 else Proto.UDP))
    host = IPv4Address(10)
    expected = [i for i in range(1, 41) if i % 2 == 0]
    assert sum(walk(table, 3, host=host), []) == expected
    assert sum(walk(table, 4, host=host, proto=Proto.UDP), []) == [i for i in expected if i % 4 >= 2]
    assert table.matching(host=host) == 20 and table.matching(Proto.UDP, host) == 10
    assert table.matching(Proto.TCP) == 20 and table.matching() == 40
    assert table.page(-1, 5, host=IPv4Address(99)) == table.page(-1, 5, proto=Proto.ICMP)
    assert table.page(-1, 5, proto=Proto.ICMP).mappings == ()


def test_evicted_and_reset_mappings_leave_the_pages():
    table = LruNatTable({Proto.TCP: 2, Proto.UDP: 3, Proto.ICMP: 1})
    for i in range(1, 6):
        table.insert(of_host(i, 10))
    assert sum(walk(table, 10), []) == [3, 4, 5]
    table.reset()
    assert walk(table, 10) == [[]]
    table.insert(of_host(6, 10))
    assert walk(table, 10) == [[6]]


def test_ids_must_grow_and_pages_hold_at_least_one():
    table = LruNatTable({p: 10 for p in Proto})
    table.insert(of_host(5, 10))
    with pytest.raises(ValueError, match="mapping id 4 is not above 5"):
        table.insert(of_host(4, 11))
    with pytest.raises(ValueError, match="at least one"):
        table.page(-1, 0)
