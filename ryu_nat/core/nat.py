"""NAT operations: add, translate, remove_connections, is_port_free, expire, reset; and filtering.

mirage-nat's ``Mirage_nat.S`` in Python, with deliberate differences: a
redirect keeps the remote client's address (the private server sees who
connects, as with Linux DNAT); hairpinning works, to redirects and to other
private hosts' mappings (RFC 4787 REQ-9, RFC 5382 REQ-8); inbound filtering is
a choice (:class:`~ryu_nat.core.filtering.InboundFilter`, :attr:`Nat.filter`); TCP mappings follow their connection's
state (:mod:`ryu_nat.core.tcp`); and a host may hold at most so many mappings
(RFC 6888 REQ-4). When a table or a host is full, a private host's new mapping
evicts (the table's least recently used mapping; the host's oldest one) unless
:class:`Limits` says refuse; a mapping that a packet from outside would create
(a redirect's) never evicts, so strangers cannot displace live mappings
(RFC 4787 REQ-11). Errors are values, not exceptions. No I/O; time is passed in.
"""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass
from ipaddress import IPv4Address

from ryu_nat.core import packet as pkt_mod
from ryu_nat.core import tcp
from ryu_nat.core.addresses import Endpoint, Proto, is_nattable, pack_key, reverse_key, unpack_key
from ryu_nat.core.filtering import Filtering, InboundFilter
from ryu_nat.core.limits import Limits, Timeouts
from ryu_nat.core.packet import Datagram
from ryu_nat.core.ports import PortAllocator, PortGenerator, owner_key
from ryu_nat.core.table import (HOLDS_TARGET_PORT, AddError, FreedPorts, Mapping, MappingKind, NatTable,
                                RemovalListener, RemovalReason)
from ryu_nat.core.tcp import TcpChange

MAX_PORT_TRIES = 100


class TranslateError(enum.Enum):
    """Why a packet was not translated; values are counter names."""

    UNTRANSLATED = "untranslated"  # no mapping for its channel
    TTL_EXCEEDED = "ttl_exceeded"  # it arrived with TTL <= 1: not forwarded (RFC 1812 5.3.1)


class Direction(enum.Enum):
    """Which channel of its mapping a packet travelled on."""

    ORIGINAL = "original"
    REPLY = "reply"


@dataclass(frozen=True, slots=True)
class SourceNat:
    """Add mode: a private host's packet leaves from the public address and a new port."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Add mode: a public client's packet to a forwarded port goes to ``endpoint``."""

    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class Hairpin:
    """Add mode: a private host's packet to the public address goes to ``endpoint`` (a redirect's
    server, or the private endpoint whose public port it was sent to: ``to_mapping``), from the public
    address and the client's own public port."""

    endpoint: Endpoint
    to_mapping: bool = False


AddMode = SourceNat | Redirect | Hairpin


@dataclass(frozen=True, slots=True)
class Translated:
    """A translated packet and the mapping that translated it.

    ``tcp_change`` is how this TCP segment changed its mapping's timeout, if it did.
    """

    packet: Datagram
    mapping: Mapping
    direction: Direction
    tcp_change: TcpChange | None = None


