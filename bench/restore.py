"""A controller restart: how long the new controller takes to read the table back from the switch's rules,
and how long new set-ups stall meanwhile (issue 16).

The emulated switch of bench/ofload.py holds the rule pairs of N TCP mappings,
built by ryu_nat's own rule builders and encoder as the app installs them
(source NAT from N / 4 private endpoints, each with one public port and four
remotes, so that 65,536 mappings fit in the port range), and answers aggregate-
and flow-statistics requests from them as a switch does. A fresh ryu-manager
connects to it with an empty table, as after a crash, and reads the rules back.
From the connection on, the generator keeps 8 new set-ups outstanding (new
private endpoints); routed packets wait while the table is rebuilt.

Figures: the rebuild as the controller times it (``GET /nat/consistency``:
first statistics request to last slice taken in), the time from the switch's
connection to the report, and the longest set-up round trip while rebuilding
(the set-ups sent as the switch connects wait for the whole rebuild). Runs
without root. Against Open vSwitch, tests/e2e/test_e2e_restart.py reads 16,384
mappings back (its figure is printed with ``-s``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Row, Summary
from ofload import (PRIVATE_PORT, RYU_NAT, UPLINK, Controller, FlowTable, Generator, Switch, Tally,
                    whole_messages)
from topologies.controller import http_json

from ryu_nat.backend import ofproto_protocol, ofproto_v1_3
from ryu_nat.core.addresses import Proto, pack_key, reverse_key
from ryu_nat.openflow import encoder, rules
from ryu_nat.openflow.cookies import RuleKind

SIZES = (16_384, 65_536)
SMOKE_SIZES = (1_024,)
REMOTES = 4  # mappings per private endpoint (and public port)
OUTSTANDING = 8
AFTER_S = 3.0  # set-ups go on this long after the rebuild, so that those it held are answered
REBUILD_TIMEOUT_S = 300.0
PUBLIC, SERVER = 0xC0A80301, 0xC0A8030A  # 192.168.3.1, 192.168.3.10 (as in ofload.py)
ROUTER_MAC, SERVER_MAC, HOST_MAC = "02:4e:41:54:00:01", "00:00:00:00:03:0a", "02:00:00:00:ff:01"
FIRST_PORT = 40_000  # private source ports of the mappings read back: ofload's own flows use 10,000 and up
IDLE_TIMEOUT_S = 7440


def switch_table(mappings: int) -> FlowTable:
    """A flow table holding ``mappings`` TCP source-NAT mappings' rules, as ryu_nat sent them."""
    datapath = ofproto_protocol.ProtocolDesc(ofproto_v1_3.OFP_VERSION)
    plan = []
    for index in range(mappings):
        endpoint, remote = divmod(index, REMOTES)
        host = 0x0A000002 + endpoint % 60_000  # 10.0.0.2 and up, in the private /16
        original = pack_key(host, SERVER, FIRST_PORT + endpoint // 60_000, 81 + remote)
        reply = pack_key(SERVER, PUBLIC, 81 + remote, 1024 + endpoint)
        plan += [rules.mapping_rewrite(RuleKind.ORIGINAL, index + 1, Proto.TCP, original, reverse_key(reply),
                                       PRIVATE_PORT, ROUTER_MAC, SERVER_MAC, UPLINK, IDLE_TIMEOUT_S),
                 rules.mapping_rewrite(RuleKind.REPLY, index + 1, Proto.TCP, reply, reverse_key(original), UPLINK,
                                       ROUTER_MAC, HOST_MAC, PRIVATE_PORT, IDLE_TIMEOUT_S)]
    messages = encoder.to_messages(datapath, plan)
    for flow_mod in messages:
        flow_mod.set_xid(0)
        flow_mod.serialize()
    buf = bytearray(b"".join(flow_mod.buf for flow_mod in messages))
    table = FlowTable()
    now = time.perf_counter()
    for _, at, length in whole_messages(buf):
        table.flow_mod(buf, at, length, now)
    if len(table.rules) != 2 * mappings:
        raise RuntimeError(f"the emulated switch holds {len(table.rules)} rules, not {2 * mappings}")
    return table


async def session(controller: Controller, table: FlowTable) -> dict[str, Any]:
    """Connect the switch holding ``table``, keep set-ups going; the rebuild's report and the round trips."""
    loop = asyncio.get_running_loop()
    generator = Generator(RYU_NAT.flow_mods_per_setup)
    generator.flow_table = table
    switch = Switch(generator, dpid=1)
    connected = time.perf_counter()
    await loop.create_connection(lambda: switch, "127.0.0.1", controller.port)
    generator.switches = [switch]
    await asyncio.wait_for(switch.ready.wait(), 30)
    generator.tally = Tally()
    generator.launching = generator.measuring = True
    switch.window = OUTSTANDING
    switch.refill(time.perf_counter())
    switch.send(b"".join(switch.out))
    switch.out.clear()
    url = f"http://127.0.0.1:{controller.api_port}/nat/consistency"
    deadline = time.monotonic() + REBUILD_TIMEOUT_S
    report = None
    while report is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no restore report within {REBUILD_TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)  # no set-up counts as lost meanwhile: each waits as long as the rebuild
        status, answer = await asyncio.to_thread(http_json, "GET", url, None, 10)
        if status == 200 and answer["last_restore"] is not None:
            report = answer["last_restore"]
    reported = time.perf_counter()
    rtts_while_rebuilding = len(generator.tally.rtts)
    while time.perf_counter() < reported + AFTER_S:
        await asyncio.sleep(0.02)
        generator.expire_lost(time.perf_counter())
    generator.launching = generator.measuring = False
    if switch.transport is not None:
        switch.transport.close()
    return {"report": report, "connected_to_report_s": reported - connected, "rtts": list(generator.tally.rtts),
            "answered_while_rebuilding": rtts_while_rebuilding, "setups": generator.tally.setups,
            "lost": generator.tally.lost, "requests": table.requests, "entries": table.entries_sent}


def measure(mappings: int, reps: int, workdir: Path) -> list[dict[str, Any]]:
    config = (f"[nat]\npublic_ipv4 = 192.168.3.1/24\npublic_ipv4_gateway = 192.168.3.254\n"
              f"private_ipv4 = 10.0.0.1/16\npublic_port = 1\ntcp_table_size = {mappings + 16_384}\n")
    runs = []
    for rep in range(reps):
        table = switch_table(mappings)
        with Controller(RYU_NAT, workdir, config) as controller:
            result = asyncio.run(session(controller, table))
        problems = controller.log_problems()
        if problems:
            raise RuntimeError(f"ryu_nat: {problems[:3]} (log {controller.log_path})")
        counts = result["report"]["counts"]
        if counts.get("restored") != mappings or set(counts) - {"restored", "held"}:
            raise RuntimeError(f"restore of {mappings:,} mappings counted {counts}")
        runs.append(result)
        print(f"  restore: {mappings:,} mappings, rep {rep + 1}/{reps}: {result['report']['seconds']:.2f} s",
              file=sys.stderr)
    return runs


def rows_for(mappings: int, runs: list[dict[str, Any]]) -> list[Row]:
    rebuild = [run["report"]["seconds"] for run in runs]
    wall = [run["connected_to_report_s"] for run in runs]
    stall = [max(run["rtts"]) for run in runs if run["rtts"]]
    lost = sum(run["lost"] for run in runs)
    requests = [run["report"]["requests"] for run in runs]
    return [Row("restore", f"rebuild of {mappings:,} mappings from the switch's rules (controller's timing)", "s",
                Summary.of(rebuild),
                note=f"switch connection to report: {Summary.of(wall).text('s')}; statistics requests {requests}"),
            Row("restore", f"longest set-up round trip while {mappings:,} mappings are read back", "s",
                Summary.of(stall) if stall else None,
                note=f"{OUTSTANDING} new set-ups outstanding from the connection on: they wait for the whole "
                     f"rebuild; set-ups answered in all {[run['setups'] for run in runs]}, lost {lost}")]


def run(smoke: bool = False, reps: int = 3) -> tuple[list[Row], object]:
    """The rows of each size (each run's figures are in the rows' notes; no per-run detail)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="restore-") as workdir:
        for mappings in SMOKE_SIZES if smoke else SIZES:
            rows += rows_for(mappings, measure(mappings, 1 if smoke else reps, Path(workdir)))
    return rows, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for row in run(args.smoke, args.reps)[0]:
        print(row.console())


if __name__ == "__main__":
    main()
