"""Traffic for the NAT itself: echo replies from its own addresses, and ICMP errors about packets it
cannot forward: time exceeded (so traceroute shows it as a hop), and fragmentation needed for packets
too big for the side they leave by (so path-MTU discovery works through it); and destination
unreachable, administratively prohibited, for packets no mapping could be made for (RFC 5508 REQ-8,
RFC 6888 REQ-11b), at most :data:`PROHIBITED_PER_S` a second.

Every ICMP message the NAT sends goes through :meth:`LocalTraffic.may_answer`,
RFC 1812's rules in one place: never to an address that is not one host
(broadcast, multicast, network, loopback, unspecified), and no error about an
ICMP error, a later fragment, or a packet sent to a broadcast or multicast
address. New ICMP errors (unreachable) go through :meth:`LocalTraffic.send_error`.
No I/O; time is passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

from ryu_nat.core import icmp
from ryu_nat.core.addresses import Subnet, is_nattable
from ryu_nat.core.neighbours import Location
from ryu_nat.core.packet import Datagram, ethernet_frame
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import Plan

PROHIBITED_PER_S = 10.0  # and at most this many at once: a token bucket


class LocalTraffic:
    """Answers the NAT sends itself, back out of the port the packet came in on."""

    def __init__(self, router_mac: str, public: Subnet, private: Subnet, stats: Stats) -> None:
        self._mac = router_mac
        self._stats = stats
        self._tokens = PROHIBITED_PER_S
        self._tokens_at = 0.0
        # Addresses of the NAT's own subnets that name no single host.
        self._not_hosts = frozenset({public.network, public.broadcast, private.network, private.broadcast})

    def may_answer(self, d: Datagram, error: bool) -> bool:
        """May the NAT send ICMP to ``d``'s sender about ``d`` (an error if ``error``, else an echo reply)?

        RFC 1812 4.3.2.7: no ICMP error about an ICMP error, a later fragment, a
        datagram sent to a broadcast or multicast address, or one whose source
        is not a single host; and (4.3.3.6) no reply to such a source either.
        """
        if not is_nattable(d.src) or d.src in self._not_hosts:
            return False
        if not error:
            return True
        if not is_nattable(d.dst) or d.dst in self._not_hosts:
            return False
        return icmp.may_answer_with_error(d)

    def answer(self, d: Datagram, came_from: Location) -> Plan:
        """A packet for one of the NAT's addresses: an echo request is answered, the rest dropped."""
        reply = icmp.echo_reply(d)
        if reply is None:
            self._stats.drop(DropReason.LOCAL)
            return []
        if not self.may_answer(d, error=False):
            self._stats.drop(DropReason.SPOOFED_SOURCE)  # the dispatcher lets no such source this far
            return []
        return self._send("echo_reply", reply, came_from)

    @staticmethod
    def answers(d: Datagram) -> bool:
        """True if :meth:`answer` would answer ``d`` (an echo request), False if it would drop it."""
        return icmp.echo_reply(d) is not None

    def time_exceeded(self, d: Datagram, came_from: Location, from_ip: int) -> Plan:
        """The packet's TTL ran out here: tell its sender, from the NAT's address on that side."""
        return self.send_error(d, came_from, "time_exceeded", lambda: icmp.time_exceeded(d, IPv4Address(from_ip)),
                               DropReason.TTL_EXCEEDED)

    def send_error(self, d: Datagram, came_from: Location, kind: str, build: Callable[[], bytes],
                   refused: DropReason) -> Plan:
        """An ICMP error about ``d`` (built by ``build``, counted as ``icmp_sent[kind]``) to its sender, if
        :meth:`may_answer` allows one; else ``d`` is dropped and counted as ``refused``."""
        if not self.may_answer(d, error=True):
            self._stats.drop(refused)
            return []
        return self._send(kind, build(), came_from)

    def prohibited(self, d: Datagram, came_from: Location, from_ip: int, reason: DropReason, now: float) -> Plan:
        """No mapping could be made for ``d`` (``reason``): drop it, and tell its private sender, from the
        NAT's private address, if :meth:`may_answer` allows an error and the rate is not spent."""
        self._stats.drop(reason)
        if not self.may_answer(d, error=True):
            return []
        self._tokens = min(PROHIBITED_PER_S, self._tokens + (now - self._tokens_at) * PROHIBITED_PER_S)
        self._tokens_at = now
        if self._tokens < 1.0:
            self._stats.icmp_suppressed["prohibited"] += 1
            return []
        self._tokens -= 1.0
        return self._send("prohibited", icmp.destination_unreachable(d, IPv4Address(from_ip)), came_from)

    def fragmentation_needed(self, d: Datagram, came_from: Location, from_ip: int, next_hop_mtu: int) -> Plan:
        """``d`` has DF set and is bigger than ``next_hop_mtu``: tell its sender, from the NAT's address on
        that side (RFC 4787 REQ-13, RFC 5508 REQ-10, RFC 1191). The caller counted the drop (DONT_FRAGMENT),
        whether or not an error may be sent."""
        if not self.may_answer(d, error=True):
            return []
        return self._send("fragmentation_needed", icmp.fragmentation_needed(d, IPv4Address(from_ip), next_hop_mtu),
                          came_from)

    def _send(self, kind: str, message: bytes, came_from: Location) -> Plan:
        self._stats.icmp_sent[kind] += 1
        return [rules.send_frame(ethernet_frame(came_from.mac, self._mac, message), [came_from.port], came_from.port)]
