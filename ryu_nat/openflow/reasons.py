"""OpenFlow 1.3 reason codes of what the switch reports: packet-in and flow-removed (sections 7.4.1, 7.4.2),
and the rule an error message names (7.4.4).

The adapter turns the numbers in Ryu's messages into these; the gateway reads
names, not numbers. No Ryu imports.
"""

from __future__ import annotations

import enum
import struct

OFP_VERSION = 4  # OpenFlow 1.3
OFPT_FLOW_MOD = 14
_QUOTED_FLOW_MOD = struct.Struct("!BB6xQ")  # version, type, (length, xid), cookie


class PacketInReason(enum.IntEnum):
    """Why the switch sent a packet up."""

    NO_MATCH = 0
    ACTION = 1
    INVALID_TTL = 2

    @classmethod
    def of(cls, code: int) -> PacketInReason:
        """The reason for ``code``; a code OpenFlow 1.3 does not define reads as no-match."""
        try:
            return cls(code)
        except ValueError:
            return cls.NO_MATCH


class FlowRemovedReason(enum.IntEnum):
    """Why a rule left the switch."""

    IDLE_TIMEOUT = 0
    HARD_TIMEOUT = 1
    DELETE = 2
    GROUP_DELETE = 3

    @classmethod
    def of(cls, code: int) -> FlowRemovedReason:
        """The reason for ``code``; a code OpenFlow 1.3 does not define reads as a deletion."""
        try:
            return cls(code)
        except ValueError:
            return cls.DELETE

    @property
    def timed_out(self) -> bool:
        """True if the rule's own timeout removed it (not someone's delete)."""
        return self in (FlowRemovedReason.IDLE_TIMEOUT, FlowRemovedReason.HARD_TIMEOUT)


def refused_cookie(quote: bytes) -> int | None:
    """The cookie of the OpenFlow 1.3 flow-mod an error message quotes (the switch refused it); None if the
    quote (the error's data: at least the request's first 64 bytes, from a switch we do not trust to get it
    right) is too short or quotes something else."""
    if len(quote) < _QUOTED_FLOW_MOD.size:
        return None
    version, msg_type, cookie = _QUOTED_FLOW_MOD.unpack_from(quote)
    return int(cookie) if version == OFP_VERSION and msg_type == OFPT_FLOW_MOD else None
