"""Protocols, endpoints, channels and the address checks behind Cannot-NAT.

Addresses are ``IPv4Address`` at the edges (API, config, REST) and plain ``int``
inside the table, where a channel is packed into one int key: keys stay small and
hash fast (a 1M-mapping table holds 2M of them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface

ZERO_MAC = "00:00:00:00:00:00"
_GROUP_DIGITS = frozenset("13579bdfBDF")  # the second hex digit of a group address (first byte's low bit set)
_PORT_BITS = 16
_ADDR_BITS = 32
SOURCE_SHIFT = _ADDR_BITS + 2 * _PORT_BITS  # where a packed key's source address starts


class Proto(enum.IntEnum):
    """The IP protocols the NAT translates; values are IP protocol numbers."""

    ICMP = 1
    TCP = 6
    UDP = 17

    @property
    def label(self) -> str:
        """Lower-case name, as in config and REST (``tcp``, ``udp``, ``icmp``)."""
        return self.name.lower()

    @classmethod
    def from_label(cls, text: str) -> Proto:
        """``'tcp'`` -> ``Proto.TCP``; raises ``ValueError`` for anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown protocol {text!r} (want tcp, udp or icmp)") from None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IPv4 address and a port (or ICMP query id)."""

    ip: IPv4Address
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class Channel:
    """One direction of a conversation, as a packet carries it.

    ICMP queries put the query id in both ``src_port`` and ``dst_port``.
    """

    proto: Proto
    src: IPv4Address
    dst: IPv4Address
    src_port: int
    dst_port: int

    def reversed(self) -> Channel:
        """The channel a reply travels on."""
        return Channel(self.proto, self.dst, self.src, self.dst_port, self.src_port)

    @property
    def key(self) -> int:
        """This channel packed as a table key (the protocol is the sub-table)."""
        return pack_key(int(self.src), int(self.dst), self.src_port, self.dst_port)

    @classmethod
    def from_key(cls, proto: Proto, key: int) -> Channel:
        """The channel a packed key stands for."""
        src, dst, src_port, dst_port = unpack_key(key)
        return cls(proto, IPv4Address(src), IPv4Address(dst), src_port, dst_port)

    def __str__(self) -> str:
        return f"{self.proto.label} {self.src}:{self.src_port} -> {self.dst}:{self.dst_port}"


def pack_key(src: int, dst: int, src_port: int, dst_port: int) -> int:
    """Pack a channel into one int: src(32) | dst(32) | src_port(16) | dst_port(16)."""
    return (((src << _ADDR_BITS | dst) << _PORT_BITS | src_port) << _PORT_BITS) | dst_port


def source_of(key: int) -> int:
    """The source address of a packed key."""
    return key >> SOURCE_SHIFT


def unpack_key(key: int) -> tuple[int, int, int, int]:
    """Inverse of :func:`pack_key`: (src, dst, src_port, dst_port)."""
    dst_port = key & 0xFFFF
    src_port = (key >> 16) & 0xFFFF
    dst = (key >> 32) & 0xFFFFFFFF
    return key >> SOURCE_SHIFT, dst, src_port, dst_port  # on every set-up's path: no call


def reverse_key(key: int) -> int:
    """The packed key of the reply channel (addresses and ports swapped)."""
    src, dst, src_port, dst_port = unpack_key(key)
    return pack_key(dst, src, dst_port, src_port)


def is_nattable(addr: int) -> bool:
    """False for addresses a NAT must not translate to or from.

    Refused: 0.0.0.0/8 (unspecified, "this network"), 127.0.0.0/8 (loopback),
    169.254.0.0/16 (link-local), 224.0.0.0/4 (multicast), 240.0.0.0/4 (reserved,
    including the limited broadcast 255.255.255.255). Subnet broadcasts depend on
    the configured networks and are checked by the gateway.
    """
    first = addr >> 24
    if first == 0 or first == 127 or first >= 224:
        return False
    return (addr >> 16) != 0xA9FE


def is_group_mac(mac: str) -> bool:
    """True for a broadcast or multicast Ethernet address (the group bit of its first byte), as ``'01:00:5e:..'``."""
    return mac[1] in _GROUP_DIGITS


def is_host_mac(mac: str) -> bool:
    """True for an Ethernet address one host can have: not a group address, not all zeros.

    On every packet-in's path: no parsing of the text.
    """
    return mac[1] not in _GROUP_DIGITS and mac != ZERO_MAC


@dataclass(frozen=True, slots=True)
class Subnet:
    """An interface's address and subnet as ints, for the checks made on every packet-in."""

    address: int
    network: int
    mask: int
    broadcast: int

    @classmethod
    def of(cls, interface: IPv4Interface) -> Subnet:
        net = interface.network
        return cls(int(interface.ip), int(net.network_address), int(net.netmask), int(net.broadcast_address))

    def contains(self, addr: int) -> bool:
        return addr & self.mask == self.network

    def is_host(self, addr: int) -> bool:
        """True for a host address of this subnet: in it, and neither its network nor its broadcast address."""
        return addr & self.mask == self.network and addr != self.network and addr != self.broadcast

    def is_other_host(self, addr: int) -> bool:
        """True for a host address of this subnet other than the interface's own (:meth:`is_host`, inlined:
        it runs on every private packet-in)."""
        return (addr & self.mask == self.network and addr != self.address and addr != self.network
                and addr != self.broadcast)
