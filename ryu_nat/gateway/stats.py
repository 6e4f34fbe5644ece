"""Every counter of the gateway, declared once with its meaning.

Counters that split by a reason are ``collections.Counter`` keyed by the
reason's name; the names each may take are listed beside it (drops: every
:class:`~ryu_nat.gateway.drops.DropReason`). The REST API reads them as they
are; tests assert on their deltas.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ryu_nat.gateway.drops import DropReason

DESCRIPTIONS: dict[str, str] = {
    "packet_ins": "Packet-ins by kind: arp, l2 (between private hosts), private (routed from a private "
                  "port), public (from the uplink), fragment, invalid_ttl, tcp_closing (FIN or RST), "
                  "admitted (inbound traffic that filtering let in), not_ours (another datapath's or a "
                  "non-NAT switch).",
    "mappings_created": "Mappings added, by kind: nat, redirect, hairpin.",
    "mappings_removed": "Mappings removed, by reason: evicted, expired, deleted, host_removed, reset, host_limit.",
    "flow_setups": "Mappings whose two rewrite rules were sent to the switch (reinstalls included).",
    "drops": "Packets dropped, by reason: " + "; ".join(f"{reason.value} ({reason.description})"
                                                        for reason in DropReason) + ".",
    "arp": "ARP and neighbours: requests_answered, requests_sent, replies_learned (new neighbours), queued "
           "(packets waiting for a reply), probes_sent (re-checks of neighbours not confirmed for a minute), "
           "forgotten (neighbours that answered no re-check), mac_changes, mappings_moved (mappings whose rules "
           "were sent again because a neighbour moved), mappings_unreachable (new mappings removed because ARP "
           "gave up on their next hop).",
    "icmp_sent": "ICMP the NAT sent itself: time_exceeded, echo_reply, fragmentation_needed, prohibited "
                 "(destination unreachable, administratively prohibited: a private host's new flow got no "
                 "mapping).",
    "icmp_suppressed": "ICMP errors the NAT did not send because their rate was spent: prohibited.",
    "restore": "Reading the table back from the switch's rules after a restart: runs (completed), restored "
               "(mappings put back from both rules), restored_one_rule (UDP mappings put back from the one rule "
               "left), held (routed packets that waited for it); and rules deleted because they rebuild nothing: "
               "one_rule_missing (TCP), port_owned_twice, overlap, id_reused, outside_layout; unreadable (slices "
               "the switch did not answer readably: their rules deleted).",
    "audit": "Consistency audits of the switch's rules against the table: runs (completed), and findings, each "
             "repaired: orphan_rule, missing_rule, mismatch, port_owned_twice, outside_layout.",
    "handler_errors": "Event handlers that raised (a bug; the controller keeps running).",
    "openflow_errors": "OpenFlow error messages from the switch.",
    "rules_rejected": "Mappings ended because the switch refused one of their rules (an OpenFlow error quoting "
                      "its flow-mod, such as a full table).",
}


@dataclass
class Stats:
    """The gateway's counters; see :data:`DESCRIPTIONS`."""

    packet_ins: Counter[str] = field(default_factory=Counter)
    mappings_created: Counter[str] = field(default_factory=Counter)
    mappings_removed: Counter[str] = field(default_factory=Counter)
    flow_setups: int = 0
    drops: Counter[str] = field(default_factory=Counter)
    arp: Counter[str] = field(default_factory=Counter)
    icmp_sent: Counter[str] = field(default_factory=Counter)
    restore: Counter[str] = field(default_factory=Counter)
    audit: Counter[str] = field(default_factory=Counter)
    icmp_suppressed: Counter[str] = field(default_factory=Counter)
    handler_errors: int = 0
    openflow_errors: int = 0
    rules_rejected: int = 0

    def drop(self, reason: DropReason, count: int = 1) -> None:
        """Count ``count`` packets dropped for ``reason``."""
        self.drops[reason.value] += count

    def as_dict(self) -> dict[str, object]:
        """Counters as plain JSON-ready values."""
        return {name: (dict(sorted(value.items())) if isinstance(value, Counter) else value)
                for name, value in self.__dict__.items()}
