"""Every reason the gateway drops a packet, each with its meaning: the ``drops`` counters.

Parse, fragment and add errors of the core become drop reasons of the same
name (:meth:`DropReason.of`). tests/unit/test_drops.py checks that every reason
has a description, that every description has a reason, and that each reason
is counted by some packet. No I/O.
"""

from __future__ import annotations

import enum

from ryu_nat.core.fragments import FragmentError
from ryu_nat.core.packet import ParseError
from ryu_nat.core.table import AddError


class DropReason(enum.Enum):
    """Why a packet went no further; values are counter names."""

    BAD_IN_PORT = "bad_in_port"
    BAD_SOURCE_MAC = "bad_source_mac"
    TRUNCATED = "truncated"
    NOT_IPV4 = "not_ipv4"
    BAD_HEADER = "bad_header"
    BAD_IP_CHECKSUM = "bad_ip_checksum"
    BAD_TRANSPORT = "bad_transport"
    BAD_ICMP_CHECKSUM = "bad_icmp_checksum"
    BAD_EMBEDDED_CHECKSUM = "bad_embedded_checksum"
    BAD_ARP = "bad_arp"
    FRAGMENT_OVERLAP = "fragment_overlap"
    FRAGMENT_TOO_BIG = "fragment_too_big"
    FRAGMENT_MALFORMED = "fragment_malformed"
    FRAGMENT_UNALIGNED = "fragment_unaligned"
    FRAGMENT_NO_ROOM = "fragment_no_room"
    DONT_FRAGMENT = "dont_fragment"
    FRAGMENT_EVICTED = "fragment_evicted"
    FRAGMENT_TIMEOUT = "fragment_timeout"
    OVERLAP = "overlap"
    CANNOT_NAT = "cannot_nat"
    PORTS_EXHAUSTED = "ports_exhausted"
    TABLE_FULL = "table_full"
    HOST_LIMIT = "host_limit"
    NOT_FOR_US = "not_for_us"
    SPOOFED_SOURCE = "spoofed_source"
    PRIVATE_DESTINATION = "private_destination"
    LOCAL = "local"
    UNSOLICITED = "unsolicited"
    HAIRPIN_FILTERED = "hairpin_filtered"
    UNTRANSLATED_ICMP_ERROR = "untranslated_icmp_error"
    TTL_EXCEEDED = "ttl_exceeded"
    ARP_TIMEOUT = "arp_timeout"
    ARP_QUEUE_FULL = "arp_queue_full"
    RESTORE_QUEUE_FULL = "restore_queue_full"

    @classmethod
    def of(cls, error: ParseError | FragmentError | AddError) -> DropReason:
        """The drop reason a core error stands for (same name)."""
        return cls(error.value)

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


# No mapping could be made for these: the private sender is told, destination unreachable, communication
# administratively prohibited (RFC 5508 REQ-8, RFC 6888 REQ-11b).
PROHIBITED = frozenset({DropReason.PORTS_EXHAUSTED, DropReason.TABLE_FULL, DropReason.HOST_LIMIT})

DESCRIPTIONS: dict[DropReason, str] = {
    DropReason.BAD_IN_PORT: "a packet-in without a physical in_port: none, 0, or a reserved port (CONTROLLER, "
                            "LOCAL, ANY, ...)",
    DropReason.BAD_SOURCE_MAC: "sent from (or, in ARP, claiming) a group (broadcast or multicast), zero or the "
                               "NAT's own Ethernet address",
    DropReason.TRUNCATED: "shorter than its headers say",
    DropReason.NOT_IPV4: "neither IPv4 nor ARP (another ethertype or IP version)",
    DropReason.BAD_HEADER: "an IPv4 header whose length fields disagree",
    DropReason.BAD_IP_CHECKSUM: "an IPv4 header whose checksum is wrong (RFC 1812 5.2.2)",
    DropReason.BAD_TRANSPORT: "a TCP, UDP or ICMP header missing or inconsistent",
    DropReason.BAD_ICMP_CHECKSUM: "an ICMP error whose checksum is wrong (RFC 5508 REQ-3)",
    DropReason.BAD_EMBEDDED_CHECKSUM: "an ICMP error quoting an IPv4 header whose checksum is wrong "
                                      "(RFC 5508 REQ-3a)",
    DropReason.BAD_ARP: "ARP that is not for IPv4 over Ethernet",
    DropReason.FRAGMENT_OVERLAP: "a fragment overlapped another piece of its datagram, or disagreed on its end",
    DropReason.FRAGMENT_TOO_BIG: "fragments of a datagram over 65,535 bytes",
    DropReason.FRAGMENT_MALFORMED: "a reassembled datagram that does not parse",
    DropReason.FRAGMENT_UNALIGNED: "a fragment other than the last that is not a whole number of 8-byte blocks",
    DropReason.FRAGMENT_NO_ROOM: "a fragment the full cache had no room for: what it holds may not be displaced "
                                 "by it",
    DropReason.DONT_FRAGMENT: "larger than the MTU of the side it leaves by, with Don't Fragment set: the "
                              "sender gets an ICMP fragmentation needed where one may be sent (RFC 1191)",
    DropReason.FRAGMENT_EVICTED: "a datagram under reassembly, dropped to make room for pieces that may displace it "
                                 "(counted once per datagram)",
    DropReason.FRAGMENT_TIMEOUT: "a datagram whose pieces did not all arrive within 10 s (counted once per datagram)",
    DropReason.OVERLAP: "a new mapping would take a channel of another mapping",
    DropReason.CANNOT_NAT: "no mapping may be made: a broadcast, multicast, loopback, link-local or unspecified "
                           "address, port 0, an ICMP message that is not a query, or a later fragment",
    DropReason.PORTS_EXHAUSTED: "no free public port was found for a new mapping",
    DropReason.TABLE_FULL: "the protocol's table is full and the new mapping may not evict one (when_full = "
                           "refuse, or a mapping a packet from outside would create)",
    DropReason.HOST_LIMIT: "the private host has max_mappings_per_host mappings of the protocol (when_full = "
                           "refuse)",
    DropReason.NOT_FOR_US: "from the uplink, but not addressed to the NAT's MAC and public address",
    DropReason.SPOOFED_SOURCE: "a source address that cannot be on the side it came from, or is no one host's: the "
                               "NAT's own, a network or broadcast address, multicast, loopback or unspecified",
    DropReason.PRIVATE_DESTINATION: "from a private host to another private host, sent to the NAT's MAC",
    DropReason.LOCAL: "addressed to the NAT itself, and not an echo request",
    DropReason.UNSOLICITED: "inbound with no mapping and no redirect, and not let in by filtering (refused by the "
                            "controller, or by the switch's short-lived drop rules: those are counted when each "
                            "rule ends)",
    DropReason.HAIRPIN_FILTERED: "from a private host to another's public port, which that host's filtering "
                                 "does not let it reach",
    DropReason.UNTRANSLATED_ICMP_ERROR: "an ICMP error about no conversation the NAT knows",
    DropReason.TTL_EXCEEDED: "its TTL ran out here, and no time-exceeded may be sent about it (RFC 1812 4.3.2.7: "
                             "an ICMP error, a later fragment, or to or from an address that is not one host)",
    DropReason.ARP_TIMEOUT: "it waited for a next hop that never answered ARP",
    DropReason.ARP_QUEUE_FULL: "too many packets already wait for that next hop, or for next hops in all",
    DropReason.RESTORE_QUEUE_FULL: "it arrived while the table was read back from the switch after a restart, "
                                   "and too many packets already waited for that",
}
