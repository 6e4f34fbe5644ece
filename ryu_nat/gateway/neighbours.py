"""Neighbours and ARP on both sides: who is where, and the packets that wait to find out.

The NAT answers ARP for its own address on each side, learns private hosts
(from their ARP and their packets) and public next hops (from their answers
and their packets), resolves a destination to the next hop that reaches it,
and holds packets for a next hop whose MAC is unknown while it asks. Packets
released by an answer are handed back to the caller (the dispatcher), which
handles them as new arrivals. No I/O; time is passed in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ryu_nat.backend import arp as arp_pkt
from ryu_nat.core.addresses import Subnet
from ryu_nat.core.neighbours import Location, Neighbours
from ryu_nat.core.packet import ETH_TYPE_ARP, ETH_TYPE_IPV4, Frame, ethernet_frame
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import Plan, ipv4_text

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
UNKNOWN_MAC = "00:00:00:00:00:00"

Waiting = tuple[int, bytes]
"""A held packet: the port it arrived on, and its frame."""


class Side(enum.Enum):
    PUBLIC = "public"
    PRIVATE = "private"


@dataclass(frozen=True, slots=True)
class ArpOutcome:
    """What an ARP packet led to: frames to send, packets it released, and whether to switch it on."""

    plan: Plan = field(default_factory=list)
    released: list[Waiting] = field(default_factory=list)
    relay: bool = False


class Neighbourhood:
    """The ARP caches of both sides and the packets waiting on them."""

    def __init__(self, router_mac: str, public: Subnet, private: Subnet, public_gateway: int, uplink: int,
                 stats: Stats) -> None:
        self._mac = router_mac
        self._public = public
        self._private = private
        self._gateway = public_gateway
        self._uplink = uplink
        self._stats = stats
        # Plain attributes, not dicts keyed by Side: an Enum hashes in Python, on every set-up's path.
        self._public_hosts = Neighbours()
        self._private_hosts = Neighbours()

    def arp(self, in_port: int, frame: Frame) -> ArpOutcome | None:
        """An ARP packet: answer it if it asks for the NAT, learn its sender where that is trusted,
        and say whether it should be switched on to the other private hosts. None: not ARP for
        IPv4 over Ethernet (dropped and counted)."""
        packet = frame.arp
        if packet is None or packet.proto != ETH_TYPE_IPV4 or packet.hlen != 6 or packet.plen != 4:
            self._stats.drop(DropReason.BAD_ARP)
            return None
        side = Side.PUBLIC if in_port == self._uplink else Side.PRIVATE
        subnet = self._public if side is Side.PUBLIC else self._private
        src_ip, dst_ip = int(IPv4Address(packet.src_ip)), int(IPv4Address(packet.dst_ip))
        for_us = dst_ip == subnet.address
        released: list[Waiting] = []
        # Public neighbours are learned only from ARP addressed to the NAT.
        if subnet.is_other_host(src_ip) and (side is Side.PRIVATE or for_us):
            released = self._learn(side, src_ip, Location(in_port, packet.src_mac))
        plan: Plan = []
        if for_us and packet.opcode == arp_pkt.ARP_REQUEST:
            self._stats.arp["requests_answered"] += 1
            reply = arp_pkt.arp_ip(arp_pkt.ARP_REPLY, self._mac, ipv4_text(subnet.address), packet.src_mac,
                                   packet.src_ip)
            plan.append(rules.send_frame(_arp_frame(packet.src_mac, self._mac, reply), [in_port], in_port))
        return ArpOutcome(plan, released, relay=not for_us and side is Side.PRIVATE)

    def private_sender(self, ip: int, location: Location) -> list[Waiting]:
        """A private host sent a packet from ``location``: remember it; the packets that waited for it."""
        if not self._private.is_other_host(ip):
            return []
        return self._learn(Side.PRIVATE, ip, location)

    def public_sender(self, ip: int, location: Location) -> list[Waiting]:
        """A packet from ``ip`` came in on the uplink from ``location``'s MAC: the next hop toward ``ip``
        is there, if that was not known yet; the packets that waited for it."""
        side, hop = self._next_hop(ip)
        if self._cache(side).lookup(hop) is not None:
            return []
        return self._learn(side, hop, location)

    def locate(self, ip: int) -> Location | None:
        """Where packets to ``ip`` go: a private host, or the public next hop on the uplink; None if unknown."""
        if self._private.contains(ip):
            return self._private_hosts.lookup(ip)
        location = self._public_hosts.lookup(ip if self._public.contains(ip) else self._gateway)
        return None if location is None else Location(self._uplink, location.mac)

    def peek(self, ip: int) -> Location | None:
        """:meth:`locate`, without counting as use of the cache (explaining a packet changes nothing)."""
        side, hop = self._next_hop(ip)
        location = self._cache(side).peek(hop)
        return location if location is None or side is Side.PRIVATE else Location(self._uplink, location.mac)

    def hold(self, ip: int, in_port: int, frame: bytes, now: float, private_ports: Iterable[int]) -> Plan:
        """Keep ``frame`` until ARP tells where the next hop toward ``ip`` is; the first one held asks."""
        side, hop = self._next_hop(ip)
        queued = self._cache(side).wait(hop, in_port, frame, now)
        if queued is None:
            self._stats.drop(DropReason.ARP_QUEUE_FULL)
            return []
        self._stats.arp["queued"] += 1
        return self._request(side, hop, private_ports) if queued else []

    def expire(self, now: float, private_ports: Iterable[int]) -> Plan:
        """Ask again for next hops still silent; drop what waited too long for one."""
        plan: Plan = []
        for side in Side:
            expired = self._cache(side).expire(now)
            self._stats.drop(DropReason.ARP_TIMEOUT, expired.dropped)
            for ip in expired.ask_again:
                plan += self._request(side, ip, private_ports)
        return plan

    def _next_hop(self, ip: int) -> tuple[Side, int]:
        """The side ``ip`` is reached on, and the neighbour there that packets to it go to."""
        if self._private.contains(ip):
            return Side.PRIVATE, ip
        return Side.PUBLIC, ip if self._public.contains(ip) else self._gateway

    def _cache(self, side: Side) -> Neighbours:
        return self._public_hosts if side is Side.PUBLIC else self._private_hosts

    def _learn(self, side: Side, ip: int, location: Location) -> list[Waiting]:
        cache = self._cache(side)
        known = cache.lookup(ip)
        if known == location:
            return []
        if known is None:
            self._stats.arp["replies_learned"] += 1
        return cache.learn(ip, location)

    def _request(self, side: Side, ip: int, private_ports: Iterable[int]) -> Plan:
        """Ask who has ``ip``, on the uplink or on every private port (never both)."""
        ports = [self._uplink] if side is Side.PUBLIC else sorted(private_ports)
        if not ports:
            return []
        self._stats.arp["requests_sent"] += 1
        own = self._public.address if side is Side.PUBLIC else self._private.address
        request = arp_pkt.arp_ip(arp_pkt.ARP_REQUEST, self._mac, ipv4_text(own), UNKNOWN_MAC, ipv4_text(ip))
        return [rules.send_frame(_arp_frame(BROADCAST_MAC, self._mac, request), ports)]


def _arp_frame(eth_dst: str, eth_src: str, packet: arp_pkt.arp) -> bytes:
    return ethernet_frame(eth_dst, eth_src, bytes(packet.serialize(b"", None)), ETH_TYPE_ARP)
