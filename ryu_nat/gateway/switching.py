"""The learning switch between private hosts, and which ports are private.

Every port but the uplink is private. Frames between private hosts (not sent
to the NAT's MAC) are switched by destination MAC: a rule per known host, a
flood over the other private ports for the rest. The MAC table is bounded: a
host sending from random MACs cannot grow it without end. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import cachetools

from ryu_nat.core.addresses import is_group_mac, is_host_mac
from ryu_nat.core.packet import Frame
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import Plan, is_physical_port

L2_IDLE_TIMEOUT_S = 300
L2_TABLE_SIZE = 4096


class PrivateSwitch:
    """The private ports, and which private host's MAC is behind which of them."""

    def __init__(self, uplink: int, router_mac: str, stats: Stats) -> None:
        self._uplink = uplink
        self._router_mac = router_mac
        self._stats = stats
        self._ports: set[int] = set()
        self._macs: cachetools.LRUCache[str, int] = cachetools.LRUCache(L2_TABLE_SIZE)

    @property
    def ports(self) -> frozenset[int]:
        """The private ports known now."""
        return frozenset(self._ports)

    def known_macs(self) -> int:
        """How many private MACs the switch knows (at most ``L2_TABLE_SIZE``)."""
        return len(self._macs)

    def connected(self, ports: Iterable[int]) -> None:
        """The switch connected with ``ports``: every physical port but the uplink is private."""
        self._ports = {port for port in ports if self._is_private(port)}

    def port_changed(self, port: int, present: bool) -> None:
        if self._is_private(port):
            if present:
                self._ports.add(port)
            else:
                self._ports.discard(port)

    def host_seen(self, in_port: int, mac: str) -> None:
        """A private host sent from ``mac`` on ``in_port``: that port is private and the MAC lives there."""
        self._ports.add(in_port)
        if is_host_mac(mac) and mac != self._router_mac:
            self._macs[mac] = in_port

    def forward(self, in_port: int, frame: Frame, data: bytes) -> Plan:
        """A frame between private hosts: to its host's port (and a rule for the next ones), or flooded."""
        self._stats.packet_ins["l2"] += 1
        port = None if is_group_mac(frame.eth_dst) else self._macs.get(frame.eth_dst)
        if port is None:
            others = sorted(self._ports - {in_port})
            return [rules.send_frame(data, others, in_port)] if others else []
        if port == in_port:
            return []  # the host's own LAN already delivered it
        return [rules.private_l2(frame.eth_dst, port, L2_IDLE_TIMEOUT_S), rules.send_frame(data, [port], in_port)]

    def _is_private(self, port: int) -> bool:
        return port != self._uplink and is_physical_port(port)
