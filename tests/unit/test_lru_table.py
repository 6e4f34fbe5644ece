"""The LRU store itself: recency per mapping, the touch shortcut, evictions in pairs."""

from __future__ import annotations

from ryu_nat.core.addresses import Proto
from ryu_nat.core.lru_table import LruNatTable, _MappingLRU
from ryu_nat.core.table import Mapping, MappingKind, RemovalReason


def mapping(i: int) -> Mapping:
    return Mapping(i, Proto.UDP, original=(i << 64) | 1, reply=(i << 64) | 2, kind=MappingKind.NAT, now=0.0,
                   idle_timeout_s=60.0)


def test_touch_is_what_a_cache_hit_does_to_the_order():
    evicted: dict[str, list[int]] = {"touch": [], "hit": []}
    by_touch = _MappingLRU(3, lambda m: evicted["touch"].append(m.id))
    by_hit = _MappingLRU(3, lambda m: evicted["hit"].append(m.id))
    for cache in (by_touch, by_hit):
        for i in (1, 2, 3):
            cache[i] = mapping(i)
    by_touch.touch(1)
    by_hit[1]  # noqa: B018
    for cache in (by_touch, by_hit):
        for i in (4, 5, 6):
            cache[i] = mapping(i)
    assert evicted["touch"] == evicted["hit"] == [2, 3, 1]


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
