"""Memory per mapping at 100k and 1M, beside the floor, Linux conntrack and the switch.

Each figure comes from a fresh subprocess that fills one structure and reports
what the fill added: ``tracemalloc`` bytes (what Python allocated) in one
process, the RSS delta (what the OS gave, allocator overhead included) in
another, since tracemalloc's own bookkeeping would inflate the RSS.

The floor is a ``cachetools.LRUCache`` holding two int-tuple keys per mapping,
``(proto, src_ip, dst_ip, src_port, dst_port)`` -> the twin key: the least a
paired LRU keyed by parsed headers can hold. Its ints are shared where the fill
loop shares them (one object per private endpoint and per remote), as they would
be in a careful implementation.

Linux conntrack is read from ``/proc/slabinfo`` (the ``nf_conntrack`` object size)
where the kernel exposes it. The switch's cost is the ovs-vswitchd RSS delta for
installing batches of mapping-like rule pairs on a scratch userspace bridge with
``ovs-ofctl --bundle add-flows``; it needs Open vSwitch and no Mininet, and
waits (or gives up) while end-to-end tests are running.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from ipaddress import IPv4Address
from pathlib import Path

import cachetools

from common import Row, Summary, Target, higher, others_using_ovs, paired, rss_bytes
from table_ops import PUBLIC, REMOTE_PORT, REMOTES, PortFeed, datagram, private_endpoint, remote
from ryu_nat.core.addresses import Proto
from ryu_nat.core.lru_table import LruNatTable
from ryu_nat.core.nat import Nat, SourceNat
from ryu_nat.core.ports import PortAllocator, PortRange

SIZES = (100_000, 1_000_000)
SMOKE_SIZES = (2_000,)
SWITCH_MAPPINGS = 8_000  # per batch
SWITCH_MAX_BATCHES = 24
SWITCH_GROWN_BATCHES = 3
SMOKE_SWITCH_MAPPINGS = 0
SCRATCH_BRIDGE = "benchmem0"
CONNTRACK_DOC_BYTES = 256
UDP = int(Proto.UDP)


def fill_nat(size: int) -> object:
    """A NAT with ``size`` UDP mappings; built before it is measured, filled while measured."""
    table = LruNatTable({Proto.TCP: 1024, Proto.UDP: size, Proto.ICMP: 1024})
    nat = Nat(table, IPv4Address(PUBLIC), PortAllocator(PortRange(1024, 65535), random.Random(7)))
    feed = PortFeed()
    return nat, lambda: _fill_nat(nat, feed, size)


def _fill_nat(nat: Nat, feed: PortFeed, size: int) -> None:
    mode, added = SourceNat(), 0
    for index in range(-(-size // REMOTES)):
        src, sport = private_endpoint(index)
        for r in range(min(REMOTES, size - added)):
            nat.add(datagram(src, sport, remote(r), REMOTE_PORT), mode, 0.0, port_generator=feed)
            added += 1


def fill_floor(size: int) -> object:
    cache: cachetools.LRUCache = cachetools.LRUCache(2 * size)
    remotes = [remote(r) for r in range(REMOTES)]

    def run() -> None:
        added = 0
        for index in range(-(-size // REMOTES)):
            src, sport = private_endpoint(index)
            public_port = 1024 + index
            for r in range(min(REMOTES, size - added)):
                original = (UDP, src, remotes[r], sport, REMOTE_PORT)
                reply = (UDP, remotes[r], PUBLIC, REMOTE_PORT, public_port)
                cache[original] = reply
                cache[reply] = original
                added += 1

    return cache, run


FILLS = {"nat": fill_nat, "floor": fill_floor}


def child(kind: str, size: int, method: str) -> dict[str, float]:
    """In a fresh process: bytes the fill of ``kind`` added, by ``method``."""
    keep, run = FILLS[kind](size)  # type: ignore[misc]
    gc.collect()
    if method == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        added = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    else:
        before = rss_bytes()
        run()
        gc.collect()
        added = rss_bytes() - before
    del keep
    return {"bytes": added, "per_mapping": added / size}


def measure_pair(size: int, method: str) -> tuple[float, float]:
    """(ours, floor) bytes per mapping, each from its own fresh process, the two run side by side.

    Side by side halves the wall time on two cores; memory figures, unlike times,
    do not suffer from it (tracemalloc counts bytes; each RSS is its own process's).
    """
    children = {kind: subprocess.Popen([sys.executable, __file__, "--child", kind, str(size), method],
                                       stdout=subprocess.PIPE, text=True) for kind in ("nat", "floor")}
    figures = {}
    for kind, child_process in children.items():
        out, _ = child_process.communicate()
        if child_process.returncode != 0:
            raise RuntimeError(f"memory child {kind} {size} {method} exited {child_process.returncode}")
        figures[kind] = float(json.loads(out)["per_mapping"])
    return figures["nat"], figures["floor"]


def conntrack_entry_bytes() -> tuple[int, str]:
    """The nf_conntrack slab object size, or the commonly quoted 256 bytes if unreadable."""
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines():
            if line.startswith("nf_conntrack "):
                return int(line.split()[3]), "nf_conntrack objsize in /proc/slabinfo"
    except OSError:
        pass
    return CONNTRACK_DOC_BYTES, "not readable here: the usual figure"


def switch_cost(mappings: int, wait_s: float) -> tuple[float | None, str]:
    """ovs-vswitchd RSS per mapping (two rules), or None and why not.

    Rules go in in batches until the daemon grows: the first batches may fit in
    heap it freed earlier (Mininet runs leave much), so the figure is the median
    growth of the batches after the first that grew.
    """
    if mappings <= 0:
        return None, "not measured in smoke mode"
    deadline = time.monotonic() + wait_s
    while others_using_ovs():
        if time.monotonic() >= deadline:
            return None, "not measured: end-to-end tests were using Open vSwitch"
        time.sleep(5)
    pid = _vswitchd_pid()
    if pid is None:
        return None, "not measured: ovs-vswitchd is not running"
    subprocess.run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", SCRATCH_BRIDGE], check=False)
    made = subprocess.run(["ovs-vsctl", "--timeout=10", "add-br", SCRATCH_BRIDGE, "--", "set", "bridge",
                           SCRATCH_BRIDGE, "datapath_type=netdev", "fail_mode=secure"],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return None, f"not measured: add-br failed: {made.stderr.strip()}"
    growth: list[float] = []
    try:
        for number in range(SWITCH_MAX_BATCHES):
            with tempfile.NamedTemporaryFile("w", suffix=".flows") as flows:
                flows.write(_mapping_rules(number * mappings, mappings))
                flows.flush()
                before = _rss(pid)
                subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "add-flows", SCRATCH_BRIDGE,
                                flows.name], check=True, capture_output=True, timeout=300)
                time.sleep(0.5)
                growth.append((_rss(pid) - before) / mappings)
            grown = [g for g in growth if g > 0]
            if len(grown) > SWITCH_GROWN_BATCHES:
                break
    finally:
        subprocess.run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-br", SCRATCH_BRIDGE], check=False)
    by_batch = [round(g) for g in growth]
    # The first batch that grew may have been partly absorbed by free heap: leave it out.
    grown = sorted([g for g in growth if g > 0][1:])
    if not grown:
        return None, f"not measured: ovs-vswitchd reused freed heap throughout (B per mapping by batch: {by_batch})"
    return grown[len(grown) // 2], (f"ovs-vswitchd RSS growth per mapping, median over batches of {mappings:,} "
                                    f"mappings ({2 * mappings:,} rules) once free heap was used up; "
                                    f"by batch {by_batch}")


def _mapping_rules(first: int, count: int) -> str:
    """Rule pairs shaped like ryu_nat's: 5-tuple match, set-fields, dec_ttl, output, idle timeout."""
    lines = []
    for i in range(first, first + count):
        host = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        sport, public_port = 20_000 + i % 25, 1024 + i % 64_000
        cookie = 0x4E41_0200_0000_0000 | i
        lines.append(f"cookie={cookie:#x},priority=200,idle_timeout=7440,send_flow_rem,tcp,in_port=2,"
                     f"nw_src={host},nw_dst=198.51.100.10,tp_src={sport},tp_dst=80,"
                     f"actions=dec_ttl,set_field:192.168.3.1->ip_src,set_field:{public_port}->tcp_src,"
                     f"set_field:02:4e:41:54:00:01->eth_src,set_field:00:00:00:00:03:fe->eth_dst,output:1")
        lines.append(f"cookie={cookie + (1 << 40):#x},priority=200,idle_timeout=7440,send_flow_rem,tcp,in_port=1,"
                     f"nw_src=198.51.100.10,nw_dst=192.168.3.1,tp_src=80,tp_dst={public_port},"
                     f"actions=dec_ttl,set_field:{host}->ip_dst,set_field:{sport}->tcp_dst,"
                     f"set_field:02:4e:41:54:00:01->eth_src,set_field:00:00:00:00:00:02->eth_dst,output:2")
    return "\n".join(lines) + "\n"


def _vswitchd_pid() -> int | None:
    try:
        return int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def run(smoke: bool = False, reps: int = 3, ovs_wait_s: float = 60.0) -> list[Row]:
    sizes = SMOKE_SIZES if smoke else SIZES
    rows: list[Row] = []
    for size in sizes:
        for method in ("tracemalloc", "rss"):
            ours: list[float] = []
            floor: list[float] = []
            # tracemalloc counts allocations exactly: runs repeat to the byte, and at 1M one
            # traced fill takes a minute, so it runs once there.
            for _ in range(1 if method == "tracemalloc" and size >= 1_000_000 else reps):
                nat_bytes, floor_bytes = measure_pair(size, method)
                ours.append(nat_bytes)
                floor.append(floor_bytes)
            print(f"  memory: {size:,} mappings, {method} done", file=sys.stderr)
            target = Target("<=", 1.6) if size == sizes[-1] else None
            rows.append(Row("memory", f"bytes per mapping, {method} @ {size:,}", "B", Summary.of(ours),
                            Summary.of(floor), "LRUCache, 2 int-tuple keys", paired(ours, floor, higher), target,
                            note="ratio: ours / floor (lower is better)"))
    entry, source = conntrack_entry_bytes()
    rows.append(Row("memory", "Linux conntrack, bytes per connection", "B", Summary.of([entry]), note=source))
    per_mapping, how = switch_cost(SMOKE_SWITCH_MAPPINGS if smoke else SWITCH_MAPPINGS, ovs_wait_s)
    rows.append(Row("memory", "Open vSwitch (userspace), bytes per mapping (two rules)", "B",
                    Summary.of([per_mapping]) if per_mapping is not None else None, note=how))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("KIND", "SIZE", "METHOD"))
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        kind, size, method = args.child
        print(json.dumps(child(kind, int(size), method)))
        return
    for row in run(args.smoke, args.reps):
        ratio = f"  ratio {row.ratio.text('x')}" if row.ratio else ""
        base = f"  vs {row.baseline.text('B')}" if row.baseline else ""
        print(f"{row.benchmark}: {row.ours.text('B') if row.ours else '-'}{base}{ratio}  {row.note}")


if __name__ == "__main__":
    main()
