"""The table on ``cachetools.LRUCache``: bounded per protocol, pairs live and die together.

Each protocol has a plain dict from both channels of every mapping to the
mapping, and an LRU cache of the mappings (keyed by original channel) that keeps
their recency and the bound. A lookup in either direction makes the mapping the
most recently used; when the cache is full the least recently used mapping goes,
both channels at once (mirage-nat's ``Mirage_nat_lru`` evicts entry pairs). A per-host index makes
``remove_connections`` proportional to that host's mappings, deadline
buckets make ``expire`` proportional to what is due, and an id index makes a
page of the table proportional to the page, none of them to the table size.
No I/O.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import operator
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping as MappingOf
from ipaddress import IPv4Address
from typing import Literal

import cachetools
from cachetools import Cache

from ryu_nat.core.addresses import SOURCE_SHIFT, Proto, pack_key, source_of
from ryu_nat.core.table import AddError, FreedPorts, Mapping, MappingKind, Page, RemovalListener, RemovalReason

_COMPACT_SLACK = 1024
_ID_BLOCK_BITS = 9  # the id index keeps mappings in blocks of 512 consecutive ids
_mapping_id = operator.attrgetter("id")


class _MappingLRU(cachetools.Cache[int, Mapping]):
    """Original channel key -> Mapping, least recently used first; reports evictions.

    cachetools keeps the bound (its ``__setitem__`` calls :meth:`popitem` when
    full); the recency order is ours, so that :meth:`touch` is public and costs
    one ``move_to_end``. ``LRUCache``'s own order is private, and a hit through
    its public ``__getitem__`` measured 0.7 µs more per lookup at 1M mappings
    (bench/README.md, "The LRU store").
    """

    def __init__(self, max_mappings: int, on_evict: Callable[[Mapping], None]) -> None:
        if max_mappings < 1:
            raise ValueError("a table needs room for at least one mapping")
        super().__init__(max_mappings)
        self._order: OrderedDict[int, None] = OrderedDict()
        self._on_evict = on_evict

    def __setitem__(self, key: int, mapping: Mapping) -> None:
        Cache.__setitem__(self, key, mapping)  # may evict: popitem() first
        order = self._order
        if key in order:
            order.move_to_end(key)
        else:
            order[key] = None

    def __delitem__(self, key: int) -> None:
        Cache.__delitem__(self, key)
        del self._order[key]

    def popitem(self) -> tuple[int, Mapping]:
        """Remove the least recently used mapping (cachetools calls this when full) and report it."""
        try:
            key = next(iter(self._order))
        except StopIteration:
            raise KeyError("the table is empty") from None
        mapping = Cache.__getitem__(self, key)
        del self[key]
        self._on_evict(mapping)
        return key, mapping

    def clear(self) -> None:
        Cache.clear(self)
        self._order.clear()

    def touch(self, key: int) -> None:
        """Make ``key`` the most recently used."""
        self._order.move_to_end(key)


class _IdIndex:
    """One protocol's live mappings in id order, to page through without sorting.

    Ids only grow, so each block of 512 consecutive ids is a dict whose insertion
    order is id order, and the numbers of the blocks in use form a sorted list
    (appended to, bisected): adding and removing cost O(1), except when a block
    comes or goes (a C-speed list move, once per 512 ids); finding where a page
    starts costs a bisect and at most one block.
    """

    __slots__ = ("blocks", "numbers")

    def __init__(self) -> None:
        self.blocks: dict[int, dict[int, Mapping]] = {}
        self.numbers: list[int] = []

    def add(self, mapping: Mapping) -> None:
        number = mapping.id >> _ID_BLOCK_BITS
        block = self.blocks.get(number)
        if block is None:
            block = self.blocks[number] = {}
            self.numbers.append(number)  # ids grow: a new block comes after every other
        block[mapping.id] = mapping

    def discard(self, mapping: Mapping) -> None:
        number = mapping.id >> _ID_BLOCK_BITS
        block = self.blocks[number]
        del block[mapping.id]
        if not block:
            del self.blocks[number]
            del self.numbers[bisect.bisect_left(self.numbers, number)]

    def clear(self) -> None:
        self.blocks.clear()
        self.numbers.clear()

    def after(self, after: int) -> Iterator[Mapping]:
        """Live mappings with ids above ``after``, lowest first (the index must not change meanwhile)."""
        first = max(after + 1, 0)
        numbers, blocks = self.numbers, self.blocks
        at = bisect.bisect_left(numbers, first >> _ID_BLOCK_BITS)
        if at < len(numbers) and numbers[at] == first >> _ID_BLOCK_BITS:
            yield from (mapping for mapping_id, mapping in blocks[numbers[at]].items() if mapping_id >= first)
            at += 1
        for number in itertools.islice(numbers, at, None):
            yield from blocks[number].values()


class _SubTable:
    """One protocol: which mapping owns each channel, how recently each mapping was used, and id order.

    ``channels`` (a plain dict) answers every lookup, for both channels of every
    mapping; ``recency`` (the cachetools LRU, keyed by original channel) keeps the
    order and the bound. A packet in either direction makes its mapping the most
    recently used; an eviction removes both channels at once. ``ids`` pages.
    """

    __slots__ = ("channels", "recency", "ids")

    def __init__(self, max_mappings: int, on_evict: Callable[[Mapping], None]) -> None:
        self.channels: dict[int, Mapping] = {}
        self.recency = _MappingLRU(max_mappings, on_evict)
        self.ids = _IdIndex()

    def owns(self, mapping: Mapping) -> bool:
        """True while ``mapping`` is in this table (not one removed, nor another on its channel)."""
        return self.channels.get(mapping.original) is mapping

    def live(self) -> list[Mapping]:
        return list(self.recency.values())


class LruNatTable:
    """A :class:`~ryu_nat.core.table.NatTable` bounded per protocol, least recently used out first."""

    def __init__(self, sizes: MappingOf[Proto, int], listener: RemovalListener | None = None) -> None:
        self.listener = listener
        self._tables = {proto: _SubTable(sizes[proto], self._evicted) for proto in Proto}
        self._by_host: dict[int, dict[Mapping, None]] = {}
        self._clients: dict[Proto, dict[int, int]] = {proto: {} for proto in Proto}  # host -> mappings it opened
        self._buckets: dict[int, list[Mapping]] = {}
        self._bucket_heap: list[int] = []
        self._bucket_entries = 0
        self._timed_mappings = 0
        self._last_id = -1

    # --- the NatTable interface ---------------------------------------------------

    def lookup(self, proto: Proto, key: int) -> Mapping | None:
        table = self._tables[proto]
        mapping = table.channels.get(key)
        if mapping is not None:
            table.recency.touch(mapping.original)  # a hit in either direction makes it recent
        return mapping

    def peek(self, proto: Proto, key: int) -> Mapping | None:
        return self._tables[proto].channels.get(key)

    @property
    def last_id(self) -> int:
        return self._last_id

    def insert(self, mapping: Mapping) -> Literal[AddError.OVERLAP] | None:
        table = self._tables[mapping.proto]
        original, reply = mapping.original, mapping.reply
        channels = table.channels
        if original in channels or reply in channels or original == reply:
            return AddError.OVERLAP
        if mapping.id <= self._last_id:
            raise ValueError(f"mapping id {mapping.id} is not above {self._last_id}, the last one added")
        self._last_id = mapping.id
        table.recency[original] = mapping  # may evict the least recently used mapping first
        channels[original] = mapping
        channels[reply] = mapping
        table.ids.add(mapping)
        by_host = self._by_host
        for host in mapping.private_hosts:
            of_host = by_host.get(host)
            if of_host is None:
                by_host[host] = {mapping: None}
            else:
                of_host[mapping] = None
        if mapping.kind is not MappingKind.REDIRECT:
            clients = self._clients[mapping.proto]
            client = original >> SOURCE_SHIFT
            clients[client] = clients.get(client, 0) + 1
        if mapping.idle_timeout_s != math.inf:
            self._timed_mappings += 1
            self._schedule(mapping)
        return None

    def delete(self, mapping: Mapping, reason: RemovalReason = RemovalReason.DELETED) -> bool:
        table = self._tables[mapping.proto]
        if not table.owns(mapping):
            return False
        del table.recency[mapping.original]
        del table.channels[mapping.original]
        del table.channels[mapping.reply]
        table.ids.discard(mapping)
        self._removed(mapping, reason)
        return True

    def remove_connections(self, host: IPv4Address) -> FreedPorts:
        removed = [mapping for mapping in list(self._by_host.get(int(host), ()))
                   if self.delete(mapping, RemovalReason.HOST_REMOVED)]
        freed: dict[Proto, set[int]] = {proto: set() for proto in Proto}
        for mapping in removed:
            port = mapping.allocated_port
            if port is not None and not self._client_holds_port(mapping):
                freed[mapping.proto].add(port)
        return FreedPorts(tcp=frozenset(freed[Proto.TCP]), udp=frozenset(freed[Proto.UDP]),
                          icmp=frozenset(freed[Proto.ICMP]))

    def is_port_free(self, proto: Proto, src: IPv4Address, dst: IPv4Address,
                     src_port: int, dst_port: int) -> bool:
        return pack_key(int(src), int(dst), src_port, dst_port) not in self._tables[proto].channels

    def expire(self, now: float) -> int:
        removed = 0
        heap = self._bucket_heap
        while heap and heap[0] <= now:
            bucket = heapq.heappop(heap)
            entries = self._buckets.pop(bucket)
            self._bucket_entries -= len(entries)
            not_yet: list[Mapping] = []
            for mapping in entries:
                if not self._tables[mapping.proto].owns(mapping) or not mapping.expires_by_itself:
                    continue  # removed since it was scheduled, or no longer timed here
                if mapping.deadline <= now:
                    self.delete(mapping, RemovalReason.EXPIRED)
                    removed += 1
                elif int(mapping.deadline) == bucket:
                    not_yet.append(mapping)
                else:
                    self._schedule(mapping)  # used since it was scheduled
            if not_yet:
                self._buckets[bucket] = not_yet
                self._bucket_entries += len(not_yet)
                heapq.heappush(heap, bucket)
                break  # this bucket is only partly due; later ones are not due at all
        return removed

    def reset(self) -> None:
        doomed = [mapping for table in self._tables.values() for mapping in table.live()]
        for table in self._tables.values():
            table.recency.clear()
            table.channels.clear()
            table.ids.clear()
        self._by_host.clear()
        for clients in self._clients.values():
            clients.clear()
        self._buckets.clear()
        self._bucket_heap.clear()
        self._bucket_entries = self._timed_mappings = 0
        for mapping in doomed:
            self._notify(mapping, RemovalReason.RESET)

    def count(self, proto: Proto) -> int:
        return len(self._tables[proto].recency)

    def capacity(self, proto: Proto) -> int:
        return int(self._tables[proto].recency.maxsize)

    def mappings(self, proto: Proto | None = None, host: IPv4Address | None = None) -> Iterator[Mapping]:
        if host is not None:
            for mapping in list(self._by_host.get(int(host), ())):
                if proto is None or mapping.proto is proto:
                    yield mapping
            return
        for table_proto, table in self._tables.items():
            if proto is None or table_proto is proto:
                yield from table.live()

    def retime(self, mapping: Mapping, idle_timeout_s: float) -> None:
        if not self._tables[mapping.proto].owns(mapping):
            return
        was_timed, old_deadline = mapping.expires_by_itself, mapping.deadline
        mapping.idle_timeout_s = idle_timeout_s
        if not mapping.expires_by_itself:
            if was_timed:
                self._timed_mappings -= 1  # its bucket entries are skipped when due
            return
        if not was_timed:
            self._timed_mappings += 1
            self._schedule(mapping)
        elif mapping.deadline < old_deadline:
            self._schedule(mapping)  # the entry at the old deadline finds it gone, or moves it, when due

    def clients(self, proto: Proto, host: int) -> int:
        return self._clients[proto].get(host, 0)

    def oldest_of_client(self, proto: Proto, host: int) -> Mapping | None:
        for mapping in self._by_host.get(host, ()):  # insertion order is id order: oldest first
            if mapping.proto is proto and mapping.kind is not MappingKind.REDIRECT and mapping.initiator == host:
                return mapping
        return None

    def page(self, after: int, limit: int, proto: Proto | None = None, host: IPv4Address | None = None) -> Page:
        if limit < 1:
            raise ValueError(f"a page holds at least one mapping, not {limit}")
        found: list[Mapping]
        if host is not None:
            # Insertion order is id order: a copy of the host's index (C speed) is sorted by id.
            of_host = list(self._by_host.get(int(host), ()))
            rest: Iterable[Mapping] = itertools.islice(of_host, bisect.bisect_right(of_host, after, key=_mapping_id),
                                                       None)
            if proto is not None:
                rest = (mapping for mapping in rest if mapping.proto is proto)
            found = list(itertools.islice(rest, limit + 1))
        else:
            protos = list(Proto) if proto is None else [proto]
            found = [mapping for each in protos
                     for mapping in itertools.islice(self._tables[each].ids.after(after), limit + 1)]
            if len(protos) > 1:
                found.sort(key=_mapping_id)  # a merge of sorted runs
                del found[limit + 1:]
        if len(found) > limit:
            return Page(tuple(found[:limit]), found[limit - 1].id)
        return Page(tuple(found), None)

    def matching(self, proto: Proto | None = None, host: IPv4Address | None = None) -> int:
        if host is None:
            return sum(self.count(each) for each in Proto) if proto is None else self.count(proto)
        of_host = self._by_host.get(int(host), {})
        if proto is None:
            return len(of_host)
        return sum(1 for mapping in of_host if mapping.proto is proto)

    # --- internals ----------------------------------------------------------------------

    def _client_holds_port(self, removed: Mapping) -> bool:
        """True if the private client of ``removed`` (a NAT or hairpin mapping) still has a mapping
        of that protocol, and so still holds its public port (one port per client, RFC 4787 REQ-1).

        A hairpin client outlives the removal of its server's connections.
        """
        client = removed.original
        client_port = client >> 16 & 0xFFFF
        for mapping in self._by_host.get(source_of(client), ()):
            if (mapping.proto is removed.proto and mapping.kind is not MappingKind.REDIRECT
                    and source_of(mapping.original) == source_of(client)
                    and mapping.original >> 16 & 0xFFFF == client_port):
                return True
        return False

    def _schedule(self, mapping: Mapping) -> None:
        bucket = int(mapping.last_used + mapping.idle_timeout_s)
        entries = self._buckets.get(bucket)
        if entries is None:
            self._buckets[bucket] = [mapping]
            heapq.heappush(self._bucket_heap, bucket)
        else:
            entries.append(mapping)
        self._bucket_entries += 1

    def _evicted(self, mapping: Mapping) -> None:
        """The LRU dropped ``mapping``'s original channel: its reply channel goes too."""
        table = self._tables[mapping.proto]
        del table.channels[mapping.original]
        del table.channels[mapping.reply]
        table.ids.discard(mapping)
        self._removed(mapping, RemovalReason.EVICTED)

    def _removed(self, mapping: Mapping, reason: RemovalReason) -> None:
        for host in mapping.private_hosts:
            of_host = self._by_host.get(host)
            if of_host is not None:
                of_host.pop(mapping, None)
                if not of_host:
                    del self._by_host[host]
        if mapping.kind is not MappingKind.REDIRECT:
            clients = self._clients[mapping.proto]
            client = mapping.original >> SOURCE_SHIFT
            left = clients[client] - 1
            if left:
                clients[client] = left
            else:
                del clients[client]
        if mapping.expires_by_itself:
            self._timed_mappings -= 1
            if self._bucket_entries > 2 * self._timed_mappings + _COMPACT_SLACK:
                self._compact_buckets()
        self._notify(mapping, reason)

    def _compact_buckets(self) -> None:
        """Drop bucket entries of removed mappings (evictions leave them behind)."""
        self._buckets.clear()
        self._bucket_heap.clear()
        self._bucket_entries = 0
        for table in self._tables.values():
            for mapping in table.live():
                if mapping.expires_by_itself:
                    self._schedule(mapping)

    def _notify(self, mapping: Mapping, reason: RemovalReason) -> None:
        if self.listener is not None:
            self.listener(mapping, reason)
