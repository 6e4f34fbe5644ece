"""Bounded IPv4 reassembly, and fragmentation of a translated datagram.

Only the first fragment of a datagram carries its ports, so a fragmented
datagram is translated whole: pieces wait here (like mirage-nat's
``Fragments.Cache``) until the datagram is complete, and the translated result
is cut again at the size its sender used. Overlapping pieces drop the datagram
(RFC 5722's rule, applied to IPv4). Bounded in datagrams, bytes and time. No I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import cachetools

from ryu_nat.core import checksum
from ryu_nat.core.packet import IPV4_MIN_HEADER_LEN, Datagram, ParseError, parse_ipv4

MAX_DATAGRAM_LEN = 65535
_IP_FLAGS_MF = 0x2000


class FragmentError(enum.Enum):
    """Why a fragment ended its datagram; values are counter names."""

    OVERLAP = "fragment_overlap"  # pieces overlapped or disagreed on the end
    TOO_BIG = "fragment_too_big"  # the datagram would exceed 65535 bytes
    MALFORMED = "fragment_malformed"  # the reassembled datagram did not parse


@dataclass(slots=True)
class _Pending:
    first_seen: float
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> payload
    end: int | None = None  # payload length, known once the last piece arrived
    header: bytes | None = None  # the first piece's IP header
    largest_piece: int = 0  # payload bytes of the largest piece: the sender's fragment size


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A whole datagram and the piece size its sender used."""

    datagram: Datagram
    piece_len: int


class FragmentCache:
    """Pieces of at most ``max_datagrams`` datagrams, each dropped ``timeout_s`` after its first piece."""

    def __init__(self, max_datagrams: int = 64, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._pending: cachetools.LRUCache[tuple[int, int, int, int], _Pending] = cachetools.LRUCache(max_datagrams)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, piece: Datagram, now: float) -> Reassembled | FragmentError | None:
        """Keep ``piece``; the whole datagram once every piece is in, else None."""
        key = (piece.src, piece.dst, piece.proto, piece.ident)
        pending: _Pending | None = self._pending.get(key)
        if pending is None or now - pending.first_seen > self.timeout_s:
            pending = _Pending(first_seen=now)
            self._pending[key] = pending
        payload = piece.raw[piece.header_len:]
        start, stop = piece.frag_offset, piece.frag_offset + len(payload)
        if stop > MAX_DATAGRAM_LEN - IPV4_MIN_HEADER_LEN:
            del self._pending[key]
            return FragmentError.TOO_BIG
        if self._overlaps(pending, start, stop) or (not piece.more_fragments and pending.end is not None):
            del self._pending[key]
            return FragmentError.OVERLAP
        pending.pieces[start] = payload
        pending.largest_piece = max(pending.largest_piece, len(payload))
        if start == 0:
            pending.header = piece.raw[: piece.header_len]
        if not piece.more_fragments:
            pending.end = stop
        if pending.end is None or pending.header is None or sum(map(len, pending.pieces.values())) != pending.end:
            return None
        del self._pending[key]
        whole = parse_ipv4(_join(pending.header, pending.pieces, pending.end))
        if isinstance(whole, ParseError):
            return FragmentError.MALFORMED
        return Reassembled(whole, pending.largest_piece)

    def expire(self, now: float) -> int:
        """Drop datagrams whose first piece is older than the timeout; how many."""
        stale = [key for key, pending in self._pending.items() if now - pending.first_seen > self.timeout_s]
        for key in stale:
            del self._pending[key]
        return len(stale)

    @staticmethod
    def _overlaps(pending: _Pending, start: int, stop: int) -> bool:
        if pending.end is not None and stop > pending.end:
            return True
        return any(start < other + len(data) and other < stop for other, data in pending.pieces.items())


def _join(header: bytes, pieces: dict[int, bytes], end: int) -> bytes:
    payload = b"".join(pieces[offset] for offset in sorted(pieces))
    out = bytearray(header)
    out[2:4] = (len(header) + end).to_bytes(2, "big")
    out[6:8] = (int.from_bytes(out[6:8], "big") & ~(_IP_FLAGS_MF | 0x1FFF) & 0xFFFF).to_bytes(2, "big")
    out[10:12] = b"\x00\x00"
    out[10:12] = checksum.checksum(bytes(out)).to_bytes(2, "big")
    return bytes(out) + payload


def fragment(d: Datagram, piece_len: int) -> list[bytes]:
    """``d`` cut into fragments of at most ``piece_len`` payload bytes (rounded down to 8).

    Every fragment gets ``d``'s header without options but the first, which keeps it whole.
    """
    piece_len = max(8, piece_len - piece_len % 8)
    payload = d.raw[d.header_len:]
    if len(payload) <= piece_len:
        return [d.raw]
    flags_word = int.from_bytes(d.raw[6:8], "big") & ~(_IP_FLAGS_MF | 0x1FFF) & 0xFFFF
    out = []
    for start in range(0, len(payload), piece_len):
        chunk = payload[start : start + piece_len]
        header = bytearray(d.raw[: d.header_len] if start == 0 else d.raw[:IPV4_MIN_HEADER_LEN])
        header[0] = 0x40 | (len(header) // 4)
        header[2:4] = (len(header) + len(chunk)).to_bytes(2, "big")
        more = _IP_FLAGS_MF if start + piece_len < len(payload) else 0
        header[6:8] = (flags_word | more | (start // 8)).to_bytes(2, "big")
        header[10:12] = b"\x00\x00"
        header[10:12] = checksum.checksum(bytes(header)).to_bytes(2, "big")
        out.append(bytes(header) + chunk)
    return out
