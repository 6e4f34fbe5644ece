"""The gateway: switch events in, plans out, composed from parts that each own their state.

Like faucet's ``Valve``, which hands packets to its flood, host and route
managers: :meth:`Gateway.packet_in`, :meth:`Gateway.flow_removed`,
:meth:`Gateway.expire` and :meth:`Gateway.switch_connected` take what the
switch reported and the time, and return the OpenFlow messages to send (a
plan). One packet-in goes: parse, then the part for its kind (ARP to the
neighbours, frames between private hosts to the private switch, routed IPv4 to
the NAT path), whose decision the dispatcher hands to the part that acts on it
(offload, filter rules, local traffic, the inbound guard, neighbours to wait for
a next hop).
Packets that an ARP answer releases come back through :meth:`Gateway.packet_in`'s
queue, not by recursion. No part calls another; no I/O; never yields.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address

from ryu_nat.config import NatConfig, RedirectRule
from ryu_nat.core.addresses import Endpoint, Proto, Subnet, is_host_mac
from ryu_nat.core.filtering import Admitted, admitted_datagram
from ryu_nat.core.fragments import Reassembled
from ryu_nat.core.neighbours import Location
from ryu_nat.core.nat import Direction, Translated
from ryu_nat.core.packet import (ETH_TYPE_ARP, TCP_FIN, TCP_RST, Datagram, Frame, ParseError, ethernet_frame,
                                 parse_frame)
from ryu_nat.core.table import FreedPorts, Mapping, Page
from ryu_nat.gateway.drops import PROHIBITED, DropReason
from ryu_nat.gateway.filters import FilterRules
from ryu_nat.gateway.guard import InboundGuard
from ryu_nat.gateway.local import LocalTraffic
from ryu_nat.gateway.natpath import NatPath, Verdict
from ryu_nat.gateway.neighbours import Neighbourhood, Waiting
from ryu_nat.gateway.offload import Offload, RuleState
from ryu_nat.gateway.reassembly import Reassembly
from ryu_nat.gateway.restore import Held, Restore
from ryu_nat.gateway.review import Review
from ryu_nat.gateway.stats import Stats
from ryu_nat.gateway.switching import PrivateSwitch
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import Barrier, PacketOut, Plan, SwitchSetup, is_physical_port
from ryu_nat.openflow.reasons import FlowRemovedReason, PacketInReason
from ryu_nat.ratelimit import LogLimiter


class GatewayQueries:
    """What the operator may ask a :class:`Gateway`: answered from its parts' state, changing nothing
    (a lookup counts as use). Kept apart from the events so each class reads on its own."""

    _nat: NatPath
    _offload: Offload
    _switch: PrivateSwitch

    def mappings(self, proto: Proto | None = None, host: IPv4Address | None = None) -> Iterator[Mapping]:
        """Live mappings, optionally of one protocol and/or one private host."""
        return self._nat.mappings(proto, host)

    def mappings_page(self, after: int, limit: int, proto: Proto | None = None,
                      host: IPv4Address | None = None) -> Page:
        """Up to ``limit`` live mappings with ids above ``after``, lowest id first (see NatTable.page)."""
        return self._nat.page(after, limit, proto, host)

    def mappings_matching(self, proto: Proto | None = None, host: IPv4Address | None = None) -> int:
        return self._nat.matching(proto, host)

    def mapping_of(self, proto: Proto, key: int) -> Mapping | None:
        """The mapping that has the channel ``key`` (packed) in ``proto``'s table; a lookup, so it counts as use."""
        return self._nat.mapping_of(proto, key)

    def mapping_count(self, proto: Proto) -> int:
        return self._nat.count(proto)

    def table_size(self, proto: Proto) -> int:
        """Most mappings of ``proto`` the table holds."""
        return self._nat.capacity(proto)

    def redirect(self, proto: Proto, public_port: int) -> RedirectRule | None:
        return self._nat.redirect(proto, public_port)

    def redirects(self) -> list[RedirectRule]:
        return self._nat.redirects()

    def port_holder(self, proto: Proto, public_port: int) -> Endpoint | None:
        """The private endpoint that source NAT gave ``public_port`` to, if any."""
        return self._nat.port_holder(proto, public_port)

    def ports_in_use(self, proto: Proto) -> int:
        return self._nat.ports_in_use(proto)

    def is_port_reserved(self, proto: Proto, public_port: int) -> bool:
        """True if ``public_port`` is out of the source-NAT pool (a redirect has it)."""
        return self._nat.is_port_reserved(proto, public_port)

    def is_port_free(self, proto: Proto, remote: Endpoint, public_port: int) -> bool:
        """No mapping has remote -> public address:``public_port``, and no private endpoint holds or reserves it."""
        return self._nat.is_port_free(proto, remote, public_port)

    def rule_state(self, mapping: Mapping) -> RuleState | None:
        """Which of an offloaded mapping's rules the switch holds; None for a mapping the controller carries."""
        return self._offload.state(mapping.id)

    @property
    def private_ports(self) -> frozenset[int]:
        return self._switch.ports


