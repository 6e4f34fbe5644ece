"""What the NAT answers itself: echo replies from its own addresses, time-exceeded for packets whose
TTL runs out at the NAT (so traceroute shows it as a hop), and destination unreachable,
administratively prohibited, to a private host whose new flow could get no mapping (RFC 5508 REQ-8,
RFC 6888 REQ-11b), at most :data:`PROHIBITED_PER_S` a second. No I/O; time is passed in."""

from __future__ import annotations

from ipaddress import IPv4Address

from ryu_nat.core import icmp
from ryu_nat.core.neighbours import Location
from ryu_nat.core.packet import Datagram, ethernet_frame
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import Plan

PROHIBITED_PER_S = 10.0  # and at most this many at once: a token bucket


class LocalTraffic:
    """Answers the NAT sends itself, back out of the port the packet came in on."""

    def __init__(self, router_mac: str, stats: Stats) -> None:
        self._mac = router_mac
        self._stats = stats
        self._tokens = PROHIBITED_PER_S
        self._tokens_at = 0.0

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

    def prohibited(self, d: Datagram, came_from: Location, from_ip: int, reason: DropReason, now: float) -> Plan:
        """No mapping could be made for ``d`` (``reason``): drop it, and tell its private sender, from the
        NAT's private address, unless ``d`` is an ICMP error or a later fragment, or the rate is spent."""
        self._stats.drop(reason)
        if not icmp.may_answer_with_error(d):
            return []
        self._tokens = min(PROHIBITED_PER_S, self._tokens + (now - self._tokens_at) * PROHIBITED_PER_S)
        self._tokens_at = now
        if self._tokens < 1.0:
            self._stats.icmp_suppressed["prohibited"] += 1
            return []
        self._tokens -= 1.0
        self._stats.icmp_sent["prohibited"] += 1
        message = icmp.destination_unreachable(d, IPv4Address(from_ip))
        return [rules.send_frame(ethernet_frame(came_from.mac, self._mac, message), [came_from.port],
                                 came_from.port)]
