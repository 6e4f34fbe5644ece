"""Table operations at 10k, 100k and 1M live mappings, beside the same-process floor.

The floor is what a bare ``cachetools.LRUCache`` (and a plain dict) costs for the
same work in the same process, at the same number of entries: two sets per
mapping added, one get per lookup, two pops per mapping removed. Each figure is
nanoseconds per operation; contender and floor alternate, repetition by repetition.

Tables are filled as a NAT with endpoint-independent mapping fills up: each
private endpoint (ip, port) holds one public port for all its remotes, and one
public address has ~64k ports, so a 1M table is 62,500 endpoints x 16 remotes
(25 ports per private host, so one host holds 400 mappings at every size).
Fill datagrams are built directly (no parsing); ``translate`` gets real bytes,
built once for a few thousand flows.
"""

from __future__ import annotations

import argparse
import gc
import random
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import cachetools

from common import Row, Summary, Target, faster, paired
from ryu_nat.core.addresses import Endpoint, Proto, pack_key
from ryu_nat.core.checksum import checksum
from ryu_nat.core.lru_table import LruNatTable
from ryu_nat.core.nat import Nat, Redirect, SourceNat, Translated
from ryu_nat.core.packet import Datagram, parse_ipv4
from ryu_nat.core.ports import PortAllocator, PortRange
from ryu_nat.core.table import Mapping

SIZES = (10_000, 100_000, 1_000_000)
SMOKE_SIZES = (800, 3_200)
REMOTES = 16  # remotes per private endpoint
PORTS_PER_HOST = 25  # private endpoints per private host: 400 mappings per host
BATCH = 20_000  # operations per timed batch
SMOKE_BATCH = 400
TRANSLATE_FLOWS = 2_000
IDLE = 1_000  # mappings made idle for "expire, k idle"
EXPIRE_CALLS = 2_000
NEW_ENDPOINT_LIMIT = 32_000  # random ports find free ones quickly while half the range is free
READD_AT = 200.0  # past the 120 s port quarantine of the removal at t < 10
PUBLIC = int(IPv4Address("192.168.3.1"))
PRIVATE_BASE = int(IPv4Address("10.0.0.0"))
REMOTE_BASE = int(IPv4Address("198.51.100.0"))
CLIENT_BASE = int(IPv4Address("203.0.113.0"))
REDIRECT_PORT = 8080
REDIRECT_TARGET = Endpoint(IPv4Address("10.200.0.2"), 80)
FIRST_SPORT = 20_000
REMOTE_PORT = 53
UDP = int(Proto.UDP)


def private_endpoint(index: int) -> tuple[int, int]:
    """(ip, port) of private endpoint ``index``: host index // 25 (10.0.0.2 on), port 20000 + index % 25."""
    host, port = divmod(index, PORTS_PER_HOST)
    return PRIVATE_BASE + 2 + host, FIRST_SPORT + port


def remote(index: int) -> int:
    return REMOTE_BASE + 1 + index


def datagram(src: int, sport: int, dst: int, dport: int) -> Datagram:
    """A UDP datagram's parsed view without bytes: all that ``Nat.add`` reads."""
    return Datagram(raw=b"", header_len=20, proto=UDP, src=src, dst=dst, ttl=64, ident=0,
                    more_fragments=False, frag_offset=0, src_port=sport, dst_port=dport)


def udp_bytes(src: int, sport: int, dst: int, dport: int, payload: bytes = b"benchmark") -> bytes:
    """A real IPv4/UDP datagram with correct checksums."""
    length = 8 + len(payload)
    header = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + length, 0x1234, 0, 64, UDP, 0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    pseudo = struct.pack("!IIBBH", src, dst, 0, UDP, length)
    segment = struct.pack("!HHHH", sport, dport, length, 0) + payload
    csum = checksum(pseudo + segment) or 0xFFFF
    return header + segment[:6] + struct.pack("!H", csum) + segment[8:]


