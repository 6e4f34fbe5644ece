"""Fragments: pieces of a datagram wait until it is whole; a translated datagram leaves cut again.

Fragments carry no ports, so a fragmented datagram is translated whole (see
:mod:`ryu_nat.core.fragments`, which bounds the cache). The caller says which
pieces are trusted: a private host's, and an outside piece that could belong to
a live mapping or a redirect (RFC 4787 REQ-14a: a stranger's junk must not
displace a real reply). Datagrams evicted to make room, and those that never
became whole, are counted as drops. No I/O; time is passed in.
"""

from __future__ import annotations

from ryu_nat.core.fragments import FragmentCache, FragmentError, Reassembled, fragment
from ryu_nat.core.packet import Datagram
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats


class Reassembly:
    """The fragment cache, counted."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._cache = FragmentCache()

    def add(self, piece: Datagram, now: float, trusted: bool = True) -> Reassembled | None:
        """Keep ``piece``; the whole datagram once its last piece is in, else None (also when dropped).

        ``trusted``: the piece could belong to traffic the NAT expects (see
        :meth:`~ryu_nat.core.fragments.FragmentCache.add`); untrusted pieces never
        displace trusted ones.
        """
        self._stats.packet_ins["fragment"] += 1
        cache = self._cache
        evicted, timed_out = cache.evicted, cache.timed_out
        result = cache.add(piece, now, trusted)
        if cache.evicted != evicted:
            self._stats.drop(DropReason.FRAGMENT_EVICTED, cache.evicted - evicted)
        if cache.timed_out != timed_out:
            self._stats.drop(DropReason.FRAGMENT_TIMEOUT, cache.timed_out - timed_out)
        if isinstance(result, FragmentError):
            self._stats.drop(DropReason.of(result))
            return None
        return result

    def expire(self, now: float) -> None:
        """Drop datagrams whose pieces did not all come in time."""
        self._stats.drop(DropReason.FRAGMENT_TIMEOUT, self._cache.expire(now))

    @staticmethod
    def pieces(whole: Datagram, like: Reassembled) -> list[bytes]:
        """``whole`` (the translated datagram) cut at the piece size ``like`` arrived in."""
        return fragment(whole, like.piece_len)
