"""The NAT gateway: switch events in, plans out.

Like faucet's ``Valve``: :meth:`Gateway.packet_in`, :meth:`Gateway.flow_removed`,
:meth:`Gateway.expire` and :meth:`Gateway.switch_connected` take what the switch
reported and the time, change state, and return the OpenFlow messages to send
(a plan). No I/O; never yields.

Which rules exist, and why:

* A TCP or UDP mapping gets two rewrite rules, one per direction, that carry
  all its later packets; its first packet is sent through the same actions.
  Its life is the switch's business: each rule idles out on its own, and the
  mapping goes when both have (so one-way traffic keeps it, RFC 4787 REQ-6);
  a packet in a direction whose rule idled out reinstalls both.
* ICMP queries and ICMP errors cannot be matched by query id in OpenFlow 1.3:
  they go through the controller, which translates them in the core.
* Fragments carry no ports: they come to the controller, wait for their
  datagram, which is translated whole and cut again.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

import cachetools
from ryu_nat.backend import arp as arp_pkt

from ryu_nat.config import NatConfig, RedirectRule
from ryu_nat.core import icmp
from ryu_nat.core.addresses import Proto, reverse_key
from ryu_nat.core.fragments import FragmentCache, FragmentError, Reassembled, fragment
from ryu_nat.core.lru_table import LruNatTable
from ryu_nat.core.nat import (AddMode, Direction, Hairpin, Nat, Redirect, SourceNat, Translated, TranslateError,
                              leaving)
from ryu_nat.core.neighbours import Location, Neighbours
from ryu_nat.core.packet import ETH_TYPE_ARP, Datagram, Frame, ParseError, ethernet_frame, parse_frame
from ryu_nat.core.ports import PortAllocator
from ryu_nat.core.table import AddError, FreedPorts, Mapping, RemovalReason
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import Barrier, FlowRule, Message, PacketOut, Plan, SwitchSetup
from ryu_nat.stats import Stats

LOG = logging.getLogger(__name__)

OFPP_MAX = 0xFFFFFF00
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
L2_IDLE_TIMEOUT_S = 300
L2_TABLE_SIZE = 4096
DROP_RULE_S = 10
WARN_INTERVAL_S = 5.0
_ORIGINAL_BIT = 1
_REPLY_BIT = 2
_BOTH = _ORIGINAL_BIT | _REPLY_BIT


class PacketInReason(enum.IntEnum):
    """OpenFlow 1.3 packet-in reasons."""

    NO_MATCH = 0
    ACTION = 1
    INVALID_TTL = 2


class FlowRemovedReason(enum.IntEnum):
    """OpenFlow 1.3 flow-removed reasons."""

    IDLE_TIMEOUT = 0
    HARD_TIMEOUT = 1
    DELETE = 2
    GROUP_DELETE = 3


@dataclass(frozen=True, slots=True)
class _Side:
    """One side of the NAT: its address, network and the neighbours there."""

    name: str
    ip: int
    net: int
    mask: int
    neighbours: Neighbours

    def has(self, ip: int) -> bool:
        return ip & self.mask == self.net

    @property
    def broadcast(self) -> int:
        return self.net | (~self.mask & 0xFFFFFFFF)


def _ip(value: int) -> str:
    return str(IPv4Address(value))


def _is_group_mac(mac: str) -> bool:
    return int(mac[:2], 16) & 1 == 1


class Gateway:
    """One NAT switch: the core NAT, who is where, and the rules that follow from them."""

    def __init__(self, config: NatConfig, rng: random.Random | None = None, stats: Stats | None = None) -> None:
        self.config = config
        self.stats = stats or Stats()
        self.uplink = config.public_port
        self.mac = config.router_mac
        self.public = _Side("public", int(config.public.ip), int(config.public.network.network_address),
                            int(config.public.network.netmask), Neighbours())
        self.private = _Side("private", int(config.private.ip), int(config.private.network.network_address),
                             int(config.private.network.netmask), Neighbours())
        self._gateway_ip = int(config.public_gateway)
        self.nat = Nat(LruNatTable(config.table_sizes), config.public.ip,
                       PortAllocator(config.port_range, rng or random.Random()), config.timeouts,
                       listener=self._mapping_removed)
        self.redirects: dict[tuple[Proto, int], RedirectRule] = {}
        self.private_ports: set[int] = set()
        # Bounded: a private host sending from random MACs must not grow it without end.
        self.l2: cachetools.LRUCache[str, int] = cachetools.LRUCache(L2_TABLE_SIZE)
        self.fragments = FragmentCache()
        self._offloaded: dict[int, Mapping] = {}
        self._rules_alive: dict[int, int] = {}
        self._drop_rules: dict[tuple[Proto, int], float] = {}
        self._removals: list[Message] = []
        self._last_warning: dict[str, float] = {}
        self._idle_timeouts = {
            Proto.TCP: int(config.timeouts.tcp_established_s),
            Proto.UDP: int(config.timeouts.udp_s),
        }
        for rule in config.redirects:
            self.add_redirect(rule)

    # --- switch events ------------------------------------------------------------------

    def switch_connected(self, ports: Iterable[int], now: float) -> Plan:
        """Settings, a clean slate of our rules, the base rules, and the rules of live mappings.

        Mappings outlive a switch reconnect: their rules are installed again
        wherever both ends are known (the others come back with their next packet).
        """
        self.private_ports = {port for port in ports if port != self.uplink and port < OFPP_MAX}
        self._drop_rules.clear()
        plan: Plan = [SwitchSetup(), rules.delete_ours(), Barrier(), rules.table_miss(), rules.arp_to_controller(),
                      rules.uplink_to_controller(self.uplink),
                      rules.tcp_flag_to_controller(self.mac, rules.TCP_FIN, self.uplink),
                      rules.tcp_flag_to_controller(self.mac, rules.TCP_RST)]
        self._rules_alive.clear()
        for mapping in list(self._offloaded.values()):
            src = self._locate(mapping.original >> 64)
            dst = self._locate(mapping.reply >> 64)  # the original direction leaves toward the replier
            if src is not None and dst is not None:
                plan += self._mapping_rules(mapping, Direction.ORIGINAL, src, dst)
        return self._finish(plan)

    def port_changed(self, port: int, present: bool) -> Plan:
        """A port came or went; private ports are every port but the uplink."""
        if port != self.uplink and port < OFPP_MAX:
            (self.private_ports.add if present else self.private_ports.discard)(port)
        return self._finish([])

    def packet_in(self, in_port: int, data: bytes, now: float,
                  reason: PacketInReason = PacketInReason.NO_MATCH) -> Plan:
        """Handle one packet the switch sent up; the plan answers it."""
        frame = parse_frame(data)
        if isinstance(frame, ParseError):
            return self._drop(frame.value)
        if reason is PacketInReason.INVALID_TTL:
            self.stats.packet_ins["invalid_ttl"] += 1
        if frame.ethertype == ETH_TYPE_ARP:
            self.stats.packet_ins["arp"] += 1
            return self._finish(self._arp(in_port, frame, data, now))
        if in_port == self.uplink:
            return self._finish(self._from_public(in_port, frame, data, now))
        return self._finish(self._from_private(in_port, frame, data, now))

    def flow_removed(self, cookie: int, reason: int, now: float) -> Plan:
        """A rule of ours left the switch. When both rules of a mapping idled out, the mapping goes."""
        mapping_id = cookies.mapping_id_of(cookie)
        mapping = self._offloaded.get(mapping_id) if mapping_id is not None else None
        if mapping is None:
            return self._finish([])
        bit = _ORIGINAL_BIT if cookies.kind_of(cookie) is RuleKind.ORIGINAL else _REPLY_BIT
        alive = self._rules_alive.get(mapping.id, 0) & ~bit
        timed_out = reason in (FlowRemovedReason.IDLE_TIMEOUT, FlowRemovedReason.HARD_TIMEOUT)
        # After FIN or RST only one rule carries the transitory timeout: its idling out ends the mapping.
        if timed_out and (mapping.closing or not alive):
            self.nat.remove(mapping, RemovalReason.EXPIRED)
        else:
            # One rule idled out, or someone else deleted it: the next packet that misses it
            # reaches the controller and installs both again.
            self._rules_alive[mapping.id] = alive
        return self._finish([])

    def expire(self, now: float) -> Plan:
        """Periodic work: idle ICMP mappings, ARP retries and give-ups, stale fragments."""
        self.nat.expire(now)
        self.fragments.expire(now)
        plan: Plan = []
        for side in (self.public, self.private):
            expired = side.neighbours.expire(now)
            self.stats.drops["arp_timeout"] += expired.dropped
            for ip in expired.ask_again:
                plan += self._arp_request(side, ip)
        for key, since in list(self._drop_rules.items()):
            if now - since >= DROP_RULE_S:
                del self._drop_rules[key]
        return self._finish(plan)

    # --- operator actions ------------------------------------------------------------------

    def add_redirect(self, rule: RedirectRule) -> Plan:
        """Forward ``rule.public_port``; its port leaves the source-NAT pool.

        Effective at once: if unsolicited traffic to that port left a drop rule
        on the switch, the plan deletes the drop rules.
        """
        self.redirects[(rule.proto, rule.public_port)] = rule
        self.nat.ports.reserve(rule.proto, rule.public_port)
        if (rule.proto, rule.public_port) not in self._drop_rules:
            return self._finish([])
        self._drop_rules.clear()
        return self._finish([rules.delete_drops()])

    def remove_redirect(self, proto: Proto, public_port: int) -> RedirectRule | None:
        """Stop forwarding a port; connections already forwarded keep their mappings."""
        rule = self.redirects.pop((proto, public_port), None)
        if rule is not None:
            self.nat.ports.unreserve(proto, public_port)
        return rule

    def remove_connections(self, host: IPv4Address) -> tuple[FreedPorts, Plan]:
        """mirage-nat's remove_connections: every mapping of a private host, and its rules."""
        freed = self.nat.remove_connections(host)
        return freed, self._finish([])

    def reset(self) -> Plan:
        """Remove every mapping and its rules."""
        self.nat.reset()
        return self._finish([])

    # --- ARP and layer 2 ---------------------------------------------------------------------

    def _arp(self, in_port: int, frame: Frame, data: bytes, now: float) -> Plan:
        packet = frame.arp
        if packet is None or packet.proto != 0x0800 or packet.hlen != 6 or packet.plen != 4:
            return self._dropped("bad_arp")
        src_ip, dst_ip = int(IPv4Address(packet.src_ip)), int(IPv4Address(packet.dst_ip))
        side = self.public if in_port == self.uplink else self.private
        plan: Plan = []
        if side is self.private:
            self.private_ports.add(in_port)
            self._learn_l2(frame.eth_src, in_port)
        for_us = dst_ip == side.ip
        if side.has(src_ip) and src_ip not in (side.ip, side.net, side.broadcast) and (side is self.private or for_us):
            plan += self._learn(side, src_ip, Location(in_port, packet.src_mac), now)
        if for_us and packet.opcode == arp_pkt.ARP_REQUEST:
            self.stats.arp["requests_answered"] += 1
            reply = arp_pkt.arp_ip(arp_pkt.ARP_REPLY, self.mac, _ip(side.ip), packet.src_mac, packet.src_ip)
            plan.append(rules.send_frame(_arp_frame(packet.src_mac, self.mac, reply), [in_port], in_port))
        elif not for_us and side is self.private:
            plan += self._switch_private(in_port, frame, data)
        return plan

    def _learn(self, side: _Side, ip: int, location: Location, now: float) -> Plan:
        """Remember where ``ip`` is and send what waited for it."""
        known = side.neighbours.lookup(ip)
        if known == location:
            return []
        if known is None:
            self.stats.arp["replies_learned"] += 1
        plan: Plan = []
        for in_port, frame in side.neighbours.learn(ip, location):
            plan += self.packet_in(in_port, frame, now)
        return plan

    def _arp_request(self, side: _Side, ip: int) -> Plan:
        """Ask who has ``ip``, on the uplink or on every private port (never both)."""
        ports = [self.uplink] if side is self.public else sorted(self.private_ports)
        if not ports:
            return []
        self.stats.arp["requests_sent"] += 1
        request = arp_pkt.arp_ip(arp_pkt.ARP_REQUEST, self.mac, _ip(side.ip), "00:00:00:00:00:00", _ip(ip))
        return [rules.send_frame(_arp_frame(BROADCAST_MAC, self.mac, request), ports)]

    def _learn_l2(self, mac: str, port: int) -> None:
        if not _is_group_mac(mac) and mac != self.mac:
            self.l2[mac] = port

    def _switch_private(self, in_port: int, frame: Frame, data: bytes) -> Plan:
        """Frames between private hosts: a learning switch over the private ports."""
        self.stats.packet_ins["l2"] += 1
        port = None if _is_group_mac(frame.eth_dst) else self.l2.get(frame.eth_dst)
        if port is None:
            others = sorted(self.private_ports - {in_port})
            return [rules.send_frame(data, others, in_port)] if others else []
        if port == in_port:
            return []  # the host's own LAN already delivered it
        return [rules.private_l2(frame.eth_dst, port, L2_IDLE_TIMEOUT_S), rules.send_frame(data, [port], in_port)]

    # --- routing ---------------------------------------------------------------------------------

    def _from_private(self, in_port: int, frame: Frame, data: bytes, now: float) -> Plan:
        self.private_ports.add(in_port)
        self._learn_l2(frame.eth_src, in_port)
        d = frame.datagram
        plan: Plan = []
        if d is not None and self.private.has(d.src) and d.src not in (self.private.ip, self.private.broadcast):
            plan += self._learn(self.private, d.src, Location(in_port, frame.eth_src), now)
        if frame.eth_dst != self.mac:
            return plan + self._switch_private(in_port, frame, data)
        self.stats.packet_ins["private"] += 1
        if d is None:
            return plan + self._dropped("not_ipv4")
        if not self.private.has(d.src):
            return plan + self._dropped("spoofed_source")
        return plan + self._route(in_port, frame, d, data, now, from_private=True)

    def _from_public(self, in_port: int, frame: Frame, data: bytes, now: float) -> Plan:
        self.stats.packet_ins["public"] += 1
        d = frame.datagram
        if d is None:
            return self._dropped("not_ipv4")
        if frame.eth_dst != self.mac or d.dst != self.public.ip:
            return self._dropped("not_for_us")
        if self.private.has(d.src) or d.src == self.public.ip:
            return self._dropped("spoofed_source")
        hop = d.src if self.public.has(d.src) else self._gateway_ip
        plan: Plan = []
        if self.public.neighbours.lookup(hop) is None:
            plan += self._learn(self.public, hop, Location(in_port, frame.eth_src), now)
        return plan + self._route(in_port, frame, d, data, now, from_private=False)

    def _route(self, in_port: int, frame: Frame, d: Datagram, data: bytes, now: float, from_private: bool) -> Plan:
        if d.is_fragment:
            self.stats.packet_ins["fragment"] += 1
            result = self.fragments.add(d, now)
            if result is None:
                return []
            if isinstance(result, FragmentError):
                return self._dropped(result.value)
            return self._route_whole(in_port, frame, result.datagram, None, now, from_private, result)
        return self._route_whole(in_port, frame, d, data, now, from_private, None)

    def _route_whole(self, in_port: int, frame: Frame, d: Datagram, data: bytes | None, now: float,
                     from_private: bool, whole: Reassembled | None) -> Plan:
        """Translate with an existing mapping, or add one, or answer for the NAT itself, or drop."""
        local_ip = self.private.ip if from_private else self.public.ip
        if d.tcp_flags & (rules.TCP_FIN | rules.TCP_RST):
            self.stats.packet_ins["tcp_closing"] += 1
        result = self.nat.translate(d, now)
        if isinstance(result, Translated):
            return self._forward(result, in_port, frame, data, now, whole)
        if result is TranslateError.TTL_EXCEEDED:
            return self._time_exceeded(d, in_port, frame, local_ip)
        if d.embedded is not None:
            return self._dropped("untranslated_icmp_error")
        redirect = None
        if d.dst == self.public.ip and d.proto in (Proto.TCP, Proto.UDP):
            redirect = self.redirects.get((Proto(d.proto), d.dst_port))
        mode: AddMode
        if from_private:
            if d.dst == self.private.ip or (d.dst == self.public.ip and redirect is None):
                return self._local(d, in_port, frame)
            if self.private.has(d.dst):
                return self._dropped("private_destination")
            if d.dst == self.public.broadcast:
                return self._dropped(AddError.CANNOT_NAT.value)
            mode = Hairpin(redirect.private) if redirect is not None else SourceNat()
        else:
            if redirect is None:
                return self._unsolicited(d, in_port, frame, now)
            mode = Redirect(redirect.private)
        if d.ttl <= 1:
            return self._time_exceeded(d, in_port, frame, local_ip)
        offload = d.proto in (Proto.TCP, Proto.UDP)
        added = self.nat.add(d, mode, now, idle_timeout_s=math.inf if offload else None)
        if isinstance(added, AddError):
            self._warn(added.value, now, "refused %s: %s", _describe(d), added.value)
            return self._dropped(added.value)
        self.stats.mappings_created[added.kind.value] += 1
        LOG.debug("new mapping %r", added)
        if offload:
            self._offloaded[added.id] = added
            if whole is None and data is not None and not d.tcp_flags & (rules.TCP_FIN | rules.TCP_RST):
                # The switch rewrites this first packet: no need to translate it here.
                leaving_dst = added.reply >> 64  # the original direction leaves toward the replier
                hop = self._locate(leaving_dst)
                if hop is None:
                    return self._wait_for(leaving_dst, in_port, data, now)
                return self._offload(added, Direction.ORIGINAL, in_port, frame, data, hop)
        translated = self.nat.translate(d, now)
        assert isinstance(translated, Translated), translated
        return self._forward(translated, in_port, frame, data, now, whole)

    def _forward(self, t: Translated, in_port: int, frame: Frame, data: bytes | None, now: float,
                 whole: Reassembled | None) -> Plan:
        """Send a translated packet on; for TCP and UDP, (re)install both rules of its mapping.

        ``whole`` is set when the packet was reassembled from fragments: it leaves
        cut again at its sender's piece size.
        """
        out = t.packet
        hop = self._locate(out.dst)
        if hop is None:
            if whole is not None:
                return self._wait_for_pieces(whole, in_port, frame, out.dst, now)
            return self._wait_for(out.dst, in_port, data, now)
        mapping = t.mapping
        plan: Plan = []
        if mapping.id in self._offloaded and out.embedded is None:
            if whole is None and data is not None:
                if t.closing_started and self._rules_alive.get(mapping.id) == _BOTH:
                    return self._start_closing(mapping, t.direction, in_port, frame, data, hop)
                if t.closing_started or self._rules_alive.get(mapping.id) != _BOTH:
                    return self._offload(mapping, t.direction, in_port, frame, data, hop)
                # Both rules are on the switch (this packet overtook them, or it is a later FIN):
                # it goes through its direction's rewrite, and nothing is installed again.
                arriving = mapping.original if t.direction is Direction.ORIGINAL else mapping.reply
                _, leaves_as = leaving(mapping, arriving)
                actions = rules.rewrite_actions(mapping.proto, arriving, leaves_as, self.mac, hop.mac, hop.port,
                                                in_port)
                return [PacketOut(data, actions, in_port)]
            plan = self._mapping_rules(mapping, t.direction, Location(in_port, frame.eth_src), hop)
        if whole is not None:
            return plan + [rules.send_frame(ethernet_frame(hop.mac, self.mac, piece), [hop.port])
                           for piece in fragment(out, whole.piece_len)]
        return [rules.send_frame(ethernet_frame(hop.mac, self.mac, out.raw), [hop.port])]

    def _offload(self, mapping: Mapping, direction: Direction, in_port: int, frame: Frame, data: bytes,
                 hop: Location) -> Plan:
        """Both rules of a mapping, then the packet at hand through its direction's rewrite actions."""
        plan = self._mapping_rules(mapping, direction, Location(in_port, frame.eth_src), hop)
        this_direction = plan[0] if direction is Direction.ORIGINAL else plan[1]
        assert isinstance(this_direction, FlowRule)
        return [*plan, PacketOut(data, this_direction.actions, in_port)]

    def _start_closing(self, mapping: Mapping, direction: Direction, in_port: int, frame: Frame, data: bytes,
                       hop: Location) -> Plan:
        """The first FIN or RST: this direction's rule again, with the transitory timeout, then the packet.

        One rule, not two: when it idles out the mapping ends (see :meth:`flow_removed`),
        and the other rule goes with it. One flow-mod fewer per connection.
        """
        rule = self._rewrite_rules(mapping, direction, Location(in_port, frame.eth_src), hop)[
            0 if direction is Direction.ORIGINAL else 1]
        return [rule, PacketOut(data, rule.actions, in_port)]

    def _wait_for_pieces(self, whole: Reassembled, in_port: int, frame: Frame, dst: int, now: float) -> Plan:
        """Hold a reassembled datagram, as the pieces it came in, until its next hop is known."""
        plan: Plan = []
        for piece in fragment(whole.datagram, whole.piece_len):
            plan += self._wait_for(dst, in_port, ethernet_frame(self.mac, frame.eth_src, piece), now)
        return plan

    def _mapping_rules(self, mapping: Mapping, direction: Direction, arriving: Location, leaving: Location) -> Plan:
        """Both rewrite rules of a mapping, now on their way to the switch."""
        original, reply = self._rewrite_rules(mapping, direction, arriving, leaving)
        self._rules_alive[mapping.id] = _BOTH
        self.stats.flow_setups += 1
        return [original, reply]

    def _rewrite_rules(self, mapping: Mapping, direction: Direction, arriving: Location,
                       leaving: Location) -> tuple[FlowRule, FlowRule]:
        """A mapping's (original, reply) rules, given where the packet at hand came from and goes to."""
        if direction is Direction.ORIGINAL:
            original_in, original_out = arriving, leaving
        else:
            original_in, original_out = leaving, arriving
        timeout = int(self.config.timeouts.tcp_transitory_s) if mapping.closing else self._idle_timeouts[mapping.proto]
        original = rules.mapping_rewrite(RuleKind.ORIGINAL, mapping.id, mapping.proto, mapping.original,
                                         reverse_key(mapping.reply), original_in.port, self.mac, original_out.mac,
                                         original_out.port, timeout)
        reply = rules.mapping_rewrite(RuleKind.REPLY, mapping.id, mapping.proto, mapping.reply,
                                      reverse_key(mapping.original), original_out.port, self.mac, original_in.mac,
                                      original_in.port, timeout)
        return original, reply

    def _locate(self, ip: int) -> Location | None:
        """Where packets to ``ip`` go: a private host, or the public next hop on the uplink."""
        if self.private.has(ip):
            return self.private.neighbours.lookup(ip)
        location = self.public.neighbours.lookup(ip if self.public.has(ip) else self._gateway_ip)
        return None if location is None else Location(self.uplink, location.mac)

    def _wait_for(self, ip: int, in_port: int, data: bytes | None, now: float) -> Plan:
        """Hold the packet until ARP tells where its next hop is."""
        side = self.private if self.private.has(ip) else self.public
        hop = ip if side is self.private or self.public.has(ip) else self._gateway_ip
        if data is None:
            return self._arp_request(side, hop)
        queued = side.neighbours.wait(hop, in_port, data, now)
        if queued is None:
            return self._dropped("arp_queue_full")
        self.stats.arp["queued"] += 1
        return self._arp_request(side, hop) if queued else []

    def _local(self, d: Datagram, in_port: int, frame: Frame) -> Plan:
        """Traffic for the NAT's own addresses: echo requests are answered, the rest dropped."""
        reply = icmp.echo_reply(d)
        if reply is None:
            return self._dropped("local")
        self.stats.icmp_sent["echo_reply"] += 1
        return [rules.send_frame(ethernet_frame(frame.eth_src, self.mac, reply), [in_port], in_port)]

    def _time_exceeded(self, d: Datagram, in_port: int, frame: Frame, from_ip: int) -> Plan:
        """The packet's TTL ran out here: tell its sender, from the NAT's address on that side."""
        if not icmp.may_answer_with_error(d):
            return self._dropped("ttl_exceeded")
        self.stats.icmp_sent["time_exceeded"] += 1
        message = icmp.time_exceeded(d, IPv4Address(from_ip))
        return [rules.send_frame(ethernet_frame(frame.eth_src, self.mac, message), [in_port], in_port)]

    def _unsolicited(self, d: Datagram, in_port: int, frame: Frame, now: float) -> Plan:
        """Inbound with no mapping and no redirect: echo requests are answered, the rest dropped.

        TCP and UDP also get a drop rule for that port for a few seconds, so a
        flood costs the controller one packet-in per port, not one per packet.
        """
        if d.proto == Proto.ICMP:
            return self._local(d, in_port, frame)
        plan = self._dropped("unsolicited")
        if d.proto in (Proto.TCP, Proto.UDP) and d.dst_port:
            key = (Proto(d.proto), d.dst_port)
            if key not in self._drop_rules:
                self._drop_rules[key] = now
                plan.append(rules.drop_unsolicited(self.uplink, self.public.ip, key[0], key[1], DROP_RULE_S))
        return plan

    # --- removals and bookkeeping -------------------------------------------------------------------

    def _mapping_removed(self, mapping: Mapping, reason: RemovalReason) -> None:
        """The core removed a mapping: its rules leave the switch in the same plan."""
        self.stats.mappings_removed[reason.value] += 1
        LOG.debug("mapping %d removed (%s)", mapping.id, reason.value)
        if self._offloaded.pop(mapping.id, None) is not None:
            self._rules_alive.pop(mapping.id, None)
            self._removals.append(rules.delete_mapping(mapping.id))

    def _finish(self, plan: Plan) -> Plan:
        """Deletions of removed mappings' rules go first, before any rule that could reuse a port."""
        if not self._removals:
            return plan
        removals, self._removals = self._removals, []
        return [*removals, *plan]

    def _drop(self, reason: str) -> Plan:
        return self._finish(self._dropped(reason))

    def _dropped(self, reason: str) -> Plan:
        self.stats.drops[reason] += 1
        return []

    def _warn(self, key: str, now: float, message: str, *args: object) -> None:
        """A warning at most every few seconds per kind, so bad traffic cannot flood the log."""
        if now - self._last_warning.get(key, -WARN_INTERVAL_S) >= WARN_INTERVAL_S:
            self._last_warning[key] = now
            LOG.warning(message, *args)


def _describe(d: Datagram) -> str:
    ports = f":{d.src_port} -> {_ip(d.dst)}:{d.dst_port}" if d.src_port or d.dst_port else f" -> {_ip(d.dst)}"
    return f"proto {d.proto} {_ip(d.src)}{ports}"


def _arp_frame(eth_dst: str, eth_src: str, packet: arp_pkt.arp) -> bytes:
    return ethernet_frame(eth_dst, eth_src, bytes(packet.serialize(b"", None)), ETH_TYPE_ARP)
