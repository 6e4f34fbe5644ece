"""Reassembly of fragmented datagrams and fragmentation of translated ones."""

from __future__ import annotations

import random
import struct
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from ryu_nat.core.fragments import FragmentCache, FragmentError, Reassembled, fragment
from ryu_nat.core.nat import SourceNat, Translated
from ryu_nat.core.packet import Datagram, parse_ipv4

from .builders import checksums_ok, parsed, udp_bytes, with_ip_checksum
from .corefix import H1, PUBLIC, REMOTE, SERVER, make_nat

INTERNET = str(REMOTE)

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
    raw = udp_bytes(H1, 5000, SERVER, 53, payload=BIG)
    pieces = pieces_of(raw)
    # An exact duplicate is no overlap (see below): a piece of the same datagram cut elsewhere is.
    assert cache.add(parsed(pieces[0]), now=0.0) is None
    assert cache.add(parsed(pieces_of(raw, 1000)[1]), now=0.0) is FragmentError.OVERLAP
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


def one_piece(src: str, ident: int, offset: int = 0, size: int = 8, more: bool = True) -> Datagram:
    """A lone fragment: ``size`` payload bytes at ``offset`` of datagram ``ident`` from ``src`` to PUBLIC.

    Protocol 253 (for experiments, RFC 3692): no transport header to get right.
    """
    flags = (0x2000 if more else 0) | offset // 8
    header = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + size, ident, flags, 64, 253, 0, int(IPv4Address(src)),
                         int(PUBLIC))
    return parsed(with_ip_checksum(header + bytes(size)))


def test_exact_duplicates_are_accepted():
    raw = udp_bytes(H1, 5000, SERVER, 53, payload=BIG)
    pieces = pieces_of(raw, 1000)
    cache = FragmentCache()
    arrivals = [pieces[0], pieces[0], pieces[2], pieces[4], pieces[4], pieces[2], pieces[1], pieces[3], pieces[1]]
    results = [cache.add(parsed(p), now=0.0) for p in arrivals]
    whole = results[-2]
    assert isinstance(whole, Reassembled) and whole.datagram.raw == raw
    assert results[:-2] == [None] * 7
    assert results[-1] is None and len(cache) == 1  # a copy after the datagram left starts a new one


def test_pieces_that_disagree_on_the_end_drop_the_datagram():
    cache = FragmentCache()
    assert cache.add(one_piece(SERVER, 1, offset=64), now=0.0) is None
    assert cache.add(one_piece(SERVER, 1, offset=16, size=16, more=False), now=0.0) is FragmentError.OVERLAP
    assert cache.add(one_piece(SERVER, 2, offset=16, size=16, more=False), now=0.0) is None
    assert cache.add(one_piece(SERVER, 2, offset=64), now=0.0) is FragmentError.OVERLAP
    assert len(cache) == 0


def test_a_piece_other_than_the_last_holds_whole_8_byte_blocks():
    cache = FragmentCache()
    assert cache.add(one_piece(SERVER, 1, size=12), now=0.0) is FragmentError.UNALIGNED
    assert cache.add(one_piece(SERVER, 1, offset=8, size=12, more=False), now=0.0) is None  # the last may end anywhere
    assert len(cache) == 1


def test_a_datagram_of_the_most_pieces_reassembles_in_any_order():
    raw = udp_bytes(H1, 5000, SERVER, 53, payload=bytes(range(256)) * 255)  # 65,308 bytes
    pieces = [parsed(p) for p in pieces_of(raw, 8)]
    assert len(pieces) == 8161
    random.Random(5).shuffle(pieces)
    cache = FragmentCache()
    results = [cache.add(p, now=0.0) for p in pieces]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert isinstance(results[-1], Reassembled) and results[-1].datagram.raw == raw


def test_one_source_holds_at_most_its_share():
    cache = FragmentCache(max_datagrams=64, max_per_source=8)
    real = pieces_of(udp_bytes(SERVER, 53, PUBLIC, 40000, payload=BIG))
    assert cache.add(parsed(real[0]), now=0.0) is None
    for ident in range(100):
        cache.add(one_piece(INTERNET, 1000 + ident), now=0.1)
    assert len(cache) == 1 + 8 and cache.evicted == 92
    results = [cache.add(parsed(p), now=0.2) for p in real[1:]]
    assert isinstance(results[-1], Reassembled)


