"""Internet checksum: full computation and incremental update (RFC 1071, RFC 1624).

Rewrites adjust checksums incrementally, as Linux's NAT does, so a packet that
arrived corrupted stays detectably corrupted after translation.
"""

from __future__ import annotations

import struct

from ryu_nat.backend import packet_utils


def checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (ready to store in the header)."""
    return int(packet_utils.checksum(bytes(data)))


def _fold(value: int) -> int:
    while value >> 16:
        value = (value & 0xFFFF) + (value >> 16)
    return value


def adjust(csum: int, old_words: tuple[int, ...], new_words: tuple[int, ...]) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m') over each changed 16-bit word."""
    total = ~csum & 0xFFFF
    for old, new in zip(old_words, new_words):
        total += (~old & 0xFFFF) + new
    return ~_fold(total) & 0xFFFF


def addr_words(addr: int) -> tuple[int, int]:
    """An IPv4 address as the two 16-bit words a checksum sums."""
    return addr >> 16, addr & 0xFFFF


def _sum_words(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    return _fold(sum(struct.unpack(f"!{len(data) // 2}H", data)))


def adjust_bytes(csum: int, old: bytes, new: bytes) -> int:
    """Adjust ``csum`` for a region that changed from ``old`` to ``new``.

    The region must start at an even offset of the checksummed data and keep its
    length; RFC 1624 applied to the region's one's-complement sums.
    """
    if len(old) != len(new):
        raise ValueError("a checksum region must keep its length")
    return adjust(csum, (_sum_words(old),), (_sum_words(new),))
