"""The operator interface at a full table: what an open live page costs the NAT (issue 13).

Two parts, both without root:

1. **In the process** (the code paths alone, at 32,768 TCP mappings made by real
   packet-ins through the gateway): one request through the whole REST stack
   (request guard, routes, facade, table page) for a page of 1,000 mappings, the
   live page's 100, the live page itself and ``/metrics``; and one flow-statistics
   slice (512 mappings, 1,024 rules, in reply parts of at most 64 KiB as a switch
   sends them) decoded and taken in, part by part, as the app's event thread
   does. Each figure is the time the event thread is held; targets: a page "a few
   ms" (<= 5 ms), a slice part <= 5 ms. After the fill, ``gc.freeze()`` (as in
   table_ops.py): a full garbage collection over a table this size takes tens of
   ms wherever it lands, in any handler, and is not what these rows measure.
2. **ryu-manager under load** (bench/ofload.py's emulated switch, which here also
   keeps the rules it is sent and answers flow-statistics requests with them):
   the table is filled to ``[nat] tcp_table_size`` = 32,768 mappings (every later
   set-up evicts one), then set-ups are measured, light and heavy load, with the
   live page closed, and in a fresh controller filled the same way with the page
   open (the order alternates between repetitions): a client does what an open
   page does (``GET /nat/`` once, then every second a page of 100 mappings and
   ``/nat/stats``), which also keeps the flow-statistics sweeps going over the
   whole table. Targets: set-up rate open >= 0.8x closed, p99 round trip open
   <= 2x closed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webob import Request

from common import Row, Summary, Target, paired
from ofload import (FC_ADD, FLOW_MOD, MP_FLOW, MULTIPART_REQUEST, OXM_IN_PORT, OXM_IPV4_SRC, PRIVATE_PORT, PUBLIC_IP,
                    ROUTER_MAC, RYU_NAT, UPLINK, Controller, FlowTable, Generator, Phase, PhaseResult, Switch,
                    SynTemplate, Tally, _output, _run_phase, _set, _tcp_oxms, _U32, _warm_up, arp_reply_frame,
                    learning_frame, message, ofp_match, oxm, packet_in)
from ryu_nat.config import parse_config
from ryu_nat.core.addresses import Proto
from ryu_nat.gateway import Gateway
from ryu_nat.openflow import cookies, multipart
from ryu_nat.operator import flowstats, guard, metrics, rest
from ryu_nat.operator.facade import NatFacade
from ryu_nat.operator.flowstats import FlowCounters
from ryu_nat.operator.switchread import SwitchReader

TABLE = 32_768
SMOKE_TABLE = 2_048
PHASE_S = 5.0
SMOKE_PHASE_S = 0.5
PAGE_OPEN_LEAD_S = 3.0  # the page is open this long before measuring: the sweeps are under way
LIVE_ROWS = 100  # ryu_nat.operator.rest.LIVE_PAGE_ROWS
LOADS = (("light", 4), ("heavy", 128))  # packet-ins outstanding, as in the ofload section
IN_PROCESS_REQUESTS = 40


# --- 1. in the process ------------------------------------------------------------------------------


def _gateway_with(mappings: int) -> tuple[Gateway, FlowCounters, Any]:
    """A gateway at ``mappings`` TCP mappings made by SYN packet-ins, its flow counters, and the app's API."""
    config = parse_config({"public_ipv4": "192.168.3.1/24", "public_ipv4_gateway": "192.168.3.254",
                           "private_ipv4": "10.0.0.1/16", "public_port": "1", "tcp_table_size": str(mappings)})
    gateway = Gateway(config, random.Random(1))
    gateway.switch_connected([1, 2, 3], 0.0)
    gateway.review.restore_done(0.0)  # an empty switch: nothing to read back
    gateway.packet_in(UPLINK, arp_reply_frame(ROUTER_MAC, PUBLIC_IP), 0.0)  # the server's MAC
    syn = SynTemplate()
    for i in range(mappings):
        gateway.packet_in(PRIVATE_PORT, syn.build(i, 0)[syn.frame_at:], 0.001 * i)
    now = [0.001 * mappings]
    counters = FlowCounters()
    facade = NatFacade(gateway, counters, lambda: None, lambda dp, plan: None, SwitchReader(gateway), lambda: False,
                       clock=lambda: now[0])
    latency = metrics.Histogram(metrics.SETUP_LATENCY_BUCKETS_S)
    sweeps = metrics.Histogram(metrics.POLL_DURATION_BUCKETS_S)
    app = rest.make_wsgi_app(facade, metrics.registry(metrics.NatCollector(facade.stats, latency, sweeps)),
                             guard.Policy())
    return gateway, counters, app


