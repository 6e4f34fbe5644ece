"""Offload: each TCP or UDP mapping's two rewrite rules on the switch, as a state per mapping.

A mapping's packets after the first are the switch's business: one rule per
direction, with the flow-removed flag and the idle timeout the mapping lives by
now (UDP's; TCP's by its connection's state, :mod:`ryu_nat.core.tcp`: the
transitory timeout until the replier has answered, or once it closes). When
both rules have idled out (one-way traffic keeps a mapping, RFC 4787 REQ-6) the
NAT path hears of it, with how long the switch saw it idle. The replier's rule
tells, by its packet count when it idles out, whether the connection was ever
answered: so the set-up path costs no packet-in more for it. A packet that
reaches the controller while a rule is missing, or that changes the timeout its
mapping's rules should have (a TCP reopen, a close of rules installed with the
established timeout), installs both again. Whenever the core removes a mapping,
its rules' deletion goes out first in the next plan, before any rule that could
reuse its port.

A mapping whose rules never reach the switch does not live on: it is given up
when ARP gives up on its next hop, and in any case ``PENDING_S`` after it was
made (both found by :meth:`Offload.expire`), or when the switch refuses one of
its rules (:meth:`Offload.refused`), so its port is freed.
Each mapping is indexed by the two neighbours its rules send to (the next hop
of each end): when one of them moves (a new MAC or port), the rules of the
mappings behind it are sent again (:meth:`Offload.moved`), at most
``MOVES_PER_TICK`` mappings per tick, so a neighbour that keeps moving cannot
make the controller do nothing else.

    PENDING ──install──► INSTALLED ──one rule left──► ORIGINAL_ONLY / REPLY_ONLY ──the other──► ABSENT
       ▲                     ▲                                  │                                 │
       │                     └──────────── install (a packet missed a rule, or reconnect) ◄───────┘
    a new mapping; its first packet waits for its next hop

No I/O; never yields.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ryu_nat.config import NatConfig
from ryu_nat.core import tcp
from ryu_nat.core.addresses import Proto, reverse_key
from ryu_nat.core.nat import Direction, Translated, leaving
from ryu_nat.core.neighbours import Location
from ryu_nat.core.packet import TCP_ACK, TCP_SYN
from ryu_nat.core.table import ANSWERED, Mapping
from ryu_nat.core.tcp import TcpChange
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import FlowRule, PacketOut, Plan
from ryu_nat.openflow.reasons import FlowRemovedReason

_SYN_ACK = TCP_SYN | TCP_ACK
PENDING_S = 10.0  # a mapping whose rules were never sent by then is removed (ARP gives up after 3 s)
MOVES_PER_TICK = 2048  # mappings whose rules may be sent again per tick because a neighbour moved


class RuleState(enum.Enum):
    """Which of a mapping's two rewrite rules the switch holds, as far as the controller knows."""

    PENDING = "pending"  # none sent yet: the first packet waits for its next hop
    INSTALLED = "installed"  # both sent
    ORIGINAL_ONLY = "original_only"  # the reply direction's rule left the switch
    REPLY_ONLY = "reply_only"  # the original direction's rule left
    ABSENT = "absent"  # both left (or were deleted by someone else), or the switch reconnected without them

    def without(self, kind: RuleKind) -> RuleState:
        """This state after the rule of ``kind`` (ORIGINAL or REPLY) left the switch."""
        if self is RuleState.INSTALLED:
            return RuleState.REPLY_ONLY if kind is RuleKind.ORIGINAL else RuleState.ORIGINAL_ONLY
        if (self, kind) in ((RuleState.ORIGINAL_ONLY, RuleKind.ORIGINAL), (RuleState.REPLY_ONLY, RuleKind.REPLY)):
            return RuleState.ABSENT
        return RuleState.ABSENT if self is RuleState.PENDING else self

    @property
    def has_rules(self) -> bool:
        return self in (RuleState.INSTALLED, RuleState.ORIGINAL_ONLY, RuleState.REPLY_ONLY)

    def holds(self, kind: RuleKind) -> bool:
        """True if the rule of ``kind`` (ORIGINAL or REPLY) is on the switch in this state."""
        return self is RuleState.INSTALLED or self is (RuleState.ORIGINAL_ONLY if kind is RuleKind.ORIGINAL
                                                       else RuleState.REPLY_ONLY)

    @classmethod
    def holding(cls, original: bool, reply: bool) -> RuleState:
        """The state in which the switch holds the rules said (at least one)."""
        if original:
            return cls.INSTALLED if reply else cls.ORIGINAL_ONLY
        return cls.REPLY_ONLY


