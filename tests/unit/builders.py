"""Real packet bytes for tests, built with ryu.lib.packet, and full checksum checks."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from ryu_nat.backend import ethernet, icmp, ipv4, packet, packet_utils, tcp, udp

from ryu_nat.core.packet import Datagram, parse_ipv4

Addr = str | IPv4Address


def _ip(src: Addr, dst: Addr, proto: int, ttl: int, ident: int = 0x1234, flags: int = 0) -> ipv4.ipv4:
    return ipv4.ipv4(src=str(src), dst=str(dst), proto=proto, ttl=ttl, identification=ident, flags=flags)


def _serialize(*layers: object, payload: bytes = b"") -> bytes:
    pkt = packet.Packet()
    for layer in layers:
        pkt.add_protocol(layer)
    if payload:
        pkt.add_protocol(payload)
    pkt.serialize()
    return bytes(pkt.data)


def udp_bytes(src: Addr, sport: int, dst: Addr, dport: int, ttl: int = 64, payload: bytes = b"hello",
              ident: int = 0x1234, flags: int = 0) -> bytes:
    return _serialize(_ip(src, dst, 17, ttl, ident, flags), udp.udp(sport, dport), payload=payload)


def tcp_bytes(src: Addr, sport: int, dst: Addr, dport: int, ttl: int = 64, bits: int = tcp.TCP_SYN,
              payload: bytes = b"", seq: int = 1000, flags: int = 0) -> bytes:
    segment = tcp.tcp(sport, dport, seq=seq, ack=0, bits=bits, window_size=65535,
                      option=[tcp.TCPOptionMaximumSegmentSize(1460)])
    return _serialize(_ip(src, dst, 6, ttl, flags=flags), segment, payload=payload)


def echo_bytes(src: Addr, dst: Addr, ident: int, seq: int = 1, ttl: int = 64, request: bool = True,
               payload: bytes = b"pingdata") -> bytes:
    kind = icmp.ICMP_ECHO_REQUEST if request else icmp.ICMP_ECHO_REPLY
    return _serialize(_ip(src, dst, 1, ttl), icmp.icmp(kind, 0, 0, data=icmp.echo(ident, seq, payload)))


def timestamp_bytes(src: Addr, dst: Addr, ident: int, ttl: int = 64, request: bool = True) -> bytes:
    body = struct.pack("!HHIII", ident, 7, 1, 0, 0)
    message = bytearray(struct.pack("!BBH", 13 if request else 14, 0, 0) + body)
    message[2:4] = struct.pack("!H", packet_utils.checksum(bytes(message)))
    return _serialize(_ip(src, dst, 1, ttl), payload=bytes(message))


def icmp_error_bytes(src: Addr, dst: Addr, about: bytes, kind: int = 3, code: int = 3, ttl: int = 64,
                     quote: int = 8) -> bytes:
    """An ICMP error from ``src`` to ``dst`` quoting ``about`` (its IP header + ``quote`` bytes)."""
    header_len = (about[0] & 0xF) * 4
    quoted = about[: header_len + quote]
    if kind == 3:
        data = icmp.dest_unreach(data=quoted)
    elif kind == 11:
        data = icmp.TimeExceeded(data=quoted)
    else:
        data = b"\x00\x00\x00\x00" + quoted
    return _serialize(_ip(src, dst, 1, ttl), icmp.icmp(kind, code, 0, data=data))


def frame(eth_src: str, eth_dst: str, ip_bytes: bytes, ethertype: int = 0x0800) -> bytes:
    body = bytearray(ip_bytes)
    return bytes(ethernet.ethernet(eth_dst, eth_src, ethertype).serialize(body, None)) + bytes(body)


def parsed(raw: bytes) -> Datagram:
    result = parse_ipv4(raw)
    assert isinstance(result, Datagram), result
    return result


def with_ip_checksum(raw: bytes) -> bytes:
    """``raw`` with its IPv4 header checksum computed again (after a test changed a header field)."""
    header_len = (raw[0] & 0xF) * 4
    header = bytearray(raw[:header_len])
    header[10:12] = b"\x00\x00"
    header[10:12] = struct.pack("!H", packet_utils.checksum(bytes(header)))
    return bytes(header) + raw[header_len:]


def checksums_ok(raw: bytes) -> bool:
    """Recompute every checksum of an unfragmented datagram from scratch and compare."""
    header_len = (raw[0] & 0xF) * 4
    if packet_utils.checksum(raw[:header_len]) != 0:
        return False
    proto = raw[9]
    body = raw[header_len:]
    if proto in (6, 17):
        if proto == 17 and body[6:8] == b"\x00\x00":
            return True
        pseudo = raw[12:20] + struct.pack("!BBH", 0, proto, len(body))
        return packet_utils.checksum(pseudo + body) == 0
    if proto == 1:
        return packet_utils.checksum(body) == 0
    return True


def udp_datagram(src: Addr, sport: int, dst: Addr, dport: int, ttl: int = 64) -> Datagram:
    """A UDP datagram's parsed view without its bytes: enough for add(), fast to make."""
    return Datagram(raw=b"", header_len=20, proto=17, src=int(IPv4Address(src)), dst=int(IPv4Address(dst)),
                    ttl=ttl, ident=0, more_fragments=False, frag_offset=0, src_port=sport, dst_port=dport)
