"""The plan: OpenFlow 1.3 messages the gateway wants sent, as frozen dataclasses.

Values compare and print cleanly, so tests assert on them directly or replay
them into a simulated flow table; :mod:`ryu_nat.openflow.encoder` turns them into Ryu
messages. Field names are OXM names as ``ryu.ofproto.ofproto_v1_3_parser.OFPMatch``
takes them; addresses are strings (``'10.0.0.2'``, ``'02:00:00:00:00:01'``).
No Ryu imports.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Union

# Port numbers (OpenFlow 1.3, section 7.2.1): physical and logical ports are below OFPP_MAX,
# the reserved ports above it.
OFPP_MAX = 0xFFFFFF00
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_FLOOD = 0xFFFFFFFB
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_TABLE = 0xFFFFFFF9
OFPP_ANY = 0xFFFFFFFF

TABLE_NAT = 1  # the NAT's rules; frames reach it from table 0, which tests their length

MatchValue = Union[int, str, tuple[int, int]]


def is_physical_port(port: int) -> bool:
    """True for a port number a packet can arrive on: 1 to OFPP_MAX, not 0 nor a reserved port."""
    return 0 < port <= OFPP_MAX


def ipv4_text(addr: int) -> str:
    """An address as the plan writes it (``0x0A000002`` -> ``'10.0.0.2'``); fast: on every set-up's path."""
    return socket.inet_ntoa(addr.to_bytes(4, "big"))


@dataclass(frozen=True, slots=True)
class Match:
    """OXM fields and values; a ``(value, mask)`` tuple is a masked match.

    Builders add the prerequisites OpenFlow 1.3 demands (``eth_type`` before
    IPv4 fields, ``ip_proto`` before ports), or Open vSwitch rejects the rule.
    """

    fields: tuple[tuple[str, MatchValue], ...] = ()

    @classmethod
    def of(cls, **fields: MatchValue | None) -> Match:
        """A match of the given fields, in a stable order; None values are left out."""
        return cls(tuple(sorted((k, v) for k, v in fields.items() if v is not None)))

    def get(self, name: str) -> MatchValue | None:
        for key, value in self.fields:
            if key == name:
                return value
        return None

    def as_dict(self) -> dict[str, MatchValue]:
        return dict(self.fields)


@dataclass(frozen=True, slots=True)
class SetField:
    """Set one header field (``ipv4_src``, ``tcp_dst``, ``eth_dst``, ...)."""

    field: str
    value: int | str


@dataclass(frozen=True, slots=True)
class DecTtl:
    """Decrement the IPv4 TTL; at TTL <= 1 the switch sends an invalid-TTL packet-in instead."""


@dataclass(frozen=True, slots=True)
class Output:
    """Send out of ``port`` (a port number or a reserved port such as ``OFPP_CONTROLLER``)."""

    port: int


@dataclass(frozen=True, slots=True)
class CheckPktLarger:
    """Open vSwitch's packet-length test (a Nicira action): register 0's bit 0 becomes 1 if the
    Ethernet frame is longer than ``pkt_len`` bytes, else 0. A later table matches that bit."""

    pkt_len: int


Action = Union[SetField, DecTtl, Output, CheckPktLarger]


@dataclass(frozen=True, slots=True)
class FlowRule:
    """Add (or replace: same table, match and priority) a rule: apply ``actions``, then, with
    ``goto_table``, go on matching in that (later) table. Rules live in the NAT's table unless
    ``table_id`` says otherwise (table 0 only measures frame lengths: ``rules.size_checks``)."""

    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int
    idle_timeout_s: int = 0
    hard_timeout_s: int = 0
    notify_removed: bool = False
    table_id: int = TABLE_NAT
    goto_table: int | None = None


@dataclass(frozen=True, slots=True)
class FlowDelete:
    """Delete every rule, in every table, whose cookie matches under ``cookie_mask``."""

    cookie: int
    cookie_mask: int


@dataclass(frozen=True, slots=True)
class PacketOut:
    """Send ``data`` (a whole Ethernet frame) through ``actions``, as if it arrived on ``in_port``."""

    data: bytes
    actions: tuple[Action, ...]
    in_port: int = OFPP_CONTROLLER


@dataclass(frozen=True, slots=True)
class SwitchSetup:
    """Switch-wide settings on connect: whole packets to the controller, normal
    fragment handling (every fragment misses the port rules), packet-ins for
    no-match, action and invalid TTL, and flow-removed for idle, hard and delete."""

    miss_send_len: int = 0xFFFF


@dataclass(frozen=True, slots=True)
class Barrier:
    """Everything before is done before anything after."""


Message = Union[FlowRule, FlowDelete, PacketOut, SwitchSetup, Barrier]
Plan = list[Message]
