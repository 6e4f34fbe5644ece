"""Received bytes: what parsing a frame costs, fragment reassembly by size, and hostile packet-ins.

* parse: ``parse_frame`` on the first packet of a flow (a TCP SYN with the
  options Linux sends, a UDP query, an echo request, a port unreachable),
  beside the framework's own parser (Ryu's or os-ken's ``packet.Packet``) on
  the same bytes.
* fragments: ``FragmentCache.add`` per piece, for datagrams of 257 and 6,400
  pieces of 8 bytes, in order and shuffled: the same cost per piece at both
  sizes means reassembly is linear in the datagram's size.
* hostile: ``Gateway.packet_in`` on every TCP option kind with every length
  byte (65,536 SYNs) and on 50,000 frames of tests/unit/hostile.py's families
  (truncated, bad lengths, nested ICMP errors, VLAN, IPv6, odd ARP, fragment
  junk, ...): the slowest call, and that none raised or broke the NAT's
  invariants.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator

from common import REPO, Row, Summary, Target, faster, paired

# Ahead of site-packages, where some dependency installs a top-level package named "tests".
sys.path.insert(1, str(REPO))

from ryu_nat import backend  # noqa: E402
from ryu_nat.core.fragments import FragmentCache, Reassembled, fragment  # noqa: E402
from ryu_nat.core.packet import Datagram, Frame, parse_frame, parse_ipv4  # noqa: E402
from tests.unit import hostile  # noqa: E402  (needs the repository on sys.path)

PARTS = ("parse", "fragments", "hostile")
PARSE_CALLS, SMOKE_PARSE_CALLS = 20_000, 300
PIECE_COUNTS, SMOKE_PIECE_COUNTS = (257, 6_400), (33, 257)
HOSTILE_FRAMES, SMOKE_HOSTILE_FRAMES = 50_000, 1_000
INVARIANT_EVERY = 1_000
CLIENT, SERVER = "10.0.0.2", "192.168.3.10"
FRAMEWORK_NAMES = {backend.RYU: "Ryu", backend.OS_KEN: "os-ken"}
LINUX_SYN_OPTIONS = bytes.fromhex("020405b4" "0402" "080a00c0ffee00000000" "01" "030307")  # MSS, SACK-ok, TS, WS


def flow_frames() -> dict[str, bytes]:
    """The first packet of a flow, of each kind the NAT sets up or answers, as it arrives."""
    mac = hostile.MACS[hostile.H1]
    quoted = hostile.ipv4(hostile.PUBLIC, SERVER, hostile.UDP, hostile.udp(hostile.PUBLIC, 40000, SERVER, 53))
    frames = {
        "TCP SYN (MSS, SACK-permitted, timestamps, window scale)":
            hostile.ipv4(CLIENT, SERVER, hostile.TCP, hostile.tcp(CLIENT, 40000, SERVER, 80,
                                                                  options=LINUX_SYN_OPTIONS)),
        "UDP query (40 bytes of payload)":
            hostile.ipv4(CLIENT, SERVER, hostile.UDP, hostile.udp(CLIENT, 40000, SERVER, 53, payload=bytes(40))),
        "ICMP echo request": hostile.ipv4(CLIENT, SERVER, hostile.ICMP, hostile.icmp(8, 0, b"\x12\x34\x00\x01",
                                                                                      bytes(56))),
        "ICMP port unreachable (quoting UDP)":
            hostile.ipv4(SERVER, hostile.PUBLIC, hostile.ICMP, hostile.icmp(3, 3, b"", quoted[:28])),
    }
    return {name: hostile.ethernet(hostile.ROUTER_MAC, mac, hostile.ETH_IPV4, datagram)
            for name, datagram in frames.items()}


def _per_call_us(call: Callable[[bytes], object], data: bytes, calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        call(data)
    return (time.perf_counter_ns() - started) / calls / 1000


def parse_rows(smoke: bool, reps: int) -> list[Row]:
    calls = SMOKE_PARSE_CALLS if smoke else PARSE_CALLS
    rows = []
    for name, data in flow_frames().items():
        parsed = parse_frame(data)
        assert isinstance(parsed, Frame) and parsed.datagram is not None, (name, parsed)
        ours, framework = [], []
        for _ in range(reps):
            ours.append(_per_call_us(parse_frame, data, calls))
            framework.append(_per_call_us(backend.packet.Packet, data, calls))
        rows.append(Row("parsing", f"parse_frame: {name}", "µs", Summary.of(ours), Summary.of(framework),
                        f"{FRAMEWORK_NAMES[backend.NAME]}'s packet.Packet", paired(ours, framework, faster)))
    return rows


def datagram_of_pieces(pieces: int) -> list[Datagram]:
    """A UDP datagram cut into ``pieces`` fragments of 8 payload bytes, parsed."""
    payload = bytes(i & 0xFF for i in range(pieces * 8 - 8))
    whole = parse_ipv4(hostile.ipv4(SERVER, hostile.PUBLIC, hostile.UDP,
                                    hostile.udp(SERVER, 53, hostile.PUBLIC, 40000, payload=payload)))
    assert isinstance(whole, Datagram), whole
    cut = [parse_ipv4(raw) for raw in fragment(whole, 8)]
    assert len(cut) == pieces and all(isinstance(d, Datagram) for d in cut)
    return cut  # type: ignore[return-value]


def _reassembly_us_per_piece(pieces: list[Datagram]) -> float:
    cache = FragmentCache()
    add = cache.add
    started = time.perf_counter_ns()
    for piece in pieces:
        result = add(piece, 0.0)
    elapsed = time.perf_counter_ns() - started
    assert isinstance(result, Reassembled), result
    return elapsed / len(pieces) / 1000


def fragment_rows(smoke: bool, reps: int) -> list[Row]:
    small, large = SMOKE_PIECE_COUNTS if smoke else PIECE_COUNTS
    rows = []
    for order in ("in order", "shuffled"):
        measured: dict[int, list[float]] = {small: [], large: []}
        datagrams = {count: datagram_of_pieces(count) for count in (small, large)}
        if order == "shuffled":
            for count, pieces in datagrams.items():
                random.Random(count).shuffle(pieces)
        for _ in range(reps):
            for count, pieces in datagrams.items():
                measured[count].append(_reassembly_us_per_piece(pieces))
        rows.append(Row("parsing", f"reassembly per piece, {large:,} pieces of 8 bytes, {order}", "µs",
                        Summary.of(measured[large]), Summary.of(measured[small]), f"{small:,} pieces",
                        paired(measured[large], measured[small], lambda c, b: c / b), Target("<=", 2.0),
                        note="ratio: time per piece at the larger size over the smaller; linear reassembly "
                             "keeps it near 1"))
    return rows


def hostile_calls(smoke: bool) -> Iterator[tuple[int, bytes]]:
    """(in_port, frame): every TCP option kind x length byte (every 16th length in smoke mode),
    then random hostile frames."""
    for kind, length, in_port, data in hostile.every_tcp_option():
        if not smoke or length % 16 == 0:
            yield in_port, data
    rng = random.Random(2024)
    for _ in range(SMOKE_HOSTILE_FRAMES if smoke else HOSTILE_FRAMES):
        yield hostile.hostile_frame(rng)


def hostile_rows(smoke: bool) -> list[Row]:
    gateway = hostile.connected_gateway()
    wall: list[float] = []
    cpu: list[float] = []
    errors = violations = 0
    quiet = logging.getLogger("ryu_nat")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # refusals are logged at most every few seconds: not what is measured
    try:
        for i, (in_port, data) in enumerate(hostile_calls(smoke)):
            now = i * 0.001
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            try:
                gateway.packet_in(in_port, data, now)
            except Exception:  # counted and shown: the figure that must stay 0
                errors += 1
                if errors == 1:
                    traceback.print_exc()
            cpu.append((time.thread_time_ns() - started_cpu) / 1000)
            wall.append((time.perf_counter_ns() - started) / 1000)
            if i % INVARIANT_EVERY == 0:
                gateway.expire(now)
                violations += len(hostile.invariant_violations(gateway))
        violations += len(hostile.invariant_violations(gateway))
    finally:
        quiet.setLevel(level)
    calls = len(wall)
    wall.sort()
    cpu.sort()
    return [
        Row("parsing", f"hostile packet-ins: slowest of {calls:,} (CPU time of the call)", "µs", Summary.of([cpu[-1]]),
            note=f"median {statistics.median(cpu):.1f} µs, p99 {cpu[int(calls * 0.99)]:.1f} µs; "
                 f"{gateway.stats.mappings_created.total():,} mappings made on the way"),
        Row("parsing", f"hostile packet-ins: slowest of {calls:,} (wall clock)", "µs", Summary.of([wall[-1]]),
            note=f"median {statistics.median(wall):.1f} µs, p99 {wall[int(calls * 0.99)]:.1f} µs; includes "
                 "time the process was not running (shared cores) and garbage collection"),
        Row("parsing", "hostile packet-ins that raised", "calls", Summary.of([errors]),
            target=Target("==", 0, on="ours")),
        Row("parsing", "NAT invariant violations after hostile packet-ins", "", Summary.of([violations]),
            target=Target("==", 0, on="ours"), note=f"checked every {INVARIANT_EVERY:,} calls"),
    ]


def run(smoke: bool = False, reps: int = 3, parts: tuple[str, ...] = PARTS) -> list[Row]:
    rows: list[Row] = []
    for part in parts:
        started = time.monotonic()
        if part == "parse":
            rows += parse_rows(smoke, reps)
        elif part == "fragments":
            rows += fragment_rows(smoke, reps)
        else:
            rows += hostile_rows(smoke)
        print(f"  parsing: {part} done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    args = parser.parse_args()
    parts = tuple(part.strip() for part in args.parts.split(",") if part.strip())
    for row in run(args.smoke, args.reps, parts):
        base = f"  vs {row.baseline_name} {row.baseline.text(row.unit)}" if row.baseline else ""
        ratio = f"  ratio {row.ratio.text('x')}" if row.ratio else ""
        note = f"  ({row.note})" if row.note else ""
        print(f"{row.benchmark}: {row.ours.text(row.unit) if row.ours else '-'}{base}{ratio}{note}")


if __name__ == "__main__":
    main()
