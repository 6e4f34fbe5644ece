"""Reassembly of fragmented datagrams and fragmentation of translated ones."""

from __future__ import annotations

from ipaddress import IPv4Address

from ryu_nat.core.fragments import FragmentCache, FragmentError, Reassembled, fragment
from ryu_nat.core.nat import SourceNat, Translated
from ryu_nat.core.packet import parse_ipv4

from .builders import checksums_ok, parsed, udp_bytes
from .corefix import H1, PUBLIC, SERVER, make_nat

BIG = bytes(range(256)) * 16  # 4096 bytes


def pieces_of(raw: bytes, piece_len: int = 1480) -> list[bytes]:
    return fragment(parsed(raw), piece_len)


def test_fragment_cuts_at_multiples_of_8_and_marks_more_fragments():
    pieces = [parsed(p) for p in pieces_of(udp_bytes(H1, 5000, SERVER, 53, payload=BIG), 1003)]
    assert [p.frag_offset for p in pieces] == [0, 1000, 2000, 3000, 4000]
    assert [p.more_fragments for p in pieces] == [True] * 4 + [False]
    assert all(len(p.raw) - p.header_len <= 1000 for p in pieces)


def test_reassembly_in_any_order_gives_the_original():
    raw = udp_bytes(H1, 5000, SERVER, 53, payload=BIG)
    cache = FragmentCache()
    pieces = pieces_of(raw)
    results = [cache.add(parsed(p), now=0.0) for p in reversed(pieces)]
    assert results[:-1] == [None] * (len(pieces) - 1)
    whole = results[-1]
    assert isinstance(whole, Reassembled) and whole.datagram.raw == raw and whole.piece_len == 1480
    assert len(cache) == 0


def test_overlapping_pieces_drop_the_datagram():
    cache = FragmentCache()
    pieces = pieces_of(udp_bytes(H1, 5000, SERVER, 53, payload=BIG))
    assert cache.add(parsed(pieces[0]), now=0.0) is None
    assert cache.add(parsed(pieces[0]), now=0.0) is FragmentError.OVERLAP
    assert len(cache) == 0


def test_cache_is_bounded_and_times_out():
    cache = FragmentCache(max_datagrams=2, timeout_s=5.0)
    for ident in range(3):
        first = pieces_of(udp_bytes(H1, 5000, SERVER, 53, payload=BIG, ident=ident))[0]
        cache.add(parsed(first), now=0.0)
    assert len(cache) == 2
    assert cache.expire(now=5.1) == 2 and len(cache) == 0


def test_fragmented_datagram_translates_whole_and_refragments_with_correct_checksums():
    nat, _ = make_nat()
    raw = udp_bytes(H1, 5000, SERVER, 53, payload=BIG)
    cache = FragmentCache()
    whole = None
    for piece in pieces_of(raw):
        whole = cache.add(parsed(piece), now=0.0)
    assert isinstance(whole, Reassembled)
    nat.add(whole.datagram, SourceNat(), now=0.0)
    result = nat.translate(whole.datagram, now=0.0)
    assert isinstance(result, Translated)
    out_pieces = fragment(result.packet, whole.piece_len)
    assert len(out_pieces) == 3
    assert all(IPv4Address(parsed(p).src) == PUBLIC and parsed(p).ttl == 63 for p in out_pieces)
    rejoined = FragmentCache()
    final = [rejoined.add(parsed(p), now=1.0) for p in out_pieces][-1]
    assert isinstance(final, Reassembled)
    assert checksums_ok(final.datagram.raw) and final.datagram.raw[28:] == BIG


def test_a_small_datagram_is_not_cut():
    raw = udp_bytes(H1, 5000, SERVER, 53)
    assert fragment(parsed(raw), 1480) == [raw]


def test_a_payload_of_exactly_the_piece_size_stays_whole_and_one_byte_more_is_cut():
    fits = udp_bytes(H1, 5000, SERVER, 53, payload=bytes(1480 - 8))  # UDP header + payload = 1480
    assert fragment(parsed(fits), 1480) == [fits]
    over = udp_bytes(H1, 5000, SERVER, 53, payload=bytes(1480 - 7))
    first, last = (parse_ipv4(piece) for piece in fragment(parsed(over), 1480))
    assert (first.more_fragments, first.frag_offset, len(first.raw) - first.header_len) == (True, 0, 1480)
    assert (last.more_fragments, last.frag_offset, len(last.raw) - last.header_len) == (False, 1480, 1)
