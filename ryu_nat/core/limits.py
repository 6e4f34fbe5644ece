"""How long mappings live and how many there may be: the idle timeouts, and the limits on the table.

No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from ryu_nat.core import tcp
from ryu_nat.core.addresses import Proto
from ryu_nat.core.table import Mapping


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Idle timeouts in seconds (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-1)."""

    tcp_established_s: float = 7440.0
    tcp_transitory_s: float = 240.0
    udp_s: float = 300.0
    icmp_s: float = 60.0

    def for_new(self, proto: Proto) -> float:
        """The timeout a new mapping of ``proto`` starts with (TCP: half open, so transitory)."""
        if proto is Proto.TCP:
            return self.tcp_transitory_s
        return self.udp_s if proto is Proto.UDP else self.icmp_s

    def of(self, mapping: Mapping) -> float:
        """The idle timeout ``mapping`` lives by now (TCP: by its connection's state)."""
        if mapping.proto is Proto.TCP:
            return self.tcp_established_s if tcp.is_established(mapping) else self.tcp_transitory_s
        return self.for_new(mapping.proto)


@dataclass(frozen=True, slots=True)
class Limits:
    """How full the NAT may get (RFC 6888 REQ-4): mappings one private host may open per protocol, and
    whether a private host's new mapping evicts when its table or its host is full (or is refused)."""

    per_host: int | None = None  # None: only the table's size
    evict: bool = True
