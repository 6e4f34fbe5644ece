"""Every counter of the gateway, declared once with its meaning.

Counters that split by a reason are ``collections.Counter`` keyed by the
reason's name; the names each may take are listed beside it. The REST API reads
them as they are; tests assert on their deltas.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

DESCRIPTIONS: dict[str, str] = {
    "packet_ins": "Packet-ins by kind: arp, l2 (between private hosts), private (routed from a private "
                  "port), public (from the uplink), fragment, invalid_ttl, tcp_closing (FIN or RST), "
                  "not_ours (another datapath's or a non-NAT switch).",
    "mappings_created": "Mappings added, by kind: nat, redirect, hairpin.",
    "mappings_removed": "Mappings removed, by reason: evicted, expired, deleted, host_removed, reset.",
    "flow_setups": "Mappings whose two rewrite rules were sent to the switch (reinstalls included).",
    "drops": "Packets dropped, by reason: parse errors (truncated, not_ipv4, bad_header, bad_ip_checksum, "
             "bad_transport), "
             "unsolicited (inbound with no mapping and no redirect), untranslated_icmp_error, add errors "
             "(overlap, cannot_nat, ports_exhausted), not_for_us, private_destination, local (to the NAT "
             "itself, not an echo request), fragment errors, arp_timeout (waiting for a next hop), "
             "arp_queue_full, spoofed_source, no_route.",
    "arp": "ARP: requests_answered, requests_sent, replies_learned, queued (packets waiting for a reply).",
    "icmp_sent": "ICMP the NAT sent itself: time_exceeded, echo_reply.",
    "handler_errors": "Event handlers that raised (a bug; the controller keeps running).",
    "openflow_errors": "OpenFlow error messages from the switch.",
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
    handler_errors: int = 0
    openflow_errors: int = 0

    def as_dict(self) -> dict[str, object]:
        """Counters as plain JSON-ready values."""
        return {name: (dict(sorted(value.items())) if isinstance(value, Counter) else value)
                for name, value in self.__dict__.items()}
