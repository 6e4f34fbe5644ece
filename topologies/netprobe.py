"""Traffic probe run inside Mininet hosts: servers that report who reached them, clients that check.

Standard library only, so any ``python3`` in a host's namespace runs it. Every
client prints one JSON object on stdout and exits 0 when it ran, whatever the
network did: the caller judges the result. Servers print ``READY`` once
listening, then one JSON line per datagram or connection they receive.

Wire format (both protocols): the client sends a JSON request line, then
payload bytes; the server answers with a JSON header line (what it saw: the
peer address as it arrived, the TTL, the payload's length and SHA-256), then
payload bytes: UDP echoes the datagram's payload, TCP sends ``download``
bytes of :func:`pattern` data. So a check needs no trust in either side's
report alone: each end hashes what it got.

Sessions (``session-client``, against a ``udp-server`` or a ``tcp-echo-server``)
keep one socket open across rounds: a round sends a line and reads the
server's answer (what the server saw: the peer address), and the client waits
for ``--go FILE`` to exist between rounds, so that something (a controller
restart) can happen while the connection stays open. At the end a TCP session
half-closes and waits for the server's close (its FIN crosses the NAT too).

``raw-send`` puts Ethernet frames (hex, one per line of a file) on an
interface as they are, through an AF_PACKET socket: what an attacker on that
LAN could send (forged ARP, odd TCP options, fragment junk, spoofed sources).

Examples (from the Mininet CLI)::

    srv python3 topologies/netprobe.py udp-server --port 9999 --name srv &
    h1 python3 topologies/netprobe.py udp-client --to 192.168.3.10:9999 --size 4000
    h1 python3 topologies/netprobe.py tcp-client --to 192.168.3.10:8000 --upload 1048576 --download 1048576
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_DATAGRAM = 65535
CHUNK = 65536
_EMIT_LOCK = threading.Lock()  # TCP connections report from their own threads
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # Linux value; Python does not export it
IP_MTU = getattr(socket, "IP_MTU", 14)  # Linux: the path MTU the kernel knows for a connected socket


def pattern(size: int) -> bytes:
    """Deterministic bytes both ends can regenerate, so downloads are checked end to end."""
    return random.Random(size).randbytes(size)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def emit(obj: dict[str, Any]) -> None:
    with _EMIT_LOCK:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()


def received_ttl(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == socket.IP_TTL:
            return struct.unpack("i", data[:4])[0]
    return None


def split_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """``JSON object line + bytes``; raises ValueError on anything else."""
    line, _, rest = data.partition(b"\n")
    header = json.loads(line)
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header, rest


# Servers ---------------------------------------------------------------------------------------


def udp_server(args: argparse.Namespace) -> int:
    """Answer each datagram with what arrived (peer, TTL, hash), then echo its payload (``--silent``:
    only report it, so the flow stays one-way)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    sock.bind((args.bind, args.port))
    print("READY udp", args.port, flush=True)
    while True:
        data, ancdata, _flags, peer = sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(4))
        try:
            request, payload = split_header(data)
        except ValueError:
            request, payload = {}, data
        seen = {"proto": "udp", "server": args.name, "peer": list(peer),
                "ttl": received_ttl(ancdata), "len": len(payload), "sha256": digest(payload),
                "tag": request.get("tag")}
        emit(seen)
        if not args.silent:
            sock.sendto(json.dumps(seen).encode() + b"\n" + payload, peer)


def serve_tcp_connection(conn: socket.socket, peer: tuple[str, int], name: str) -> None:
    with conn:
        conn.settimeout(30)
        stream = conn.makefile("rb")
        try:
            request, _ = split_header(stream.readline())
        except ValueError:
            request = {}
        hasher, length = hashlib.sha256(), 0
        seen: dict[str, Any] = {"proto": "tcp", "server": name, "peer": list(peer), "tag": request.get("tag")}
        try:
            while chunk := stream.read1(CHUNK):
                hasher.update(chunk)
                length += len(chunk)
        except ConnectionResetError:
            emit({**seen, "error": "reset"})
            return
        seen.update(len=length, sha256=hasher.hexdigest())
        emit(seen)
        time.sleep(float(request.get("hold", 0)))
        conn.sendall(json.dumps(seen).encode() + b"\n" + pattern(int(request.get("download", 0))))