def _request_ms(app: Any, path: str, runs: int) -> list[float]:
    """Milliseconds per request through the whole WSGI stack."""
    times = []
    for _ in range(runs):
        request = Request.blank(path)
        started = time.perf_counter()
        response = request.get_response(app)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_int == 200, (path, response.status, response.body[:200])
    return times


def _slice_reply(block: int, bits: int, mapping_ids: list[int]) -> list[bytes]:
    """A switch's reply parts for one slice: both rules of each mapping, with matches and actions like ours."""
    table = FlowTable()
    for mapping_id in mapping_ids:
        for kind in (cookies.RuleKind.ORIGINAL, cookies.RuleKind.REPLY):
            cookie = cookies.make(kind, mapping_id)
            src, sport = 0x0A000002 + mapping_id, 10_000 + mapping_id % 50_000
            match = ofp_match(oxm(OXM_IN_PORT, _U32.pack(PRIVATE_PORT)), *_tcp_oxms(src, 0xC0A8030A, sport, 80))
            actions = b"".join((_set(OXM_IPV4_SRC, _U32.pack(PUBLIC_IP)), _output(UPLINK)))
            instruction = b"\0\x04" + (8 + len(actions)).to_bytes(2, "big") + b"\0" * 4 + actions
            body = (cookie.to_bytes(8, "big") + b"\0" * 8 + bytes([0, FC_ADD]) + (300).to_bytes(2, "big")
                    + b"\0\0" + (200).to_bytes(2, "big") + b"\xff" * 12 + b"\0\0\0\0" + match + instruction)
            flow_mod = bytearray(message(FLOW_MOD, body))
            table.flow_mod(flow_mod, 0, len(flow_mod), 0.0)
    cookie, mask = cookies.mapping_block(block, bits)
    request = message(MULTIPART_REQUEST, MP_FLOW.to_bytes(2, "big") + b"\0" * 22 + cookie.to_bytes(8, "big")
                      + mask.to_bytes(8, "big"), 77)
    reply = table.reply(request, 5.0)
    parts, at = [], 0
    while at < len(reply):
        length = int.from_bytes(reply[at + 2: at + 4], "big")
        parts.append(reply[at: at + length])
        at += length
    return parts


