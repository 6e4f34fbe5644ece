"""Cookie layout: which app owns a rule, what kind of rule it is, and which mapping.

    bits 63..48  APP_TAG (0x4E41, "NA"): ours, so one masked delete clears all our rules
    bits 47..40  rule kind (RuleKind)
    bits 39..0   mapping id for mapping rules; filter rule id for filter rules; protocol << 16 | port for
                 drop rules; 0 otherwise

A flow-removed carries the cookie, so it names its mapping; deleting by
``for_mapping`` with ``MAPPING_MASK`` removes both rules of one mapping;
``mapping_block`` selects both rules of every mapping in a range of ids (the
flow-statistics polls ask for one such slice at a time); ``for_drops`` with
``EXACT_MASK`` selects the drop rules of one public port.
"""

from __future__ import annotations

import enum

APP_TAG = 0x4E41
_TAG_SHIFT = 48
_KIND_SHIFT = 40
_ID_MASK = (1 << _KIND_SHIFT) - 1
ID_MASK = _ID_MASK  # a mapping rule's cookie under this mask is its mapping's id

OURS = APP_TAG << _TAG_SHIFT
OURS_MASK = 0xFFFF << _TAG_SHIFT
MAPPING_MASK = OURS_MASK | _ID_MASK
KIND_MASK = OURS_MASK | 0xFF << _KIND_SHIFT  # with make(kind): every rule of that kind
EXACT_MASK = KIND_MASK | _ID_MASK  # every bit: rules with exactly this cookie


class RuleKind(enum.IntEnum):
    BASE = 1  # table-miss, ARP, uplink catch-all, TCP FIN/RST
    ORIGINAL = 2  # a mapping's original-direction rewrite
    REPLY = 3  # a mapping's reply-direction rewrite
    L2 = 4  # switching between private hosts
    DROP = 5  # short-lived drop of unsolicited inbound traffic
    FILTER = 6  # inbound traffic that filtering lets reach a private endpoint's public port


def make(kind: RuleKind, mapping_id: int = 0) -> int:
    """The cookie of a rule of ``kind`` (for ``mapping_id``, if a mapping rule)."""
    if not 0 <= mapping_id <= _ID_MASK:
        raise ValueError(f"mapping id {mapping_id} does not fit in a cookie")
    return OURS | int(kind) << _KIND_SHIFT | mapping_id


def for_mapping(mapping_id: int) -> int:
    """The cookie value that, under ``MAPPING_MASK``, selects both rules of a mapping."""
    return make(RuleKind.ORIGINAL, mapping_id) & MAPPING_MASK


def for_drops(proto: int, port: int) -> int:
    """The cookie of the drop rules of one public port (of IP protocol ``proto``)."""
    return make(RuleKind.DROP, proto << 16 | port)


def mapping_block(number: int, bits: int) -> tuple[int, int]:
    """(cookie, mask) selecting the ORIGINAL and REPLY rules of the mappings with ids
    ``number << bits`` up to ``(number + 1 << bits) - 1``, and no other rule of ours."""
    if not 0 <= bits <= _KIND_SHIFT or not 0 <= number << bits <= _ID_MASK:
        raise ValueError(f"block {number} of 2**{bits} mapping ids does not fit in a cookie")
    # ORIGINAL (2) and REPLY (3) differ only in the kind's lowest bit: leave it out of the mask.
    assert RuleKind.ORIGINAL | 1 == RuleKind.REPLY
    kind_mask = 0xFE << _KIND_SHIFT
    id_mask = _ID_MASK & ~((1 << bits) - 1)
    return make(RuleKind.ORIGINAL, number << bits), OURS_MASK | kind_mask | id_mask


def is_ours(cookie: int) -> bool:
    return cookie & OURS_MASK == OURS


def kind_of(cookie: int) -> RuleKind | None:
    try:
        return RuleKind((cookie >> _KIND_SHIFT) & 0xFF) if is_ours(cookie) else None
    except ValueError:
        return None


def mapping_id_of(cookie: int) -> int | None:
    """The mapping a mapping rule's cookie names; None for other cookies."""
    if kind_of(cookie) in (RuleKind.ORIGINAL, RuleKind.REPLY):
        return cookie & _ID_MASK
    return None
