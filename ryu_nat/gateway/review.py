"""Review: the switch's rules read back (after a restart, and in audits) or refused, and packets explained.

The dispatcher composes the parts for the packet path; this composes the same
parts for what looks at the gateway from outside it: the rules an earlier run
left, put back into the table (:mod:`ryu_nat.gateway.restore`), the switch's
rules compared with the table (:mod:`ryu_nat.gateway.audit`), and a packet
described by the operator taken through the packet path's checks and decision in
a dry run (:mod:`ryu_nat.gateway.explain`). Like the dispatcher it owns no
state; no part calls another. No I/O; never yields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from ryu_nat.config import NatConfig
from ryu_nat.core.addresses import Channel, Proto, Subnet, reverse_key
from ryu_nat.core.filtering import Admitted, admitted_datagram
from ryu_nat.core.nat import Direction, Translated
from ryu_nat.core.neighbours import Location
from ryu_nat.core.packet import Datagram
from ryu_nat.core.table import Mapping
from ryu_nat.gateway import audit
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.explain import Explanation, Outcome
from ryu_nat.gateway.guard import InboundGuard
from ryu_nat.gateway.local import LocalTraffic
from ryu_nat.gateway.natpath import NatPath, Verdict
from ryu_nat.gateway.neighbours import Neighbourhood
from ryu_nat.gateway.offload import Offload
from ryu_nat.gateway.reassembly import Reassembly
from ryu_nat.gateway.restore import Restore, RestoreOutcome
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.flowentries import SwitchRule
from ryu_nat.openflow.plan import Plan


Route = Callable[[Location, Datagram, bytes, float, bool], Plan]
"""The dispatcher's way with a routed datagram: (came from, datagram, frame, now, from a private host) -> plan."""


