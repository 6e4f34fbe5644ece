"""Public port allocation: random (RFC 6056), endpoint-independent (RFC 4787 REQ-1).

A public port (ICMP: query id) of a protocol belongs to one private endpoint
while any mapping of that endpoint lives; every remote sees that endpoint on the
same port, and no other endpoint is given it. A port freed less than
``quarantine_s`` ago is handed to a different endpoint only when no other port
is found (RFC 6888 REQ-8), so late packets of the old flow cannot reach a new
owner. Candidates keep the private port's class (below 1024 or not, RFC 4787
REQ-3) and, unless told otherwise, its parity (REQ-4), as far as the range
allows. No I/O; time is passed in.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ryu_nat.core.addresses import Proto

WELL_KNOWN_LIMIT = 1024
MAX_PORT = 65535
QUARANTINE_S = 120.0

PortGenerator = Callable[[Proto, int], int]
"""(protocol, private source port) -> a candidate public port."""


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive range of ports, ``first``..``last``."""

    first: int
    last: int

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.last <= MAX_PORT:
            raise ValueError(f"bad port range {self.first}-{self.last} (want 1 <= first <= last <= 65535)")

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def __len__(self) -> int:
        return self.last - self.first + 1


def owner_key(private_ip: int, private_port: int) -> int:
    """A private endpoint packed into one int (address << 16 | port)."""
    return private_ip << 16 | private_port


class PortAllocator:
    """Who owns which public port, per protocol, and the default port generator."""

    def __init__(self, port_range: PortRange, rng: random.Random, quarantine_s: float = QUARANTINE_S,
                 keep_parity: bool = True) -> None:
        self.port_range = port_range
        self.quarantine_s = quarantine_s
        self.keep_parity = keep_parity
        self._rng = rng
        # RFC 4787 REQ-3: private ports below 1024 map below 1024, the others never do,
        # as far as the configured range allows.
        low_last = min(port_range.last, WELL_KNOWN_LIMIT - 1)
        high_first = max(port_range.first, WELL_KNOWN_LIMIT)
        self._low = (port_range.first, low_last) if port_range.first <= low_last else None
        self._high = (high_first, port_range.last) if high_first <= port_range.last else None
        self._owner_of_port: dict[Proto, list[int | None]] = {p: [None] * (MAX_PORT + 1) for p in Proto}
        # owner -> its port | mappings using it << 16: one dict entry per private endpoint.
        self._holdings: dict[Proto, dict[int, int]] = {p: {} for p in Proto}
        self._reserved: dict[Proto, set[int]] = {p: set() for p in Proto}
        self._quarantine: dict[Proto, OrderedDict[int, tuple[float, int]]] = {p: OrderedDict() for p in Proto}

    def candidate(self, proto: Proto, private_port: int, rng: random.Random | None = None) -> int:
        """A random port from the part of the range that suits ``private_port``: its class, and its parity
        (even or odd, RFC 4787 REQ-4) when ``keep_parity`` and the part holds a port of that parity. Drawn
        from ``rng`` if given: a dry run must leave the allocator's own random source as it was."""
        draw = rng or self._rng
        span = self._low if private_port < WELL_KNOWN_LIMIT and self._low else self._high or self._low
        assert span is not None  # a PortRange is never empty
        first, last = span
        if self.keep_parity:
            first += (first ^ private_port) & 1  # the first port of the private port's parity
            if first <= last:
                return first + 2 * draw.randint(0, (last - first) // 2)
            first = span[0]
        return draw.randint(first, last)

    def port_of(self, proto: Proto, owner: int) -> int | None:
        """The public port ``owner`` already holds, if any (endpoint-independent mapping)."""
        holding = self._holdings[proto].get(owner)
        return None if holding is None else holding & 0xFFFF

    def availability(self, proto: Proto, port: int, owner: int, now: float) -> bool | None:
        """True if ``owner`` may take ``port``; None if only a recent freeing stands in the way."""
        if not self.port_range.first <= port <= self.port_range.last:
            return False
        if self._owner_of_port[proto][port] is not None or port in self._reserved[proto]:
            return False
        quarantined = self._quarantine[proto].get(port)
        if quarantined is not None and quarantined[1] != owner and now - quarantined[0] < self.quarantine_s:
            return None
        return True

    def acquire(self, proto: Proto, owner: int, port: int) -> None:
        """Count one more mapping of ``owner`` on ``port``."""
        holdings = self._holdings[proto]
        holding = holdings.get(owner)
        if holding is None:
            holdings[owner] = port | 1 << 16
            self._owner_of_port[proto][port] = owner
            quarantine = self._quarantine[proto]
            if port in quarantine:
                del quarantine[port]
        else:
            holdings[owner] = holding + (1 << 16)

    def release(self, proto: Proto, owner: int, now: float) -> int | None:
        """One mapping of ``owner`` is gone; the port it frees, if that was the last."""
        holdings = self._holdings[proto]
        holding = holdings.get(owner)
        if holding is None:
            return None
        if holding >> 16 > 1:
            holdings[owner] = holding - (1 << 16)
            return None
        del holdings[owner]
        port = holding & 0xFFFF
        self._owner_of_port[proto][port] = None
        quarantine = self._quarantine[proto]
        quarantine[port] = (now, owner)
        quarantine.move_to_end(port)
        self._purge(proto, now)
        return port

    def reserve(self, proto: Proto, port: int) -> None:
        """Keep ``port`` out of allocation (a redirect rule uses it)."""
        self._reserved[proto].add(port)

    def unreserve(self, proto: Proto, port: int) -> None:
        self._reserved[proto].discard(port)

    def is_reserved(self, proto: Proto, port: int) -> bool:
        return port in self._reserved[proto]

    def owner_of(self, proto: Proto, port: int) -> int | None:
        """The private endpoint (packed) that holds ``port``, if any."""
        return self._owner_of_port[proto][port]

    def in_use(self, proto: Proto) -> int:
        """Public ports of ``proto`` held by private endpoints."""
        return len(self._holdings[proto])

    def _purge(self, proto: Proto, now: float) -> None:
        quarantine = self._quarantine[proto]
        while quarantine:
            port, (freed_at, _) = next(iter(quarantine.items()))
            if now - freed_at < self.quarantine_s:
                break
            del quarantine[port]
