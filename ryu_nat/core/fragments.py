"""Bounded IPv4 reassembly, and fragmentation of a translated datagram.

Only the first fragment of a datagram carries its ports, so a fragmented
datagram is translated whole: pieces wait here (like mirage-nat's
``Fragments.Cache``) until the datagram is complete, and the translated result
is cut again at the size its sender used.

Anyone can send fragments, so the cache is bounded in datagrams, in bytes
(payload plus what each kept piece costs beyond it), per source, and in time.
The caller says whether a piece is *trusted* (it could belong to traffic the
NAT expects, such as a live mapping): untrusted pieces may displace only other
untrusted ones, so a stranger's junk never evicts a real reply (RFC 4787
REQ-14a). An exact duplicate piece is ignored; pieces that overlap otherwise
drop the datagram (RFC 5722's rule, applied to IPv4). Each piece costs time in
proportion to its own size, so reassembly is linear in the datagram's. No I/O.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from ryu_nat.core import checksum
from ryu_nat.core.packet import IPV4_MIN_HEADER_LEN, Datagram, ParseError, parse_ipv4

MAX_DATAGRAM_LEN = 65535
BLOCK = 8  # fragment offsets count 8-byte blocks (RFC 791)
# What a kept piece costs beyond its payload (the bytes object, its offset, a dict slot),
# and a pending datagram beyond its pieces: counted against ``max_bytes``.
PIECE_OVERHEAD_BYTES = 128
DATAGRAM_OVERHEAD_BYTES = 512
_IP_FLAGS_MF = 0x2000
_COVERED = memoryview(b"\x01" * (MAX_DATAGRAM_LEN // BLOCK + 1))

Key = tuple[int, int, int, int]  # src, dst, proto, identification (RFC 791)


class FragmentError(enum.Enum):
    """Why a fragment was dropped (with its datagram, but for NO_ROOM); values are counter names."""

    OVERLAP = "fragment_overlap"  # pieces overlapped or disagreed on the end
    TOO_BIG = "fragment_too_big"  # the datagram would exceed 65535 bytes
    MALFORMED = "fragment_malformed"  # the reassembled datagram did not parse
    UNALIGNED = "fragment_unaligned"  # a piece other than the last is not a multiple of 8 bytes
    NO_ROOM = "fragment_no_room"  # the cache is full of what this piece may not displace
    DONT_FRAGMENT = "dont_fragment"  # too big to leave whole, and its sender forbade cutting it (DF)


@dataclass(slots=True)
class _Pending:
    src: int
    first_seen: float
    trusted: bool
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> payload, never empty
    covered: bytearray = field(default_factory=bytearray)  # one byte per 8-byte block: 1 where a piece lies
    received: int = 0  # payload bytes in ``pieces``
    furthest: int = 0  # where the piece that ends last ends
    cost: int = DATAGRAM_OVERHEAD_BYTES  # counted against the cache's bytes
    end: int | None = None  # payload length, known once the last piece arrived
    header: bytes | None = None  # the first piece's IP header
    largest_piece: int = 0  # payload bytes of the largest piece: the sender's fragment size


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A whole datagram and the piece size its sender used."""

    datagram: Datagram
    piece_len: int