class Offload:
    """The rule state of every offloaded mapping, and the rules and packet-outs that change it."""

    def __init__(self, config: NatConfig, stats: Stats, hop_of: Callable[[int], int]) -> None:
        self._mac = config.router_mac
        self._timeouts = config.timeouts
        self._udp_s = int(config.timeouts.udp_s)
        self._transitory_s = int(config.timeouts.tcp_transitory_s)
        self._stats = stats
        self._hop_of = hop_of
        self._mappings: dict[int, Mapping] = {}
        self._states: dict[int, RuleState] = {}
        self._established: set[int] = set()  # TCP mappings whose rules have the established timeout
        self._pending: dict[int, float] = {}  # mapping id -> when it was made, oldest first
        self._behind: dict[int, set[int]] = {}  # next hop -> ids of the mappings whose rules send to it
        self._moved: dict[int, None] = {}  # ids whose rules wait to be sent again, in order
        self._move_credit = MOVES_PER_TICK
        self._deletions: Plan = []
        self._changed: set[int] | None = None  # while an audit's request is out: mappings whose rules changed

    def track(self, mapping: Mapping, now: float) -> None:
        """A new mapping whose packets the switch will carry."""
        mapping_id = mapping.id
        self._mappings[mapping_id] = mapping
        self._states[mapping_id] = RuleState.PENDING
        self._pending[mapping_id] = now
        self._note_behind(mapping)

    def tracks(self, mapping: Mapping) -> bool:
        return mapping.id in self._mappings

    def state(self, mapping_id: int) -> RuleState | None:
        """The rule state of a mapping; None if it is not (or no longer) offloaded."""
        return self._states.get(mapping_id)

    def adopt(self, mapping: Mapping, original: bool, reply: bool, established: bool) -> None:
        """A mapping put back after a restart, whose rules the switch holds as said (at least one), with the
        established TCP timeout if ``established``."""
        self._mappings[mapping.id] = mapping
        self._states[mapping.id] = RuleState.holding(original, reply)
        if established:
            self._established.add(mapping.id)
        self._note_behind(mapping)

    def rule_gone(self, mapping: Mapping, kind: RuleKind) -> None:
        """A rule of a live mapping is not on the switch (an audit found it missing, or deleted it): the
        next packet that misses it installs both again."""
        state = self._states.get(mapping.id)
        if state is not None:
            self._states[mapping.id] = state.without(kind)

    def watch(self) -> None:
        """Note from now on which mappings' rules change (an audit's request for a slice is out)."""
        self._changed = set()

    def changed(self) -> set[int]:
        """The mappings whose rules were installed or deleted since :meth:`watch`; noting stops."""
        changed, self._changed = self._changed, None
        return changed or set()

    def carry(self, t: Translated, came_from: Location, goes_to: Location, data: bytes) -> Plan:
        """A translated packet of an offloaded mapping that reached the controller: send it on, and
        put on the switch whatever its mapping's rules need now."""
        mapping = t.mapping
        change = t.tcp_change
        keep_rules = self._states.get(mapping.id) is RuleState.INSTALLED and (
            change is None or change is TcpChange.TRANSITORY and mapping.id not in self._established)
        # A half-open connection's SYN again (the SYN rule brought it here, past its rules): their idle
        # timers start again with it, so the transitory timeout counts from the last SYN.
        if not keep_rules or t.packet.tcp_flags & _SYN_ACK == TCP_SYN and not mapping.flags & ANSWERED:
            return self.install_and_send(mapping, t.direction, came_from, goes_to, data)
        # Both rules are on the switch with the right timeout (this packet overtook them, or it is a FIN,
        # or a close of rules that had the transitory timeout already): it goes through its direction's
        # rewrite, and nothing is installed again.
        arriving = mapping.original if t.direction is Direction.ORIGINAL else mapping.reply
        _, leaves_as = leaving(mapping, arriving)
        actions = rules.rewrite_actions(mapping.proto, arriving, leaves_as, self._mac, goes_to.mac, goes_to.port,
                                        came_from.port)
        return [PacketOut(data, actions, came_from.port)]

    def install(self, mapping: Mapping, direction: Direction, came_from: Location, goes_to: Location) -> Plan:
        """Both rewrite rules of a mapping, given where the packet at hand came from and goes to."""
        original, reply = self._rewrite_rules(mapping, direction, came_from, goes_to)
        self._states[mapping.id] = RuleState.INSTALLED
        if self._pending:
            self._pending.pop(mapping.id, None)
        self._stats.flow_setups += 1
        if self._changed is not None:
            self._changed.add(mapping.id)
        return [original, reply]

    def reinstall(self, locate: Callable[[int], Location | None]) -> Plan:
        """After a switch (re)connected without our rules: the rules of every mapping whose two ends
        ``locate`` knows; the others come back with their next packet."""
        plan: Plan = []
        self._moved.clear()  # every rule goes again now
        for mapping in list(self._mappings.values()):
            if self._states[mapping.id] is not RuleState.PENDING:
                self._states[mapping.id] = RuleState.ABSENT
            initiator, replier = locate(mapping.initiator), locate(mapping.replier)
            if initiator is not None and replier is not None:
                plan += self.install(mapping, Direction.ORIGINAL, initiator, replier)
        return plan

    def rule_removed(self, cookie: int, reason: FlowRemovedReason, packet_count: int = 0) -> Mapping | None:
        """A rule of ours left the switch after ``packet_count`` packets; the mapping whose last rule idled
        out with it, if any.

        A TCP mapping's reply rule that carried packets means the replier answered.
        A rule deleted by someone else only changes the state: the next packet that
        misses it reaches the controller and installs both again.
        """
        mapping_id = cookies.mapping_id_of(cookie)
        mapping = self._mappings.get(mapping_id) if mapping_id is not None else None
        kind = cookies.kind_of(cookie)
        if mapping is None or kind is None:
            return None
        if kind is RuleKind.REPLY and packet_count and mapping.proto is Proto.TCP:
            tcp.answered(mapping)
        state = self._states[mapping.id].without(kind)
        self._states[mapping.id] = state
        return mapping if reason.timed_out and not state.has_rules else None

    def refused(self, cookie: int) -> Mapping | None:
        """The live mapping whose rule has ``cookie`` (the switch refused that rule); None for any other cookie."""
        mapping_id = cookies.mapping_id_of(cookie)
        return None if mapping_id is None else self._mappings.get(mapping_id)

    def forget(self, mapping: Mapping) -> None:
        """The core removed ``mapping``: its rules leave the switch with the next plan."""
        mapping_id = mapping.id
        if self._mappings.pop(mapping_id, None) is None:
            return
        del self._states[mapping_id]
        self._established.discard(mapping_id)
        if self._pending:
            self._pending.pop(mapping_id, None)
        if self._moved:
            self._moved.pop(mapping_id, None)
        for hop in self._hops(mapping):
            behind = self._behind.get(hop)
            if behind is not None:
                behind.discard(mapping_id)
                if not behind:
                    del self._behind[hop]
        self._deletions.append(rules.delete_mapping(mapping_id))
        if self._changed is not None:
            self._changed.add(mapping_id)

    # --- mappings that never reached the switch ----------------------------------------------------

    def expire(self, now: float, given_up: list[int]) -> list[Mapping]:
        """Mappings to remove because their rules never reached the switch: still PENDING ``PENDING_S``
        after they were made, or waiting for a next hop in ``given_up`` (ARP gave up on it). Also
        refills the budget of rules sent again for neighbours that moved."""
        self._move_credit = MOVES_PER_TICK
        doomed: dict[int, None] = {}
        for hop in given_up:
            for mapping_id in self._behind.get(hop, ()):
                if self._states[mapping_id] is RuleState.PENDING:
                    doomed[mapping_id] = None
                    self._stats.arp["mappings_unreachable"] += 1
        for mapping_id, since in self._pending.items():
            if now - since < PENDING_S:
                break
            doomed[mapping_id] = None
        return [self._mappings[mapping_id] for mapping_id in doomed]

    # --- neighbours that moved ----------------------------------------------------------------------

    def is_behind(self, hop: int) -> bool:
        """True if some mapping's rules send to ``hop``."""
        return hop in self._behind

    def moved(self, hop: int) -> None:
        """``hop`` was learned anew or moved: the rules of the mappings behind it go again (see
        :meth:`send_moved`)."""
        for mapping_id in self._behind.get(hop, ()):
            if self._states[mapping_id].has_rules:  # a PENDING one gets its rules with its first packet
                self._moved[mapping_id] = None

    @property
    def has_moved(self) -> bool:
        return bool(self._moved)

    def send_moved(self, locate: Callable[[int], Location | None]) -> Plan:
        """The rules the switch holds of mappings whose neighbours moved, with the neighbours' new
        locations; at most the budget left for this tick (the rest wait for the next tick)."""
        plan: Plan = []
        while self._moved and self._move_credit > 0:
            mapping_id = next(iter(self._moved))
            del self._moved[mapping_id]
            self._move_credit -= 1
            mapping = self._mappings[mapping_id]
            state = self._states[mapping_id]
            initiator, replier = locate(mapping.initiator), locate(mapping.replier)
            if not state.has_rules or initiator is None or replier is None:
                continue
            original, reply = self._rewrite_rules(mapping, Direction.ORIGINAL, initiator, replier)
            if state is not RuleState.REPLY_ONLY:
                plan.append(original)
            if state is not RuleState.ORIGINAL_ONLY:
                plan.append(reply)
            self._stats.arp["mappings_moved"] += 1
        return plan

    def _note_behind(self, mapping: Mapping) -> None:
        """Index ``mapping`` by the neighbours its rules send to (their moves send its rules again)."""
        for hop in self._hops(mapping):
            behind = self._behind.get(hop)
            if behind is None:
                self._behind[hop] = {mapping.id}
            else:
                behind.add(mapping.id)

    def _hops(self, mapping: Mapping) -> tuple[int, int]:
        """The neighbours the two rules of ``mapping`` send to."""
        return self._hop_of(mapping.initiator), self._hop_of(mapping.replier)

    def take_deletions(self) -> Plan:
        """The deletions of removed mappings' rules not sent yet; they go before anything else."""
        deletions = self._deletions
        if deletions:
            self._deletions = []
        return deletions

    def install_and_send(self, mapping: Mapping, direction: Direction, came_from: Location, goes_to: Location,
                         data: bytes) -> Plan:
        """Both rules of a mapping, then the packet at hand through its direction's rewrite (a new
        mapping's first packet: the original direction's)."""
        plan = self.install(mapping, direction, came_from, goes_to)
        this_direction = plan[0] if direction is Direction.ORIGINAL else plan[1]
        assert isinstance(this_direction, FlowRule)
        return [*plan, PacketOut(data, this_direction.actions, came_from.port)]

    def rules_of(self, mapping: Mapping, initiator: Location, replier: Location) -> tuple[FlowRule, FlowRule]:
        """A mapping's (original, reply) rules as they would be installed now with its ends where said
        (a question: nothing is noted)."""
        return self._rewrite_rules(mapping, Direction.ORIGINAL, initiator, replier, note=False)

    def _timeout(self, mapping: Mapping, note: bool = True) -> int:
        """The idle timeout for ``mapping``'s rules now; with ``note``, TCP mappings given the established
        one are noted (their rules are being sent)."""
        if mapping.proto is not Proto.TCP:
            return self._udp_s
        established = tcp.is_established(mapping)
        if note:
            if established:
                self._established.add(mapping.id)
            else:
                self._established.discard(mapping.id)
        return int(self._timeouts.tcp_established_s) if established else self._transitory_s

    def _rewrite_rules(self, mapping: Mapping, direction: Direction, came_from: Location,
                       goes_to: Location, note: bool = True) -> tuple[FlowRule, FlowRule]:
        """A mapping's (original, reply) rules, given where the packet at hand came from and goes to."""
        if direction is Direction.ORIGINAL:
            initiator, replier = came_from, goes_to
        else:
            initiator, replier = goes_to, came_from
        timeout = self._timeout(mapping, note)
        original = rules.mapping_rewrite(RuleKind.ORIGINAL, mapping.id, mapping.proto, mapping.original,
                                         reverse_key(mapping.reply), initiator.port, self._mac, replier.mac,
                                         replier.port, timeout)
        reply = rules.mapping_rewrite(RuleKind.REPLY, mapping.id, mapping.proto, mapping.reply,
                                      reverse_key(mapping.original), replier.port, self._mac, initiator.mac,
                                      initiator.port, timeout)
        return original, reply
