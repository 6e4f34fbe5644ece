"""Short TCP connections and a SYN flood, run inside network namespaces (standard library only).

    conn_probe.py server --port 7000
    conn_probe.py client --to 192.168.3.10:7000 --count 750 --in-flight 16 [--rate 200] [--bind ADDR] [--latencies]
    conn_probe.py flood --to 192.168.3.1 --pps 2000 --seconds 12

The server accepts, reads one byte, writes one byte and closes. The client
makes ``count`` such connections (connect, one byte each way, close) with at
most ``in_flight`` open, as fast as it can or, with ``--rate``, started at that
many per second; it prints one JSON line: completed, failed (with reasons),
connect latencies (p50/p99, ms), wall time and its own CPU time. The flooder
sends TCP SYNs from random sources (198.18.0.0/15) to random ports of one
address through a raw socket, paced to ``pps``, and prints what it sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import socket
import struct
import sys
import time

CONNECT_TIMEOUT_S = 5.0


def _ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _serve(port: int) -> None:
    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(1)
            writer.write(b"y")
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(one, "0.0.0.0", port, backlog=1024, reuse_address=True)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


async def _client(host: str, port: int, count: int, in_flight: int, rate: float | None,
                  bind: str | None, with_latencies: bool) -> dict[str, object]:
    slots = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    failures: dict[str, int] = {}
    completed = 0

    async def one() -> None:
        nonlocal completed
        try:
            started = time.perf_counter()
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(bind, 0) if bind else None), CONNECT_TIMEOUT_S)
            latencies.append(time.perf_counter() - started)
            writer.write(b"x")
            await writer.drain()
            await asyncio.wait_for(reader.readexactly(1), CONNECT_TIMEOUT_S)
            writer.close()
            await writer.wait_closed()
            completed += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            reason = type(exc).__name__
            failures[reason] = failures.get(reason, 0) + 1
        finally:
            slots.release()

    tasks = []
    start = time.perf_counter()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"completed": completed, "failed": sum(failures.values()),
            "failures": failures, "wall_s": round(wall, 4), "connect_p50_ms": _ms(latencies, 0.5),
            "connect_p99_ms": _ms(latencies, 0.99), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            **({"latencies_ms": [round(1000 * x, 3) for x in latencies]} if with_latencies else {})}


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def flood(target: str, pps: float, seconds: float) -> dict[str, object]:
    dst = socket.inet_aton(target)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    rng = random.Random(1)
    sent = 0
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * pps)
        while sent < due:
            src = struct.pack("!I", 0xC6120000 | rng.getrandbits(17))  # 198.18.0.0/15
            sport, dport = rng.randint(1024, 65535), rng.randint(1024, 65535)
            pseudo = src + dst + struct.pack("!BBH", 0, 6, 20)
            tcp = struct.pack("!HHIIBBHHH", sport, dport, rng.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
            tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp)) + tcp[18:]
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst)
            sock.sendto(ip + tcp, (target, 0))
            sent += 1
        time.sleep(0.001)
    return {"sent": sent, "seconds": round(time.perf_counter() - start, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server")
    server.add_argument("--port", type=int, required=True)
    client = sub.add_parser("client")
    client.add_argument("--to", required=True, help="host:port")
    client.add_argument("--count", type=int, default=750)
    client.add_argument("--in-flight", type=int, default=16)
    client.add_argument("--rate", type=float, help="connections started per second (default: as fast as possible)")
    client.add_argument("--bind", help="source address")
    client.add_argument("--latencies", action="store_true", help="also print every connect latency")
    flooder = sub.add_parser("flood")
    flooder.add_argument("--to", required=True)
    flooder.add_argument("--pps", type=float, default=2000)
    flooder.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    if args.command == "server":
        asyncio.run(_serve(args.port))
    elif args.command == "client":
        host, _, port = args.to.rpartition(":")
        result = asyncio.run(_client(host, int(port), args.count, args.in_flight, args.rate, args.bind,
                                    args.latencies))
        print(json.dumps(result), flush=True)
    else:
        print(json.dumps(flood(args.to, args.pps, args.seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