def tcp_server(args: argparse.Namespace) -> int:
    """Per connection: read the request and the upload to EOF, answer, send the download, close."""
    return serve_tcp(args, "tcp", serve_tcp_connection)


def tcp_echo_server(args: argparse.Namespace) -> int:
    """Per connection, per line received: one line back, what the server saw (peer) and the line; close on EOF."""
    return serve_tcp(args, "tcp-echo", echo_lines)


def serve_tcp(args: argparse.Namespace, kind: str,
              serve: Callable[[socket.socket, tuple[str, int], str], None]) -> int:
    """Listen on ``args.port``, say READY, and ``serve`` each connection in its own thread."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.bind, args.port))
    listener.listen(128)
    print("READY", kind, args.port, flush=True)
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=serve, args=(conn, peer, args.name), daemon=True).start()


def echo_lines(conn: socket.socket, peer: tuple[str, int], name: str) -> None:
    with conn:
        conn.settimeout(300)
        stream = conn.makefile("rb")
        try:
            for line in stream:
                seen = {"proto": "tcp", "server": name, "peer": list(peer), "echo": line.decode(errors="replace").strip()}
                emit(seen)
                conn.sendall(json.dumps(seen).encode() + b"\n")
        except OSError:
            return


# Clients ---------------------------------------------------------------------------------------


def udp_exchange(sock: socket.socket, dest: tuple[str, int], message: bytes, payload: bytes,
                 args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"to": f"{dest[0]}:{dest[1]}"}
    for _attempt in range(args.tries):
        try:
            if args.connect:
                sock.send(message)
            else:
                sock.sendto(message, dest)
            deadline = time.monotonic() + args.timeout
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                data, ancdata, _flags, source = sock.recvmsg(MAX_DATAGRAM, socket.CMSG_SPACE(4))
                if source[0] == dest[0] and source[1] == dest[1]:
                    break
        except ConnectionRefusedError:
            # An ICMP port unreachable, reported on a connected socket (Linux).
            result["error"] = "refused"
            return result
        except TimeoutError:
            result["error"] = "timeout"
            continue
        except OSError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                # An ICMP host unreachable or administratively prohibited (RFC 5508 REQ-8 from a NAT).
                result["error"] = "unreachable"
                return result
            if exc.errno != errno.EMSGSIZE:
                raise
            # An ICMP fragmentation needed, reported on a connected socket (Linux): it now knows the
            # path MTU, and cuts the next try itself.
            result["error"] = "too_big"
            continue
        reply, echoed = split_header(data)
        result.pop("error", None)
        result.update(reply=reply, reply_ttl=received_ttl(ancdata), echo_ok=echoed == payload,
                      upload_ok=reply["sha256"] == digest(payload))
        return result
    return result


def udp_client(args: argparse.Namespace) -> int:
    """Send one datagram to each ``--to`` from one socket (so one mapping), report each answer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    sock.bind(("0.0.0.0", args.from_port))
    dests = [endpoint(text) for text in args.to]
    args.connect = len(dests) == 1
    if args.connect:
        sock.connect(dests[0])
    payload = os.urandom(args.size)
    message = json.dumps({"tag": args.tag}).encode() + b"\n" + payload
    results = [udp_exchange(sock, dest, message, payload, args) for dest in dests]
    path_mtu = sock.getsockopt(socket.IPPROTO_IP, IP_MTU) if args.connect else None
    emit({"local": list(sock.getsockname()), "results": results, "path_mtu": path_mtu})
    return 0


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_error(args: argparse.Namespace) -> int:
    """Send one ICMP time exceeded to ``--to``, as a router would, quoting a UDP datagram from
    ``--about`` (IP:PORT>IP:PORT): the kernel writes the outer header, from this host's address."""
    source, _, target = args.about.partition(">")
    (src, sport), (dst, dport) = endpoint(source), endpoint(target)
    udp = struct.pack("!HHHH", sport, dport, 8 + 4, 0) + b"ping"
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 7, 0, 1, socket.IPPROTO_UDP, 0,
                                   socket.inet_aton(src), socket.inet_aton(dst)))
    header[10:12] = struct.pack("!H", inet_checksum(bytes(header)))
    body = bytearray(struct.pack("!BBHI", 11, 0, 0, 0) + bytes(header) + udp[:8])
    body[2:4] = struct.pack("!H", inet_checksum(bytes(body)))
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.sendto(bytes(body), (args.to, 0))
    emit({"sent": len(body)})
    return 0