def in_process(mappings: int, runs: int) -> list[Row]:
    gateway, counters, app = _gateway_with(mappings)
    assert gateway.mapping_count(Proto.TCP) == mappings
    gc.collect()
    gc.freeze()  # as table_ops.py does: a full collection of the fill is no part of what is measured
    rows = []
    for path, what in ((f"/nat/mappings?limit=1000&after={mappings // 2}", "GET /nat/mappings, page of 1,000"),
                       (f"/nat/mappings?limit={LIVE_ROWS}", "GET /nat/mappings, the live page's 100"),
                       ("/nat/", "GET /nat/ (the live page, first 100 rows in it)"),
                       ("/nat/stats", "GET /nat/stats"), ("/metrics", "GET /metrics")):
        times = _request_ms(app, path, runs)
        rows.append(Row("fulltable", f"{what} @ {mappings:,} mappings", "ms", Summary.of(times),
                        target=Target("<=", 5.0, on="ours") if "mappings" in path else None,
                        note=f"max {max(times):.2f} ms over {runs} requests through guard, routes and facade"))
    bits = flowstats.BLOCK_BITS
    middle = (mappings // 2) >> bits
    ids = [m.id for m in gateway.mappings_page((middle << bits) - 1, 1 << bits).mappings if m.id >> bits == middle]
    parts = _slice_reply(middle, bits, ids)
    part_ms: list[float] = []
    for run in range(runs // 4 or 1):
        now = 10.0 * run  # a sweep of this one slice every 10 s
        counters.want(now)
        due = counters.next_slice(now, lambda after: ids[0] if after < ids[0] else None)
        assert due is not None and due.number == middle
        counters.slice_sent(1000 + run, due, now)
        for part in parts:
            started = time.perf_counter()
            decoded = multipart.decode_flow_stats(part)
            assert isinstance(decoded, multipart.FlowStatsPart)
            assert counters.reply(1000 + run, decoded.rules, decoded.more, now)
            part_ms.append((time.perf_counter() - started) * 1000)
        counters.next_slice(now + 1, lambda after: None)  # the sweep ends
    assert counters.slices == len(part_ms) // len(parts) and counters.traffic(ids[0]) is not None
    rows.append(Row("fulltable", f"flow-statistics slice: one reply part decoded and taken in "
                                 f"({len(ids) * 2:,} rules in {len(parts)} parts)", "ms", Summary.of(part_ms),
                    target=Target("<=", 5.0, on="ours"),
                    note=f"max {max(part_ms):.2f} ms; the last part also updates the block's totals"))
    return rows


# --- 2. ryu-manager under load, page closed and open ---------------------------------------------------


@dataclass
class PageClient:
    """What an open live page asks, once a second; its answers' times and failures."""

    port: int
    times_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def get(self, path: str) -> None:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nConnection: close\r\n\r\n".encode())
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
        except (OSError, asyncio.TimeoutError) as exc:
            self.failures.append(f"{path}: {exc!r}")
            return
        self.times_ms.append((time.perf_counter() - started) * 1000)
        if answer.split(b" ", 2)[1:2] != [b"200"]:
            self.failures.append(f"{path}: {answer[:60]!r}")

    async def run(self, stop: asyncio.Event) -> None:
        await self.get("/nat/")
        while not stop.is_set():
            await asyncio.gather(self.get(f"/nat/mappings?limit={LIVE_ROWS}&after=0"), self.get("/nat/stats"))
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass


async def _fill(generator: Generator, switch: Switch, count: int) -> None:
    """Set-ups until the table holds ``count`` mappings (128 outstanding), then every one finished."""
    generator.tally = Tally()
    generator.settled = asyncio.Event()
    generator.launching = generator.measuring = True
    switch.window = 128
    switch.refill(time.perf_counter())
    switch.send(b"".join(switch.out))
    switch.out.clear()
    deadline = time.monotonic() + 300
    while generator.tally.setups < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fill: {generator.tally.setups} of {count} set-ups")
        await asyncio.sleep(0.05)
        generator.expire_lost(time.perf_counter())
    generator.launching = False
    if generator.outstanding:
        await asyncio.wait_for(generator.settled.wait(), 30)
    generator.measuring = False


async def session(controller: Controller, table: int, seconds: float, page_open: bool) -> dict[str, Any]:
    """Fill the table, then each load, with the live page open (for a while first) or closed."""
    loop = asyncio.get_running_loop()
    generator = Generator(RYU_NAT.flow_mods_per_setup)
    generator.flow_table = FlowTable()
    switch = Switch(generator, dpid=1)
    await loop.create_connection(lambda: switch, "127.0.0.1", controller.port)
    generator.switches = [switch]
    await asyncio.wait_for(switch.ready.wait(), 30)
    switch.send(packet_in(learning_frame(), UPLINK))
    await asyncio.sleep(0.3)
    await _warm_up(generator, [switch], 8)
    await _fill(generator, switch, table)
    page = PageClient(controller.api_port)
    stop = asyncio.Event()
    browsing = None
    if page_open:
        browsing = asyncio.create_task(page.run(stop))
        await asyncio.sleep(PAGE_OPEN_LEAD_S if seconds >= 1 else 0.2)
    results: dict[str, Any] = {}
    for name, outstanding in LOADS:
        results[name] = await _run_phase(generator, [switch], Phase(name, 1, outstanding, seconds), controller.pid)
    stop.set()
    if browsing is not None:
        await browsing
    if switch.transport is not None:
        switch.transport.close()
    if page.failures:
        raise RuntimeError(f"the live page's requests failed: {page.failures[:3]}")
    results["page"] = page.times_ms
    results["switch"] = {"flow_stats_requests": generator.flow_table.requests,
                         "entries": generator.flow_table.entries_sent}
    return results


def under_load(table: int, seconds: float, reps: int, workdir: Path) -> tuple[list[Row], dict[str, object]]:
    config = (f"[nat]\npublic_ipv4 = 192.168.3.1/24\npublic_ipv4_gateway = 192.168.3.254\n"
              f"private_ipv4 = 10.0.0.1/16\npublic_port = 1\ntcp_table_size = {table}\n")
    runs = []
    for rep in range(reps):
        run: dict[str, Any] = {}
        # A fresh controller for each state, the order alternating from one repetition to the next.
        for state in (("closed", "open") if rep % 2 == 0 else ("open", "closed")):
            with Controller(RYU_NAT, workdir, config) as controller:
                run[state] = asyncio.run(session(controller, table, seconds, page_open=state == "open"))
            problems = controller.log_problems()
            if problems:
                raise RuntimeError(f"ryu_nat: {problems[:3]} (log {controller.log_path})")
        runs.append(run)
        print(f"  fulltable: rep {rep + 1}/{reps} done", file=sys.stderr)
    rows = []
    for name, _ in LOADS:
        def figures(state: str, figure: str) -> list[float]:
            return [_figure(run[state][name], figure) for run in runs]

        rate, p99, cpu = "setups_per_s", "p99_ms", "controller_cpu_percent"
        lost = sum(run[state][name].tally.lost for run in runs for state in ("closed", "open"))
        rows.append(Row("fulltable", f"set-ups/s at {table:,} mappings, {name}: live page open vs closed", "/s",
                        Summary.of(figures("open", rate)), Summary.of(figures("closed", rate)), "page closed",
                        paired(figures("open", rate), figures("closed", rate), lambda o, c: o / c),
                        Target(">=", 0.8),
                        note=f"controller CPU open {Summary.of(figures('open', cpu)).text('%')}, closed "
                             f"{Summary.of(figures('closed', cpu)).text('%')}; lost {lost}"))
        rows.append(Row("fulltable", f"round trip p99 at {table:,} mappings, {name}: live page open vs closed",
                        "ms", Summary.of(figures("open", p99)), Summary.of(figures("closed", p99)), "page closed",
                        paired(figures("open", p99), figures("closed", p99), lambda o, c: o / c),
                        Target("<=", 2.0), note="ratio: open / closed (lower is better)"))
        per_setup = "controller_us_per_setup"
        rows.append(Row("fulltable", f"controller CPU per set-up at {table:,} mappings, {name}: page open vs closed",
                        "µs", Summary.of(figures("open", per_setup)), Summary.of(figures("closed", per_setup)),
                        "page closed", paired(figures("open", per_setup), figures("closed", per_setup),
                                              lambda o, c: o / c),
                        note="from /proc/<pid>/stat: what the open page adds per set-up, whatever else runs on "
                             "the machine; ratio open / closed"))
    page_ms = [t for run in runs for t in run["open"]["page"]]
    switch = [run["open"]["switch"] for run in runs]
    rows.append(Row("fulltable", "the live page's requests while under load", "ms", Summary.of(page_ms),
                    note=f"{len(page_ms)} requests (page of {LIVE_ROWS} and /nat/stats each second); median, "
                         f"range; flow-statistics requests per run {[s['flow_stats_requests'] for s in switch]} "
                         f"({[s['entries'] for s in switch]} rule entries)"))
    detail = {"ryu_nat, page closed": {name: [run["closed"][name] for run in runs] for name, _ in LOADS},
              "ryu_nat, page open": {name: [run["open"][name] for run in runs] for name, _ in LOADS}}
    return rows, detail


def _figure(result: PhaseResult, figure: str) -> float:
    if figure == "p99_ms":
        return result.percentile_ms(0.99)
    return float(getattr(result, figure))


def run(smoke: bool = False, reps: int = 3) -> tuple[list[Row], object]:
    table = SMOKE_TABLE if smoke else TABLE
    rows = in_process(table, 8 if smoke else IN_PROCESS_REQUESTS)
    with tempfile.TemporaryDirectory(prefix="fulltable-") as workdir:
        load_rows, detail = under_load(table, SMOKE_PHASE_S if smoke else PHASE_S, reps, Path(workdir))
    return rows + load_rows, detail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="only part 1 (no ryu-manager)")
    args = parser.parse_args()
    table = SMOKE_TABLE if args.smoke else TABLE
    if args.in_process:
        rows = in_process(table, IN_PROCESS_REQUESTS)
    else:
        rows, _ = run(args.smoke, args.reps)
    for row in rows:
        base = f"  vs {row.baseline_name} {row.baseline.text(row.unit)}" if row.baseline else ""
        ratio = f"  ratio {row.ratio.text('x')}" if row.ratio else ""
        print(f"{row.benchmark}: {row.ours.text(row.unit) if row.ours else '-'}{base}{ratio}  {row.note}")


if __name__ == "__main__":
    main()
