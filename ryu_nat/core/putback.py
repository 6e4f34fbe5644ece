"""Mappings put back into a :class:`~ryu_nat.core.nat.Nat`, id and all, after a restart.

What the switch's rules show of a mapping (:mod:`ryu_nat.gateway.restore`
reads them) is put back as it was: both channels, and the public ports it
held. What would break the table's rules (a channel taken twice, a port held by
two private endpoints, an id not above every id given out) is refused and
changes nothing. No I/O.
"""

from __future__ import annotations

import enum

from ryu_nat.core.addresses import Proto, unpack_key
from ryu_nat.core.nat import Nat
from ryu_nat.core.ports import PortAllocator, owner_key
from ryu_nat.core.table import HOLDS_TARGET_PORT, Mapping, MappingKind


class RestoreError(enum.Enum):
    """Why a mapping read back from the switch was not put back; values are counter names."""

    OVERLAP = "overlap"  # a channel of it belongs to a mapping put back before it
    PORT_OWNED_TWICE = "port_owned_twice"  # its public port is another endpoint's or a redirect's, or its
    # private endpoint already holds another port (one port per endpoint, RFC 4787 REQ-1)
    ID_REUSED = "id_reused"  # an id at or below one the table already gave out


def restore(nat: Nat, mapping: Mapping) -> RestoreError | None:
    """Put back ``mapping``: both channels, and the public port of a source NAT or hairpin mapping (a
    hairpin to another host's mapping holds that host's port too); new mappings get ids above it. Ids
    must come in increasing order, above every id the table gave out."""
    if mapping.id <= nat.table.last_id:
        return RestoreError.ID_REUSED
    ports, proto = nat.ports, mapping.proto
    owner = port = target = target_port = 0
    if mapping.kind is not MappingKind.REDIRECT:
        src, _, src_port, dst_port = unpack_key(mapping.original)
        owner, port = owner_key(src, src_port), mapping.reply & 0xFFFF
        if not _may_hold(ports, proto, owner, port):
            return RestoreError.PORT_OWNED_TWICE
        if mapping.kind is MappingKind.HAIRPIN and not ports.is_reserved(proto, dst_port):
            reply_src, _, reply_src_port, _ = unpack_key(mapping.reply)
            target, target_port = owner_key(reply_src, reply_src_port), dst_port
            if not _may_hold(ports, proto, target, target_port):
                return RestoreError.PORT_OWNED_TWICE
    if nat.table.insert(mapping) is not None:
        return RestoreError.OVERLAP
    if mapping.kind is not MappingKind.REDIRECT:
        ports.acquire(proto, owner, port)
    if target:
        mapping.flags |= HOLDS_TARGET_PORT
        ports.acquire(proto, target, target_port)
    nat.filter.added(mapping)
    nat.ids_above(mapping.id)
    return None


def _may_hold(ports: PortAllocator, proto: Proto, owner: int, port: int) -> bool:
    """Could ``owner`` hold ``port`` (one port per endpoint, RFC 4787 REQ-1; none of a redirect's)?"""
    held, holder = ports.port_of(proto, owner), ports.owner_of(proto, port)
    return held in (None, port) and holder in (None, owner) and not ports.is_reserved(proto, port)
