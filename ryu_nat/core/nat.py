"""NAT operations: add, translate, remove_connections, is_port_free, expire, reset.

mirage-nat's ``Mirage_nat.S`` in Python, with two deliberate differences: a
redirect keeps the remote client's address (the private server sees who
connects, as with Linux DNAT), and hairpinning works (RFC 4787 REQ-9, RFC 5382
REQ-8). Errors are values, not exceptions. No I/O; time is passed in.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from ipaddress import IPv4Address

from ryu_nat.core import packet as pkt_mod
from ryu_nat.core.addresses import Endpoint, Proto, is_nattable, pack_key, reverse_key, unpack_key
from ryu_nat.core.packet import TCP_FIN, TCP_RST, Datagram
from ryu_nat.core.ports import PortAllocator, PortGenerator, owner_key
from ryu_nat.core.table import (AddError, FreedPorts, Mapping, MappingKind, NatTable, RemovalListener,
                                RemovalReason)

MAX_PORT_TRIES = 100


class TranslateError(enum.Enum):
    """Why a packet was not translated; values are counter names."""

    UNTRANSLATED = "untranslated"  # no mapping for its channel
    TTL_EXCEEDED = "ttl_exceeded"  # it arrived with TTL <= 1: not forwarded (RFC 1812 5.3.1)


class RestoreError(enum.Enum):
    """Why a mapping read back from the switch was not put back; values are counter names."""

    OVERLAP = "overlap"  # a channel of it belongs to a mapping put back before it
    PORT_OWNED_TWICE = "port_owned_twice"  # its public port is another endpoint's or a redirect's, or its
    # private endpoint already holds another port (one port per endpoint, RFC 4787 REQ-1)
    ID_REUSED = "id_reused"  # an id at or below one the table already gave out


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
    """Add mode: a private host's packet to a forwarded port goes to ``endpoint``,
    from the public address and the client's mapped port."""

    endpoint: Endpoint