class Gateway(GatewayQueries):
    """One NAT switch: the parts, and the plans that follow from what the switch reports."""

    def __init__(self, config: NatConfig, rng: random.Random | None = None, stats: Stats | None = None,
                 limiter: LogLimiter | None = None) -> None:
        self.config = config
        self.stats = stats or Stats()
        limiter = limiter or LogLimiter()
        self._uplink = config.public_port
        self._mac = config.router_mac
        self._public = Subnet.of(config.public)
        self._private = Subnet.of(config.private)
        self._switch = PrivateSwitch(self._uplink, self._mac, self.stats)
        self._neighbours = Neighbourhood(self._mac, self._public, self._private, int(config.public_gateway),
                                         self._uplink, self.stats, on_moved=lambda hop: self._offload.moved(hop))
        self._offload = Offload(config, self.stats, hop_of=self._neighbours.next_hop)
        rng = rng or random.Random()
        self._filters = FilterRules(config, self.stats)
        self._nat = NatPath(config, rng, self.stats, self._offload.forget, limiter,
                            on_unfiltered=self._filters.withdraw)
        self._local = LocalTraffic(self._mac, self._public, self._private, self.stats)
        self._guard = InboundGuard(self._uplink, self._public.address, self.stats, limiter)
        self._fragments = Reassembly(self.stats, config.public_mtu, config.private_mtu, self._public.address,
                                     rng.randrange(0x10000))
        self._restore = Restore(config, self.stats)
        self.review = Review(config, self.stats, self._restore, self._nat, self._offload, self._neighbours,
                             self._fragments, self._guard, self._local, route=self._route)
        for rule in config.redirects:
            self.add_redirect(rule)

    # --- switch events ------------------------------------------------------------------

    def switch_connected(self, ports: Iterable[int], now: float) -> Plan:
        """Settings and the base rules; with an empty table (a restart) the switch's mapping rules are kept and
        read back (:attr:`Review.restoring`), else a clean slate and the rules of live mappings whose ends are known."""
        self._switch.connected(ports)
        self._guard.forget()
        self._filters.forget()
        self._neighbours.connected(now)
        base: Plan = [Barrier(), *rules.base(self._mac, self._uplink, self.config.public_mtu, self.config.private_mtu)]
        if self._restore.active or self._nat.is_empty():
            self._restore.begin()
            return self._finish([SwitchSetup(), *rules.delete_session_rules(), *base])
        plan: Plan = [SwitchSetup(), rules.delete_ours(), *base]
        return self._finish(plan + self._offload.reinstall(self._neighbours.locate))

    def port_changed(self, port: int, present: bool) -> Plan:
        """A port came or went; private ports are every port but the uplink."""
        self._switch.port_changed(port, present)
        return self._finish([])

    def packet_in(self, in_port: int | None, data: bytes, now: float,
                  reason: PacketInReason = PacketInReason.NO_MATCH) -> Plan:
        """Handle one packet the switch sent up, then any it released; the plan answers them.

        ``in_port`` None: the packet-in had none. Only a physical port is a place a
        packet can come from (and a private port to send to later).
        """
        if in_port is None or not is_physical_port(in_port):
            return self._dropped(DropReason.BAD_IN_PORT)
        plan, released = self._handle(in_port, data, now, reason)
        if not released:
            return self._finish(plan)
        arrivals: deque[Waiting] = deque(released)
        while arrivals:
            handled, released = self._handle(*arrivals.popleft(), now, PacketInReason.NO_MATCH)
            plan += handled
            arrivals.extend(released)
        return self._finish(plan)

    def flow_removed(self, cookie: int, reason: FlowRemovedReason, now: float, packets: int = 0,
                     idle_timeout_s: int = 0) -> Plan:
        """A rule of ours left the switch, having matched ``packets``; what a drop rule dropped is counted.
        When a mapping's last rule idled out (after ``idle_timeout_s``), the mapping ends, or an established
        TCP one lives on in the table."""
        if cookies.kind_of(cookie) is RuleKind.DROP:
            self._guard.rule_ended(packets)
            return []
        idled = self._offload.rule_removed(cookie, reason, packets)
        if idled is not None:
            self._nat.rules_idled(idled, idle_timeout_s, now)
        return self._finish([])

    def expire(self, now: float) -> Plan:
        """Periodic work: idle ICMP mappings, mappings whose rules never reached the switch, ARP retries,
        give-ups and re-checks, stale fragments and drop rules."""
        self._nat.expire(now)
        self._fragments.expire(now)
        self._guard.expire(now)
        plan, given_up = self._neighbours.expire(now, self._switch.ports, self._offload.is_behind)
        for mapping in self._offload.expire(now, given_up):
            self._nat.end(mapping, now)
        return self._finish(plan)

    # --- operator actions ------------------------------------------------------------------

    def add_redirect(self, rule: RedirectRule) -> Plan:
        """Forward ``rule.public_port``, at once (a drop rule on that port is deleted)."""
        self._nat.add_redirect(rule)
        return self._finish(self._guard.open_port(rule.proto, rule.public_port))

    def remove_redirect(self, proto: Proto, public_port: int) -> RedirectRule | None:
        """Stop forwarding a port; connections already forwarded keep their mappings."""
        return self._nat.remove_redirect(proto, public_port)

    def remove_connections(self, host: IPv4Address) -> tuple[FreedPorts, Plan]:
        """mirage-nat's remove_connections: every mapping of a private host, and its rules."""
        return self._nat.remove_connections(host), self._finish([])

    def reset(self) -> Plan:
        """Remove every mapping and its rules."""
        self._nat.reset()
        return self._finish([])

    # --- one packet --------------------------------------------------------------------------

    def _handle(self, in_port: int, data: bytes, now: float, reason: PacketInReason) -> tuple[Plan, list[Waiting]]:
        """One frame: the plan for it, and the packets it released (they wait no more for a next hop)."""
        frame = parse_frame(data)
        if isinstance(frame, ParseError):
            return self._dropped(DropReason.of(frame)), []
        if not is_host_mac(frame.eth_src) or frame.eth_src == self._mac:
            return self._dropped(DropReason.BAD_SOURCE_MAC), []
        if reason is PacketInReason.INVALID_TTL:
            self.stats.packet_ins["invalid_ttl"] += 1
        if frame.ethertype == ETH_TYPE_ARP:
            self.stats.packet_ins["arp"] += 1
            answer = self._neighbours.arp(in_port, frame, now)
            if answer is None:
                return [], []
            if in_port != self._uplink:
                self._switch.host_seen(in_port, frame.eth_src)
            relayed = self._switch.forward(in_port, frame, data) if answer.relay else []
            return answer.plan + relayed, answer.released
        if in_port == self._uplink:
            return self._from_public(in_port, frame, data, now)
        return self._from_private(in_port, frame, data, now)

    def _from_private(self, in_port: int, frame: Frame, data: bytes, now: float) -> tuple[Plan, list[Waiting]]:
        self._switch.host_seen(in_port, frame.eth_src)
        came_from = Location(in_port, frame.eth_src)
        d = frame.datagram
        released = [] if d is None else self._neighbours.private_sender(d.src, came_from, now)
        if frame.eth_dst != self._mac:
            return self._switch.forward(in_port, frame, data), released
        self.stats.packet_ins["private"] += 1
        if d is None:
            return self._dropped(DropReason.NOT_IPV4), released
        refused = self._nat.refusal(d, from_private=True)
        if refused is not None:
            return self._dropped(refused), released
        return self._route(came_from, d, data, now, from_private=True), released

    def _from_public(self, in_port: int, frame: Frame, data: bytes, now: float) -> tuple[Plan, list[Waiting]]:
        self.stats.packet_ins["public"] += 1
        d = frame.datagram
        if d is None:
            return self._dropped(DropReason.NOT_IPV4), []
        refused = DropReason.NOT_FOR_US if frame.eth_dst != self._mac else self._nat.refusal(d, from_private=False)
        if refused is not None:
            return self._dropped(refused), []
        came_from = Location(in_port, frame.eth_src)
        self._neighbours.public_sender(d.src, came_from, now)
        return self._route(came_from, d, data, now, from_private=False), []

    def _route(self, came_from: Location, d: Datagram, data: bytes, now: float, from_private: bool) -> Plan:
        """A routed datagram (a fragment waits for its datagram) from ``came_from`` (port and sender's MAC):
        what the NAT path decides, carried out; while the table is read back after a restart, it waits."""
        if self._restore.active:
            self._restore.hold(Held(came_from, d, data, from_private))
            return []
        whole = None
        if d.is_fragment:
            whole = self._fragments.add(d, now, trusted=from_private or self._nat.expects(d))
            if whole is None:
                return []
            d = whole.datagram
        decision = self._nat.decide(d, from_private, now)
        match decision:
            case Translated():
                return self._forward(d, decision, came_from, data, now, whole)
            case Mapping():
                return self._new_mapping(decision, d, came_from, data, now, whole)
            case Admitted():  # filtering lets it in: through its filter rule, or rewritten here if in pieces
                hop = self._neighbours.locate(decision.private_ip)
                if hop is None:
                    return self._hold(decision.private_ip, came_from, data, now, whole)
                out = admitted_datagram(d, decision)
                if whole is None and self._fragments.fits(out, to_private=True):
                    return self._filters.admit(decision, came_from, hop, data)
                return self._cut_and_send(d, out, whole, came_from, hop, to_private=True)
            case Verdict.TIME_EXCEEDED:
                local = self._private.address if from_private else self._public.address
                return self._local.time_exceeded(d, came_from, local)
            case Verdict.FOR_THE_NAT:
                return self._local.answer(d, came_from)
            case Verdict.UNSOLICITED:
                if d.proto == Proto.ICMP:
                    return self._local.answer(d, came_from)
                owned = d.proto in rules.OFFLOADED and self._nat.port_has_owner(Proto(d.proto), d.dst_port)
                return self._guard.refuse(d, now, owned)
            case DropReason() if decision in PROHIBITED and from_private:
                return self._local.prohibited(d, came_from, self._private.address, decision, now)
            case DropReason():
                return self._dropped(decision)

    def _new_mapping(self, mapping: Mapping, d: Datagram, came_from: Location, data: bytes, now: float,
                     whole: Reassembled | None) -> Plan:
        """A mapping was added for ``d``: a TCP or UDP first packet goes through the new rules' rewrite."""
        opened: Plan = []
        if d.proto in rules.OFFLOADED:
            self._offload.track(mapping, now)
            port = mapping.allocated_port
            if port is not None:
                opened = self._guard.open_port(mapping.proto, port)  # its drop rules may hide what it accepts
            fits = self._fragments.fits(d, self._private.contains(mapping.replier))
            if whole is None and fits and not d.tcp_flags & (TCP_FIN | TCP_RST):
                hop = self._neighbours.locate(mapping.replier)
                if hop is None:
                    return opened + self._neighbours.hold(mapping.replier, came_from.port, data, now,
                                                          self._switch.ports)
                return opened + self._offload.install_and_send(mapping, Direction.ORIGINAL, came_from, hop, data)
        return opened + self._forward(d, self._nat.translate(d, now), came_from, data, now, whole)

    def _forward(self, d: Datagram, t: Translated, came_from: Location, data: bytes, now: float,
                 whole: Reassembled | None) -> Plan:
        """Send ``d``, translated (``t``), on with its mapping's rules if offloaded; cut to fit the side it
        leaves by (or, with DF set, answered with fragmentation needed)."""
        out = t.packet
        hop = self._neighbours.locate(out.dst)
        if hop is None:
            return self._hold(out.dst, came_from, data, now, whole)
        to_private = self._private.contains(out.dst)
        plan: Plan = []
        if self._offload.tracks(t.mapping) and out.embedded is None:
            if whole is None:
                carried = self._offload.carry(t, came_from, hop, data)
                if self._fragments.fits(out, to_private):
                    return carried
                plan = [item for item in carried if not isinstance(item, PacketOut)]  # the rules, not the packet
            else:
                plan = self._offload.install(t.mapping, t.direction, came_from, hop)
        return plan + self._cut_and_send(d, out, whole, came_from, hop, to_private)

    def _cut_and_send(self, d: Datagram, out: Datagram, whole: Reassembled | None, came_from: Location,
                      hop: Location, to_private: bool) -> Plan:
        """``out`` (``d`` translated) to ``hop``, cut to fit the side it leaves by, or with DF set, answered
        with fragmentation needed."""
        pieces = self._fragments.cut(out, whole, to_private)
        if pieces is None:
            here = self._public.address if came_from.port == self._uplink else self._private.address
            return self._local.fragmentation_needed(d, came_from, here, self._fragments.mtu(to_private))
        return [rules.send_frame(ethernet_frame(hop.mac, self._mac, piece), [hop.port]) for piece in pieces]

    def _hold(self, ip: int, came_from: Location, data: bytes, now: float, whole: Reassembled | None) -> Plan:
        """Hold a packet (one that came in pieces: as those pieces) until its next hop is known."""
        if whole is None:
            return self._neighbours.hold(ip, came_from.port, data, now, self._switch.ports)
        plan: Plan = []
        for piece in self._fragments.as_arrived(whole):
            plan += self._neighbours.hold(ip, came_from.port, ethernet_frame(self._mac, came_from.mac, piece), now,
                                          self._switch.ports)
        return plan

    def _dropped(self, reason: DropReason) -> Plan:
        self.stats.drop(reason)
        return []

    def _finish(self, plan: Plan) -> Plan:
        """Deletions of removed mappings' rules go first, before any rule that could reuse a port; rules
        of mappings whose neighbours moved go last."""
        if self._offload.has_moved:
            plan = plan + self._offload.send_moved(self._neighbours.locate)
        deletions = self._offload.take_deletions() + self._filters.take_deletions()
        return [*deletions, *plan] if deletions else plan