class PortFeed:
    """A port generator for fills: free ports in order, and those given back first.

    Random candidates (the default) find almost nothing free when 62,500 of
    64,512 ports are taken; the benchmark is about the table, not that search.
    """

    def __init__(self) -> None:
        self._next = 1024
        self._returned: list[int] = []

    def __call__(self, proto: Proto, private_port: int) -> int:
        if self._returned:
            return self._returned.pop()
        port, self._next = self._next, self._next + 1
        return port

    def give_back(self, ports: frozenset[int]) -> None:
        self._returned.extend(ports)


@dataclass
class Filled:
    """A NAT holding ``size`` mappings and how it was filled."""

    nat: Nat
    size: int
    feed: PortFeed
    endpoints: int


def fill(size: int, spare: int) -> Filled:
    """A NAT with ``size`` live UDP mappings and room for ``spare`` more."""
    table = LruNatTable({Proto.TCP: 1024, Proto.UDP: size + spare, Proto.ICMP: 1024})
    nat = Nat(table, IPv4Address(PUBLIC), PortAllocator(PortRange(1024, 65535), random.Random(7)))
    feed = PortFeed()
    endpoints = -(-size // REMOTES)
    added = 0
    for index in range(endpoints):
        src, sport = private_endpoint(index)
        for r in range(min(REMOTES, size - added)):
            result = nat.add(datagram(src, sport, remote(r), REMOTE_PORT), SourceNat(), 0.0, port_generator=feed)
            assert isinstance(result, Mapping), result
            added += 1
    return Filled(nat, size, feed, endpoints)


def floor_fill(size: int) -> tuple[cachetools.LRUCache, dict[int, int]]:
    """An LRUCache and a dict with two int keys per mapping, as many as the NAT holds."""
    lru: cachetools.LRUCache = cachetools.LRUCache(2 * size + 4 * BATCH)
    plain: dict[int, int] = {}
    for i in range(size):
        a, b = _floor_keys(i)
        lru[a] = b
        lru[b] = a
        plain[a] = b
        plain[b] = a
    return lru, plain


def _floor_keys(i: int) -> tuple[int, int]:
    src, sport = private_endpoint(i // REMOTES)
    dst = remote(i % REMOTES)
    return pack_key(src, dst, sport, REMOTE_PORT), pack_key(dst, PUBLIC, REMOTE_PORT, 1024 + i // REMOTES)


def _time_ns(work: Callable[[], object], ops: int) -> float:
    """Nanoseconds per operation of one call of ``work`` doing ``ops`` operations."""
    start = time.perf_counter_ns()
    work()
    return (time.perf_counter_ns() - start) / ops


class Measures:
    """Per-operation times, by (figure, size), over the repetitions."""

    def __init__(self) -> None:
        self.ns: dict[tuple[str, int], list[float]] = {}

    def add(self, figure: str, size: int, value: float) -> None:
        self.ns.setdefault((figure, size), []).append(value)

    def get(self, figure: str, size: int) -> list[float]:
        return self.ns.get((figure, size), [])


def measure_size(size: int, reps: int, batch: int, out: Measures) -> None:
    """Every figure at one table size, contender and floor alternating."""
    rng = random.Random(size)
    filled = fill(size, spare=batch + IDLE + 1)
    nat, table = filled.nat, filled.nat.table
    lru, plain = floor_fill(size)
    gc.collect()
    gc.freeze()  # the fill's objects are long-lived: keep full collections from scanning them
    try:
        # The host that remove_connections takes out comes back with other ports: leave it out.
        live = [m for m in table.mappings(Proto.UDP) if m.original >> 64 != private_endpoint(0)[0]]
        originals = [m.original for m in rng.sample(live, min(batch, len(live)))]
        replies = [m.reply for m in rng.sample(live, min(batch, len(live)))]
        floor_hits = [_floor_keys(rng.randrange(size))[0] for _ in range(batch)]
        translate_sets = _translate_sets(live, rng, batch)
        for rep in range(reps):
            _adds(nat, filled, lru, plain, rng, batch, rep, out)
            _lookups(nat, lru, plain, originals, replies, floor_hits, batch, out, size)
            _translates(nat, translate_sets, out, size)
            _expires(nat, filled, lru, rep, out)
            _remove_connections(nat, filled, out)
    finally:
        gc.unfreeze()


def _adds(nat: Nat, filled: Filled, lru: cachetools.LRUCache, plain: dict[int, int], rng: random.Random,
          batch: int, rep: int, out: Measures) -> None:
    size = filled.size
    # New remotes for existing endpoints: their port is reused (endpoint-independent).
    targets = [private_endpoint(rng.randrange(filled.endpoints)) for _ in range(batch)]
    nat_dgrams = [datagram(src, sport, remote(REMOTES + rep * batch + i), REMOTE_PORT)
                  for i, (src, sport) in enumerate(targets)]
    redirect_dgrams = [datagram(CLIENT_BASE + 1 + (i >> 8), 30_000 + rep * 256 + (i & 255), PUBLIC,
                                REDIRECT_PORT) for i in range(batch)]
    new_endpoint_dgrams = [datagram(PRIVATE_BASE + (1 << 20) + rep * batch + i, 40_000, remote(0), REMOTE_PORT)
                           for i in range(batch)]
    keys = [(pack_key(d.src, d.dst, d.src_port, d.dst_port),
             pack_key(d.dst, PUBLIC, d.dst_port, d.src_port ^ 0x5555)) for d in nat_dgrams]
    added: list[object] = []

    def add_nat() -> None:
        mode = SourceNat()
        for d in nat_dgrams:
            added.append(nat.add(d, mode, 1.0))

    def add_redirect() -> None:
        mode = Redirect(REDIRECT_TARGET)
        for d in redirect_dgrams:
            added.append(nat.add(d, mode, 1.0))

    def add_new_endpoints() -> None:
        mode = SourceNat()
        for d in new_endpoint_dgrams:
            added.append(nat.add(d, mode, 1.0))

    def lru_two_sets() -> None:
        for a, b in keys:
            lru[a] = b
            lru[b] = a

    def dict_two_sets() -> None:
        for a, b in keys:
            plain[a] = b
            plain[b] = a

    def lru_two_pops() -> None:
        for a, b in keys:
            lru.pop(a)
            lru.pop(b)

    def dict_two_pops() -> None:
        for a, b in keys:
            plain.pop(a)
            plain.pop(b)

    def remove_added() -> None:
        for mapping in added:
            nat.remove(mapping)  # type: ignore[arg-type]

    out.add("lru_set2", size, _time_ns(lru_two_sets, batch))
    out.add("add_nat", size, _time_ns(add_nat, batch))
    out.add("dict_set2", size, _time_ns(dict_two_sets, batch))
    out.add("remove", size, _time_ns(remove_added, batch))
    out.add("lru_pop2", size, _time_ns(lru_two_pops, batch))
    out.add("dict_pop2", size, _time_ns(dict_two_pops, batch))
    added.clear()
    out.add("add_redirect", size, _time_ns(add_redirect, batch))
    remove_added()
    added.clear()
    if filled.endpoints + batch <= NEW_ENDPOINT_LIMIT:
        out.add("add_new_endpoint", size, _time_ns(add_new_endpoints, batch))
        remove_added()
    assert nat.table.count(Proto.UDP) == size


def _lookups(nat: Nat, lru: cachetools.LRUCache, plain: dict[int, int], originals: list[int],
             replies: list[int], floor_hits: list[int], batch: int, out: Measures, size: int) -> None:
    lookup = nat.table.lookup
    udp = Proto.UDP

    def hit_original() -> None:
        for key in originals:
            lookup(udp, key)

    def hit_reply() -> None:
        for key in replies:
            lookup(udp, key)

    def lru_get() -> None:
        get = lru.get
        for key in floor_hits:
            get(key)

    def dict_get() -> None:
        get = plain.get
        for key in floor_hits:
            get(key)

    out.add("lru_get", size, _time_ns(lru_get, batch))
    out.add("lookup_original", size, _time_ns(hit_original, len(originals)))
    out.add("dict_get", size, _time_ns(dict_get, batch))
    out.add("lookup_reply", size, _time_ns(hit_reply, len(replies)))


def _translate_sets(live: list[Mapping], rng: random.Random, batch: int) -> dict[str, list[Datagram]]:
    """Real datagrams for a few thousand flows, parsed once, repeated to fill a batch."""
    chosen = rng.sample(live, min(TRANSLATE_FLOWS, len(live)))
    sets: dict[str, list[Datagram]] = {"original": [], "reply": [], "miss": []}
    for i, mapping in enumerate(chosen):
        src, dst = mapping.original >> 64, mapping.original >> 32 & 0xFFFFFFFF
        sport, dport = mapping.original >> 16 & 0xFFFF, mapping.original & 0xFFFF
        port = mapping.reply & 0xFFFF
        for name, raw in (("original", udp_bytes(src, sport, dst, dport)),
                          ("reply", udp_bytes(dst, dport, PUBLIC, port)),
                          ("miss", udp_bytes(src, sport, CLIENT_BASE + 200, 9000 + i))):
            parsed = parse_ipv4(raw)
            assert isinstance(parsed, Datagram), parsed
            sets[name].append(parsed)
    return {name: (dgrams * (-(-batch // len(dgrams))))[:batch] for name, dgrams in sets.items()}


def _translates(nat: Nat, sets: dict[str, list[Datagram]], out: Measures, size: int) -> None:
    for name, dgrams in sets.items():
        results: list[object] = []

        def run() -> None:
            translate = nat.translate
            for d in dgrams:
                results.append(translate(d, 2.0))

        out.add(f"translate_{name}", size, _time_ns(run, len(dgrams)))
        hits = sum(isinstance(r, Translated) for r in results)
        assert hits == (0 if name == "miss" else len(dgrams)), (name, hits)


def _expires(nat: Nat, filled: Filled, lru: cachetools.LRUCache, rep: int, out: Measures) -> None:
    size = filled.size
    out.add("expire_none", size, _time_ns(lambda: [nat.expire(3.0) for _ in range(EXPIRE_CALLS)], EXPIRE_CALLS))
    # k mappings with a 1 s timeout, among `size` with 300 s: expire at t=5 removes exactly them.
    for i in range(IDLE):
        src, sport = private_endpoint(i % filled.endpoints)
        d = datagram(src, sport, remote(REMOTES + 10_000_000 + rep * IDLE + i), REMOTE_PORT)
        nat.add(d, SourceNat(), 4.0, idle_timeout_s=1.0)
    removed: list[int] = []
    out.add("expire_k", size, _time_ns(lambda: removed.append(nat.expire(5.5)), IDLE))
    assert removed == [IDLE], removed
    keys = [(rep << 100) | i for i in range(2 * IDLE)]

    def lru_pops() -> None:
        for key in keys:
            lru.pop(key)

    for key in keys:
        lru[key] = key
    out.add("lru_pop2_k", size, _time_ns(lru_pops, IDLE))


def _remove_connections(nat: Nat, filled: Filled, out: Measures) -> None:
    """One host's 400 mappings go; then they are put back, once the freed ports left quarantine."""
    size = filled.size
    host_index = 0
    host = IPv4Address(private_endpoint(0)[0])
    before = nat.table.count(Proto.UDP)
    freed = []
    out.add("remove_connections", size, _time_ns(lambda: freed.append(nat.remove_connections(host)), 1))
    gone = before - nat.table.count(Proto.UDP)
    out.ns.setdefault(("host_mappings", size), []).append(gone)
    filled.feed.give_back(freed[0].udp)
    for p in range(PORTS_PER_HOST):
        index = host_index * PORTS_PER_HOST + p
        if index >= filled.endpoints:
            break
        src, sport = private_endpoint(index)
        for r in range(REMOTES):
            if index * REMOTES + r < size:
                nat.add(datagram(src, sport, remote(r), REMOTE_PORT), SourceNat(), READD_AT,
                        port_generator=filled.feed)
    assert nat.table.count(Proto.UDP) == before


FLOORS = {"lru_set2": ("LRUCache set x2", "dict_set2"), "lru_get": ("LRUCache get", "dict_get"),
          "lru_pop2": ("LRUCache pop x2", "dict_pop2"), "lru_pop2_k": ("LRUCache pop x2", "")}
FIGURES: tuple[tuple[str, str, str, Target | None], ...] = (
    # (figure, floor, label, target on floor time / our time)
    ("add_nat", "lru_set2", "add, source NAT (new remote of a known endpoint)", Target(">=", 0.25)),
    ("add_new_endpoint", "lru_set2", "add, source NAT (new endpoint: random port)", Target(">=", 0.25)),
    ("add_redirect", "lru_set2", "add, redirect", Target(">=", 0.25)),
    ("lookup_original", "lru_get", "lookup hit, original direction", Target(">=", 0.5)),
    ("lookup_reply", "lru_get", "lookup hit, reply direction", Target(">=", 0.5)),
    ("translate_original", "lru_get", "translate hit, original direction (bytes rewritten)", None),
    ("translate_reply", "lru_get", "translate hit, reply direction (bytes rewritten)", None),
    ("translate_miss", "lru_get", "translate miss", None),
    ("remove", "lru_pop2", "remove one mapping", None),
    ("expire_k", "lru_pop2_k", f"expire, {IDLE} idle (per mapping removed)", None),
)


def rows(out: Measures, sizes: tuple[int, ...]) -> list[Row]:
    """results.md rows: each figure beside its floor, then the size-independence checks."""
    result: list[Row] = []
    for size in sizes:
        for figure, floor, label, target in FIGURES:
            ours, base = out.get(figure, size), out.get(floor, size)
            if not ours:
                continue
            floor_name, dict_floor = FLOORS[floor]
            plain = out.get(dict_floor, size)
            result.append(Row("table", f"{label} @ {size:,}", "ns/op", Summary.of(ours), Summary.of(base),
                              floor_name, paired(ours, base, faster), target,
                              note=f"dict: {Summary.of(plain).text('ns')}" if plain else ""))
        none = out.get("expire_none", size)
        result.append(Row("table", f"expire, nothing idle @ {size:,}", "µs/call",
                          Summary.of([v / 1000 for v in none]), target=Target("<=", 1000.0, on="ours")))
        rc = out.get("remove_connections", size)
        hosts = out.get("host_mappings", size)
        result.append(Row("table", f"remove_connections, one host ({int(hosts[0]) if hosts else 0} mappings) "
                          f"@ {size:,}", "µs/call", Summary.of([v / 1000 for v in rc])))
    small, large = sizes[0], sizes[-1]
    for figure, label in (("remove_connections", "remove_connections of one host"),
                          ("expire_k", f"expire of {IDLE} idle"), ("expire_none", "expire, nothing idle")):
        at_small, at_large = out.get(figure, small), out.get(figure, large)
        if small != large and at_small and at_large:
            result.append(Row("table", f"{label}: {large:,} table vs {small:,} table", "ns",
                              Summary.of(at_large), Summary.of(at_small), f"same at {small:,}",
                              paired(at_large, at_small, lambda c, b: c / b), Target("<=", 2.0),
                              note=f"time ratio; in proportion to table size it would be {large // small}x"))
    return result


def run(smoke: bool = False, reps: int = 3, sizes: tuple[int, ...] | None = None) -> list[Row]:
    sizes = sizes or (SMOKE_SIZES if smoke else SIZES)
    batch = SMOKE_BATCH if smoke else BATCH
    out = Measures()
    for size in sizes:
        started = time.monotonic()
        measure_size(size, reps, batch, out)
        gc.collect()
        print(f"  table_ops: {size:,} mappings done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return rows(out, sizes)


def iter_text(result: list[Row]) -> Iterator[str]:
    for row in result:
        ratio = f"  ratio {row.ratio.text('x')}" if row.ratio else ""
        base = f"  vs {row.baseline_name} {row.baseline.text(row.unit)}" if row.baseline else ""
        yield f"{row.benchmark}: {row.ours.text(row.unit) if row.ours else '-'}{base}{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", type=lambda s: tuple(int(x) for x in s.split(",")))
    args = parser.parse_args()
    for line in iter_text(run(args.smoke, args.reps, args.sizes)):
        print(line)


if __name__ == "__main__":
    main()
