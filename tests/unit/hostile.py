"""Hostile frames for the fuzz tests and the ``parsing`` benchmark, and the checks they share.

Frames are built byte by byte with ``struct`` (no parser in the way, so any
field can hold any value), from a ``random.Random``: the unit tests draw one
from hypothesis (``st.randoms()``), the benchmark seeds its own. Addresses are
those of :mod:`tests.unit.lab`, so frames reach every path of the gateway:
set-ups, redirects, unsolicited traffic, ICMP errors, fragments and ARP.
"""

from __future__ import annotations

import random
import signal
import struct
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from types import FrameType
from typing import Any, TypeVar

from ryu_nat.config import parse_config
from ryu_nat.core.addresses import Proto
from ryu_nat.core.checksum import adjust, checksum
from ryu_nat.core.table import MappingKind
from ryu_nat.gateway import Gateway

from .lab import (BASE_CONFIG, GATEWAY, H1, H1_PORT, H2, H2_PORT, INTERNET, MACS, PRIVATE, PUBLIC, ROUTER_MAC,
                  SERVER, UPLINK)

T = TypeVar("T")
REPEAT_ALARM_S = 0.05
ETH_IPV4, ETH_ARP, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x0806, 0x86DD, 0x8100, 0x88A8
TCP, UDP, ICMP = 6, 17, 1
SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
PRIVATE_HOSTS = ((H1, H1_PORT), (H2, H2_PORT))
REMOTES = (SERVER, INTERNET, GATEWAY, "203.0.113.7")
REDIRECT_PORTS = ((TCP, 8080), (UDP, 5353))
# Addresses a stranger may claim: its own, the NAT's, networks, broadcasts, multicast, loopback, zero.
ODD_ADDRESSES = (PUBLIC, PRIVATE, "10.0.0.0", "10.0.0.255", "192.168.3.0", "192.168.3.255", "255.255.255.255",
                 "224.0.0.1", "127.0.0.1", "0.0.0.0")
ODD_MACS = (BROADCAST_MAC, ZERO_MAC, "01:00:5e:00:00:01", "33:33:00:00:00:01", ROUTER_MAC)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ip_int(text: str) -> int:
    return int(IPv4Address(text))


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    """An Ethernet II frame, padded to the 60-byte minimum."""
    frame = mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload
    return frame + bytes(max(0, 60 - len(frame)))


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64, ident: int = 0x1234,
         flags_offset: int = 0, options: bytes = b"") -> bytes:
    """An IPv4 datagram with a correct header checksum (options padded to 4 bytes)."""
    options += bytes(-len(options) % 4)
    header_len = 20 + len(options)
    header = struct.pack("!BBHHHBBHII", 0x40 | header_len // 4, 0, header_len + len(payload), ident, flags_offset,
                         ttl, proto, 0, ip_int(src), ip_int(dst)) + options
    return fix_ip_checksum(header + payload)


def fix_ip_checksum(datagram: bytes) -> bytes:
    """The datagram with its header checksum computed again (over the IHL it claims, as far as present)."""
    header_len = max(20, (datagram[0] & 0xF) * 4) if datagram else 20
    if len(datagram) < 20:
        return datagram
    header = bytearray(datagram[:header_len])
    header[10:12] = b"\x00\x00"
    header[10:12] = struct.pack("!H", checksum(bytes(header)))
    return bytes(header) + datagram[header_len:]


def _l4_checksum(src: str, dst: str, proto: int, segment: bytes, at: int) -> bytes:
    pseudo = struct.pack("!IIBBH", ip_int(src), ip_int(dst), 0, proto, len(segment))
    value = checksum(pseudo + segment) or (0xFFFF if proto == UDP else 0)
    return segment[:at] + struct.pack("!H", value) + segment[at + 2:]


def tcp(src: str, sport: int, dst: str, dport: int, flags: int = SYN, options: bytes = b"",
        payload: bytes = b"", data_offset: int | None = None) -> bytes:
    """A TCP segment with a correct checksum; ``data_offset`` (in words) may lie."""
    options += b"\x00" * (-len(options) % 4)
    offset = data_offset if data_offset is not None else 5 + len(options) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, (offset & 0xF) << 4, flags, 65535, 0, 0)
    return _l4_checksum(src, dst, TCP, header + options + payload, 16)