def icmp_listen(args: argparse.Namespace) -> int:
    """Print the first ICMP error (of ``--type``, if given) that arrives within ``--timeout``: its source and
    the datagram it quotes."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.settimeout(args.timeout)
        print("READY", flush=True)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            try:
                data, (source, _) = sock.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                break
            at = (data[0] & 0xF) * 4
            if data[at] not in (3, 11, 12) or len(data) < at + 8 + 28 or args.type not in (None, data[at]):
                continue
            quoted = data[at + 8:]
            inner_at = (quoted[0] & 0xF) * 4
            sport, dport = struct.unpack_from("!HH", quoted, inner_at)
            emit({"from": source, "type": data[at], "code": data[at + 1],
                  "icmp_checksum_ok": inet_checksum(data[at:]) == 0,
                  "quoted": {"src": socket.inet_ntoa(quoted[12:16]), "dst": socket.inet_ntoa(quoted[16:20]),
                             "sport": sport, "dport": dport}})
            return 0
    emit({"error": "timeout"})
    return 0


def udp_peer(args: argparse.Namespace) -> int:
    """One socket that both sends and listens, as a peer-to-peer application does (hole punching).

    Sends ``--count`` datagrams, ``--interval`` s apart, to each ``--to``; prints one JSON line per
    datagram received, at once (the peer as it arrived, and the sender's request line), answering each
    with what arrived (as udp-server does); stops ``--listen`` s after its last send, with a summary.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", args.from_port))
    dests = [endpoint(text) for text in args.to]
    message = json.dumps({"tag": args.tag}).encode() + b"\n"
    received: list[dict[str, Any]] = []
    next_send, sends_left = time.monotonic(), args.count
    stop_at = next_send + args.count * args.interval + args.listen
    while time.monotonic() < stop_at:
        now = time.monotonic()
        if sends_left and now >= next_send:
            for dest in dests:
                try:
                    sock.sendto(message, dest)
                except OSError:
                    pass  # an ICMP error about an earlier datagram; the next one is tried anyway
            sends_left -= 1
            next_send = now + args.interval
        sock.settimeout(max(0.01, (next_send if sends_left else stop_at) - time.monotonic()))
        try:
            data, peer = sock.recvfrom(MAX_DATAGRAM)
        except (TimeoutError, OSError):
            continue
        try:
            header, payload = split_header(data)
        except ValueError:
            header, payload = {}, data
        seen = {"event": "received", "peer": list(peer), "header": header}
        received.append(seen)
        emit(seen)
        if header.get("peer") is None:  # not itself an answer: answer it, as udp-server does
            answer = {"proto": "udp", "server": args.tag, "peer": list(peer), "ttl": None, "len": len(payload),
                      "sha256": digest(payload), "tag": header.get("tag")}
            sock.sendto(json.dumps(answer).encode() + b"\n" + payload, peer)
    emit({"local": list(sock.getsockname()), "received": received})
    return 0


def tcp_exchange(dest: tuple[str, int], args: argparse.Namespace, upload: bytes) -> dict[str, Any]:
    result: dict[str, Any] = {"to": f"{dest[0]}:{dest[1]}"}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", args.from_port))
        sock.settimeout(args.timeout)
        sock.connect(dest)
        result["local"] = list(sock.getsockname())
        request = {"download": args.download, "hold": args.hold, "tag": args.tag}
        sock.sendall(json.dumps(request).encode() + b"\n" + upload)
        if args.reset:  # close at once with an RST (no linger), not a FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            result["reset"] = True
            return result
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(CHUNK):
            chunks.append(chunk)
    except ConnectionRefusedError:
        result["error"] = "refused"
        return result
    except TimeoutError:
        result["error"] = "timeout"
        return result
    except OSError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    finally:
        sock.close()
    try:
        reply, downloaded = split_header(b"".join(chunks))
    except ValueError:
        result["error"] = "bad reply"
        return result
    result.update(reply=reply, upload_ok=reply["sha256"] == digest(upload) and reply["len"] == len(upload),
                  download_ok=downloaded == pattern(args.download), downloaded=len(downloaded))
    return result


def tcp_client(args: argparse.Namespace) -> int:
    """One connection: upload, then download; both checked by hash."""
    emit(tcp_exchange(endpoint(args.to), args, os.urandom(args.upload)))
    return 0


def tcp_many(args: argparse.Namespace) -> int:
    """``--count`` sequential connections, each from a new source port; report the failures.

    Gives up after ``--max-failures``, so a broken path fails in seconds, not minutes.
    """
    failures, ok = [], 0
    started = time.monotonic()
    for index in range(args.count):
        result = tcp_exchange(endpoint(args.to), args, str(index).encode())
        if "error" in result or not result["upload_ok"]:
            failures.append({"index": index, **result})
            if len(failures) >= args.max_failures:
                break
        else:
            ok += 1
    emit({"count": args.count, "ok": ok, "failures": failures,
          "seconds": round(time.monotonic() - started, 3)})
    return 0


def session_client(args: argparse.Namespace) -> int:
    """One socket, ``--rounds`` rounds; before each round but the first, wait for ``--go`` to exist. Prints a
    JSON line per round as it ends, then the result: each round's answer, and for TCP whether the server's
    close arrived after ours."""
    dest = endpoint(args.to)
    kind = socket.SOCK_STREAM if args.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", args.from_port))
    sock.settimeout(args.timeout)
    result: dict[str, Any] = {"to": args.to, "rounds": []}
    try:
        sock.connect(dest)
        result["local"] = list(sock.getsockname())
        lines = sock.makefile("rb") if kind == socket.SOCK_STREAM else None
        for index in range(args.rounds):
            if index:
                wait_for_file(args.go, args.wait)
            result["rounds"].append(session_round(sock, lines, index))
            emit({"round": index + 1, **result["rounds"][-1]})
        if lines is not None:
            sock.shutdown(socket.SHUT_WR)
            result["closed_by_server"] = lines.read() == b""
    except (OSError, TimeoutError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()
    emit(result)
    return 0


def session_round(sock: socket.socket, lines: Any, index: int) -> dict[str, Any]:
    """One line out, the server's answer back; what the server saw."""
    word = f"round-{index + 1}-{random.randrange(1 << 32):08x}"
    if lines is None:
        sock.send(json.dumps({"tag": word}).encode() + b"\n" + word.encode())
        answer, echoed = split_header(sock.recv(MAX_DATAGRAM))
        return {"peer": answer["peer"], "ok": echoed == word.encode()}
    sock.sendall(word.encode() + b"\n")
    answer = json.loads(lines.readline())
    return {"peer": answer["peer"], "ok": answer["echo"] == word}


def wait_for_file(path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{path} did not appear within {timeout_s:g} s")
        time.sleep(0.05)


def raw_send(args: argparse.Namespace) -> int:
    """Send the frames of ``--frames`` (hex, one per line) out of ``--intf``, at most ``--rate`` a second."""
    with open(args.frames) as lines:
        frames = [bytes.fromhex(line.strip()) for line in lines if line.strip()]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.intf, 0))
    gap = 1.0 / args.rate if args.rate else 0.0
    started = time.monotonic()
    for index, frame in enumerate(frames):
        if gap:
            time.sleep(max(0.0, started + index * gap - time.monotonic()))
        sock.send(frame)
    emit({"sent": len(frames), "seconds": round(time.monotonic() - started, 3)})
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    for name, handler in (("udp-server", udp_server), ("tcp-server", tcp_server), ("tcp-echo-server", tcp_echo_server)):
        sub = commands.add_parser(name)
        sub.add_argument("--port", type=int, required=True)
        sub.add_argument("--bind", default="0.0.0.0")
        sub.add_argument("--name", default="netprobe", help="reported in every answer")
        sub.set_defaults(handler=handler)
        if name == "udp-server":
            sub.add_argument("--silent", action="store_true", help="report datagrams, answer none")

    udp = commands.add_parser("udp-client")
    udp.add_argument("--to", action="append", required=True, help="IP:PORT, repeatable")
    udp.add_argument("--size", type=int, default=64, help="payload bytes")
    udp.add_argument("--tries", type=int, default=1,
                     help="sends before giving up (1: a lost first datagram fails)")
    udp.set_defaults(handler=udp_client)

    peer = commands.add_parser("udp-peer")
    peer.add_argument("--to", action="append", default=[], help="IP:PORT, repeatable")
    peer.add_argument("--count", type=int, default=1, help="datagrams to each --to")
    peer.add_argument("--interval", type=float, default=0.2, help="seconds between sends")
    peer.add_argument("--listen", type=float, default=2.0, help="seconds to listen after the last send")
    peer.set_defaults(handler=udp_peer)

    tcp = commands.add_parser("tcp-client")
    tcp.add_argument("--to", required=True, help="IP:PORT")
    tcp.add_argument("--upload", type=int, default=64)
    tcp.add_argument("--download", type=int, default=64)
    tcp.add_argument("--hold", type=float, default=0.0, help="server waits this long before answering")
    tcp.add_argument("--reset", action="store_true", help="send the request, then reset the connection")
    tcp.set_defaults(handler=tcp_client)

    many = commands.add_parser("tcp-many")
    many.add_argument("--to", required=True, help="IP:PORT")
    many.add_argument("--count", type=int, default=300)
    many.add_argument("--max-failures", type=int, default=5)
    many.set_defaults(handler=tcp_many, download=0, hold=0.0, reset=False)

    session = commands.add_parser("session-client")
    session.add_argument("--proto", choices=("tcp", "udp"), required=True)
    session.add_argument("--to", required=True, help="IP:PORT (a tcp-echo-server or a udp-server)")
    session.add_argument("--rounds", type=int, default=2)
    session.add_argument("--go", required=True, help="a round after the first starts once this file exists")
    session.add_argument("--wait", type=float, default=120.0, help="seconds to wait for --go")
    session.set_defaults(handler=session_client)

    error = commands.add_parser("icmp-error")
    error.add_argument("--to", required=True, help="IP the error is sent to")
    error.add_argument("--about", required=True, help="the quoted UDP datagram, SRC:PORT>DST:PORT")
    error.set_defaults(handler=icmp_error)

    listen = commands.add_parser("icmp-listen")
    listen.add_argument("--timeout", type=float, default=5.0)
    listen.add_argument("--type", type=int, default=None, help="only this ICMP type")
    listen.set_defaults(handler=icmp_listen)
    raw = commands.add_parser("raw-send")
    raw.add_argument("--intf", required=True, help="interface to send on")
    raw.add_argument("--frames", required=True, help="file of frames, hex, one per line")
    raw.add_argument("--rate", type=float, default=0.0, help="frames per second (0: as fast as possible)")
    raw.set_defaults(handler=raw_send)

    for sub in (udp, peer, tcp, many, session):
        sub.add_argument("--from-port", type=int, default=0, help="source port (0: any)")
        sub.add_argument("--timeout", type=float, default=3.0, help="seconds per attempt")
        sub.add_argument("--tag", default="")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
