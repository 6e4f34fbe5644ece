"""TCP connection tracking, as far as a NAT needs it: which idle timeout a TCP mapping lives by.

RFC 7857 section 2.1 (after RFC 6146's figure), reduced to what changes a timeout:

    SYN ──► INIT ──the replier's SYN (or any answer)──► ESTABLISHED ──FIN both ways, or RST──► TRANSITORY
             │                                               ▲                                  │
             └──RST──► TRANSITORY                            └────────────a new SYN─────────────┘

INIT and TRANSITORY live by the transitory timeout (a connection seen only as a
SYN is half open: RFC 5382 REQ-5), ESTABLISHED by the established one. One FIN
alone changes nothing; after an RST the connection stays transitory while
packets still flow, in both directions (RFC 7857 section 2.2). The state is
bits of :attr:`Mapping.flags`. No I/O.
"""

from __future__ import annotations

import enum

from ryu_nat.core.packet import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from ryu_nat.core.table import ANSWERED, FIN_ORIGINAL, FIN_REPLY, RESET, TRANSITORY, Mapping

WATCHED_FLAGS = TCP_SYN | TCP_FIN | TCP_RST
_BOTH_FINS = FIN_ORIGINAL | FIN_REPLY


class TcpChange(enum.Enum):
    """A change of a TCP mapping's timeout that a packet made."""

    ANSWERED = "answered"  # the replier's SYN: INIT -> ESTABLISHED
    TRANSITORY = "transitory"  # FIN both ways, or an RST
    REOPENED = "reopened"  # a new SYN on a transitory mapping: ESTABLISHED again (RFC 5382 REQ-5)


def track(mapping: Mapping, original: bool, tcp_flags: int) -> TcpChange | None:
    """Record a segment with ``tcp_flags`` that travelled ``mapping``'s original channel (or its reply
    channel); the change of timeout it makes, if any."""
    flags = mapping.flags
    if tcp_flags & TCP_RST:
        mapping.flags = flags | RESET | TRANSITORY
        return None if flags & TRANSITORY else TcpChange.TRANSITORY
    if tcp_flags & TCP_SYN and not tcp_flags & TCP_FIN:
        if flags & TRANSITORY and not tcp_flags & TCP_ACK:
            mapping.flags = ANSWERED
            return TcpChange.REOPENED
        if not original and not flags & (ANSWERED | TRANSITORY):
            mapping.flags = flags | ANSWERED
            return TcpChange.ANSWERED
        return None
    if tcp_flags & TCP_FIN:
        flags |= FIN_ORIGINAL if original else FIN_REPLY
        if flags & _BOTH_FINS == _BOTH_FINS and not flags & TRANSITORY:
            mapping.flags = flags | TRANSITORY
            return TcpChange.TRANSITORY
        mapping.flags = flags
    return None


def answered(mapping: Mapping) -> None:
    """The replier's side carried packets (the switch counted them): the connection was established.

    A transitory mapping stays transitory."""
    if not mapping.flags & TRANSITORY:
        mapping.flags |= ANSWERED


def is_established(mapping: Mapping) -> bool:
    """True for an answered TCP connection that is not closing: it lives by the established timeout."""
    return mapping.flags & (ANSWERED | TRANSITORY) == ANSWERED