class Nat:
    """Source and destination NAT for one public address over a :class:`NatTable`."""

    def __init__(self, table: NatTable, public_ip: IPv4Address, ports: PortAllocator,
                 timeouts: Timeouts = Timeouts(), listener: RemovalListener | None = None,
                 filtering: Filtering = Filtering.ADDRESS_DEPENDENT, limits: Limits = Limits()) -> None:
        self.table = table
        self.public_ip = public_ip
        self.ports = ports
        self.timeouts = timeouts
        self.listener = listener
        self.limits = limits
        self._public = int(public_ip)
        self._ids = itertools.count(1)
        self._now = 0.0
        self._new_timeouts = {proto: timeouts.for_new(proto) for proto in Proto}
        self.filter = InboundFilter(filtering, self._public, ports, timeouts.udp_s)
        table.listener = self._removed

    # --- add ---------------------------------------------------------------------------

    def add(self, packet: Datagram, mode: AddMode, now: float, *, idle_timeout_s: float | None = None,
            port_generator: PortGenerator | None = None, dry_run: bool = False) -> Mapping | AddError:
        """Add a mapping for the conversation ``packet`` starts; return it.

        Adding a conversation that already has a mapping made by the same mode (for
        a redirect or hairpin, to the same target) refreshes and returns it.
        ``idle_timeout_s`` overrides the protocol's timeout (``math.inf``: only an
        explicit removal ends it). ``dry_run``: the mapping that would be added (id 0), or the
        error, and nothing changes (no id, port or channel taken, nothing refreshed). Errors:
        CANNOT_NAT  not TCP, UDP or an ICMP query; a later fragment; port 0; an
                    address that is broadcast, multicast, loopback, unspecified or
                    link-local; a redirect of ICMP.
        OVERLAP     a channel of the new mapping belongs to another mapping, or the
                    conversation has one made otherwise (mirage-nat's rule).
        PORTS_EXHAUSTED  the port generator gave no free port in 100 tries.
        HOST_LIMIT  the client has ``limits.per_host`` mappings and may not evict one.
        TABLE_FULL  the table is full and this mapping may not evict (a redirect's never does).
        """
        self._now = self._now if dry_run else now
        proto = _proto_of(packet)
        if proto is None or not is_nattable(packet.src) or not is_nattable(packet.dst):
            return AddError.CANNOT_NAT
        if proto is not Proto.ICMP and (packet.src_port == 0 or packet.dst_port == 0):
            return AddError.CANNOT_NAT
        key = pack_key(packet.src, packet.dst, packet.src_port, packet.dst_port)
        existing = self.table.peek(proto, key) if dry_run else self.table.lookup(proto, key)
        if existing is not None:
            if existing.original != key or not _made_by(existing, mode):
                return AddError.OVERLAP
            if not dry_run:
                existing.last_used = now
            return existing
        timeout = self._new_timeouts[proto] if idle_timeout_s is None else idle_timeout_s
        match mode:
            case SourceNat():
                return self._add_translated(packet, key, proto, None, now, timeout, port_generator, dry_run)
            case Redirect(endpoint=target) | Hairpin(endpoint=target):
                if proto is Proto.ICMP or not is_nattable(int(target.ip)):
                    return AddError.CANNOT_NAT
                if isinstance(mode, Hairpin):
                    return self._add_translated(packet, key, proto, mode, now, timeout, port_generator, dry_run)
                if self.table.count(proto) >= self.table.capacity(proto):
                    return AddError.TABLE_FULL
                reply = pack_key(int(target.ip), packet.src, target.port, packet.src_port)
                if dry_run:
                    return _would_add(self.table, Mapping(0, proto, key, reply, MappingKind.REDIRECT, now, timeout))
                mapping = Mapping(next(self._ids), proto, key, reply, MappingKind.REDIRECT, now, timeout)
                return self._insert(mapping)

    def _add_translated(self, packet: Datagram, key: int, proto: Proto, hairpin: Hairpin | None, now: float,
                        timeout: float, port_generator: PortGenerator | None, dry_run: bool) -> Mapping | AddError:
        """A mapping whose private client leaves from the public address on a port of its own."""
        owner = owner_key(packet.src, packet.src_port)
        if hairpin is None:
            reply_src, reply_src_port = packet.dst, packet.dst_port
        else:
            reply_src, reply_src_port = int(hairpin.endpoint.ip), hairpin.endpoint.port
        if proto is Proto.ICMP:
            reply_src_port = -1  # an ICMP reply carries the translated id on both sides
        port = self.ports.port_of(proto, owner)
        if port is None:
            port = self._free_port(proto, owner, packet.src_port, reply_src, reply_src_port, now,
                                   port_generator or self.ports.candidate)
            if port is None:
                return AddError.PORTS_EXHAUSTED
        full = self._make_room(proto, packet.src, dry_run)
        if full is not None:
            return full
        reply = pack_key(reply_src, self._public, port if reply_src_port < 0 else reply_src_port, port)
        kind = MappingKind.NAT if hairpin is None else MappingKind.HAIRPIN
        if dry_run:
            return _would_add(self.table, Mapping(0, proto, key, reply, kind, now, timeout))
        mapping = Mapping(next(self._ids), proto, key, reply, kind, now, timeout)
        if hairpin is not None and hairpin.to_mapping:
            mapping.flags = HOLDS_TARGET_PORT
        added = self._insert(mapping)
        if isinstance(added, Mapping):
            self.ports.acquire(proto, owner, port)
            if hairpin is not None and hairpin.to_mapping:
                self.ports.acquire(proto, owner_key(reply_src, reply_src_port), packet.dst_port)
        return added

    def _make_room(self, proto: Proto, client: int, dry_run: bool) -> AddError | None:
        """Before a private client's new mapping: evict its host's oldest mapping if the host is at its limit
        (a dry run only says whether it could), and check that the table may evict when full (:class:`Limits`)."""
        per_host = self.limits.per_host
        if per_host is not None and self.table.clients(proto, client) >= per_host:
            if not self.limits.evict:
                return AddError.HOST_LIMIT
            oldest = self.table.oldest_of_client(proto, client)
            if oldest is not None and not dry_run:
                self.table.delete(oldest, RemovalReason.HOST_LIMIT)
        if not self.limits.evict and self.table.count(proto) >= self.table.capacity(proto):
            return AddError.TABLE_FULL
        return None

    def _insert(self, mapping: Mapping) -> Mapping | AddError:
        overlap = self.table.insert(mapping)
        if overlap is not None:
            return overlap
        self.filter.added(mapping)
        return mapping

    def _free_port(self, proto: Proto, owner: int, private_port: int, remote: int, remote_port: int,
                   now: float, generator: PortGenerator) -> int | None:
        """Ask the generator for up to 100 candidates; a quarantined one only as a last resort.

        The first half ask for ports like ``private_port``; the rest alternate with its other parity
        (``private_port ^ 1``: same class), so a full parity does not exhaust a range with free ports.
        """
        fallback = None
        for attempt in range(MAX_PORT_TRIES):
            port = generator(proto, private_port if attempt < MAX_PORT_TRIES // 2 or attempt & 1 else private_port ^ 1)
            available = self.ports.availability(proto, port, owner, now)
            if available is False:
                continue
            slot = pack_key(remote, self._public, port if remote_port < 0 else remote_port, port)
            if self.table.peek(proto, slot) is not None:
                continue
            if available is None:
                fallback = port if fallback is None else fallback
                continue
            return port
        return fallback

    def ids_above(self, last_id: int) -> None:
        """New mappings get ids above ``last_id`` (one seen on the switch after a restart: its cookie carries it)."""
        following = next(self._ids)
        self._ids = itertools.count(max(following, last_id + 1))

    # --- translate ---------------------------------------------------------------------

    def translate(self, packet: Datagram, now: float, dry_run: bool = False) -> Translated | TranslateError:
        """The packet rewritten by its mapping, with TTL decremented.

        ICMP errors are translated by the packet they embed (RFC 5508).
        ``dry_run``: the same answer, and the mapping neither counts as used nor changes state. Errors:
        UNTRANSLATED  no mapping for its channel (or, for an ICMP error, for the
                      embedded packet);
        TTL_EXCEEDED  a mapping exists but the packet arrived with TTL <= 1.
        """
        self._now = self._now if dry_run else now
        if packet.embedded is not None:
            return self._translate_icmp_error(packet, dry_run)
        proto = _proto_of(packet)
        if proto is None:
            return TranslateError.UNTRANSLATED
        key = packet.key
        mapping = self.table.peek(proto, key) if dry_run else self.table.lookup(proto, key)
        if mapping is None:
            return TranslateError.UNTRANSLATED
        if packet.ttl <= 1:
            return TranslateError.TTL_EXCEEDED
        direction, out_key = leaving(mapping, key)
        change = None
        if not dry_run:
            mapping.last_used = now
            if packet.tcp_flags & tcp.WATCHED_FLAGS and proto is Proto.TCP:
                change = tcp.track(mapping, direction is Direction.ORIGINAL, packet.tcp_flags)
                if change is not None and mapping.expires_by_itself:
                    self.table.retime(mapping, self.timeouts.of(mapping))
        src, dst, src_port, dst_port = unpack_key(out_key)
        out = pkt_mod.rewrite(packet, src, dst, src_port, dst_port, packet.ttl - 1)
        return Translated(out, mapping, direction, change)

    # --- filtering and the switch's idle timers --------------------------------------

    def rules_idled(self, mapping: Mapping, idle_s: float, now: float) -> bool:
        """The switch removed ``mapping``'s rules after ``idle_s`` idle seconds: remove the mapping (True),
        unless its timeout is longer (an established TCP connection whose rules had the transitory one,
        RFC 5382 REQ-5); then it times the rest itself (False)."""
        timeout = self.timeouts.of(mapping)
        if idle_s >= timeout:
            self.remove(mapping, RemovalReason.EXPIRED)
            return True
        mapping.last_used = now - idle_s
        self.table.retime(mapping, timeout)
        return False

    def switch_times(self, mapping: Mapping) -> None:
        """``mapping``'s rules are on the switch again: their idle timeouts decide its life."""
        self.table.retime(mapping, math.inf)

    def _translate_icmp_error(self, packet: Datagram, dry_run: bool) -> Translated | TranslateError:
        """Map an ICMP error back along the conversation its embedded packet belongs to.

        The embedded packet is one the NAT sent; its reverse is a channel the
        table knows. The embedded header becomes what the receiver of the error
        sent before translation, and the outer destination that receiver.
        """
        embedded = packet.embedded
        assert embedded is not None
        try:
            proto = Proto(embedded.proto)
        except ValueError:
            return TranslateError.UNTRANSLATED
        arriving = reverse_key(embedded.key)
        mapping = self.table.peek(proto, arriving) if dry_run else self.table.lookup(proto, arriving)
        if mapping is None:
            return TranslateError.UNTRANSLATED
        if packet.ttl <= 1:
            return TranslateError.TTL_EXCEEDED
        direction, left_as = leaving(mapping, arriving)
        inner_src, inner_dst, inner_src_port, inner_dst_port = unpack_key(reverse_key(left_as))
        # The restored quoted packet was sent to the public address: the error comes from behind the NAT
        # (its end host, or a private router on the way) and speaks for that address (RFC 5508 REQ-5c).
        outer_src = self._public if inner_dst == self._public else packet.src
        out = pkt_mod.rewrite_icmp_error(packet, outer_src, inner_src, packet.ttl - 1,
                                         inner_src, inner_dst, inner_src_port, inner_dst_port)
        return Translated(out, mapping, direction)

    # --- removal and queries -------------------------------------------------------------

    def remove(self, mapping: Mapping, reason: RemovalReason = RemovalReason.DELETED) -> bool:
        """Remove one mapping (both channels); False if it was already gone."""
        return self.table.delete(mapping, reason)

    def remove_connections(self, host: IPv4Address) -> FreedPorts:
        """Remove every mapping of private ``host``; the public ports that no mapping holds any
        more, per protocol (a hairpin client keeps its port while it has other mappings)."""
        return self.table.remove_connections(host)

    def is_port_free(self, proto: Proto, src: IPv4Address, dst: IPv4Address, src_port: int,
                     dst_port: int) -> bool:
        """True if no mapping uses the channel src:src_port -> dst:dst_port and, when
        ``dst`` is the public address, no private endpoint holds or reserves ``dst_port``."""
        if not self.table.is_port_free(proto, src, dst, src_port, dst_port):
            return False
        if int(dst) != self._public:
            return True
        return self.ports.owner_of(proto, dst_port) is None and not self.ports.is_reserved(proto, dst_port)

    def expire(self, now: float) -> int:
        """Remove mappings idle past their timeout; how many went."""
        self._now = now
        return self.table.expire(now)

    def reset(self) -> None:
        """Remove every mapping (each is reported to the listener)."""
        self.table.reset()
        self.filter.forget_attempts()

    def _removed(self, mapping: Mapping, reason: RemovalReason) -> None:
        proto = mapping.proto
        if mapping.kind is not MappingKind.REDIRECT:
            src, _, src_port, _ = unpack_key(mapping.original)
            self.ports.release(proto, owner_key(src, src_port), self._now)
            if mapping.flags & HOLDS_TARGET_PORT:
                target, _, target_port, _ = unpack_key(mapping.reply)
                self.ports.release(proto, owner_key(target, target_port), self._now)
            self.filter.removed(mapping)
        if self.listener is not None:
            self.listener(mapping, reason)


def leaving(mapping: Mapping, arriving: int) -> tuple[Direction, int]:
    """Which channel of ``mapping`` the key ``arriving`` is, and the key the packet leaves with.

    A packet on the original channel leaves as the reverse of the reply channel,
    and a reply as the reverse of the original (see :mod:`ryu_nat.core.table`).
    """
    if arriving == mapping.original:
        return Direction.ORIGINAL, reverse_key(mapping.reply)
    return Direction.REPLY, reverse_key(mapping.original)


def _would_add(table: NatTable, mapping: Mapping) -> Mapping | AddError:
    """A dry run's answer: ``mapping``, unless a channel of it is taken (as :meth:`NatTable.insert` checks)."""
    if mapping.original == mapping.reply or table.peek(mapping.proto, mapping.original) is not None \
            or table.peek(mapping.proto, mapping.reply) is not None:
        return AddError.OVERLAP
    return mapping


def _made_by(mapping: Mapping, mode: AddMode) -> bool:
    """Would adding ``mapping``'s conversation in ``mode`` make this very mapping?"""
    match mode:
        case SourceNat():
            return mapping.kind is MappingKind.NAT
        case Redirect(endpoint=target) | Hairpin(endpoint=target):
            kind = MappingKind.REDIRECT if isinstance(mode, Redirect) else MappingKind.HAIRPIN
            src, _, src_port, _ = unpack_key(mapping.reply)
            return mapping.kind is kind and (src, src_port) == (int(target.ip), target.port)


def _proto_of(packet: Datagram) -> Proto | None:
    """The protocol a mapping for ``packet`` would live in, or None if it cannot have one."""
    if packet.frag_offset:
        return None
    if packet.proto == Proto.TCP:
        return Proto.TCP
    if packet.proto == Proto.UDP:
        return Proto.UDP
    if packet.proto == Proto.ICMP and packet.is_icmp_query:
        return Proto.ICMP
    return None
