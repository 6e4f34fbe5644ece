"""Set-ups beside a hostile mix (issue 11): what strangers' packet-ins cost the legitimate flows.

One emulated switch (bench/ofload.py) keeps the light load's 4 legitimate
set-ups outstanding, as in the ``ofload`` section, while a second stream of
packet-ins arrives at a fixed rate: malformed frames (tests/unit/hostile.py's
families: truncated, bad lengths, bit flips, odd TCP options, nested ICMP
errors, VLAN, IPv6, odd ARP, random bytes), unsolicited SYNs from random
sources to random public ports, and fragment garbage from random sources. The
emulated switch keeps no flow table, so every hostile frame reaches the
controller, as if no drop rule ever matched (random senders and ports would
miss them anyway): the worst case.

Each repetition starts a fresh ``ryu-manager`` and runs three phases in rotating
order: no hostile traffic, 1,000 and 5,000 hostile packet-ins/s; then one more
phase of 5,000 hostile packet-ins/s alone. Reported: the legitimate set-up rate
and round-trip p99 with each rate against the phase without (side by side, same
controller); the controller's RSS before and after the hostile phase alone (the
legitimate set-ups' mappings live on, since the emulated switch never idles a
rule out, so over the three phases RSS grows with them: that growth is shown
too, without a target); and the tracebacks in its log.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import REPO, Row, Summary, Target, higher, paired, rss_bytes
from ofload import (LIGHT, RYU_NAT, SMOKE_PHASE_S, UPLINK, Controller, Generator, Phase, PhaseResult, Switch,
                    _run_phase, _warm_up, learning_frame, packet_in)

sys.path.insert(0, str(REPO))
from tests.unit import hostile  # noqa: E402  (needs the repository on sys.path)

RATES = (0, 1000, 5000)  # hostile packet-ins per second
PHASE_S = 5.0
POOL = 20_000  # hostile packet-ins built before measuring, sent in turn
BATCH_S = 0.01  # the hostile stream is sent in batches this far apart
MALFORMED = tuple(sorted(set(hostile.FAMILIES) - {"legit", "fragment"}))


def hostile_pool(size: int, rng: random.Random) -> list[bytes]:
    """``size`` packet-in messages: a third malformed, a third unsolicited SYNs, a third fragment garbage."""
    pool = []
    for i in range(size):
        kind = i % 3
        if kind == 0:
            in_port, frame = hostile.hostile_frame(rng, rng.choice(MALFORMED))
        elif kind == 1:
            in_port, frame = UPLINK, _unsolicited_syn(rng)
        else:
            in_port, frame = UPLINK, _fragment_garbage(rng)
        pool.append(packet_in(frame, in_port))
    return pool


def _stranger(rng: random.Random) -> str:
    return f"{rng.choice((198, 203, 100, 45))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _unsolicited_syn(rng: random.Random) -> bytes:
    src = _stranger(rng)
    segment = hostile.tcp(src, rng.randrange(1024, 65536), hostile.PUBLIC, rng.randrange(1, 65536))
    return hostile.ethernet(hostile.ROUTER_MAC, hostile.MACS[hostile.GATEWAY], hostile.ETH_IPV4,
                            hostile.ipv4(src, hostile.PUBLIC, hostile.TCP, segment))


def _fragment_garbage(rng: random.Random) -> bytes:
    src = _stranger(rng)
    more = rng.random() < 0.8
    payload = rng.randbytes(rng.choice((8, 64, 512, 1480)))
    offset = rng.choice((0, rng.randrange(1, 8192)))
    datagram = hostile.ipv4(src, hostile.PUBLIC, rng.choice((hostile.UDP, hostile.TCP, 47)), payload,
                            ident=rng.randrange(65536), flags_offset=(0x2000 if more else 0) | offset)
    return hostile.ethernet(hostile.ROUTER_MAC, hostile.MACS[hostile.GATEWAY], hostile.ETH_IPV4, datagram)


async def _send_hostile(switch: Switch, rate: int, pool: list[bytes], stop: asyncio.Event) -> float:
    """Send ``rate`` packet-ins a second from ``pool`` until ``stop``; the rate achieved."""
    sent, started = 0, time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate)
        if due > sent:
            switch.send(b"".join(pool[i % len(pool)] for i in range(sent, due)))
            sent = due
        await asyncio.sleep(BATCH_S)
    return sent / (time.perf_counter() - started)


@dataclass
class Session:
    """One controller's run: per hostile rate, the legitimate load's result and the hostile rate achieved."""

    results: dict[int, PhaseResult] = field(default_factory=dict)
    achieved: dict[int, float] = field(default_factory=dict)
    rss_before: int = 0  # after warm-up
    rss_after: int = 0  # after the three phases
    rss_alone_before: int = 0  # before the hostile phase alone
    rss_alone_after: int = 0
    setups: int = 0  # legitimate set-ups over the three phases (each leaves a live mapping)
    tracebacks: int = 0


async def _session(port: int, pid: int, rates: Sequence[int], seconds: float, pool: list[bytes]) -> Session:
    loop = asyncio.get_running_loop()
    generator = Generator(RYU_NAT.flow_mods_per_setup)
    switch = Switch(generator, dpid=1)
    await loop.create_connection(lambda: switch, "127.0.0.1", port)
    generator.switches = [switch]
    await asyncio.wait_for(switch.ready.wait(), 30)
    switch.send(packet_in(learning_frame(), UPLINK))
    await asyncio.sleep(0.3)
    await _warm_up(generator, [switch], 8)
    session = Session(rss_before=rss_bytes(pid))
    name, switches, per_switch = LIGHT
    for rate in rates:
        stop = asyncio.Event()
        sender = asyncio.create_task(_send_hostile(switch, rate, pool, stop)) if rate else None
        phase = Phase(f"{name} beside {rate}/s", 1, switches * per_switch, seconds)
        session.results[rate] = await _run_phase(generator, [switch], phase, pid)
        stop.set()
        session.achieved[rate] = await sender if sender else 0.0
    session.rss_after = rss_bytes(pid)
    session.setups = sum(result.tally.setups for result in session.results.values())
    session.rss_alone_before = rss_bytes(pid)
    stop = asyncio.Event()
    sender = asyncio.create_task(_send_hostile(switch, RATES[-1], pool, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await sender
    await asyncio.sleep(1.0)  # what was sent is taken in
    session.rss_alone_after = rss_bytes(pid)
    if switch.transport is not None:
        switch.transport.close()
    return session


def measure(reps: int, seconds: float, workdir: Path) -> list[Session]:
    pool = hostile_pool(POOL, random.Random(11))
    sessions = []
    for rep in range(reps):
        rates = [*RATES[rep % len(RATES):], *RATES[:rep % len(RATES)]]
        with Controller(RYU_NAT, workdir) as controller:
            assert controller.pid is not None
            session = asyncio.run(_session(controller.port, controller.pid, rates, seconds, pool))
        session.tracebacks = sum("Traceback" in line for line in controller.log_path.read_text().splitlines())
        sessions.append(session)
        print(f"  hostile: rep {rep + 1}/{reps} done", file=sys.stderr)
    return sessions


def rows(sessions: list[Session]) -> list[Row]:
    out = []
    alone = [s.results[0].setups_per_s for s in sessions]
    alone_p99 = [s.results[0].percentile_ms(0.99) for s in sessions]
    for rate in RATES[1:]:
        beside = [s.results[rate].setups_per_s for s in sessions]
        p99 = [s.results[rate].percentile_ms(0.99) for s in sessions]
        sent = Summary.of([s.achieved[rate] for s in sessions]).text("/s")
        lost = sum(s.results[rate].tally.lost for s in sessions)
        out.append(Row("hostile", f"legitimate set-ups/s beside {rate:,} hostile packet-ins/s (light load)", "/s",
                       Summary.of(beside), Summary.of(alone), "same controller, no hostile traffic",
                       paired(beside, alone, higher), Target(">=", 0.7),
                       note=f"hostile packet-ins sent {sent}; legitimate flows lost {lost}"))
        out.append(Row("hostile", f"legitimate round trip p99 beside {rate:,} hostile packet-ins/s", "ms",
                       Summary.of(p99), Summary.of(alone_p99), "no hostile traffic",
                       paired(p99, alone_p99, lambda c, b: b / c),
                       Target("<=", 20.0, on="ours") if rate == 1000 else None,
                       note="ratio: baseline / ours (higher is better)"))
    seconds = sessions[0].results[RATES[1]].seconds
    before = [s.rss_alone_before / 2**20 for s in sessions]
    after = [s.rss_alone_after / 2**20 for s in sessions]
    out.append(Row("hostile", f"controller RSS after {seconds:.2g} s of {RATES[-1]:,} hostile packet-ins/s alone",
                   "MiB", Summary.of(after), Summary.of(before), "before them", paired(after, before, higher),
                   Target("<=", 1.1), note="after the three phases; ratio: after / before (flat is 1)"))
    before = [s.rss_before / 2**20 for s in sessions]
    after = [s.rss_after / 2**20 for s in sessions]
    made = Summary.of([s.setups for s in sessions]).text("")
    out.append(Row("hostile", "controller RSS after the three phases vs after warm-up", "MiB", Summary.of(after),
                   Summary.of(before), "after warm-up", paired(after, before, higher),
                   note=f"grows with the {made} legitimate mappings made, which live on (no rule idles out in "
                        f"the emulated switch); ratio: end / start"))
    out.append(Row("hostile", "tracebacks in the controller's log", "", Summary.of([s.tracebacks for s in sessions]),
                   target=Target("==", 0.0, on="ours")))
    return out


def run(smoke: bool = False, reps: int = 3) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="hostile-") as workdir:
        return rows(measure(reps, SMOKE_PHASE_S if smoke else PHASE_S, Path(workdir)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for row in run(args.smoke, args.reps):
        print(row.console())


if __name__ == "__main__":
    main()
