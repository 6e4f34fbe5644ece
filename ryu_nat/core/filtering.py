"""Inbound filtering (RFC 4787 REQ-8, RFC 5382 REQ-3): which remotes may reach a private endpoint's public port.

A private endpoint that holds a public port P (it has at least one live
mapping) may be reached on P, with no mapping for that exact remote, by:

* ``endpoint-independent``: anyone;
* ``address-dependent``: any port of an address it has a live mapping with;
* ``address-and-port-dependent``: nobody (only the exact remotes of its mappings,
  which the table itself matches).

For a hairpinned packet the remote is the NAT's public address (the sender's
public endpoint). :class:`RemoteIndex` counts, per public port, the remote
addresses of live mappings, so the address-dependent question costs a dict
lookup. :class:`HairpinAttempts` remembers, briefly and within a bound, hairpins
that filtering refused: a private host that tried to reach another through the
public address has "sent" there as far as its own filter is concerned, as it
would have behind a NAT that translates the packet before filtering drops it,
so two hosts can punch holes towards each other through the NAT. No I/O; time
is passed in.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass

from ryu_nat.core.addresses import SOURCE_SHIFT, Proto
from ryu_nat.core.packet import Datagram, rewrite
from ryu_nat.core.ports import PortAllocator
from ryu_nat.core.table import HOLDS_TARGET_PORT, Mapping, MappingKind

HAIRPIN_ATTEMPTS = 1024  # remembered at most; the oldest goes first


class Filtering(enum.Enum):
    """How a private endpoint's public port filters inbound traffic; values are the option's words."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"


@dataclass(frozen=True, slots=True)
class Admitted:
    """Inbound traffic that filtering lets reach a private endpoint on its public port, with no mapping of
    its own (RFC 4787 REQ-8): from any remote (``remote`` None, endpoint-independent) or from any port of
    ``remote`` (address-dependent)."""

    proto: Proto
    public_port: int
    private_ip: int
    private_port: int
    remote: int | None


def admitted_datagram(d: Datagram, admitted: Admitted) -> Datagram:
    """``d`` as a filter rule would forward it: to the private endpoint, one TTL spent."""
    return rewrite(d, d.src, admitted.private_ip, d.src_port, admitted.private_port, d.ttl - 1)


def public_sides(mapping: Mapping, public_ip: int) -> tuple[tuple[int, int], ...]:
    """(public port, remote address) for each private endpoint of ``mapping`` that holds a public port:
    a NAT mapping's client, a hairpin's client and, if it holds it, its target (whose remote address
    is the public one). None for a redirect (its server holds no port)."""
    kind = mapping.kind
    if kind is MappingKind.NAT:
        return ((mapping.reply & 0xFFFF, mapping.reply >> SOURCE_SHIFT),)
    if kind is MappingKind.REDIRECT:
        return ()
    client = (mapping.reply & 0xFFFF, public_ip)
    if mapping.flags & HOLDS_TARGET_PORT:
        return client, (mapping.original & 0xFFFF, public_ip)
    return (client,)


class RemoteIndex:
    """How many live mappings each (public port, remote address) pair has, per protocol."""

    def __init__(self) -> None:
        self._counts: dict[Proto, dict[int, int]] = {proto: {} for proto in Proto}

    def add(self, proto: Proto, public_port: int, remote: int) -> None:
        counts = self._counts[proto]
        key = remote << 16 | public_port
        counts[key] = counts.get(key, 0) + 1

    def discard(self, proto: Proto, public_port: int, remote: int) -> None:
        counts = self._counts[proto]
        key = remote << 16 | public_port
        left = counts.get(key, 0) - 1
        if left > 0:
            counts[key] = left
        else:
            counts.pop(key, None)

    def has(self, proto: Proto, public_port: int, remote: int) -> bool:
        return remote << 16 | public_port in self._counts[proto]

    def clear(self) -> None:
        for counts in self._counts.values():
            counts.clear()


