"""IPv4 datagrams parsed far enough to translate them, and their rewrite.

Every byte here may come from a stranger, so parsing reads fixed offsets with
``struct`` and checks each length against the frame before it reads: it cannot
loop and allocates at most one copy of the datagram. TCP options are never
parsed (the NAT needs none; Ryu 4.34's option parser loops forever on some).
Anything truncated or malformed is a :class:`ParseError`; no exception escapes.
``ryu.lib.packet`` is used only to build frames.

A rewrite works on the bytes and adjusts every checksum incrementally
(RFC 1624), as Linux's NAT does: what the sender checksummed stays checked end
to end, a first fragment's transport checksum stays right for the whole
datagram, and options and payload are kept byte for byte. No I/O.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from ryu_nat.backend import ethernet

from ryu_nat.core import checksum
from ryu_nat.core.addresses import Channel, Proto, pack_key

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_HEADER_LEN = 14
IPV4_MIN_HEADER_LEN = 20
TCP_MIN_HEADER_LEN = 20
UDP_HEADER_LEN = 8
ICMP_HEADER_LEN = 8
ARP_IPV4_LEN = 28  # Ethernet/IPv4 ARP: the fixed fields every ARP packet is read as
EMBEDDED_TRANSPORT_LEN = 8  # RFC 792: an ICMP error carries the IP header + 8 bytes

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10
_TCP_FLAGS = 0x3F  # FIN..URG, as ryu.lib.packet.tcp reads them

# ICMP query types (request -> reply) whose id the NAT translates.
ICMP_QUERY_REPLIES = {8: 0, 13: 14, 15: 16}
ICMP_QUERY_TYPES = frozenset(ICMP_QUERY_REPLIES) | frozenset(ICMP_QUERY_REPLIES.values())
# ICMP errors translated by their embedded packet (RFC 5508): unreachable,
# time exceeded, parameter problem.
ICMP_ERROR_TYPES = frozenset({3, 11, 12})

_ETH_HEADER = struct.Struct("!6s6sH")
# version/IHL, TOS, total length, id, flags/fragment offset, TTL, protocol, checksum, src, dst
_IPV4_HEADER = struct.Struct("!BxHHHBBxxII")
_PORTS = struct.Struct("!HH")
_TCP_OFFSET_FLAGS = struct.Struct("!BB")  # at offset 12 of the TCP header
_UDP_LENGTH = struct.Struct("!H")  # at offset 4 of the UDP header
_ICMP_TYPE_CODE = struct.Struct("!BB")
_ICMP_QUERY_ID = struct.Struct("!H")  # at offset 4: echo, timestamp and information share id, seq
_ICMP_LENGTH_AT = 5  # an error's RFC 4884 length, in 32-bit words, of the quoted datagram field
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IP_FLAG_MF = 0x2000
_IP_OFFSET_MASK = 0x1FFF
_PORTED_PROTOS = (Proto.TCP, Proto.UDP)


class ParseError(enum.Enum):
    """Why bytes are not a datagram the NAT can handle; values are counter names."""

    TRUNCATED = "truncated"  # shorter than its headers say
    NOT_IPV4 = "not_ipv4"  # another ethertype or IP version
    BAD_HEADER = "bad_header"  # inconsistent IPv4 header (length fields)
    BAD_IP_CHECKSUM = "bad_ip_checksum"  # the IPv4 header checksum is wrong (RFC 1812 5.2.2)
    BAD_TRANSPORT = "bad_transport"  # TCP/UDP/ICMP header missing or inconsistent
    BAD_ICMP_CHECKSUM = "bad_icmp_checksum"  # an ICMP error whose checksum is wrong (RFC 5508 REQ-3)
    BAD_EMBEDDED_CHECKSUM = "bad_embedded_checksum"  # its quoted IP header's checksum is wrong (REQ-3a)


@dataclass(frozen=True, slots=True)
class Embedded:
    """The packet an ICMP error is about: its IP header and first transport bytes, as quoted."""

    raw: bytes
    header_len: int
    proto: int
    src: int
    dst: int
    src_port: int  # ICMP query: the query id
    dst_port: int  # ICMP query: the query id

    @property
    def key(self) -> int:
        """Packed channel key of the embedded packet."""
        return pack_key(self.src, self.dst, self.src_port, self.dst_port)


@dataclass(frozen=True, slots=True)
class Datagram:
    """An IPv4 datagram or fragment, with what translation needs.

    ``src_port``/``dst_port`` are TCP/UDP ports, the query id (in both) for an
    ICMP query, and 0 otherwise (non-first fragments included).
    """

    raw: bytes
    header_len: int
    proto: int
    src: int
    dst: int
    ttl: int
    ident: int
    more_fragments: bool
    frag_offset: int  # in bytes
    src_port: int = 0
    dst_port: int = 0
    tcp_flags: int = 0
    icmp_type: int = -1
    icmp_code: int = -1
    embedded: Embedded | None = None

    @property
    def is_fragment(self) -> bool:
        """True for any piece of a fragmented datagram, the first included."""
        return self.more_fragments or self.frag_offset != 0

    @property
    def key(self) -> int:
        """Packed channel key (see :func:`ryu_nat.core.addresses.pack_key`)."""
        return pack_key(self.src, self.dst, self.src_port, self.dst_port)

    @property
    def channel(self) -> Channel:
        """The channel this datagram travels on; ``ValueError`` if not TCP/UDP/ICMP."""
        return Channel(Proto(self.proto), IPv4Address(self.src), IPv4Address(self.dst),
                       self.src_port, self.dst_port)

    @property
    def dont_fragment(self) -> bool:
        """The DF flag: routers must not cut it, but answer with fragmentation needed (RFC 1191)."""
        return bool(self.raw[6] & 0x40)

    @property
    def is_icmp_query(self) -> bool:
        return self.proto == Proto.ICMP and self.icmp_type in ICMP_QUERY_TYPES


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """An ARP packet's fixed fields, named as ``ryu.lib.packet.arp.arp`` names them.

    Read as Ethernet/IPv4 ARP whatever ``hlen`` and ``plen`` say: a caller that
    wants only that checks them.
    """

    hwtype: int
    proto: int
    hlen: int
    plen: int
    opcode: int
    src_mac: str
    src_ip: str
    dst_mac: str
    dst_ip: str


@dataclass(frozen=True, slots=True)
class Frame:
    """An Ethernet frame: its addresses and either a datagram, an ARP packet or neither.

    Only untagged IPv4 and ARP are parsed: VLAN and QinQ tags, IPv6 and any
    other ethertype leave ``datagram`` and ``arp`` empty.
    """

    eth_dst: str
    eth_src: str
    ethertype: int
    datagram: Datagram | None = None
    arp: ArpPacket | None = None


def parse_frame(data: bytes) -> Frame | ParseError:
    """Parse an Ethernet frame; IPv4 and ARP payloads are parsed too.

    The addresses are written with ``bytes.hex``: ``ryu.lib.packet.ethernet``
    converts them through netaddr, which measured 10 us of a 26 us parse of a
    TCP SYN, on every new flow.
    """
    data = bytes(data)
    if len(data) < ETH_HEADER_LEN:
        return ParseError.TRUNCATED
    dst, src, ethertype = _ETH_HEADER.unpack_from(data)
    eth_dst, eth_src = dst.hex(":"), src.hex(":")
    if ethertype == ETH_TYPE_IPV4:
        datagram = parse_ipv4(data[ETH_HEADER_LEN:])
        if isinstance(datagram, ParseError):
            return datagram
        return Frame(eth_dst, eth_src, ethertype, datagram)
    if ethertype == ETH_TYPE_ARP:
        packet = _parse_arp(data)
        if packet is None:
            return ParseError.TRUNCATED
        return Frame(eth_dst, eth_src, ethertype, None, packet)
    return Frame(eth_dst, eth_src, ethertype)


def _parse_arp(data: bytes) -> ArpPacket | None:
    """The ARP packet after the Ethernet header, or None if it is too short."""
    if len(data) < ETH_HEADER_LEN + ARP_IPV4_LEN:
        return None
    hwtype, proto, hlen, plen, opcode, src_mac, src_ip, dst_mac, dst_ip = _ARP.unpack_from(data, ETH_HEADER_LEN)
    return ArpPacket(hwtype, proto, hlen, plen, opcode, src_mac.hex(":"), str(IPv4Address(src_ip)),
                     dst_mac.hex(":"), str(IPv4Address(dst_ip)))


def parse_ipv4(data: bytes) -> Datagram | ParseError:
    """Parse an IPv4 datagram (trailing link-layer padding is dropped).

    Checked in this order: length of the fixed header (TRUNCATED), version
    (NOT_IPV4), header and total length fields (BAD_HEADER), the bytes present
    (TRUNCATED), the header checksum (BAD_IP_CHECKSUM), then, on a datagram or
    first fragment, the transport header (BAD_TRANSPORT).
    """
    data = bytes(data)
    if len(data) < IPV4_MIN_HEADER_LEN:
        return ParseError.TRUNCATED
    version_ihl, total_length, ident, flags_offset, ttl, proto, src, dst = _IPV4_HEADER.unpack_from(data)
    if version_ihl >> 4 != 4:
        return ParseError.NOT_IPV4
    header_len = (version_ihl & 0xF) * 4
    if header_len < IPV4_MIN_HEADER_LEN or total_length < header_len:
        return ParseError.BAD_HEADER
    if len(data) < total_length:
        return ParseError.TRUNCATED
    # The one's-complement sum of a correct header is 0xFFFF, and 2**16 = 1 mod 0xFFFF:
    # the header read as one big number is then a multiple of 0xFFFF (never 0: version is 4).
    if int.from_bytes(data[:header_len], "big") % 0xFFFF:
        return ParseError.BAD_IP_CHECKSUM
    raw = data[:total_length] if len(data) > total_length else data
    more_fragments = bool(flags_offset & _IP_FLAG_MF)
    frag_offset = (flags_offset & _IP_OFFSET_MASK) * 8
    if frag_offset:
        return Datagram(raw, header_len, proto, src, dst, ttl, ident, more_fragments, frag_offset)
    l4_len = total_length - header_len
    if proto == Proto.TCP:
        if l4_len < TCP_MIN_HEADER_LEN:
            return ParseError.BAD_TRANSPORT
        src_port, dst_port = _PORTS.unpack_from(raw, header_len)
        offset_byte, flags = _TCP_OFFSET_FLAGS.unpack_from(raw, header_len + 12)
        tcp_header_len = (offset_byte >> 4) * 4
        if tcp_header_len < TCP_MIN_HEADER_LEN or (tcp_header_len > l4_len and not more_fragments):
            return ParseError.BAD_TRANSPORT
        return Datagram(raw, header_len, proto, src, dst, ttl, ident, more_fragments, 0,
                        src_port, dst_port, flags & _TCP_FLAGS)
    if proto == Proto.UDP:
        if l4_len < UDP_HEADER_LEN:
            return ParseError.BAD_TRANSPORT
        src_port, dst_port = _PORTS.unpack_from(raw, header_len)
        (udp_length,) = _UDP_LENGTH.unpack_from(raw, header_len + 4)
        if udp_length < UDP_HEADER_LEN or (udp_length > l4_len and not more_fragments):
            return ParseError.BAD_TRANSPORT
        return Datagram(raw, header_len, proto, src, dst, ttl, ident, more_fragments, 0, src_port, dst_port)
    if proto == Proto.ICMP:
        return _parse_icmp(raw, header_len, l4_len, proto, src, dst, ttl, ident, more_fragments)
    return Datagram(raw, header_len, proto, src, dst, ttl, ident, more_fragments, 0)


def _parse_icmp(raw: bytes, header_len: int, l4_len: int, proto: int, src: int, dst: int, ttl: int, ident: int,
                more_fragments: bool) -> Datagram | ParseError:
    """An ICMP datagram: query id of a query, the embedded packet of an error."""
    if l4_len < ICMP_HEADER_LEN:
        return ParseError.BAD_TRANSPORT
    icmp_type, icmp_code = _ICMP_TYPE_CODE.unpack_from(raw, header_len)
    query_id = 0
    embedded = None
    if icmp_type in ICMP_QUERY_TYPES:
        (query_id,) = _ICMP_QUERY_ID.unpack_from(raw, header_len + 4)
    elif icmp_type in ICMP_ERROR_TYPES and not more_fragments:
        if checksum.checksum(raw[header_len:]):  # RFC 5508 REQ-3: never translate a corrupted error
            return ParseError.BAD_ICMP_CHECKSUM
        parsed = _parse_embedded(raw[header_len + ICMP_HEADER_LEN:], raw[header_len + _ICMP_LENGTH_AT])
        if isinstance(parsed, ParseError):
            return parsed
        embedded = parsed
    return Datagram(raw, header_len, proto, src, dst, ttl, ident, more_fragments, 0,
                    query_id, query_id, 0, icmp_type, icmp_code, embedded)


def _parse_embedded(data: bytes, length_words: int) -> Embedded | ParseError:
    """The packet quoted inside an ICMP error: its IP header + at least 8 bytes, and no more.

    RFC 4884: a non-zero ``length_words`` (byte 5) sizes the original-datagram field in
    32-bit words; padding and extensions follow. ``raw`` keeps only what the quoted
    packet's total length covers in it, so a rewrite never writes there (RFC 5508
    REQ-3d). Its header checksum must hold (REQ-3a); its transport checksum is never
    checked (REQ-3c): routers quote packets they cut (RFC 1812 4.3.2.3).
    """
    field = data[: length_words * 4] if length_words else data
    if len(field) < IPV4_MIN_HEADER_LEN:
        return ParseError.BAD_TRANSPORT
    version_ihl, total_length, _, flags_offset, _, proto, src, dst = _IPV4_HEADER.unpack_from(field)
    header_len = (version_ihl & 0xF) * 4
    if version_ihl >> 4 != 4 or header_len < IPV4_MIN_HEADER_LEN:
        return ParseError.BAD_TRANSPORT
    if len(field) < header_len + EMBEDDED_TRANSPORT_LEN:
        return ParseError.TRUNCATED
    if int.from_bytes(field[:header_len], "big") % 0xFFFF:
        return ParseError.BAD_EMBEDDED_CHECKSUM
    quoted = field[: min(len(field), max(total_length, header_len + EMBEDDED_TRANSPORT_LEN))]
    src_port = dst_port = 0
    first_piece = flags_offset & _IP_OFFSET_MASK == 0
    if proto in _PORTED_PROTOS and first_piece:
        src_port, dst_port = _PORTS.unpack_from(quoted, header_len)
    elif proto == Proto.ICMP and first_piece and quoted[header_len] in ICMP_QUERY_TYPES:
        (src_port,) = _ICMP_QUERY_ID.unpack_from(quoted, header_len + 4)
        dst_port = src_port
    return Embedded(quoted, header_len, proto, src, dst, src_port, dst_port)


# --- rewrite -------------------------------------------------------------------

_IP_CSUM = 10
_IP_SRC = 12
_IP_DST = 16
_L4_CSUM = {Proto.TCP: 16, Proto.UDP: 6, Proto.ICMP: 2}


def _word(buf: bytearray | bytes, offset: int) -> int:
    return int.from_bytes(buf[offset : offset + 2], "big")


def _set_word(buf: bytearray, offset: int, value: int) -> None:
    buf[offset : offset + 2] = value.to_bytes(2, "big")


def _set_addresses(buf: bytearray, base: int, src: int, dst: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Write src/dst of the IP header at ``base``; return (old, new) words for checksums."""
    old = (*checksum.addr_words(int.from_bytes(buf[base + _IP_SRC : base + _IP_SRC + 4], "big")),
           *checksum.addr_words(int.from_bytes(buf[base + _IP_DST : base + _IP_DST + 4], "big")))
    buf[base + _IP_SRC : base + _IP_SRC + 4] = src.to_bytes(4, "big")
    buf[base + _IP_DST : base + _IP_DST + 4] = dst.to_bytes(4, "big")
    new = (*checksum.addr_words(src), *checksum.addr_words(dst))
    return old, new


