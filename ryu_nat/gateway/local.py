"""Traffic for the NAT itself: echo replies from its own addresses, time-exceeded for packets whose TTL
runs out at the NAT (so traceroute shows it as a hop), and fragmentation needed for packets too big
for the side they leave by (so path-MTU discovery works through it). No I/O."""

from __future__ import annotations

from ipaddress import IPv4Address

from ryu_nat.core import icmp
from ryu_nat.core.neighbours import Location
from ryu_nat.core.packet import Datagram, ethernet_frame
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import Plan


class LocalTraffic:
    """Answers the NAT sends itself, back out of the port the packet came in on."""

    def __init__(self, router_mac: str, stats: Stats) -> None:
        self._mac = router_mac
        self._stats = stats

    def answer(self, d: Datagram, came_from: Location) -> Plan:
        """A packet for one of the NAT's addresses: an echo request is answered, the rest dropped."""
        reply = icmp.echo_reply(d)
        if reply is None:
            self._stats.drop(DropReason.LOCAL)
            return []
        self._stats.icmp_sent["echo_reply"] += 1
        return [rules.send_frame(ethernet_frame(came_from.mac, self._mac, reply), [came_from.port], came_from.port)]

    def time_exceeded(self, d: Datagram, came_from: Location, from_ip: int) -> Plan:
        """The packet's TTL ran out here: tell its sender, from the NAT's address on that side."""
        if not icmp.may_answer_with_error(d):
            self._stats.drop(DropReason.TTL_EXCEEDED)
            return []
        self._stats.icmp_sent["time_exceeded"] += 1
        message = icmp.time_exceeded(d, IPv4Address(from_ip))
        return [rules.send_frame(ethernet_frame(came_from.mac, self._mac, message), [came_from.port],
                                 came_from.port)]

    def fragmentation_needed(self, d: Datagram, came_from: Location, from_ip: int, next_hop_mtu: int) -> Plan:
        """``d`` has DF set and is bigger than ``next_hop_mtu``: tell its sender, from the NAT's address on
        that side (RFC 4787 REQ-13, RFC 5508 REQ-10, RFC 1191). The caller counted the drop."""
        if not icmp.may_answer_with_error(d):
            return []
        self._stats.icmp_sent["fragmentation_needed"] += 1
        message = icmp.fragmentation_needed(d, IPv4Address(from_ip), next_hop_mtu)
        return [rules.send_frame(ethernet_frame(came_from.mac, self._mac, message), [came_from.port],
                                 came_from.port)]