def udp(src: str, sport: int, dst: str, dport: int, payload: bytes = b"hello", length: int | None = None) -> bytes:
    segment = struct.pack("!HHHH", sport, dport, length if length is not None else 8 + len(payload), 0) + payload
    return _l4_checksum(src, dst, UDP, segment, 6)


def icmp(kind: int, code: int, rest: bytes, body: bytes = b"") -> bytes:
    """An ICMP message: type, code, checksum, 4 bytes of ``rest`` (id and sequence, or unused), body."""
    message = bytearray(struct.pack("!BBH", kind, code, 0) + rest[:4].ljust(4, b"\x00") + body)
    message[2:4] = struct.pack("!H", checksum(bytes(message)))
    return bytes(message)


def arp(opcode: int, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str, hwtype: int = 1,
        proto: int = ETH_IPV4, hlen: int = 6, plen: int = 4) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", hwtype, proto, hlen, plen, opcode, mac_bytes(sender_mac),
                       IPv4Address(sender_ip).packed, mac_bytes(target_mac), IPv4Address(target_ip).packed)


def tcp_option_syn(kind: int, length: int, from_outside: bool, lead_nops: int = 0,
                   tail: bytes = b"\x01\x01") -> tuple[int, bytes]:
    """(in_port, frame): a SYN whose options hold ``kind`` with length byte ``length``.

    With the defaults a SACK (5) with length 0 is ``05 00 01 01``, the option on
    which Ryu 4.34's parser never returns. From outside it goes to the public
    address (a stranger's unsolicited SYN); from inside, from H1 to SERVER.
    """
    options = b"\x01" * lead_nops + bytes((kind, length)) + tail
    options = options[:40]
    if from_outside:
        segment = tcp(INTERNET, 40000 + kind, PUBLIC, 8000 + length, options=options)
        return UPLINK, ethernet(ROUTER_MAC, MACS[GATEWAY], ETH_IPV4, ipv4(INTERNET, PUBLIC, TCP, segment))
    segment = tcp(H1, 40000 + kind, SERVER, 80, options=options)
    return H1_PORT, ethernet(ROUTER_MAC, MACS[H1], ETH_IPV4, ipv4(H1, SERVER, TCP, segment))


def every_tcp_option() -> Iterator[tuple[int, int, int, bytes]]:
    """(kind, length byte, in_port, frame) for every option kind and every length byte.

    Sides alternate. Each frame is a template SYN with the option's two bytes and
    the TCP checksum changed (RFC 1624), so all 65,536 are built in well under a second.
    """
    templates = [tcp_option_syn(0, 0, from_outside) for from_outside in (False, True)]
    option_at = 14 + 20 + 20
    csum_at = 14 + 20 + 16
    for kind in range(256):
        for length in range(256):
            in_port, template = templates[(kind + length) % 2]
            raw = bytearray(template)
            raw[option_at:option_at + 2] = bytes((kind, length))
            old_csum = int.from_bytes(template[csum_at:csum_at + 2], "big")
            raw[csum_at:csum_at + 2] = adjust(old_csum, (0,), (kind << 8 | length,)).to_bytes(2, "big")
            yield kind, length, in_port, bytes(raw)


# --- the generator ------------------------------------------------------------------------------


def _port(rng: random.Random) -> int:
    return rng.choice((rng.randrange(65536), 0, 53, 80, 8080, 5353, 65535))


def _legit_datagram(rng: random.Random) -> tuple[int, str, str, bytes]:
    """(in_port, eth_src, eth_dst, IPv4 datagram): traffic the gateway handles every day."""
    inside = rng.random() < 0.5
    if inside:
        host, in_port = rng.choice(PRIVATE_HOSTS)
        src, dst, eth_src = host, rng.choice(REMOTES + (PUBLIC, PRIVATE, H1, H2)), MACS[host]
    else:
        in_port, src, dst, eth_src = UPLINK, rng.choice(REMOTES), PUBLIC, MACS[SERVER]
    sport = _port(rng)
    if not inside and rng.random() < 0.3:
        proto, dport = rng.choice(REDIRECT_PORTS)
    else:
        proto, dport = rng.choice((TCP, UDP, ICMP)), _port(rng)
    if proto == TCP:
        body = tcp(src, sport, dst, dport, flags=rng.choice((SYN, ACK, SYN | ACK, FIN | ACK, RST, 0xFF)),
                   options=b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + bytes(10), payload=rng.randbytes(rng.randrange(8)))
    elif proto == UDP:
        body = udp(src, sport, dst, dport, payload=rng.randbytes(rng.randrange(16)))
    else:
        kind = rng.choice((8, 0, 13, 14, 15, 16, 3, 11, 12, 5, 42))
        quoted = ipv4(dst, src, UDP, udp(dst, dport, src, sport))[:28]
        body = icmp(kind, rng.randrange(16), struct.pack("!HH", sport, 1), quoted if kind in (3, 11, 12) else b"ping")
    ttl = rng.choice((64, 1, 2, 0, 255))
    flags = rng.choice((0, 0, 0x4000))
    return in_port, eth_src, ROUTER_MAC, ipv4(src, dst, proto, body, ttl=ttl, flags_offset=flags,
                                              ident=rng.randrange(65536))


