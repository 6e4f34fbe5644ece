"""Neighbours and ARP on both sides: who is where, how sure the NAT is, and the packets that wait
to find out.

The NAT answers ARP for its own address on each side, resolves a destination
to the next hop that reaches it, and holds packets for a next hop whose MAC is
unknown while it asks. Packets released by an answer are handed back to the
caller (the dispatcher), which handles them as new arrivals. No I/O; time is
passed in.

What it believes, and from whom (Linux's ``arp_process`` is the model):

* Never a sender MAC that no host can have (group, zero) or the NAT's own,
  nor a sender claiming the NAT's own address, a network or broadcast address.
* A new neighbour is learned from an ARP request for the NAT's address, from
  an answer to a request the NAT sent, and, on the private side only, from a
  private host's other ARP and its packets (the private LAN is the NAT's own;
  on the uplink a stranger could claim the gateway that way).
* A known neighbour's MAC changes only by ARP from that address (an answer,
  its own request, a gratuitous announcement), and not within a second of
  the last change unless gratuitous (Linux's lock time: the first of
  back-to-back answers wins). Packets never change a known MAC; they confirm it.
* Entries age: one not confirmed for a minute is asked again at its known MAC,
  three times a second apart; unanswered, it is forgotten. A switch that
  (re)connects makes every entry doubtful at once (the hosts behind it may
  have been replaced).

Whenever a neighbour's location is learned or changes, ``on_moved`` hears of
it, so the rules that send to it can follow.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from ryu_nat.backend import arp as arp_pkt
from ryu_nat.core.addresses import ZERO_MAC, Subnet, is_host_mac
from ryu_nat.core.neighbours import Location, Neighbours
from ryu_nat.core.packet import ETH_TYPE_ARP, ETH_TYPE_IPV4, Frame, ethernet_frame
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import Plan, ipv4_text

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
LOCKTIME_S = 1.0  # Linux's neigh locktime: a MAC set less than this ago is not replaced (but by gratuitous ARP)

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
                 stats: Stats, on_moved: Callable[[int], None]) -> None:
        self._mac = router_mac
        self._public = public
        self._private = private
        self._gateway = public_gateway
        self._uplink = uplink
        self._stats = stats
        self._on_moved = on_moved
        # Plain attributes, not dicts keyed by Side: an Enum hashes in Python, on every set-up's path.
        self._public_hosts = Neighbours()
        self._private_hosts = Neighbours()

    def arp(self, in_port: int, frame: Frame, now: float) -> ArpOutcome | None:
        """An ARP packet: answer it if it asks for the NAT, learn from its sender what may be learned (see
        the module's docstring), and say whether it should be switched on to the other private hosts.
        None: dropped and counted (not ARP for IPv4 over Ethernet, or a sender that cannot be)."""
        packet = frame.arp
        if packet is None or packet.proto != ETH_TYPE_IPV4 or packet.hlen != 6 or packet.plen != 4:
            self._stats.drop(DropReason.BAD_ARP)
            return None
        if not is_host_mac(packet.src_mac) or packet.src_mac == self._mac:
            self._stats.drop(DropReason.BAD_SOURCE_MAC)
            return None
        side = Side.PUBLIC if in_port == self._uplink else Side.PRIVATE
        subnet = self._public if side is Side.PUBLIC else self._private
        src_ip, dst_ip = int(IPv4Address(packet.src_ip)), int(IPv4Address(packet.dst_ip))
        if src_ip == subnet.address:
            self._stats.drop(DropReason.SPOOFED_SOURCE)  # someone else claims the NAT's own address
            return None
        for_us = dst_ip == subnet.address
        request = packet.opcode == arp_pkt.ARP_REQUEST
        released: list[Waiting] = []
        if subnet.is_other_host(src_ip):
            cache = self._cache(side)
            may_add = side is Side.PRIVATE or (for_us and (request or cache.is_waiting(src_ip)))
            released = self._heard(cache, src_ip, Location(in_port, packet.src_mac), now, may_add,
                                   gratuitous=src_ip == dst_ip)
        plan: Plan = []
        if for_us and request:
            self._stats.arp["requests_answered"] += 1
            reply = arp_pkt.arp_ip(arp_pkt.ARP_REPLY, self._mac, ipv4_text(subnet.address), packet.src_mac,
                                   packet.src_ip)
            plan.append(rules.send_frame(_arp_frame(packet.src_mac, self._mac, reply), [in_port], in_port))
        return ArpOutcome(plan, released, relay=not for_us and side is Side.PRIVATE)

    def private_sender(self, ip: int, location: Location, now: float) -> list[Waiting]:
        """A private host sent a packet from ``location``: it is there (a new host is learned, a known one
        confirmed if that is where it was known); the packets that waited for it."""
        if not self._private.is_other_host(ip):
            return []
        known = self._private_hosts.entry(ip)
        if known is None:
            return self._heard(self._private_hosts, ip, location, now, may_add=True, gratuitous=False)
        if known.location == location:
            self._private_hosts.confirm(ip, now)
        return []

    def public_sender(self, ip: int, location: Location, now: float) -> None:
        """A packet from ``ip`` came in on the uplink from ``location``'s MAC: if that is where its next hop
        is known to be, the next hop is confirmed. Nothing is learned from it (anyone on the public LAN
        could send it)."""
        side, hop = self._next_hop(ip)
        cache = self._cache(side)
        known = cache.entry(hop)
        if known is not None and known.location == location:
            cache.confirm(hop, now)

    def locate(self, ip: int) -> Location | None:
        """Where packets to ``ip`` go: a private host, or the public next hop on the uplink; None if unknown."""
        if self._private.contains(ip):
            return self._private_hosts.lookup(ip)
        location = self._public_hosts.lookup(ip if self._public.contains(ip) else self._gateway)
        return None if location is None else Location(self._uplink, location.mac)

    def next_hop(self, ip: int) -> int:
        """The neighbour that packets to ``ip`` go to: itself if on one of the NAT's subnets, else the gateway."""
        if self._private.contains(ip) or self._public.contains(ip):
            return ip
        return self._gateway

    def hold(self, ip: int, in_port: int, frame: bytes, now: float, private_ports: Iterable[int]) -> Plan:
        """Keep ``frame`` until ARP tells where the next hop toward ``ip`` is; the first one held asks."""
        side, hop = self._next_hop(ip)
        queued = self._cache(side).wait(hop, in_port, frame, now)
        if queued is None:
            self._stats.drop(DropReason.ARP_QUEUE_FULL)
            return []
        self._stats.arp["queued"] += 1
        return self._request(side, hop, private_ports) if queued else []

    def connected(self, now: float) -> None:
        """The switch (re)connected: whoever was behind it may have been replaced, so re-check everyone."""
        self._public_hosts.doubt_all(now)
        self._private_hosts.doubt_all(now)

    def expire(self, now: float, private_ports: Iterable[int],
               in_use: Callable[[int], bool]) -> tuple[Plan, list[int]]:
        """Ask again for next hops still silent and drop what waited too long for one; re-check aged
        neighbours, and ask anew (by broadcast) for those forgotten that are ``in_use``, so an answer from
        a new MAC is learned. Returns the plan and the next hops given up on."""
        plan: Plan = []
        given_up: list[int] = []
        for side in Side:
            cache = self._cache(side)
            expired = cache.expire(now)
            self._stats.drop(DropReason.ARP_TIMEOUT, expired.dropped)
            for ip in expired.ask_again:
                plan += self._request(side, ip, private_ports)
            for ip, location in expired.probe:
                plan += self._probe(side, ip, location)
            given_up += expired.given_up
            self._stats.arp["forgotten"] += len(expired.forgotten)
            for ip in expired.forgotten:
                if in_use(ip) and cache.ask(ip, now):
                    plan += self._request(side, ip, private_ports)
        return plan, given_up

    def _next_hop(self, ip: int) -> tuple[Side, int]:
        """The side ``ip`` is reached on, and the neighbour there that packets to it go to."""
        if self._private.contains(ip):
            return Side.PRIVATE, ip
        return Side.PUBLIC, ip if self._public.contains(ip) else self._gateway

    def _cache(self, side: Side) -> Neighbours:
        return self._public_hosts if side is Side.PUBLIC else self._private_hosts

    def _heard(self, cache: Neighbours, ip: int, location: Location, now: float, may_add: bool,
               gratuitous: bool) -> list[Waiting]:
        """``ip`` said (or showed) it is at ``location``: learn, confirm or move it as the rules allow;
        the packets that waited for it."""
        known = cache.entry(ip)
        if known is None:
            if not may_add:
                return []
            self._stats.arp["replies_learned"] += 1
        elif known.location == location:
            cache.confirm(ip, now)
            return []
        elif now - known.updated < LOCKTIME_S and not gratuitous:
            return []
        else:
            self._stats.arp["mac_changes"] += 1
        released = cache.learn(ip, location, now)
        self._on_moved(ip)
        return released

    def _request(self, side: Side, ip: int, private_ports: Iterable[int]) -> Plan:
        """Ask who has ``ip``, on the uplink or on every private port (never both)."""
        ports = [self._uplink] if side is Side.PUBLIC else sorted(private_ports)
        if not ports:
            return []
        self._stats.arp["requests_sent"] += 1
        request = arp_pkt.arp_ip(arp_pkt.ARP_REQUEST, self._mac, ipv4_text(self._own(side)), ZERO_MAC,
                                 ipv4_text(ip))
        return [rules.send_frame(_arp_frame(BROADCAST_MAC, self._mac, request), ports)]

    def _probe(self, side: Side, ip: int, location: Location) -> Plan:
        """Re-check ``ip`` where it is known to be: a request sent to its MAC alone (Linux's unicast probe)."""
        self._stats.arp["probes_sent"] += 1
        request = arp_pkt.arp_ip(arp_pkt.ARP_REQUEST, self._mac, ipv4_text(self._own(side)), ZERO_MAC,
                                 ipv4_text(ip))
        port = self._uplink if side is Side.PUBLIC else location.port
        return [rules.send_frame(_arp_frame(location.mac, self._mac, request), [port])]

    def _own(self, side: Side) -> int:
        return self._public.address if side is Side.PUBLIC else self._private.address


def _arp_frame(eth_dst: str, eth_src: str, packet: arp_pkt.arp) -> bytes:
    return ethernet_frame(eth_dst, eth_src, bytes(packet.serialize(b"", None)), ETH_TYPE_ARP)
