"""The NAT path: for a routed packet, the mapping that translates it, a new mapping, or why neither.

Owns the core :class:`~ryu_nat.core.nat.Nat` (its table, public ports and
filtering) and the redirects. It decides; the dispatcher sends. Route
decisions, in order:

* a packet of a known mapping is translated (or its TTL ran out here);
* an ICMP error about no known conversation is dropped;
* from a private host: to the NAT's private address is local; to its public
  address, a hairpin to a redirect's server, or to the private endpoint whose
  public port it names if that endpoint's filtering lets it in (RFC 4787 REQ-9,
  RFC 5382 REQ-8; refused: dropped), else local; to another private host or
  the public broadcast is dropped; anything else gets a source-NAT mapping;
* from the uplink: to a redirected port gets a redirect mapping; to a private
  endpoint's public port that its filtering lets the sender reach is
  :class:`Admitted` (REQ-8: the filter rules part lets it in, with no mapping);
  anything else is unsolicited.

TCP and UDP mappings are added without a timeout of their own: their switch
rules' idle timeouts decide their life (:mod:`ryu_nat.gateway.offload`), except
an established TCP connection whose rules idled out before its timeout: this
part times the rest. The last :data:`ENDED_KEPT` mappings that ended are
remembered by channel, with why and when, so that explaining a packet can say
that its mapping expired at T. :meth:`NatPath.decide` has a dry run
(``dry_run=True``) that goes through the same decisions and changes nothing: no
mapping added or refreshed, no port or id taken, no filter attempt recorded, no
counter moved.

What the NAT path would accept from the uplink is asked of it here, not worked
out elsewhere: :meth:`NatPath.port_has_owner` for the inbound guard's drop
rules, :meth:`NatPath.expects` for the fragments cache's trust. No I/O; time is
passed in.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from ryu_nat.config import NatConfig, RedirectRule
from ryu_nat.core.addresses import Endpoint, Proto, Subnet, is_nattable
from ryu_nat.core.filtering import Admitted, Filtering, public_sides
from ryu_nat.core.lru_table import LruNatTable
from ryu_nat.core.nat import AddMode, Hairpin, Nat, Redirect, SourceNat, Translated, TranslateError
from ryu_nat.core.packet import TCP_FIN, TCP_RST, Datagram
from ryu_nat.core.ports import PortAllocator, owner_key
from ryu_nat.core.putback import RestoreError, restore
from ryu_nat.core.table import AddError, FreedPorts, Mapping, MappingKind, Page, RemovalReason
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow.plan import ipv4_text
from ryu_nat.openflow.rules import OFFLOADED
from ryu_nat.ratelimit import LogLimiter

LOG = logging.getLogger(__name__)

ENDED_KEPT = 4096  # ended mappings remembered for explaining packets (two channels each)


class Verdict(enum.Enum):
    """What became of a packet that was neither translated, nor given a mapping, nor dropped."""

    TIME_EXCEEDED = "time_exceeded"  # its TTL runs out here
    FOR_THE_NAT = "for_the_nat"  # addressed to the NAT itself
    UNSOLICITED = "unsolicited"  # inbound, with no mapping and no redirect


Decision = Translated | Mapping | Admitted | Verdict | DropReason
Unfiltered = Callable[[Proto, int, "int | None"], None]
"""Told (protocol, public port, remote address or None) when what an :class:`Admitted` of that scope
rests on is gone: the public port has no owner any more (None), or no live mapping on it talks to that
address any more."""


@dataclass(frozen=True, slots=True)
class Ended:
    """A mapping that left the table, why, and when (the time the NAT last saw when it went)."""

    mapping: Mapping
    reason: RemovalReason
    at: float


class NatPath:
    """Source NAT, redirects and hairpinning over one public address."""

    def __init__(self, config: NatConfig, rng: random.Random, stats: Stats,
                 on_removed: Callable[[Mapping], None], limiter: LogLimiter, on_unfiltered: Unfiltered) -> None:
        self._public = Subnet.of(config.public)
        self._private = Subnet.of(config.private)
        self._stats = stats
        self._on_removed = on_removed
        self._limiter = limiter
        self._on_unfiltered = on_unfiltered
        self._filtering = config.filtering
        ports = PortAllocator(config.port_range, rng, keep_parity=config.port_parity)
        self._nat = Nat(LruNatTable(config.table_sizes), config.public.ip, ports, config.timeouts,
                        listener=self._removed, filtering=config.filtering, limits=config.limits)
        self._redirects: dict[tuple[Proto, int], RedirectRule] = {}
        self._remotes: Counter[int] = Counter()  # remote address << 8 | protocol -> its live mappings
        self._ended: OrderedDict[tuple[Proto, int], Ended] = OrderedDict()
        self._now = 0.0
        self._dry_ports = random.Random(0)  # dry runs draw ports from here, never from the NAT's own source

    # --- packets ---------------------------------------------------------------------------

    def decide(self, d: Datagram, from_private: bool, now: float, dry_run: bool = False) -> Decision:
        """What becomes of ``d``, a whole datagram routed through the NAT (see the module's docstring);
        with ``dry_run``, what would, and nothing changes (a new mapping comes back with id 0)."""
        if dry_run:
            result = self._nat.translate(d, now, dry_run=True)
        else:
            self._now = now
            if d.tcp_flags & (TCP_FIN | TCP_RST):
                self._stats.packet_ins["tcp_closing"] += 1
            result = self._nat.translate(d, now)
        if isinstance(result, Translated):
            if not dry_run and result.mapping.expires_by_itself and d.proto in OFFLOADED and d.embedded is None:
                self._nat.switch_times(result.mapping)  # this packet puts its rules back on the switch
            return result
        if result is TranslateError.TTL_EXCEEDED:
            return Verdict.TIME_EXCEEDED
        if d.embedded is not None:
            return DropReason.UNTRANSLATED_ICMP_ERROR
        to_public = d.dst == self._public.address and d.proto in OFFLOADED
        redirect = self._redirects.get((Proto(d.proto), d.dst_port)) if to_public else None
        mode: AddMode | Admitted | Verdict | DropReason
        if from_private:
            mode = self._private_mode(d, to_public, redirect, now, dry_run)
        elif redirect is not None:
            mode = Redirect(redirect.private)
        else:
            mode = self._admitted(d, now) if to_public else Verdict.UNSOLICITED
        if isinstance(mode, (Verdict, DropReason)):
            return mode
        if d.ttl <= 1:
            return Verdict.TIME_EXCEEDED
        return mode if isinstance(mode, Admitted) else self._add(d, mode, now, dry_run)

    def refusal(self, d: Datagram, from_private: bool) -> DropReason | None:
        """Why an IPv4 datagram sent to the NAT's MAC from that side is not one to route, if it is not."""
        if from_private:
            return None if self._private.is_other_host(d.src) else DropReason.SPOOFED_SOURCE
        if d.dst != self._public.address:
            return DropReason.NOT_FOR_US
        return None if _is_public_source(d.src, self._public, self._private) else DropReason.SPOOFED_SOURCE

    def rules_idled(self, mapping: Mapping, idle_s: float, now: float) -> None:
        """The switch removed the last of ``mapping``'s rules after ``idle_s`` idle seconds: it ends,
        or, an established TCP connection, lives on in the table for the rest of its timeout."""
        self._now = now
        self._nat.rules_idled(mapping, idle_s, now)

    def translate(self, d: Datagram, now: float) -> Translated:
        """``d`` translated by the mapping just added for it."""
        translated = self._nat.translate(d, now)
        assert isinstance(translated, Translated), translated
        return translated

    def end(self, mapping: Mapping, now: float) -> None:
        """``mapping`` is over: its rules never reached the switch in time."""
        self._now = now
        self._nat.remove(mapping, RemovalReason.EXPIRED)

    # --- what it would accept from the uplink -------------------------------------------------------

    def port_has_owner(self, proto: Proto, public_port: int) -> bool:
        """True if traffic to ``public_port`` may be accepted from some sender: a private endpoint holds
        it (a live mapping), or a redirect has it."""
        ports = self._nat.ports
        return ports.owner_of(proto, public_port) is not None or ports.is_reserved(proto, public_port)

    def expects(self, piece: Datagram) -> bool:
        """Could ``piece``, a fragment from the uplink, belong to a live mapping or a redirect?

        A first fragment carries its ports: its own channel must have a mapping, or
        its port a redirect. A later one carries none: its sender must be the remote
        of some live mapping of its protocol (a new redirect client's later pieces
        count once its first piece arrives).
        """
        if piece.frag_offset:
            return self._remotes[piece.src << 8 | piece.proto] > 0
        if piece.proto not in (Proto.TCP, Proto.UDP, Proto.ICMP) or not piece.src_port and not piece.dst_port:
            return False
        proto = Proto(piece.proto)
        if self._nat.table.lookup(proto, piece.key) is not None:
            return True
        return proto is not Proto.ICMP and (proto, piece.dst_port) in self._redirects

    def expire(self, now: float) -> None:
        """Remove mappings idle past their timeout (those the controller times: ICMP)."""
        self._now = now
        self._nat.expire(now)

    def ended(self, proto: Proto, key: int) -> Ended | None:
        """The last mapping that had the channel ``key`` and ended, if it is still remembered."""
        return self._ended.get((proto, key))

    # --- after a restart ----------------------------------------------------------------------------

    def restore(self, mapping: Mapping) -> RestoreError | None:
        """Put back a mapping read back from the switch (see :func:`ryu_nat.core.putback.restore`)."""
        refused = restore(self._nat, mapping)
        if refused is None:
            self._remotes[_remote_key(mapping)] += 1
        return refused

    def ids_above(self, last_id: int) -> None:
        self._nat.ids_above(last_id)

    def is_empty(self) -> bool:
        return not any(self._nat.table.count(proto) for proto in Proto)

    def offloaded_between(self, first: int, last: int, limit: int) -> list[Mapping]:
        """Up to ``limit`` TCP and UDP mappings with ids from ``first`` to ``last``, lowest first."""
        found = [mapping for proto in OFFLOADED for mapping in self._nat.table.page(first - 1, limit, proto).mappings
                 if mapping.id <= last]
        found.sort(key=lambda mapping: mapping.id)
        return found[:limit]

    # --- redirects ------------------------------------------------------------------------------

    def add_redirect(self, rule: RedirectRule) -> None:
        """Forward ``rule.public_port``; its port leaves the source-NAT pool."""
        self._redirects[(rule.proto, rule.public_port)] = rule
        self._nat.ports.reserve(rule.proto, rule.public_port)

    def remove_redirect(self, proto: Proto, public_port: int) -> RedirectRule | None:
        rule = self._redirects.pop((proto, public_port), None)
        if rule is not None:
            self._nat.ports.unreserve(proto, public_port)
        return rule

    def redirect(self, proto: Proto, public_port: int) -> RedirectRule | None:
        return self._redirects.get((proto, public_port))

    def redirects(self) -> list[RedirectRule]:
        """Every redirect, by protocol and public port."""
        return [rule for _, rule in sorted(self._redirects.items())]

    # --- the table, for the operator --------------------------------------------------------------

    def mappings(self, proto: Proto | None = None, host: IPv4Address | None = None) -> Iterator[Mapping]:
        return self._nat.table.mappings(proto, host)

    def page(self, after: int, limit: int, proto: Proto | None, host: IPv4Address | None) -> Page:
        return self._nat.table.page(after, limit, proto, host)

    def matching(self, proto: Proto | None, host: IPv4Address | None) -> int:
        return self._nat.table.matching(proto, host)

    def mapping_of(self, proto: Proto, key: int) -> Mapping | None:
        return self._nat.table.lookup(proto, key)

    def count(self, proto: Proto) -> int:
        return self._nat.table.count(proto)

    def capacity(self, proto: Proto) -> int:
        return self._nat.table.capacity(proto)

    def port_holder(self, proto: Proto, public_port: int) -> Endpoint | None:
        owner = self._nat.ports.owner_of(proto, public_port)
        return None if owner is None else Endpoint(IPv4Address(owner >> 16), owner & 0xFFFF)

    def port_owner(self, proto: Proto, public_port: int) -> int | None:
        """:meth:`port_holder`, packed (address << 16 | port)."""
        return self._nat.ports.owner_of(proto, public_port)

    def ports_in_use(self, proto: Proto) -> int:
        return self._nat.ports.in_use(proto)

    def is_port_reserved(self, proto: Proto, public_port: int) -> bool:
        return self._nat.ports.is_reserved(proto, public_port)

    def is_port_free(self, proto: Proto, remote: Endpoint, public_port: int) -> bool:
        return self._nat.is_port_free(proto, remote.ip, self._nat.public_ip, remote.port, public_port)

    def remove_connections(self, host: IPv4Address) -> FreedPorts:
        return self._nat.remove_connections(host)

    def reset(self) -> None:
        self._nat.reset()

    # --- internals --------------------------------------------------------------------------------

    def _private_mode(self, d: Datagram, to_public: bool, redirect: RedirectRule | None,
                      now: float, dry_run: bool) -> AddMode | Verdict | DropReason:
        """A private host's packet that no mapping translates: how to add its mapping, or why not."""
        if d.dst == self._public.address:
            if redirect is not None:
                return Hairpin(redirect.private)
            proto = Proto(d.proto) if to_public else None
            owner = None if proto is None else self._nat.ports.owner_of(proto, d.dst_port)
            if proto is None or owner is None:
                return Verdict.FOR_THE_NAT
            # It arrives from its sender's public endpoint; a sender with no public port yet has port 0.
            sender_port = self._nat.ports.port_of(proto, owner_key(d.src, d.src_port)) or 0
            if self._nat.filter.admits(proto, d.dst_port, self._public.address, sender_port, now) is None:
                if not dry_run:
                    self._nat.filter.hairpin_refused(proto, owner_key(d.src, d.src_port), d.dst_port, now)
                return DropReason.HAIRPIN_FILTERED
            return Hairpin(Endpoint(IPv4Address(owner >> 16), owner & 0xFFFF), to_mapping=True)
        if d.dst == self._private.address:
            return Verdict.FOR_THE_NAT
        if self._private.contains(d.dst):
            return DropReason.PRIVATE_DESTINATION
        if d.dst == self._public.broadcast:
            return DropReason.CANNOT_NAT
        return SourceNat()

    def _admitted(self, d: Datagram, now: float) -> Admitted | Verdict:
        """Inbound TCP or UDP to the public address with no mapping: what filtering lets in, if anything."""
        proto = Proto(d.proto)
        owner = self._nat.filter.admits(proto, d.dst_port, d.src, d.src_port, now)
        if owner is None:
            return Verdict.UNSOLICITED
        remote = None if self._filtering is Filtering.ENDPOINT_INDEPENDENT else d.src
        return Admitted(proto, d.dst_port, owner >> 16, owner & 0xFFFF, remote)

    def _add(self, d: Datagram, mode: AddMode, now: float, dry_run: bool) -> Mapping | DropReason:
        timeout = math.inf if d.proto in OFFLOADED else None
        if dry_run:
            ports = self._nat.ports
            would = self._nat.add(d, mode, now, idle_timeout_s=timeout, dry_run=True,
                                  port_generator=lambda proto, port: ports.candidate(proto, port, self._dry_ports))
            return DropReason.of(would) if isinstance(would, AddError) else would
        added = self._nat.add(d, mode, now, idle_timeout_s=timeout)
        if isinstance(added, AddError):
            self._limiter.log(LOG, logging.WARNING, added.value, now, "refused %s: %s", _describe(d), added.value)
            return DropReason.of(added)
        self._stats.mappings_created[added.kind.value] += 1
        self._remotes[_remote_key(added)] += 1
        LOG.debug("new mapping %r", added)
        return added

    def _removed(self, mapping: Mapping, reason: RemovalReason) -> None:
        self._stats.mappings_removed[reason.value] += 1
        LOG.debug("mapping %d removed (%s)", mapping.id, reason.value)
        ended, proto = Ended(mapping, reason, self._now), mapping.proto
        remembered = self._ended
        remembered[(proto, mapping.original)] = remembered[(proto, mapping.reply)] = ended
        while len(remembered) > 2 * ENDED_KEPT:
            remembered.popitem(last=False)
        remote = _remote_key(mapping)
        left = self._remotes[remote] - 1
        if left:
            self._remotes[remote] = left
        else:
            del self._remotes[remote]
        self._on_removed(mapping)
        proto = mapping.proto
        if proto in OFFLOADED:
            for public_port, remote_ip in public_sides(mapping, self._public.address):
                if self._nat.ports.owner_of(proto, public_port) is None:
                    self._on_unfiltered(proto, public_port, None)
                if self._filtering is Filtering.ADDRESS_DEPENDENT and not self._nat.filter.talks_to(
                        proto, public_port, remote_ip):
                    self._on_unfiltered(proto, public_port, remote_ip)


def _is_public_source(src: int, public: Subnet, private: Subnet) -> bool:
    """Can ``src`` be one host beyond the uplink? Not a private address, not the NAT's own, nor a network,
    broadcast, multicast, loopback or unspecified one."""
    if private.contains(src) or not is_nattable(src):
        return False
    return not public.contains(src) or public.is_other_host(src)


def _remote_key(mapping: Mapping) -> int:
    """The ``_remotes`` key of a mapping: its outside end (the client of a redirect, else the replier)."""
    remote = mapping.initiator if mapping.kind is MappingKind.REDIRECT else mapping.replier
    return remote << 8 | mapping.proto


def _describe(d: Datagram) -> str:
    """Who was refused, not where it was going: RFC 6888 REQ-12 keeps destinations out of the log."""
    port = f":{d.src_port}" if d.src_port else ""
    return f"proto {d.proto} from {ipv4_text(d.src)}{port}"