class FragmentCache:
    """Pieces of datagrams under reassembly, bounded in all, per source and in time.

    At most ``max_datagrams`` datagrams and ``max_bytes`` bytes in all, at most
    ``max_per_source`` datagrams from one source address; each is dropped
    ``timeout_s`` after its first piece. ``evicted`` counts datagrams dropped to
    make room for others, ``timed_out`` those dropped unfinished at their timeout.
    """

    def __init__(self, max_datagrams: int = 64, timeout_s: float = 10.0, max_per_source: int = 16,
                 max_bytes: int = 4 * 2**20) -> None:
        self.timeout_s = timeout_s
        self.max_datagrams = max_datagrams
        self.max_per_source = max_per_source
        self.max_bytes = max_bytes
        self.evicted = 0
        self.timed_out = 0
        self._pending: dict[Key, _Pending] = {}  # oldest first
        self._per_source: Counter[int] = Counter()
        self._bytes = 0
        self._untrusted = 0

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def bytes_held(self) -> int:
        """What the pending datagrams cost, as counted against ``max_bytes``."""
        return self._bytes

    def waiting(self, src: int, dst: int, proto: int) -> int:
        """How many datagrams from ``src`` to ``dst`` of ``proto`` have pieces here, waiting for the rest."""
        return sum(1 for key in self._pending if key[:3] == (src, dst, proto))

    def add(self, piece: Datagram, now: float, trusted: bool = True) -> Reassembled | FragmentError | None:
        """Keep ``piece``; the whole datagram once every piece is in, else None (or why it was dropped).

        ``trusted`` is the caller's word that the piece could belong to traffic it
        expects. A datagram is trusted once any of its pieces was. To make room, an
        untrusted piece may evict only untrusted datagrams; a trusted one evicts
        untrusted datagrams first, then the oldest trusted. A piece that finds no
        room is dropped with its datagram (NO_ROOM). Long because the checks run in one pass, in the
        order that decides which error a piece earns.
        """
        key = (piece.src, piece.dst, piece.proto, piece.ident)
        pending = self._pending.get(key)
        if pending is not None and now - pending.first_seen > self.timeout_s:
            self._remove(key, pending)
            self.timed_out += 1
            pending = None
        payload = piece.raw[piece.header_len:]
        start, stop = piece.frag_offset, piece.frag_offset + len(payload)
        more = piece.more_fragments
        error = None
        if stop > MAX_DATAGRAM_LEN - IPV4_MIN_HEADER_LEN:
            error = FragmentError.TOO_BIG
        elif more and len(payload) % BLOCK:
            error = FragmentError.UNALIGNED  # RFC 791: every piece but the last holds whole blocks
        elif pending is not None:
            if pending.pieces.get(start) == payload and more == (pending.end != stop):
                return None  # an exact duplicate
            if self._conflicts(pending, start, stop, more):
                error = FragmentError.OVERLAP
        if error is not None:
            if pending is not None:
                self._remove(key, pending)
            return error
        if not payload:
            if more or pending is None:
                return None  # no data: nothing to keep (a last piece without data only marks the end)
            pending.end = start
            return self._complete(key, pending)
        cost = len(payload) + PIECE_OVERHEAD_BYTES
        if pending is None:
            if not self._make_room(piece.src, cost + DATAGRAM_OVERHEAD_BYTES, trusted, None):
                return FragmentError.NO_ROOM
            pending = _Pending(piece.src, now, trusted)
            self._pending[key] = pending
            self._per_source[piece.src] += 1
            self._bytes += DATAGRAM_OVERHEAD_BYTES
            self._untrusted += not trusted
        else:
            if trusted and not pending.trusted:
                pending.trusted = True
                self._untrusted -= 1
            if not self._make_room(piece.src, cost, pending.trusted, key):
                self._remove(key, pending)
                return FragmentError.NO_ROOM
        self._keep(pending, start, stop, payload, cost)
        if start == 0:
            pending.header = piece.raw[: piece.header_len]
        if not more:
            pending.end = stop
        return self._complete(key, pending)

    def expire(self, now: float) -> int:
        """Drop datagrams whose first piece is older than the timeout; how many."""
        stale = [key for key, pending in self._pending.items() if now - pending.first_seen > self.timeout_s]
        for key in stale:
            self._remove(key, self._pending[key])
        self.timed_out += len(stale)
        return len(stale)

    # --- pieces ------------------------------------------------------------------------

    @staticmethod
    def _conflicts(pending: _Pending, start: int, stop: int, more: bool) -> bool:
        """Would this piece overlap a kept one, or disagree with the known end?"""
        if pending.end is not None and (stop > pending.end or not more):
            return True
        if not more and pending.furthest > stop:
            return True
        first, last = start // BLOCK, -(-stop // BLOCK)
        return pending.covered.find(1, first, last) != -1

    def _keep(self, pending: _Pending, start: int, stop: int, payload: bytes, cost: int) -> None:
        first, last = start // BLOCK, -(-stop // BLOCK)
        covered = pending.covered
        if len(covered) < last:
            covered.extend(bytes(last - len(covered)))
        covered[first:last] = _COVERED[: last - first]
        pending.pieces[start] = payload
        pending.received += len(payload)
        pending.furthest = max(pending.furthest, stop)
        pending.largest_piece = max(pending.largest_piece, len(payload))
        pending.cost += cost
        self._bytes += cost

    def _complete(self, key: Key, pending: _Pending) -> Reassembled | FragmentError | None:
        # No two kept pieces overlap and none lies past the end: their bytes add up to it only when whole.
        if pending.end is None or pending.header is None or pending.received != pending.end:
            return None
        self._remove(key, pending)
        whole = parse_ipv4(_join(pending.header, pending.pieces, pending.end))
        if isinstance(whole, ParseError):
            return FragmentError.MALFORMED
        return Reassembled(whole, pending.largest_piece)

    # --- room ------------------------------------------------------------------------------

    def _make_room(self, src: int, cost: int, trusted: bool, keep: Key | None) -> bool:
        """Evict what ``trusted`` allows until a piece of ``cost`` bytes fits (a new datagram if
        ``keep`` is None, else a piece of datagram ``keep``); False if it cannot fit."""
        while keep is None and self._per_source[src] >= self.max_per_source:
            if not self._evict(trusted, keep, src):
                return False
        while (keep is None and len(self._pending) >= self.max_datagrams) or self._bytes + cost > self.max_bytes:
            if not self._evict(trusted, keep, None):
                return False
        return True

    def _evict(self, trusted: bool, keep: Key | None, src: int | None) -> bool:
        """Drop the oldest untrusted datagram (of ``src``, if given), else, for a trusted piece,
        the oldest trusted one; False if there is none to drop."""
        victim = None
        if self._untrusted:
            victim = next((key for key, p in self._pending.items()
                           if not p.trusted and key != keep and (src is None or p.src == src)), None)
        if victim is None and trusted:
            victim = next((key for key, p in self._pending.items()
                           if key != keep and (src is None or p.src == src)), None)
        if victim is None:
            return False
        self._remove(victim, self._pending[victim])
        self.evicted += 1
        return True

    def _remove(self, key: Key, pending: _Pending) -> None:
        del self._pending[key]
        self._bytes -= pending.cost
        self._untrusted -= not pending.trusted
        self._per_source[pending.src] -= 1
        if not self._per_source[pending.src]:
            del self._per_source[pending.src]