def _legit_frame(rng: random.Random) -> tuple[int, bytes]:
    in_port, eth_src, eth_dst, datagram = _legit_datagram(rng)
    return in_port, ethernet(eth_dst, eth_src, ETH_IPV4, datagram)


def _tcp_option(rng: random.Random) -> tuple[int, bytes]:
    tail = rng.randbytes(rng.randrange(12))
    return tcp_option_syn(rng.randrange(256), rng.randrange(256), rng.random() < 0.5, rng.randrange(4), tail)


def _truncated(rng: random.Random) -> tuple[int, bytes]:
    """A real frame cut anywhere, with or without its IP lengths (and checksum) made to agree."""
    in_port, eth_src, eth_dst, datagram = _legit_datagram(rng)
    cut = rng.randrange(len(datagram) + 1)
    datagram = datagram[:cut]
    if rng.random() < 0.5 and cut >= 20:
        datagram = fix_ip_checksum(datagram[:2] + struct.pack("!H", cut) + datagram[4:])
    frame = mac_bytes(eth_dst) + mac_bytes(eth_src) + struct.pack("!H", ETH_IPV4) + datagram
    return in_port, frame[: rng.choice((len(frame), rng.randrange(len(frame) + 1)))]


def _bad_header(rng: random.Random) -> tuple[int, bytes]:
    """IHL, version, total length, transport lengths or data offset set to anything; checksum mostly fixed."""
    in_port, eth_src, eth_dst, datagram = _legit_datagram(rng)
    raw = bytearray(datagram)
    header_len = (raw[0] & 0xF) * 4
    field = rng.randrange(5)
    if field == 0:
        raw[0] = rng.choice((0x40, 0x45, 0x60, 0x00, 0xF5)) & 0xF0 | rng.randrange(16)
    elif field == 1:
        raw[2:4] = struct.pack("!H", rng.choice((0, 19, 20, 21, len(raw) - 1, len(raw) + 1, 65535,
                                                  rng.randrange(65536))))
    elif field == 2 and raw[9] == TCP and len(raw) > header_len + 12:
        raw[header_len + 12] = rng.randrange(16) << 4
    elif field == 3 and raw[9] == UDP and len(raw) > header_len + 5:
        raw[header_len + 4:header_len + 6] = struct.pack("!H", rng.randrange(65536))
    else:
        raw[6:8] = struct.pack("!H", rng.randrange(65536))  # flags and fragment offset
    out = bytes(raw)
    if rng.random() < 0.8:
        out = fix_ip_checksum(out)
    return in_port, ethernet(eth_dst, eth_src, ETH_IPV4, out)


def _bit_flips(rng: random.Random) -> tuple[int, bytes]:
    in_port, frame = _legit_frame(rng)
    raw = bytearray(frame)
    for _ in range(rng.randrange(1, 6)):
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    if rng.random() < 0.5 and len(raw) >= 34:
        raw[14:] = fix_ip_checksum(bytes(raw[14:]))
    return rng.choice((in_port, UPLINK, H1_PORT, H2_PORT)), bytes(raw)