def _rewrite_transport(buf: bytearray, base: int, proto: int, available: int,
                       addr_old: tuple[int, ...], addr_new: tuple[int, ...],
                       src_port: int, dst_port: int) -> None:
    """Rewrite ports (or query id) at ``base`` and fix the transport checksum if present.

    ``available`` is how many transport bytes are present (an ICMP error may carry
    only 8). TCP and UDP checksums cover the addresses through the pseudo-header.
    """
    if proto in _PORTED_PROTOS:
        old_ports = (_word(buf, base), _word(buf, base + 2))
        _set_word(buf, base, src_port)
        _set_word(buf, base + 2, dst_port)
        csum_at = base + _L4_CSUM[Proto(proto)]
        if available < _L4_CSUM[Proto(proto)] + 2:
            return
        old_csum = _word(buf, csum_at)
        if proto == Proto.UDP and old_csum == 0:
            return  # no checksum was sent; none is added
        csum = checksum.adjust(old_csum, (*addr_old, *old_ports), (*addr_new, src_port, dst_port))
        if proto == Proto.UDP and csum == 0:
            csum = 0xFFFF
        _set_word(buf, csum_at, csum)
    elif proto == Proto.ICMP and buf[base] in ICMP_QUERY_TYPES:
        old_id = _word(buf, base + 4)
        _set_word(buf, base + 4, src_port)
        _set_word(buf, base + 2, checksum.adjust(_word(buf, base + 2), (old_id,), (src_port,)))


