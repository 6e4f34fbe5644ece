"""ICMP messages the NAT itself sends: time exceeded, destination unreachable (administratively
prohibited, fragmentation needed), and echo replies for its own addresses.

Built with ``ryu.lib.packet``, which never parses what arrived; the quoted
packet follows RFC 792 (IP header plus the first 8 bytes of its payload). No I/O.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from ryu_nat.backend import icmp, ipv4

from ryu_nat.core import checksum
from ryu_nat.core.addresses import Proto
from ryu_nat.core.packet import EMBEDDED_TRANSPORT_LEN, Datagram

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
ICMP_DEST_UNREACH = 3
FRAGMENTATION_NEEDED = 4
ICMP_TIME_EXCEEDED = 11
TTL_EXCEEDED_IN_TRANSIT = 0
ADMIN_PROHIBITED = 13  # communication administratively prohibited (RFC 1812 5.2.7.1)
DEFAULT_TTL = 64


# ICMP types that are no error (RFC 792, 950, 1256): echo, router advertisement and solicitation,
# timestamp, information, address mask. Every other type, unknown ones included, may be an error,
# and gets none in return (as Linux's icmp_send treats unknown types).
ICMP_INFORMATIONAL_TYPES = frozenset({0, 8, 9, 10, 13, 14, 15, 16, 17, 18})


def may_answer_with_error(d: Datagram) -> bool:
    """RFC 1812 4.3.2.7: no ICMP error about an ICMP error (or a message that may be one: a type
    that is not informational) or a later fragment."""
    if d.frag_offset:
        return False
    return not (d.proto == Proto.ICMP and d.icmp_type not in ICMP_INFORMATIONAL_TYPES)


def _ipv4_packet(src: IPv4Address, dst: IPv4Address, body: bytes) -> bytes:
    header = ipv4.ipv4(src=str(src), dst=str(dst), proto=Proto.ICMP, ttl=DEFAULT_TTL)
    return bytes(header.serialize(body, None)) + body


def time_exceeded(d: Datagram, from_ip: IPv4Address) -> bytes:
    """An ICMP time-exceeded (TTL exceeded in transit) from ``from_ip`` to the sender of ``d``."""
    quoted = d.raw[: d.header_len + EMBEDDED_TRANSPORT_LEN]
    message = icmp.icmp(ICMP_TIME_EXCEEDED, TTL_EXCEEDED_IN_TRANSIT, 0,
                        data=icmp.TimeExceeded(data_len=0, data=quoted))
    return _ipv4_packet(from_ip, IPv4Address(d.src), bytes(message.serialize(b"", None)))


def destination_unreachable(d: Datagram, from_ip: IPv4Address, code: int = ADMIN_PROHIBITED) -> bytes:
    """An ICMP destination unreachable with ``code`` from ``from_ip`` to the sender of ``d``, quoting it."""
    quoted = d.raw[: d.header_len + EMBEDDED_TRANSPORT_LEN]
    message = icmp.icmp(ICMP_DEST_UNREACH, code, 0, data=icmp.dest_unreach(data_len=0, data=quoted))
    return _ipv4_packet(from_ip, IPv4Address(d.src), bytes(message.serialize(b"", None)))


def fragmentation_needed(d: Datagram, from_ip: IPv4Address, next_hop_mtu: int) -> bytes:
    """An ICMP destination unreachable, fragmentation needed and DF set, from ``from_ip`` to the sender
    of ``d``, naming the MTU of the next hop in its second word (RFC 1191 section 4)."""
    quoted = d.raw[: d.header_len + EMBEDDED_TRANSPORT_LEN]
    message = icmp.icmp(ICMP_DEST_UNREACH, FRAGMENTATION_NEEDED, 0,
                        data=icmp.dest_unreach(data_len=0, mtu=next_hop_mtu, data=quoted))
    return _ipv4_packet(from_ip, IPv4Address(d.src), bytes(message.serialize(b"", None)))


def echo_reply(d: Datagram) -> bytes | None:
    """The echo reply to an echo request addressed to the NAT itself (None if ``d`` is not one).

    The request's bytes are reused at fixed offsets (parsing checked that its
    8-byte header is there): type and code become 0, id, sequence and data stay.
    """
    if d.proto != Proto.ICMP or d.icmp_type != ICMP_ECHO_REQUEST or d.is_fragment:
        return None
    reply = bytearray(d.raw[d.header_len:])
    reply[0:4] = bytes((ICMP_ECHO_REPLY, 0, 0, 0))
    reply[2:4] = checksum.checksum(bytes(reply)).to_bytes(2, "big")
    return _ipv4_packet(IPv4Address(d.dst), IPv4Address(d.src), bytes(reply))