def test_the_cache_is_bounded_in_bytes():
    cache = FragmentCache(max_bytes=100_000, max_per_source=64)
    for ident in range(40):
        for piece in pieces_of(udp_bytes(SERVER, 53, PUBLIC, 40000, payload=BIG, ident=ident))[:-1]:
            cache.add(parsed(piece), now=0.0)
            assert cache.bytes_held <= 100_000
    assert 20 <= len(cache) < 40  # the oldest made room


def test_untrusted_fragments_never_displace_trusted_ones():
    # RFC 4787 REQ-14a: about 100 fake one-packet fragments, here from 100 spoofed sources so
    # that no per-source bound helps, must not evict a real reply's pieces.
    cache = FragmentCache()
    real = pieces_of(udp_bytes(SERVER, 53, PUBLIC, 40000, payload=BIG))
    assert cache.add(parsed(real[0]), now=0.0, trusted=True) is None
    outcomes = [cache.add(one_piece(f"198.18.{i // 250}.{i % 250 + 1}", i), now=0.1, trusted=False)
                for i in range(100)]
    assert outcomes.count(None) == 100  # junk still fills the room it may take, among itself
    assert len(cache) == 64 and cache.evicted == 37
    results = [cache.add(parsed(p), now=0.2, trusted=True) for p in real[1:]]
    assert isinstance(results[-1], Reassembled)


def test_a_cache_full_of_trusted_datagrams_refuses_untrusted_pieces():
    cache = FragmentCache(max_datagrams=4)
    for ident in range(4):
        assert cache.add(one_piece(SERVER, ident), now=0.0, trusted=True) is None
    assert cache.add(one_piece(INTERNET, 99), now=0.0, trusted=False) is FragmentError.NO_ROOM
    assert len(cache) == 4 and cache.evicted == 0
    assert cache.add(one_piece(SERVER, 7), now=0.0, trusted=True) is None  # trusted ones take turns
    assert len(cache) == 4 and cache.evicted == 1


def test_a_trusted_piece_makes_its_datagram_trusted():
    cache = FragmentCache(max_datagrams=2)
    assert cache.add(one_piece(SERVER, 1), now=0.0, trusted=False) is None
    assert cache.add(one_piece(SERVER, 1, offset=8), now=0.0, trusted=True) is None
    assert cache.add(one_piece(INTERNET, 2), now=0.0, trusted=False) is None
    assert cache.add(one_piece(INTERNET, 3), now=0.0, trusted=False) is None  # evicts ident 2, not ident 1
    assert cache.add(one_piece(SERVER, 1, offset=16, more=False), now=0.0, trusted=False) is not None


@given(size=st.integers(0, 3000), piece_len=st.integers(8, 1480), seed=st.integers(0, 2**32),
       copies=st.lists(st.integers(1, 3), min_size=1, max_size=400))
def test_any_order_with_duplicates_gives_the_datagram_once(size, piece_len, seed, copies):
    raw = udp_bytes(H1, 5000, SERVER, 53, payload=bytes(i & 0xFF for i in range(size)))
    pieces = pieces_of(raw, piece_len)
    arrivals = [p for i, p in enumerate(pieces) for _ in range(copies[i % len(copies)])]
    random.Random(seed).shuffle(arrivals)
    cache = FragmentCache()
    results = [cache.add(parsed(p), now=0.0) for p in arrivals]
    wholes = [r for r in results if r is not None]
    if len(pieces) == 1:
        return  # not fragmented: it never waits here
    assert len(wholes) >= 1 and isinstance(wholes[0], Reassembled) and wholes[0].datagram.raw == raw
    assert all(isinstance(r, Reassembled) for r in wholes)  # copies after it only start again


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 40), st.integers(0, 40),
                          st.booleans(), st.booleans()), max_size=80))
def test_junk_never_breaks_the_bounds(arrivals):
    cache = FragmentCache(max_datagrams=6, max_per_source=3, max_bytes=3000)
    for source, ident, offset_blocks, size_blocks, more, trusted in arrivals:
        result = cache.add(one_piece(f"198.51.100.{source + 1}", ident, offset_blocks * 8, size_blocks * 8, more),
                           now=0.0, trusted=trusted)
        assert result is None or isinstance(result, (Reassembled, FragmentError))
        assert len(cache) <= 6 and cache.bytes_held <= 3000
