"""Explaining a packet: what the NAT would do with it, and why, with nothing changed.

The operator describes a packet (protocol, source, destination); :func:`question`
builds it, and the gateway sends it through the same checks and the same
decision as a packet-in (:meth:`ryu_nat.gateway.natpath.NatPath.decide` in its
dry run), so a new reason to drop a packet shows up here as soon as the packet
path has it. The answer (:class:`Explanation`) names the mapping that
translates the packet, or the one it would start, with the rules the switch
holds for it; or why it would be dropped, with what else is known: a redirect on
its port, a drop rule for that port on the switch, the mapping of its channel
that ended (why and when), pieces of datagrams of that source and destination
waiting for the rest. No I/O.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ryu_nat.config import RedirectRule
from ryu_nat.core import checksum
from ryu_nat.core.addresses import Channel, Proto
from ryu_nat.core.packet import TCP_SYN, Datagram, ParseError, parse_ipv4
from ryu_nat.core.table import Mapping, RemovalReason
from ryu_nat.gateway.drops import DropReason
from ryu_nat.openflow.plan import FlowRule

QUESTION_TTL = 64
ICMP_ECHO_REQUEST = 8
_IPV4 = struct.Struct("!BBHHHBBHII")


class Outcome(enum.Enum):
    """What would become of the packet."""

    TRANSLATED = "translated"  # a live mapping rewrites it
    NEW_MAPPING = "new_mapping"  # it would start a mapping (the port shown is one it could get now)
    ADMITTED = "admitted"  # filtering lets it reach a private endpoint's public port, with no mapping of its own
    ANSWERED = "answered"  # for the NAT itself: an echo request the NAT answers
    TIME_EXCEEDED = "time_exceeded"  # its TTL runs out here
    HELD = "held"  # the table is being read back from the switch after a restart: it would wait
    DROPPED = "dropped"  # ``reason`` says why


@dataclass(frozen=True, slots=True)
class Explanation:
    """The answer: the outcome, and everything that went into it."""

    outcome: Outcome
    from_private: bool
    reason: DropReason | None = None
    mapping: Mapping | None = None  # the mapping that translates it, or would (id 0)
    leaves_as: Channel | None = None  # the packet as it would leave
    rule_state: str | None = None  # which of the mapping's rules the switch holds (offload's RuleState)
    rules: tuple[FlowRule, ...] = ()  # the mapping's two rules, as installed now (when both ends are known)
    redirect: RedirectRule | None = None  # the redirect of its destination port, if it has one
    drop_rule: bool = False  # the switch drops its port for a while (inbound guard)
    ended: tuple[Mapping, RemovalReason, float] | None = None  # the last mapping of its channel that ended
    fragments_waiting: int = 0  # datagrams of this source, destination and protocol waiting for pieces


def question(proto: Proto, src: int, dst: int, src_port: int, dst_port: int, tcp_flags: int = TCP_SYN) -> Datagram:
    """The packet a question describes: IPv4 with TTL 64, and a TCP segment (with ``tcp_flags``), a UDP
    datagram, or an ICMP echo request whose id is ``src_port``."""
    if proto is Proto.TCP:
        transport = struct.pack("!HHIIBBHHH", src_port, dst_port, 0, 0, 5 << 4, tcp_flags, 65535, 0, 0)
    elif proto is Proto.UDP:
        transport = struct.pack("!HHHH", src_port, dst_port, 8, 0)
    else:
        transport = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, src_port, 1)
    header = bytearray(_IPV4.pack(0x45, 0, 20 + len(transport), 0, 0, QUESTION_TTL, int(proto), 0, src, dst))
    struct.pack_into("!H", header, 10, checksum.checksum(bytes(header)))
    parsed = parse_ipv4(bytes(header) + transport)
    assert not isinstance(parsed, ParseError), parsed
    return parsed