AddMode = SourceNat | Redirect | Hairpin


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Idle timeouts in seconds (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-1)."""

    tcp_established_s: float = 7440.0
    tcp_transitory_s: float = 240.0
    udp_s: float = 300.0
    icmp_s: float = 60.0

    def for_new(self, proto: Proto) -> float:
        """The timeout a new mapping of ``proto`` starts with."""
        if proto is Proto.TCP:
            return self.tcp_established_s
        return self.udp_s if proto is Proto.UDP else self.icmp_s


@dataclass(frozen=True, slots=True)
class Translated:
    """A translated packet and the mapping that translated it.

    ``closing_started`` is True for the first FIN or RST of a TCP mapping: its
    timeout just became the transitory one.
    """

    packet: Datagram
    mapping: Mapping
    direction: Direction
    closing_started: bool = False


class Nat:
    """Source and destination NAT for one public address over a :class:`NatTable`."""

    def __init__(self, table: NatTable, public_ip: IPv4Address, ports: PortAllocator,
                 timeouts: Timeouts = Timeouts(), listener: RemovalListener | None = None) -> None:
        self.table = table
        self.public_ip = public_ip
        self.ports = ports
        self.timeouts = timeouts
        self.listener = listener
        self._public = int(public_ip)
        self._ids = itertools.count(1)
        self._now = 0.0
        self._new_timeouts = {proto: timeouts.for_new(proto) for proto in Proto}
        table.listener = self._removed

    # --- add ---------------------------------------------------------------------------

    def add(self, packet: Datagram, mode: AddMode, now: float, *, idle_timeout_s: float | None = None,
            port_generator: PortGenerator | None = None, dry_run: bool = False) -> Mapping | AddError:
        """Add a mapping for the conversation ``packet`` starts; return it.

        Adding a conversation that already has a mapping made by the same mode (for
        a redirect or hairpin, to the same target) refreshes and returns it.
        ``idle_timeout_s`` overrides the protocol's timeout (``math.inf``: only an
        explicit removal ends it). ``dry_run`` decides without acting: the mapping
        that would be added (id 0, a port the generator offered) or the error, and
        nothing changes (no id, port or channel taken, nothing refreshed). Errors:
        CANNOT_NAT  not TCP, UDP or an ICMP query; a later fragment; port 0; an
                    address that is broadcast, multicast, loopback, unspecified or
                    link-local; a redirect of ICMP.
        OVERLAP     a channel of the new mapping belongs to another mapping, or the
                    conversation has one made otherwise (mirage-nat's rule).
        PORTS_EXHAUSTED  the port generator gave no free port in 100 tries.
        """
        if not dry_run:
            self._now = now
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
                return self._add_translated(packet, key, proto, MappingKind.NAT, None, now, timeout,
                                            port_generator, dry_run)
            case Redirect(endpoint=target) | Hairpin(endpoint=target):
                if proto is Proto.ICMP or not is_nattable(int(target.ip)):
                    return AddError.CANNOT_NAT
                if isinstance(mode, Hairpin):
                    return self._add_translated(packet, key, proto, MappingKind.HAIRPIN, target, now, timeout,
                                                port_generator, dry_run)
                reply = pack_key(int(target.ip), packet.src, target.port, packet.src_port)
                if dry_run:
                    return self._would_add(Mapping(0, proto, key, reply, MappingKind.REDIRECT, now, timeout))
                mapping = Mapping(next(self._ids), proto, key, reply, MappingKind.REDIRECT, now, timeout)
                overlap = self.table.insert(mapping)
                return mapping if overlap is None else overlap

    def _add_translated(self, packet: Datagram, key: int, proto: Proto, kind: MappingKind,
                        target: Endpoint | None, now: float, timeout: float,
                        port_generator: PortGenerator | None, dry_run: bool) -> Mapping | AddError:
        """A mapping whose private client leaves from the public address on a port of its own."""
        owner = owner_key(packet.src, packet.src_port)
        if target is None:
            reply_src, reply_src_port = packet.dst, packet.dst_port
        else:
            reply_src, reply_src_port = int(target.ip), target.port
        if proto is Proto.ICMP:
            reply_src_port = -1  # an ICMP reply carries the translated id on both sides
        port = self.ports.port_of(proto, owner)
        if port is None:
            port = self._free_port(proto, owner, packet.src_port, reply_src, reply_src_port, now,
                                   port_generator or self.ports.candidate)
            if port is None:
                return AddError.PORTS_EXHAUSTED
        reply = pack_key(reply_src, self._public, port if reply_src_port < 0 else reply_src_port, port)
        if dry_run:
            return self._would_add(Mapping(0, proto, key, reply, kind, now, timeout))
        mapping = Mapping(next(self._ids), proto, key, reply, kind, now, timeout)
        overlap = self.table.insert(mapping)
        if overlap is not None:
            return overlap
        self.ports.acquire(proto, owner, port)
        return mapping

    def _free_port(self, proto: Proto, owner: int, private_port: int, remote: int, remote_port: int,
                   now: float, generator: PortGenerator) -> int | None:
        """Ask the generator for up to 100 candidates; a quarantined one only as a last resort."""
        fallback = None
        for _ in range(MAX_PORT_TRIES):
            port = generator(proto, private_port)
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

    def _would_add(self, mapping: Mapping) -> Mapping | AddError:
        """A dry run's answer: ``mapping``, unless a channel of it is taken (as :meth:`NatTable.insert` checks)."""
        table = self.table
        if mapping.original == mapping.reply or table.peek(mapping.proto, mapping.original) is not None \
                or table.peek(mapping.proto, mapping.reply) is not None:
            return AddError.OVERLAP
        return mapping

    def restore(self, mapping: Mapping) -> RestoreError | None:
        """Put back, id and all, a mapping read back from the switch after a restart: both channels, and the
        public port of a source NAT or hairpin mapping; new mappings get ids above it. An error changes
        nothing (see :class:`RestoreError`); ids must come in increasing order, above every id the table
        gave out."""
        if mapping.id <= self.table.last_id:
            return RestoreError.ID_REUSED
        owner = port = 0
        if mapping.kind is not MappingKind.REDIRECT:
            src, _, src_port, _ = unpack_key(mapping.original)
            owner, port = owner_key(src, src_port), mapping.reply & 0xFFFF
            held, holder = self.ports.port_of(mapping.proto, owner), self.ports.owner_of(mapping.proto, port)
            if held not in (None, port) or holder not in (None, owner) or self.ports.is_reserved(mapping.proto, port):
                return RestoreError.PORT_OWNED_TWICE
        if self.table.insert(mapping) is not None:
            return RestoreError.OVERLAP
        if mapping.kind is not MappingKind.REDIRECT:
            self.ports.acquire(mapping.proto, owner, port)
        self.ids_above(mapping.id)
        return None

    def ids_above(self, last_id: int) -> None:
        """New mappings get ids above ``last_id`` (one seen on the switch after a restart: its cookie carries it)."""
        following = next(self._ids)
        self._ids = itertools.count(max(following, last_id + 1))

    # --- translate ---------------------------------------------------------------------

    def translate(self, packet: Datagram, now: float, dry_run: bool = False) -> Translated | TranslateError:
        """The packet rewritten by its mapping, with TTL decremented.

        ICMP errors are translated by the packet they embed (RFC 5508).
        ``dry_run``: the same answer, but the mapping neither counts as used nor
        starts closing. Errors:
        UNTRANSLATED  no mapping for its channel (or, for an ICMP error, for the
                      embedded packet);
        TTL_EXCEEDED  a mapping exists but the packet arrived with TTL <= 1.
        """
        if not dry_run:
            self._now = now
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
        closing_started = False
        if proto is Proto.TCP and packet.tcp_flags & (TCP_FIN | TCP_RST) and not mapping.closing:
            closing_started = dry_run or self._start_closing(mapping)
        if not dry_run:
            mapping.last_used = now
        src, dst, src_port, dst_port = unpack_key(out_key)
        out = pkt_mod.rewrite(packet, src, dst, src_port, dst_port, packet.ttl - 1)
        return Translated(out, mapping, direction, closing_started)

    def _start_closing(self, mapping: Mapping) -> bool:
        """FIN or RST seen: the mapping now lives by the transitory timeout."""
        mapping.closing = True
        if mapping.expires_by_itself:
            mapping.idle_timeout_s = min(mapping.idle_timeout_s, self.timeouts.tcp_transitory_s)
            self.table.reschedule(mapping)
        return True

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

    def _removed(self, mapping: Mapping, reason: RemovalReason) -> None:
        if mapping.kind is not MappingKind.REDIRECT:
            src, _, src_port, _ = unpack_key(mapping.original)
            self.ports.release(mapping.proto, owner_key(src, src_port), self._now)
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
