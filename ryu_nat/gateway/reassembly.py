"""Fragments: pieces of a datagram wait until it is whole; a translated datagram leaves in pieces that fit.

Fragments carry no ports, so a fragmented datagram is translated whole (see
:mod:`ryu_nat.core.fragments`, which bounds the cache). The caller says which
pieces are trusted: a private host's, and an outside piece that could belong to
a live mapping or a redirect (RFC 4787 REQ-14a: a stranger's junk must not
displace a real reply). Datagrams evicted to make room, and those that never
became whole, are counted as drops. On the way out, a datagram is cut at the
smaller of its sender's piece size and the MTU of the side it leaves by (RFC
4787 REQ-13a); one with DF set that does not fit is refused, and the NAT
answers its sender instead. Pieces that leave from the public address get an
identification of the NAT's own, so two private hosts' datagrams never share
one at the remote end (RFC 7857 section 10, RFC 6864 5.3.1). No I/O; time is
passed in.
"""

from __future__ import annotations

from ryu_nat.core.fragments import FragmentCache, FragmentError, Reassembled, fragment
from ryu_nat.core.packet import Datagram
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats


class Reassembly:
    """The fragment cache, the MTU of each side, and the identifications of datagrams it cuts, counted."""

    def __init__(self, stats: Stats, public_mtu: int = 1500, private_mtu: int = 1500, public_ip: int = 0,
                 first_ident: int = 0) -> None:
        self._stats = stats
        self._cache = FragmentCache()
        self._mtus = (public_mtu, private_mtu)
        self._public_ip = public_ip
        self._next_ident = first_ident & 0xFFFF

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

    def waiting(self, src: int, dst: int, proto: int) -> int:
        """Datagrams of that source, destination and protocol whose pieces wait for the rest."""
        return self._cache.waiting(src, dst, proto)

    @staticmethod
    def as_arrived(whole: Reassembled) -> list[bytes]:
        """``whole`` (untranslated) cut again as its sender cut it, to wait for a next hop in that form."""
        pieces = fragment(whole.datagram, whole.piece_len)
        return [whole.datagram.raw] if isinstance(pieces, FragmentError) else pieces

    def mtu(self, to_private: bool) -> int:
        """The largest datagram the side it leaves by carries."""
        return self._mtus[to_private]

    def fits(self, d: Datagram, to_private: bool) -> bool:
        """Does ``d`` leave whole (the switch could carry it as it is)?"""
        return len(d.raw) <= self._mtus[to_private]

    def cut(self, out: Datagram, whole: Reassembled | None, to_private: bool) -> list[bytes] | None:
        """The pieces the translated ``out`` leaves in (``whole``: it came in pieces of that size).

        None: it does not fit and has DF set (counted as DONT_FRAGMENT); its sender is owed an ICMP
        fragmentation needed.
        """
        room = self._mtus[to_private] - out.header_len
        piece_len = room if whole is None else min(whole.piece_len, room)
        if len(out.raw) - out.header_len <= piece_len:
            return [out.raw]
        ident = None
        if out.src == self._public_ip:
            ident, self._next_ident = self._next_ident, (self._next_ident + 1) & 0xFFFF
        pieces = fragment(out, piece_len, ident)
        if isinstance(pieces, FragmentError):
            self._stats.drop(DropReason.of(pieces))
            return None
        return pieces