def _nested_icmp_error(rng: random.Random) -> tuple[int, bytes]:
    """ICMP errors quoting ICMP errors, a few levels deep, quoting whole or cut."""
    inside = rng.random() < 0.5
    host, in_port = rng.choice(PRIVATE_HOSTS)
    src, dst = (host, rng.choice(REMOTES)) if inside else (rng.choice(REMOTES), PUBLIC)
    datagram = ipv4(dst, src, UDP, udp(dst, _port(rng), src, _port(rng)))
    for _ in range(rng.randrange(1, 5)):
        quoted = datagram[: rng.choice((28, len(datagram), rng.randrange(len(datagram) + 1)))]
        datagram = ipv4(src, dst, ICMP, icmp(rng.choice((3, 11, 12)), rng.randrange(16), b"", quoted))
    eth_src = MACS[host] if inside else MACS[SERVER]
    return (in_port if inside else UPLINK), ethernet(ROUTER_MAC, eth_src, ETH_IPV4, datagram)


def _tagged(rng: random.Random) -> tuple[int, bytes]:
    """VLAN or QinQ tags around real IPv4; IPv6; odd ethertypes and 802.3 lengths."""
    in_port, eth_src, eth_dst, datagram = _legit_datagram(rng)
    vlan = struct.pack("!HH", rng.randrange(4096), ETH_IPV4)
    choice = rng.randrange(4)
    if choice == 0:
        return in_port, ethernet(eth_dst, eth_src, ETH_VLAN, vlan + datagram)
    if choice == 1:
        return in_port, ethernet(eth_dst, eth_src, ETH_QINQ, struct.pack("!HH", rng.randrange(4096), ETH_VLAN)
                                 + vlan + datagram)
    if choice == 2:
        ipv6 = struct.pack("!IHBB", 6 << 28, 8, 17, 64) + bytes(32) + rng.randbytes(8)
        return in_port, ethernet(eth_dst, eth_src, ETH_IPV6, ipv6)
    return in_port, ethernet(eth_dst, eth_src, rng.choice((0x0000, 0x05DC, 0x88CC, 0x8847, 0xFFFF)), datagram)


def _odd_arp(rng: random.Random) -> tuple[int, bytes]:
    """ARP with odd sizes, opcodes and types, group or zero MACs, and claims to others' addresses."""
    in_port = rng.choice((UPLINK, H1_PORT, H2_PORT))
    sender_ip = rng.choice(ODD_ADDRESSES + REMOTES + (H1, H2, GATEWAY))
    target_ip = rng.choice((PUBLIC, PRIVATE, GATEWAY, H1, rng.choice(ODD_ADDRESSES)))
    sender_mac = rng.choice(ODD_MACS + (MACS[SERVER], MACS[H1]))
    body = arp(rng.choice((1, 2, 0, 3, 65535)), sender_mac, sender_ip, rng.choice(ODD_MACS), target_ip,
               hwtype=rng.choice((1, 1, 6, 0)), proto=rng.choice((ETH_IPV4, ETH_IPV4, ETH_IPV6, 0)),
               hlen=rng.choice((6, 6, 0, 8, 255)), plen=rng.choice((4, 4, 0, 16, 255)))
    body = body[: rng.choice((len(body), rng.randrange(len(body) + 1)))]
    frame = mac_bytes(rng.choice((BROADCAST_MAC, ROUTER_MAC))) + mac_bytes(sender_mac) + struct.pack("!H", ETH_ARP)
    return in_port, frame + body


def _fragment(rng: random.Random) -> tuple[int, bytes]:
    """Fragments: few idents so pieces meet, any offset and size, duplicates, overlaps, zero length."""
    inside = rng.random() < 0.4
    host, in_port = rng.choice(PRIVATE_HOSTS)
    src, dst = (host, rng.choice(REMOTES)) if inside else (rng.choice(REMOTES), PUBLIC)
    proto = rng.choice((TCP, UDP, ICMP, 47))
    offset = rng.choice((0, 0, 1, 2, 185, rng.randrange(8192)))
    more = rng.random() < 0.7
    size = rng.choice((0, 8, 16, 24, 1480, rng.randrange(64)))
    payload = (udp(src, 1234, dst, 53, payload=bytes(size)) if offset == 0 and proto == UDP
               else bytes(rng.randrange(256) for _ in range(min(size, 64))) + bytes(max(0, size - 64)))
    datagram = ipv4(src, dst, proto, payload, ident=rng.randrange(4), flags_offset=(0x2000 if more else 0) | offset)
    eth_src = MACS[host] if inside else MACS[SERVER]
    return (in_port if inside else UPLINK), ethernet(ROUTER_MAC, eth_src, ETH_IPV4, datagram)