class HairpinAttempts:
    """Hairpins that filtering refused, for ``lifetime_s``: who tried, towards which public port."""

    def __init__(self, lifetime_s: float, bound: int = HAIRPIN_ATTEMPTS) -> None:
        self._lifetime_s = lifetime_s
        self._bound = bound
        self._by_port: OrderedDict[tuple[Proto, int, int], float] = OrderedDict()  # (proto, owner, port) -> when
        self._by_owner: dict[tuple[Proto, int], int] = {}  # (proto, owner) -> attempts remembered

    def add(self, proto: Proto, owner: int, public_port: int, now: float) -> None:
        """``owner`` (a packed private endpoint) tried to reach the public address:``public_port``."""
        key = (proto, owner, public_port)
        if key in self._by_port:
            self._by_port.move_to_end(key)
        else:
            self._by_owner[proto, owner] = self._by_owner.get((proto, owner), 0) + 1
            if len(self._by_port) >= self._bound:
                self._forget_oldest()
        self._by_port[key] = now

    def tried(self, proto: Proto, owner: int, public_port: int | None, now: float) -> bool:
        """True if ``owner`` tried, within the lifetime, to reach ``public_port`` (None: any public port)."""
        self.expire(now)
        if public_port is None:
            return (proto, owner) in self._by_owner
        return (proto, owner, public_port) in self._by_port

    def expire(self, now: float) -> None:
        while self._by_port:
            when = next(iter(self._by_port.values()))
            if now - when < self._lifetime_s:
                return
            self._forget_oldest()

    def clear(self) -> None:
        self._by_port.clear()
        self._by_owner.clear()

    def _forget_oldest(self) -> None:
        (proto, owner, _), _ = self._by_port.popitem(last=False)
        left = self._by_owner[proto, owner] - 1
        if left:
            self._by_owner[proto, owner] = left
        else:
            del self._by_owner[proto, owner]


class InboundFilter:
    """A NAT's filtering: its mode, and what answers each question of it at the cost of a lookup."""

    def __init__(self, mode: Filtering, public_ip: int, ports: PortAllocator, attempts_lifetime_s: float) -> None:
        self.mode = mode
        self._public = public_ip
        self._ports = ports
        # Only address-dependent filtering asks which addresses a public port talks to.
        self._remotes = RemoteIndex() if mode is Filtering.ADDRESS_DEPENDENT else None
        self._attempts = HairpinAttempts(attempts_lifetime_s)

    def admits(self, proto: Proto, public_port: int, remote: int, remote_port: int, now: float) -> int | None:
        """The private endpoint (packed: address << 16 | port) that filtering alone lets a packet from
        ``remote``:``remote_port`` reach on the public address:``public_port``, if any (RFC 4787 REQ-8).

        Asked when no mapping has that exact channel; ``remote`` is the public
        address itself for a hairpinned packet, whose ``remote_port`` is then its
        sender's public port (0 if it has none yet).
        """
        if proto is Proto.ICMP:
            return None
        owner = self._ports.owner_of(proto, public_port)
        if owner is None or self.mode is Filtering.ENDPOINT_INDEPENDENT:
            return owner
        hairpin = remote == self._public
        if self._remotes is not None:
            if self._remotes.has(proto, public_port, remote):
                return owner
            return owner if hairpin and self._attempts.tried(proto, owner, None, now) else None
        return owner if hairpin and self._attempts.tried(proto, owner, remote_port, now) else None

    def talks_to(self, proto: Proto, public_port: int, remote: int) -> bool:
        """True if a live mapping on ``public_port`` has ``remote`` as its remote address (address-dependent
        filtering; always False in the other modes, which do not ask)."""
        return self._remotes is not None and self._remotes.has(proto, public_port, remote)

    def hairpin_refused(self, proto: Proto, owner: int, public_port: int, now: float) -> None:
        """Filtering refused a hairpin from ``owner`` to ``public_port``: remember that it tried, so the
        other side may answer (see :class:`HairpinAttempts`)."""
        self._attempts.add(proto, owner, public_port, now)

    def added(self, mapping: Mapping) -> None:
        if self._remotes is not None:
            for public_port, remote in public_sides(mapping, self._public):
                self._remotes.add(mapping.proto, public_port, remote)

    def removed(self, mapping: Mapping) -> None:
        if self._remotes is not None:
            for public_port, remote in public_sides(mapping, self._public):
                self._remotes.discard(mapping.proto, public_port, remote)

    def forget_attempts(self) -> None:
        self._attempts.clear()