class Review:
    """Restore, audit and explain, over the gateway's parts."""

    def __init__(self, config: NatConfig, stats: Stats, restore: Restore, nat: NatPath, offload: Offload,
                 neighbours: Neighbourhood, fragments: Reassembly, guard: InboundGuard, local: LocalTraffic,
                 route: Route) -> None:
        self._mac = config.router_mac
        self._public = Subnet.of(config.public)
        self._private = Subnet.of(config.private)
        self._stats = stats
        self._restore = restore
        self._nat = nat
        self._offload = offload
        self._neighbours = neighbours
        self._fragments = fragments
        self._guard = guard
        self._local = local
        self._route = route

    # --- after a restart ---------------------------------------------------------------------

    @property
    def restoring(self) -> bool:
        """True from a connect with an empty table until the switch's rules are all read back: routed
        packets wait meanwhile (:mod:`ryu_nat.gateway.restore`)."""
        return self._restore.active

    def restore_slice(self, switch_rules: Sequence[SwitchRule], now: float) -> Plan:
        """One slice of the rules an earlier run left (all of ours with a cookie in it): its mappings put back,
        in id order, rules and all; what rebuilds nothing deleted."""
        reading = self._restore.read(switch_rules, now)
        plan = reading.deletions
        for found in reading.candidates:
            if self._offload.state(found.mapping.id) is not None:
                continue  # put back when it was read before a reconnect
            refused = self._nat.restore(found.mapping)
            if refused is None:
                self._offload.adopt(found.mapping, found.original, found.reply, found.established)
                whole = found.original and found.reply
                self._restore.count(RestoreOutcome.RESTORED if whole else RestoreOutcome.RESTORED_ONE_RULE)
            else:
                plan.append(rules.delete_mapping(found.mapping.id))
                self._restore.count(RestoreOutcome(refused.value), found.original + found.reply)
        self._nat.ids_above(reading.last_id)  # ids of rules deleted unread are not given out either
        return self._finish(plan)

    def restore_unreadable(self, cookie: int, cookie_mask: int) -> Plan:
        """A slice the switch would not give readably: its rules rebuild nothing, so they go."""
        return self._finish(self._restore.unreadable(cookie, cookie_mask))

    def restore_done(self, now: float) -> Plan:
        """Every slice is in: the table is whole, and the packets that waited for it are handled, in order."""
        plan: Plan = []
        for held in self._restore.finish():
            plan += self._route(held.came_from, held.datagram, held.data, now, held.from_private)
        return self._finish(plan)

    # --- audits ------------------------------------------------------------------------------

    def audit_watch(self) -> None:
        """A request for a slice goes out now: note which mappings' rules change until its reply is in."""
        self._offload.watch()

    def audit_crowded(self, first_id: int, last_id: int, limit: int) -> bool:
        """True if more than ``limit`` mappings with rules have ids from ``first_id`` to ``last_id``."""
        return len(self._nat.offloaded_between(first_id, last_id, limit + 1)) > limit

    def audit_slice(self, mapping_ids: tuple[int, int] | None, switch_rules: Sequence[SwitchRule], limit: int) -> Plan:
        """One slice of our rules compared with the live mappings of its ids (at most ``limit``); the repairs
        (see :mod:`ryu_nat.gateway.audit`)."""
        expected: dict[int, audit.Expected] = {}
        for mapping in [] if mapping_ids is None else self._nat.offloaded_between(*mapping_ids, limit):
            state = self._offload.state(mapping.id)
            if state is not None:
                expected[mapping.id] = audit.Expected(mapping, state.holds(RuleKind.ORIGINAL),
                                                      state.holds(RuleKind.REPLY))
        verdict = audit.compare(switch_rules, expected, self._offload.changed(), self._mac, self._public.address,
                                self._nat.port_owner)
        plan = verdict.deletions
        for mapping, kind in verdict.gone:
            self._offload.rule_gone(mapping, kind)
        for mapping in verdict.reinstall:
            initiator, replier = self._neighbours.locate(mapping.initiator), self._neighbours.locate(mapping.replier)
            if initiator is not None and replier is not None:
                plan += self._offload.install(mapping, Direction.ORIGINAL, initiator, replier)
            else:
                self._offload.rule_gone(mapping, RuleKind.ORIGINAL)
                self._offload.rule_gone(mapping, RuleKind.REPLY)
        for finding, count in verdict.findings.items():
            self._stats.audit[finding.value] += count
        return self._finish(plan)

    def rule_refused(self, cookie: int, now: float) -> Plan:
        """The switch refused our rule with ``cookie`` (an OpenFlow error quoted its flow-mod, e.g. a full
        table): a live mapping whose rule it was would wait for a flow-removed that never comes, so it ends as
        one whose rules never reached the switch (its other rule deleted, its port quarantined as usual).
        Any other cookie changes nothing."""
        mapping = self._offload.refused(cookie)
        if mapping is None:
            return []
        self._stats.rules_rejected += 1
        self._nat.end(mapping, now)
        return self._finish([])

    # --- explaining a packet -------------------------------------------------------------------

    def explain(self, d: Datagram, now: float) -> Explanation:
        """What the NAT would do with ``d`` (a whole datagram, as if routed to it now) and why: the checks and
        the decision of a packet-in, in a dry run; nothing changes (see :mod:`ryu_nat.gateway.explain`)."""
        from_private = self._private.contains(d.src)
        proto = Proto(d.proto)
        redirect = self._nat.redirect(proto, d.dst_port) if d.dst == self._public.address else None
        ended = self._nat.ended(proto, d.key)
        known = Explanation(Outcome.DROPPED, from_private, redirect=redirect,
                            ended=None if ended is None else (ended.mapping, ended.reason, ended.at),
                            fragments_waiting=self._fragments.waiting(d.src, d.dst, d.proto))
        refused = self._nat.refusal(d, from_private)
        if refused is not None:
            return replace(known, reason=refused)
        if self._restore.active:
            return replace(known, outcome=Outcome.HELD)
        decision = self._nat.decide(d, from_private, now, dry_run=True)
        match decision:
            case Translated() | Mapping():
                return self._explain_mapping(known, decision)
            case Admitted():
                return replace(known, outcome=Outcome.ADMITTED, leaves_as=admitted_datagram(d, decision).channel)
            case Verdict.TIME_EXCEEDED:
                return replace(known, outcome=Outcome.TIME_EXCEEDED)
            case Verdict.UNSOLICITED if proto is not Proto.ICMP:
                return replace(known, reason=DropReason.UNSOLICITED, drop_rule=self._guard.dropping(proto, d.dst_port))
            case Verdict.FOR_THE_NAT | Verdict.UNSOLICITED:  # the NAT answers ICMP to it, or drops it
                answered = self._local.answers(d)
                return replace(known, outcome=Outcome.ANSWERED if answered else Outcome.DROPPED,
                               reason=None if answered else DropReason.LOCAL)
            case DropReason():
                return replace(known, reason=decision)

    def _explain_mapping(self, known: Explanation, decision: Translated | Mapping) -> Explanation:
        """The mapping that translates the packet, or would be made for it, with its rules on the switch."""
        if isinstance(decision, Translated):
            mapping, outcome, leaves_as = decision.mapping, Outcome.TRANSLATED, decision.packet.channel
        else:
            mapping, outcome = decision, Outcome.NEW_MAPPING
            leaves_as = Channel.from_key(mapping.proto, reverse_key(mapping.reply))  # a first packet is an original
        state = self._offload.state(mapping.id) if mapping.id else None
        initiator, replier = self._neighbours.locate(mapping.initiator), self._neighbours.locate(mapping.replier)
        installed = () if state is None or initiator is None or replier is None else \
            self._offload.rules_of(mapping, initiator, replier)
        return replace(known, outcome=outcome, mapping=mapping, leaves_as=leaves_as,
                       rule_state=None if state is None else state.value, rules=installed)

    def _finish(self, plan: Plan) -> Plan:
        """As the dispatcher's: deletions of removed mappings' rules first (putting one back may evict one)."""
        deletions = self._offload.take_deletions()
        return [*deletions, *plan] if deletions else plan