def _join(header: bytes, pieces: dict[int, bytes], end: int) -> bytes:
    """The whole datagram: ``header`` with its lengths, flags and checksum fixed, then the pieces in order."""
    parts = []
    at = 0
    while at < end:  # pieces are never empty and cover [0, end) exactly
        part = pieces[at]
        parts.append(part)
        at += len(part)
    out = bytearray(header)
    out[2:4] = (len(header) + end).to_bytes(2, "big")
    out[6:8] = (int.from_bytes(out[6:8], "big") & ~(_IP_FLAGS_MF | 0x1FFF) & 0xFFFF).to_bytes(2, "big")
    out[10:12] = b"\x00\x00"
    out[10:12] = checksum.checksum(bytes(out)).to_bytes(2, "big")
    return bytes(out) + b"".join(parts)


def fragment(d: Datagram, piece_len: int, ident: int | None = None) -> list[bytes] | FragmentError:
    """``d`` cut into fragments of at most ``piece_len`` payload bytes (rounded down to 8).

    Every fragment gets ``d``'s header without options but the first, which keeps
    it whole; with ``ident``, every fragment carries that identification instead of
    ``d``'s. A datagram that fits is returned as it is. DONT_FRAGMENT: it does not
    fit and has DF set, so it may not be cut (RFC 791; mirage-nat's ``fragment``
    refuses it too); the sender is owed an ICMP fragmentation needed.
    """
    piece_len = max(8, piece_len - piece_len % 8)
    payload = d.raw[d.header_len:]
    if len(payload) <= piece_len:
        return [d.raw]
    if d.dont_fragment:
        return FragmentError.DONT_FRAGMENT
    flags_word = int.from_bytes(d.raw[6:8], "big") & ~(_IP_FLAGS_MF | 0x1FFF) & 0xFFFF
    ident_bytes = d.raw[4:6] if ident is None else ident.to_bytes(2, "big")
    out = []
    for start in range(0, len(payload), piece_len):
        chunk = payload[start : start + piece_len]
        header = bytearray(d.raw[: d.header_len] if start == 0 else d.raw[:IPV4_MIN_HEADER_LEN])
        header[0] = 0x40 | (len(header) // 4)
        header[2:4] = (len(header) + len(chunk)).to_bytes(2, "big")
        header[4:6] = ident_bytes
        more = _IP_FLAGS_MF if start + piece_len < len(payload) else 0
        header[6:8] = (flags_word | more | (start // 8)).to_bytes(2, "big")
        header[10:12] = b"\x00\x00"
        header[10:12] = checksum.checksum(bytes(header)).to_bytes(2, "big")
        out.append(bytes(header) + chunk)
    return out
