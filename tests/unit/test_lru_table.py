"""The LRU store itself: recency per mapping, the touch shortcut, evictions in pairs."""

from __future__ import annotations

import cachetools

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
