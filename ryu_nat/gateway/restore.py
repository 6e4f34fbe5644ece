"""Restore: the table rebuilt from the switch's rules after a restart, while routed packets wait.

A controller that starts with an empty table finds the rules of its earlier run
still on the switch. Each TCP or UDP mapping has two rewrite rules, and each
rule carries its mapping's id (its cookie), its channel (its match) and the
other channel (its rewrite: :func:`ryu_nat.openflow.rules.read_rewrite`). Read
back a slice at a time (:mod:`ryu_nat.openflow.scan`), a slice gives the
mappings to put back: both channels, the protocol, the public port, the kind
(from the addresses), which of the two rules are there, its age, and as much
of a TCP connection's state as the rules show (:mod:`ryu_nat.core.tcp`): rules
with the established timeout, or a reply rule that carried packets, mean the
replier answered; whether a close had begun is not on the switch, so a closing
connection comes back established (its rules still idle out at the transitory
timeout; the table then keeps it for the rest of the established one). The
rules stay as they are. What cannot be
rebuilt is deleted and counted by reason (:class:`RestoreOutcome`): a TCP
mapping with one rule left (its transitory rule idled out while no controller
listened, so it has ended), a port owned twice, a rule of ours in no shape the
NAT installs. A UDP mapping with one rule left is put back: one-way traffic
keeps a mapping alive (RFC 4787 REQ-6). ICMP query mappings live only in the
controller: they are lost.

Until the last slice is in, the NAT cannot know which public ports the switch
still uses, so routed packets are not handled: each waits, at most
:data:`MAX_HELD` of them and :data:`MAX_HELD_BYTES` in all, and is handled when
the table is whole. No I/O; time is passed in.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from ryu_nat.config import NatConfig
from ryu_nat.core.addresses import Proto, Subnet, reverse_key, unpack_key
from ryu_nat.core.neighbours import Location
from ryu_nat.core.packet import Datagram
from ryu_nat.core.table import ANSWERED, Mapping, MappingKind
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.flowentries import SwitchRule
from ryu_nat.openflow.plan import FlowDelete, Plan
from ryu_nat.openflow.rules import Rewrite

MAX_HELD = 1024
MAX_HELD_BYTES = 2 * 2**20


class RestoreOutcome(enum.Enum):
    """What became of the rules read back; values are counter names (``restore`` in the stats)."""

    RESTORED = "restored"  # a mapping put back from its two rules
    RESTORED_ONE_RULE = "restored_one_rule"  # a UDP mapping put back from the one rule left (REQ-6)
    ONE_RULE_MISSING = "one_rule_missing"  # a TCP mapping with one rule left: its rule deleted
    PORT_OWNED_TWICE = "port_owned_twice"  # its public port is another's (or a redirect's): its rules deleted
    OVERLAP = "overlap"  # a channel of it is another mapping's: its rules deleted
    ID_REUSED = "id_reused"  # an id the table already gave out (read twice across a reconnect): deleted
    OUTSIDE_LAYOUT = "outside_layout"  # a rule of ours in no shape the NAT installs (or for another config)
    UNREADABLE = "unreadable"  # a slice the switch did not answer, or answered with garbage: deleted


@dataclass(frozen=True, slots=True)
class Held:
    """A routed packet waiting for the table: where it came from, and what it was."""

    came_from: Location
    datagram: Datagram
    data: bytes
    from_private: bool


@dataclass(frozen=True, slots=True)
class Candidate:
    """A mapping read back, and which of its rules the switch holds."""

    mapping: Mapping
    original: bool
    reply: bool
    established: bool = False  # a TCP mapping whose rules have the established timeout


@dataclass(slots=True)
class Reading:
    """One slice read: the mappings to put back (lowest id first), the rules to delete, the highest id seen."""

    candidates: list[Candidate] = field(default_factory=list)
    deletions: Plan = field(default_factory=list)
    last_id: int = 0


class Restore:
    """Whether the table is being rebuilt, the packets that wait for it, and how each slice reads."""

    def __init__(self, config: NatConfig, stats: Stats) -> None:
        self._mac = config.router_mac
        self._uplink = config.public_port
        self._public = Subnet.of(config.public)
        self._private = Subnet.of(config.private)
        timeouts = config.timeouts
        self._established_s = int(timeouts.tcp_established_s) if timeouts.tcp_transitory_s != \
            timeouts.tcp_established_s else None
        self._stats = stats
        self.active = False
        self._held: list[Held] = []
        self._held_bytes = 0

    def begin(self) -> None:
        """The switch connected and the table is empty: routed packets wait from now on."""
        self.active = True

    def hold(self, packet: Held) -> None:
        """Keep a routed packet until the table is whole (dropped and counted when too many wait)."""
        if len(self._held) >= MAX_HELD or self._held_bytes + len(packet.data) > MAX_HELD_BYTES:
            self._stats.drop(DropReason.RESTORE_QUEUE_FULL)
            return
        self._held.append(packet)
        self._held_bytes += len(packet.data)
        self._stats.restore["held"] += 1

    def finish(self) -> list[Held]:
        """Every slice is in: the packets that waited, oldest first."""
        held, self._held, self._held_bytes = self._held, [], 0
        self.active = False
        self._stats.restore["runs"] += 1
        return held

    def count(self, outcome: RestoreOutcome, rules_count: int = 1) -> None:
        self._stats.restore[outcome.value] += rules_count

    def unreadable(self, cookie: int, cookie_mask: int) -> Plan:
        """A slice that could not be read: its rules cannot be rebuilt, so they go."""
        self.count(RestoreOutcome.UNREADABLE)
        return [FlowDelete(cookie, cookie_mask)]

    def read(self, switch_rules: Iterable[SwitchRule], now: float) -> Reading:
        """The mappings a slice's rules rebuild, and the deletions of those that rebuild nothing."""
        reading = Reading()
        by_id: dict[int, list[SwitchRule]] = {}
        strays: dict[int, None] = {}
        for rule in switch_rules:
            kind, mapping_id = cookies.kind_of(rule.cookie), cookies.mapping_id_of(rule.cookie)
            if kind in rules.SESSION_KINDS:
                continue  # the connection's own rules, installed afresh
            if mapping_id:
                by_id.setdefault(mapping_id, []).append(rule)
            else:
                strays[rule.cookie] = None
                self.count(RestoreOutcome.OUTSIDE_LAYOUT)
        reading.deletions += [FlowDelete(cookie, cookies.EXACT_MASK) for cookie in strays]
        for mapping_id in sorted(by_id):
            group = by_id[mapping_id]
            reading.last_id = mapping_id
            found = self._candidate(mapping_id, group, now)
            if isinstance(found, Candidate):
                reading.candidates.append(found)
            else:
                reading.deletions.append(rules.delete_mapping(mapping_id))
                self.count(found, len(group))
        return reading

    def _candidate(self, mapping_id: int, group: list[SwitchRule], now: float) -> Candidate | RestoreOutcome:
        """The mapping one id's rules rebuild, or why they rebuild none."""
        rewrites: dict[RuleKind, Rewrite] = {}
        for rule in group:
            flow = rule.as_rule()
            rewrite = None if flow is None else rules.read_rewrite(flow, self._mac)
            if rewrite is None or rewrite.kind in rewrites:
                return RestoreOutcome.OUTSIDE_LAYOUT
            rewrites[rewrite.kind] = rewrite
        original, reply = rewrites.get(RuleKind.ORIGINAL), rewrites.get(RuleKind.REPLY)
        first = original or reply
        assert first is not None
        original_key = original.arriving if original else reverse_key(first.leaving)
        reply_key = reply.arriving if reply else reverse_key(first.leaving)
        if original and reply and (original.proto is not reply.proto or original.leaving != reverse_key(reply_key)
                                   or reply.leaving != reverse_key(original_key)):
            return RestoreOutcome.OUTSIDE_LAYOUT
        kind = self._kind(original_key, reply_key, original, reply)
        if kind is None:
            return RestoreOutcome.OUTSIDE_LAYOUT
        if not (original and reply) and first.proto is Proto.TCP:
            return RestoreOutcome.ONE_RULE_MISSING
        mapping = Mapping(mapping_id, first.proto, original_key, reply_key, kind,
                          now - max(rule.duration_s for rule in group), math.inf)
        established = False
        if first.proto is Proto.TCP:
            established = any(rule.idle_timeout_s == self._established_s for rule in group)
            if established or any(rule.packets for rule in group if cookies.kind_of(rule.cookie) is RuleKind.REPLY):
                mapping.flags |= ANSWERED
        return Candidate(mapping, original is not None, reply is not None, established)

    def _kind(self, original: int, reply: int, original_rule: Rewrite | None,
              reply_rule: Rewrite | None) -> MappingKind | None:
        """NAT, redirect or hairpin, from the channels and which side each rule takes packets from; None
        for channels this NAT (its addresses, its uplink) would not have made."""
        o_src, o_dst, o_sport, o_dport = unpack_key(original)
        r_src, r_dst, r_sport, r_dport = unpack_key(reply)
        public, private = self._public.address, self._private
        if private.is_other_host(o_src):
            if r_dst != public:
                return None
            if o_dst == public and private.is_other_host(r_src):
                kind, original_side, reply_side = MappingKind.HAIRPIN, False, False
            elif not private.contains(o_dst) and (r_src, r_sport) == (o_dst, o_dport):
                kind, original_side, reply_side = MappingKind.NAT, False, True
            else:
                return None
        elif o_dst == public and not private.contains(o_src) and private.is_other_host(r_src) \
                and (r_dst, r_dport) == (o_src, o_sport):
            kind, original_side, reply_side = MappingKind.REDIRECT, True, False
        else:
            return None
        for rule, from_uplink in ((original_rule, original_side), (reply_rule, reply_side)):
            if rule is not None and (rule.in_port == self._uplink) != from_uplink:
                return None
        return kind
