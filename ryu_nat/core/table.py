"""The translation table interface (mirage-nat's TABLE/SUBTABLE) and its values.

A :class:`Mapping` is one conversation, in the words of Linux's conntrack: the
*original* channel is how its first packet arrived, the *reply* channel how
replies arrive. A packet on the original channel leaves as the reverse of the
reply channel, and a reply leaves as the reverse of the original::

    source NAT       original  10.0.0.2:5000 -> 203.0.113.9:53   (from the private side)
                     reply     203.0.113.9:53 -> 192.168.3.1:40123
    redirect         original  198.51.100.7:6000 -> 192.168.3.1:8080
                     reply     10.0.0.2:80 -> 198.51.100.7:6000
    hairpin          original  10.0.0.3:7000 -> 192.168.3.1:8080    (a redirect's port, or the
                     reply     10.0.0.2:80 -> 192.168.3.1:51000      public port of 10.0.0.2:80)

Both channels are keys of one sub-table per protocol; they are added, found and
removed together. Mapping ids grow: each mapping added has a higher id than every
one added before it, so id order is age order, and pages of the table (for the
operator) follow it. No I/O.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal, Protocol

from ryu_nat.core.addresses import SOURCE_SHIFT, Channel, Endpoint, Proto, unpack_key


class MappingKind(enum.Enum):
    """How a mapping came to be."""

    NAT = "nat"  # source NAT: a private host opened it
    REDIRECT = "redirect"  # destination NAT: a public client reached a forwarded port
    HAIRPIN = "hairpin"  # a private host reached another through the public address (a redirect or a mapping)


class RemovalReason(enum.Enum):
    """Why a mapping left the table; values are counter names."""

    EVICTED = "evicted"  # the protocol's table was full (least recently used)
    EXPIRED = "expired"  # idle longer than its timeout
    DELETED = "deleted"  # removed on request (or its switch rule idled out)
    HOST_REMOVED = "host_removed"  # remove_connections() of one of its private hosts
    RESET = "reset"  # the whole table was cleared
    HOST_LIMIT = "host_limit"  # its host reached max_mappings_per_host: its oldest mapping made room


class AddError(enum.Enum):
    """Why a mapping was not added; values are counter names."""

    OVERLAP = "overlap"  # a channel of the new mapping belongs to another mapping
    CANNOT_NAT = "cannot_nat"  # broadcast, multicast, loopback, ..., or not a NAT-able packet
    PORTS_EXHAUSTED = "ports_exhausted"  # the port generator found no free port in 100 tries
    TABLE_FULL = "table_full"  # the protocol's table is full and this mapping may not evict another
    HOST_LIMIT = "host_limit"  # the host has max_mappings_per_host mappings and may not evict one


# Mapping.flags: what a TCP connection showed (RFC 7857 section 2.1), and one fact about ports.
FIN_ORIGINAL = 0x01  # a FIN travelled the original channel
FIN_REPLY = 0x02  # a FIN travelled the reply channel
RESET = 0x04  # an RST travelled either channel
ANSWERED = 0x08  # the replier answered the opening SYN: established
TRANSITORY = 0x10  # FIN both ways, or an RST: the transitory timeout applies
HOLDS_TARGET_PORT = 0x20  # a hairpin to another host's mapping: it holds that host's public port too


class Mapping:
    """One translated conversation: both channels, its kind, its clock and its flags.

    ``idle_timeout_s`` is ``math.inf`` when something else (the switch's idle
    timeout) decides its life. ``flags`` holds the bits above; ``closing`` is
    True once the transitory timeout applies.
    """

    __slots__ = ("id", "proto", "original", "reply", "kind", "created", "last_used",
                 "idle_timeout_s", "flags")

    def __init__(self, mapping_id: int, proto: Proto, original: int, reply: int,
                 kind: MappingKind, now: float, idle_timeout_s: float) -> None:
        self.id = mapping_id
        self.proto = proto
        self.original = original
        self.reply = reply
        self.kind = kind
        self.created = now
        self.last_used = now
        self.idle_timeout_s = idle_timeout_s
        self.flags = 0

    @property
    def closing(self) -> bool:
        """True once FIN went both ways or an RST was seen (a TCP mapping in its transitory state)."""
        return bool(self.flags & TRANSITORY)

    @property
    def deadline(self) -> float:
        """When it expires unless used again."""
        return self.last_used + self.idle_timeout_s

    @property
    def original_channel(self) -> Channel:
        return Channel.from_key(self.proto, self.original)

    @property
    def reply_channel(self) -> Channel:
        return Channel.from_key(self.proto, self.reply)

    @property
    def initiator(self) -> int:
        """The address that sent the first packet (the original channel's source)."""
        return self.original >> SOURCE_SHIFT

    @property
    def replier(self) -> int:
        """The address replies come from (the reply channel's source): where the original direction goes."""
        return self.reply >> SOURCE_SHIFT

    @property
    def private_hosts(self) -> tuple[int, ...]:
        """The private addresses this mapping involves (both ends of a hairpin)."""
        kind = self.kind
        if kind is MappingKind.NAT:
            return (self.original >> SOURCE_SHIFT,)
        if kind is MappingKind.REDIRECT:
            return (self.reply >> SOURCE_SHIFT,)
        return (self.original >> SOURCE_SHIFT, self.reply >> SOURCE_SHIFT)

    @property
    def allocated_port(self) -> int | None:
        """The public port (or ICMP id) allocated for this mapping; None for a redirect."""
        if self.kind is MappingKind.REDIRECT:
            return None
        return self.reply & 0xFFFF

    @property
    def private_endpoint(self) -> Endpoint:
        """The private host and port: the client of a NAT or hairpin, the server of a redirect."""
        key = self.reply if self.kind is MappingKind.REDIRECT else self.original
        src, _, src_port, _ = unpack_key(key)
        return Endpoint(IPv4Address(src), src_port)

    @property
    def public_endpoint(self) -> Endpoint:
        """The NAT's public address and port that stand for the private endpoint."""
        if self.kind is MappingKind.REDIRECT:
            _, dst, _, dst_port = unpack_key(self.original)
        else:
            _, dst, _, dst_port = unpack_key(self.reply)
        return Endpoint(IPv4Address(dst), dst_port)

    @property
    def remote_endpoint(self) -> Endpoint:
        """The other end, as the private host sees it."""
        if self.kind is MappingKind.REDIRECT:
            src, _, src_port, _ = unpack_key(self.original)
        else:
            _, dst, _, dst_port = unpack_key(self.original)
            src, src_port = dst, dst_port
        return Endpoint(IPv4Address(src), src_port)

    @property
    def expires_by_itself(self) -> bool:
        return not math.isinf(self.idle_timeout_s)

    def __repr__(self) -> str:
        return (f"Mapping(id={self.id}, {self.kind.value}, {self.original_channel} | "
                f"{self.reply_channel}, last_used={self.last_used}, "
                f"idle_timeout_s={self.idle_timeout_s}, closing={self.closing})")


@dataclass(frozen=True, slots=True)
class FreedPorts:
    """Public ports (ICMP: query ids) freed by a removal, per protocol."""

    tcp: frozenset[int] = field(default_factory=frozenset)
    udp: frozenset[int] = field(default_factory=frozenset)
    icmp: frozenset[int] = field(default_factory=frozenset)

    def for_proto(self, proto: Proto) -> frozenset[int]:
        return {Proto.TCP: self.tcp, Proto.UDP: self.udp, Proto.ICMP: self.icmp}[proto]


@dataclass(frozen=True, slots=True)
class Page:
    """Some live mappings, lowest id (oldest) first, and where the next page starts.

    ``next_after`` is the id to pass as ``after`` for the next page; None when no
    mapping that matched follows this page.
    """

    mappings: tuple[Mapping, ...]
    next_after: int | None


RemovalListener = Callable[[Mapping, RemovalReason], None]
"""Told once per mapping that leaves the table, with both channels in ``Mapping``.

It runs inside table operations: it must record, not call back into the table."""


class NatTable(Protocol):
    """A store of mappings, one sub-table per protocol, keyed by packed channels.

    Implementations keep both channels of a mapping together, never hold half a
    mapping, and report every removal exactly once to their listener.
    """

    listener: RemovalListener | None

    def lookup(self, proto: Proto, key: int) -> Mapping | None:
        """The mapping that has ``key`` as its original or reply channel."""

    def peek(self, proto: Proto, key: int) -> Mapping | None:
        """As :meth:`lookup`, but the mapping does not count as used (a question, not a packet)."""

    @property
    def last_id(self) -> int:
        """The highest id ever inserted (-1 before the first): every new mapping's id must be above it."""

    def insert(self, mapping: Mapping) -> Literal[AddError.OVERLAP] | None:
        """Add both channels, or neither: OVERLAP if either is taken.

        ValueError if ``mapping.id`` is not above the id of every mapping added before.
        """

    def delete(self, mapping: Mapping, reason: RemovalReason = RemovalReason.DELETED) -> bool:
        """Remove a mapping; False if it was not (or no longer) in the table."""

    def remove_connections(self, host: IPv4Address) -> FreedPorts:
        """Remove every mapping of private ``host``; the public ports that no live mapping holds any
        more, per protocol (a hairpin client keeps its port while it has other mappings)."""

    def is_port_free(self, proto: Proto, src: IPv4Address, dst: IPv4Address,
                     src_port: int, dst_port: int) -> bool:
        """True if no mapping has the channel src:src_port -> dst:dst_port."""

    def expire(self, now: float) -> int:
        """Remove mappings idle past their timeout; how many were removed."""

    def retime(self, mapping: Mapping, idle_timeout_s: float) -> None:
        """Give a live ``mapping`` a new idle timeout (``math.inf``: only an explicit removal ends it)."""

    def clients(self, proto: Proto, host: int) -> int:
        """Live mappings of ``proto`` that private ``host`` opened (NAT and hairpin kinds, as their client)."""

    def oldest_of_client(self, proto: Proto, host: int) -> Mapping | None:
        """The oldest of the mappings :meth:`clients` counts."""

    def reset(self) -> None:
        """Remove every mapping."""

    def count(self, proto: Proto) -> int:
        """Live mappings of ``proto``."""

    def capacity(self, proto: Proto) -> int:
        """Most mappings ``proto`` may hold."""

    def mappings(self, proto: Proto | None = None, host: IPv4Address | None = None) -> Iterator[Mapping]:
        """Live mappings, optionally of one protocol and/or one private host."""

    def page(self, after: int, limit: int, proto: Proto | None = None, host: IPv4Address | None = None) -> Page:
        """Up to ``limit`` live mappings with ids above ``after``, lowest first, optionally only those of
        ``proto`` and/or of private ``host``. Costs in proportion to ``limit`` (and, with ``host``, to that
        host's mappings), never to the table. ValueError if ``limit`` < 1."""

    def matching(self, proto: Proto | None = None, host: IPv4Address | None = None) -> int:
        """How many live mappings are of ``proto`` and/or of private ``host`` (all of them without either)."""
