"""A NAT core with a recording listener, for tests."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ryu_nat.core.addresses import Proto
from ryu_nat.core.lru_table import LruNatTable
from ryu_nat.core.filtering import Filtering
from ryu_nat.core.limits import Limits, Timeouts
from ryu_nat.core.nat import Nat
from ryu_nat.core.ports import PortAllocator, PortRange
from ryu_nat.core.table import Mapping, RemovalReason

PUBLIC = IPv4Address("192.168.3.1")
H1 = IPv4Address("10.0.0.2")
H2 = IPv4Address("10.0.0.3")
SERVER = IPv4Address("192.168.3.10")
REMOTE = IPv4Address("198.51.100.10")


@dataclass
class Recorder:
    removed: list[tuple[Mapping, RemovalReason]] = field(default_factory=list)

    def __call__(self, mapping: Mapping, reason: RemovalReason) -> None:
        self.removed.append((mapping, reason))


def make_nat(size: int = 100, port_range: PortRange = PortRange(1024, 65535), seed: int = 7,
             timeouts: Timeouts = Timeouts(), sizes: dict[Proto, int] | None = None,
             filtering: Filtering = Filtering.ADDRESS_DEPENDENT, limits: Limits = Limits(),
             keep_parity: bool = True) -> tuple[Nat, Recorder]:
    recorder = Recorder()
    table = LruNatTable(sizes or {p: size for p in Proto})
    nat = Nat(table, PUBLIC, PortAllocator(port_range, random.Random(seed), keep_parity=keep_parity), timeouts,
              listener=recorder, filtering=filtering, limits=limits)
    return nat, recorder