def _rewrite_ip_header(buf: bytearray, src: int, dst: int, ttl: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Write addresses and TTL of the outer header, adjusting its checksum."""
    old_ttl_word = _word(buf, 8)
    buf[8] = ttl
    addr_old, addr_new = _set_addresses(buf, 0, src, dst)
    _set_word(buf, _IP_CSUM, checksum.adjust(
        _word(buf, _IP_CSUM), (old_ttl_word, *addr_old), (_word(buf, 8), *addr_new)))
    return addr_old, addr_new


def rewrite(d: Datagram, src: int, dst: int, src_port: int, dst_port: int, ttl: int) -> Datagram:
    """The datagram with new addresses, ports (query id for ICMP) and TTL.

    Later fragments carry no transport header: only addresses and TTL change;
    the first fragment's transport checksum already accounts for the whole datagram.
    """
    buf = bytearray(d.raw)
    addr_old, addr_new = _rewrite_ip_header(buf, src, dst, ttl)
    if d.frag_offset == 0:
        _rewrite_transport(buf, d.header_len, d.proto, len(buf) - d.header_len,
                           addr_old, addr_new, src_port, dst_port)
    else:
        src_port, dst_port = d.src_port, d.dst_port
    return dataclasses.replace(d, raw=bytes(buf), src=src, dst=dst, ttl=ttl,
                               src_port=src_port, dst_port=dst_port)


def rewrite_icmp_error(d: Datagram, outer_src: int, outer_dst: int, ttl: int,
                       inner_src: int, inner_dst: int, inner_src_port: int, inner_dst_port: int) -> Datagram:
    """An ICMP error with new outer addresses and TTL and a new embedded packet header.

    Before -> after (RFC 5508 section 4.2):
      outer IP   src, dst, TTL        -> outer_src, outer_dst, ttl   (IP checksum adjusted)
      embedded   IP src, dst          -> inner_src, inner_dst        (embedded IP checksum adjusted)
      embedded   ports or query id    -> inner_src_port, inner_dst_port
                 (embedded transport checksum adjusted when its bytes are carried)
      ICMP checksum adjusted over the changed embedded bytes.
    """
    embedded = d.embedded
    if embedded is None:
        raise ValueError("not an ICMP error")
    buf = bytearray(d.raw)
    _rewrite_ip_header(buf, outer_src, outer_dst, ttl)
    inner_base = d.header_len + ICMP_HEADER_LEN
    inner = bytearray(embedded.raw)
    inner_addr_old, inner_addr_new = _set_addresses(inner, 0, inner_src, inner_dst)
    _set_word(inner, _IP_CSUM, checksum.adjust(_word(inner, _IP_CSUM), inner_addr_old, inner_addr_new))
    _rewrite_transport(inner, embedded.header_len, embedded.proto, len(inner) - embedded.header_len,
                       inner_addr_old, inner_addr_new, inner_src_port, inner_dst_port)
    icmp_csum_at = d.header_len + 2
    buf[icmp_csum_at : icmp_csum_at + 2] = checksum.adjust_bytes(
        _word(buf, icmp_csum_at), embedded.raw, bytes(inner)).to_bytes(2, "big")
    buf[inner_base : inner_base + len(inner)] = inner
    new_embedded = dataclasses.replace(embedded, raw=bytes(inner), src=inner_src, dst=inner_dst,
                                       src_port=inner_src_port, dst_port=inner_dst_port)
    return dataclasses.replace(d, raw=bytes(buf), src=outer_src, dst=outer_dst, ttl=ttl,
                               embedded=new_embedded)


# --- building frames -------------------------------------------------------------


def ethernet_frame(eth_dst: str, eth_src: str, payload: bytes, ethertype: int = ETH_TYPE_IPV4) -> bytes:
    """An Ethernet II frame around ``payload``, padded to the 60-byte minimum."""
    body = bytearray(payload)
    header = ethernet.ethernet(eth_dst, eth_src, ethertype).serialize(body, None)  # pads ``body``
    return bytes(header) + bytes(body)