def _random_bytes(rng: random.Random) -> tuple[int, bytes]:
    header = mac_bytes(ROUTER_MAC) + mac_bytes(rng.choice((MACS[SERVER], MACS[H1]))) + struct.pack(
        "!H", rng.choice((ETH_IPV4, ETH_ARP, ETH_VLAN, rng.randrange(65536))))
    return rng.choice((UPLINK, H1_PORT, H2_PORT)), (header + rng.randbytes(rng.randrange(80)))[: rng.randrange(100)]


FAMILIES: dict[str, Callable[[random.Random], tuple[int, bytes]]] = {
    "legit": _legit_frame,
    "tcp_option": _tcp_option,
    "truncated": _truncated,
    "bad_header": _bad_header,
    "bit_flips": _bit_flips,
    "nested_icmp_error": _nested_icmp_error,
    "tagged": _tagged,
    "odd_arp": _odd_arp,
    "fragment": _fragment,
    "random_bytes": _random_bytes,
}


def hostile_frame(rng: random.Random, family: str | None = None) -> tuple[int, bytes]:
    """(in_port, frame) of ``family``, or of one chosen at random."""
    return FAMILIES[family or rng.choice(sorted(FAMILIES))](rng)


def connected_gateway(seed: int = 3) -> Gateway:
    """The lab's gateway (tests.unit.lab's configuration), its switch just connected."""
    gateway = Gateway(parse_config(BASE_CONFIG), random.Random(seed))
    gateway.switch_connected([UPLINK, H1_PORT, H2_PORT], now=0.0)
    gateway.review.restore_done(0.0)  # a switch with no rules of ours: nothing to read back
    return gateway


# --- the checks ---------------------------------------------------------------------------------


class DeadlineExceeded(Exception):
    """A call did not return in time (raised inside it by the watchdog's alarm).

    Deliberately not one of the errors a parser catches (struct.error,
    ValueError, AssertionError, ...), so no ``except`` on the way swallows it.
    """


class Watchdog:
    """Runs calls with a time bound each: a SIGALRM interrupts a call that would never return.

    The alarm stops Python-level loops (Ryu 4.34's TCP option parser is one); the
    elapsed time is checked afterwards too, in case something swallowed it. Use
    as a context manager, in the main thread.
    """

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self._previous: object = None

    def __enter__(self) -> Watchdog:
        self._previous = signal.signal(signal.SIGALRM, self._expired)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous)  # type: ignore[arg-type]

    def _expired(self, signum: int, frame: FrameType | None) -> None:
        raise DeadlineExceeded()

    def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)``; DeadlineExceeded if it took longer than the bound."""
        # The alarm repeats: an exception raised where Python only reports it (a gc callback,
        # as hypothesis installs one) is lost, and the next alarm tries again.
        signal.setitimer(signal.ITIMER_REAL, self.bound_s, REPEAT_ALARM_S)
        started = time.perf_counter()
        try:
            result = call(*args, **kwargs)
        except DeadlineExceeded:
            # Raised again out here, so the traceback does not keep the stuck call's frames
            # (and whatever they had allocated) alive while the test reports and shrinks.
            result = None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = time.perf_counter() - started
        if elapsed > self.bound_s:
            raise DeadlineExceeded(f"the call took {elapsed:.3f} s or more (bound {self.bound_s} s)")
        return result  # type: ignore[return-value]


def invariant_violations(gateway: Gateway) -> list[str]:
    """What is wrong with the gateway's NAT state: a mapping missing one of its channels,
    a public port that two private endpoints hold, or a port owner the table does not know.

    Asked through the gateway's methods only.
    """
    problems = []
    owners: dict[tuple[Proto, int], object] = {}
    for mapping in list(gateway.mappings()):
        for key in (mapping.original, mapping.reply):
            if gateway.mapping_of(mapping.proto, key) is not mapping:
                problems.append(f"{mapping!r}: channel {key:#x} missing")
        if mapping.kind is MappingKind.REDIRECT:
            continue
        slot = (mapping.proto, mapping.public_endpoint.port)
        owner = mapping.private_endpoint
        if owners.setdefault(slot, owner) != owner:
            problems.append(f"{slot} owned by {owners[slot]} and {owner}")
        holder = gateway.port_holder(mapping.proto, slot[1])
        if holder != owner:
            problems.append(f"{slot}: the port allocator names {holder} as owner, the table {owner}")
    return problems
