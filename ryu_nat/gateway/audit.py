"""The audit: the switch's rules compared with the table, a slice at a time, and each disagreement repaired.

It runs every ``audit_interval`` seconds and when the operator asks. Each slice
of our cookies that the scan reads (:mod:`ryu_nat.openflow.scan`) is compared
with the mappings whose ids it covers, and what they hold as their rules'
state (:mod:`ryu_nat.gateway.offload`). Each finding is counted
(:class:`Finding`) and repaired:

- an orphan rule (its mapping is gone), a rule that gives a public port held
  by another private endpoint, a rule of ours in no shape the NAT installs:
  deleted;
- a rule the state says is on the switch and is not: both rules installed
  again (where the mapping's two ends are known; otherwise the state learns the
  rule is gone, and the mapping's next packet installs both, as after an idle
  rule);
- a rule whose match or rewrite is not its mapping's (or a second rule of one
  kind): deleted, and the state learns it is gone, so the next packet installs
  it again. Installing at once would race the flow-removed that the deletion
  brings.

A mapping installed or removed while a slice's request was out is left to the
next audit: the reply may show it either way. No I/O.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Mapping as MappingOf, Set
from dataclasses import dataclass, field

from ryu_nat.core.addresses import Proto, reverse_key, unpack_key
from ryu_nat.core.ports import owner_key
from ryu_nat.core.table import Mapping
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.flowentries import SwitchRule
from ryu_nat.openflow.plan import FlowDelete, Plan
from ryu_nat.openflow.rules import Rewrite


PortHolder = Callable[[Proto, int], "int | None"]
"""(protocol, public port) -> the private endpoint (packed, address << 16 | port) that holds it, if any."""


class Finding(enum.Enum):
    """A disagreement between the switch and the table; values are counter names (``audit`` in the stats)."""

    ORPHAN_RULE = "orphan_rule"  # a mapping rule whose mapping is gone: deleted
    MISSING_RULE = "missing_rule"  # a rule the mapping's state says is there, and is not: installed again
    MISMATCH = "mismatch"  # a rule whose match or rewrite is not its mapping's: deleted, installed again later
    PORT_OWNED_TWICE = "port_owned_twice"  # a rule that gives another endpoint's public port: deleted
    OUTSIDE_LAYOUT = "outside_layout"  # a rule of ours in no shape the NAT installs: deleted


@dataclass(frozen=True, slots=True)
class Expected:
    """A live mapping, and which of its rules its state says the switch holds."""

    mapping: Mapping
    original: bool
    reply: bool


@dataclass(slots=True)
class Verdict:
    """The repairs one slice needs, and what was found."""

    deletions: Plan = field(default_factory=list)
    reinstall: list[Mapping] = field(default_factory=list)  # both rules, installed again
    gone: list[tuple[Mapping, RuleKind]] = field(default_factory=list)  # a rule the state must learn is gone
    findings: Counter[Finding] = field(default_factory=Counter)

    def _delete(self, cookie: int, finding: Finding) -> None:
        self.findings[finding] += 1
        delete = FlowDelete(cookie, cookies.EXACT_MASK)
        if delete not in self.deletions:
            self.deletions.append(delete)


def compare(switch_rules: Iterable[SwitchRule], expected: MappingOf[int, Expected], changed: Set[int],
            router_mac: str, public_ip: int, holder: PortHolder) -> Verdict:
    """What one slice's rules (every rule of ours with a cookie in it) and ``expected`` (every live mapping
    with rules whose id it covers) disagree on, and its repairs; ids in ``changed`` are left alone."""
    verdict = Verdict()
    agreeing: Counter[tuple[int, RuleKind]] = Counter()
    for rule in switch_rules:
        kind, mapping_id = cookies.kind_of(rule.cookie), cookies.mapping_id_of(rule.cookie)
        if kind in rules.SESSION_KINDS or mapping_id in changed:
            continue
        want = expected.get(mapping_id) if mapping_id else None
        flow = rule.as_rule()
        rewrite = None if flow is None or kind is None else rules.read_rewrite(flow, router_mac)
        if rewrite is not None and want is not None and _agrees(rewrite, want.mapping):
            agreeing[(want.mapping.id, rewrite.kind)] += 1
            continue
        if want is not None:
            finding = Finding.MISMATCH
        elif rewrite is not None and _takes_port(rewrite, public_ip, holder):
            finding = Finding.PORT_OWNED_TWICE
        else:
            finding = Finding.ORPHAN_RULE if rewrite is not None else Finding.OUTSIDE_LAYOUT
        verdict._delete(rule.cookie, finding)
        if want is not None and kind is not None:
            verdict.gone.append((want.mapping, kind))
    for mapping_id, want in expected.items():
        if mapping_id in changed:
            continue
        missing = False
        for kind, held in ((RuleKind.ORIGINAL, want.original), (RuleKind.REPLY, want.reply)):
            found = agreeing[(mapping_id, kind)]
            if found > 1:
                verdict._delete(cookies.make(kind, mapping_id), Finding.MISMATCH)
                verdict.gone.append((want.mapping, kind))
            elif held and not found and (want.mapping, kind) not in verdict.gone:
                verdict.findings[Finding.MISSING_RULE] += 1
                missing = True
        if missing:
            verdict.reinstall.append(want.mapping)
    return verdict


def _agrees(rewrite: Rewrite, mapping: Mapping) -> bool:
    """The rule matches its mapping's channel of its kind, and rewrites it to the other one reversed."""
    if rewrite.proto is not mapping.proto:
        return False
    if rewrite.kind is RuleKind.ORIGINAL:
        return rewrite.arriving == mapping.original and rewrite.leaving == reverse_key(mapping.reply)
    return rewrite.arriving == mapping.reply and rewrite.leaving == reverse_key(mapping.original)


def _takes_port(rewrite: Rewrite, public_ip: int, holder: PortHolder) -> bool:
    """True if the rule sends packets from, or delivers packets to, a public port that another private
    endpoint holds."""
    src, dst, src_port, dst_port = unpack_key(rewrite.arriving)
    new_src, new_dst, new_src_port, new_dst_port = unpack_key(rewrite.leaving)
    if new_src == public_ip and src != public_ip:
        port, private = new_src_port, owner_key(src, src_port)
    elif dst == public_ip and new_dst != public_ip:
        port, private = dst_port, owner_key(new_dst, new_dst_port)
    else:
        return False
    owner = holder(rewrite.proto, port)
    return owner is not None and owner != private
