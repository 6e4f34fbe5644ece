"""NAT operations, including mirage-nat's own test cases (lib_test/test_nat.ml)."""

from __future__ import annotations

import math
from ipaddress import IPv4Address

import pytest

from ryu_nat.core.addresses import Endpoint, Proto
from ryu_nat.core.limits import Timeouts
from ryu_nat.core.nat import Direction, Hairpin, Redirect, SourceNat, Translated, TranslateError
from ryu_nat.core.ports import PortRange
from ryu_nat.core.table import AddError, Mapping, MappingKind, RemovalReason

from .builders import (checksums_ok, udp_datagram, echo_bytes, icmp_error_bytes, parsed, tcp_bytes, timestamp_bytes,
                       udp_bytes)
from .corefix import H1, H2, PUBLIC, REMOTE, SERVER, make_nat


def translated(result: object) -> Translated:
    assert isinstance(result, Translated), result
    return result


def added(result: object) -> Mapping:
    assert isinstance(result, Mapping), result
    return result


@pytest.mark.parametrize("build", [
    lambda ttl: udp_bytes(H1, 5000, SERVER, 53, ttl=ttl, payload=b"query"),
    lambda ttl: tcp_bytes(H1, 5000, SERVER, 80, ttl=ttl, payload=b"GET /"),
])
def test_simple_nat_rewrites_source_decrements_ttl_and_keeps_checksums(build):
    nat, _ = make_nat()
    pkt = parsed(build(64))
    mapping = added(nat.add(pkt, SourceNat(), now=0.0))
    out = translated(nat.translate(pkt, now=0.0)).packet
    assert (IPv4Address(out.src), IPv4Address(out.dst), out.dst_port, out.ttl) == (PUBLIC, SERVER, pkt.dst_port, 63)
    assert out.src_port == mapping.public_endpoint.port
    assert checksums_ok(out.raw)
    assert out.raw[out.header_len + 8:] == pkt.raw[pkt.header_len + 8:] or pkt.proto == 6


def test_reply_is_translated_back_to_the_private_host():
    nat, _ = make_nat()
    pkt = parsed(udp_bytes(H1, 5000, SERVER, 53))
    nat.add(pkt, SourceNat(), now=0.0)
    out = translated(nat.translate(pkt, now=0.0)).packet
    reply = parsed(udp_bytes(SERVER, 53, PUBLIC, out.src_port, payload=b"answer"))
    back = translated(nat.translate(reply, now=1.0))
    assert back.direction is Direction.REPLY
    assert back.packet.channel == pkt.channel.reversed()
    assert back.packet.ttl == 63 and checksums_ok(back.packet.raw)


def test_reply_from_another_remote_port_is_not_let_in():
    """Filtering is address-and-port dependent (RFC 4787 REQ-8)."""
    nat, _ = make_nat()
    pkt = parsed(udp_bytes(H1, 5000, SERVER, 53))
    mapping = added(nat.add(pkt, SourceNat(), now=0.0))
    port = mapping.public_endpoint.port
    assert nat.translate(parsed(udp_bytes(SERVER, 54, PUBLIC, port)), now=1.0) is TranslateError.UNTRANSLATED
    assert nat.translate(parsed(udp_bytes(REMOTE, 53, PUBLIC, port)), now=1.0) is TranslateError.UNTRANSLATED


def test_adding_the_same_flow_again_refreshes_it():
    nat, _ = make_nat()
    pkt = parsed(udp_bytes(H1, 5000, SERVER, 53))
    first = added(nat.add(pkt, SourceNat(), now=0.0))
    again = added(nat.add(pkt, SourceNat(), now=50.0))
    assert again is first and again.last_used == 50.0
    assert nat.table.count(Proto.UDP) == 1


def test_half_overlapping_add_fails_with_overlap():
    nat, _ = make_nat()
    mapping = added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0))
    # A packet on the mapping's reply channel cannot start a new mapping.
    reply = parsed(udp_bytes(SERVER, 53, PUBLIC, mapping.public_endpoint.port))
    assert nat.add(reply, SourceNat(), now=1.0) is AddError.OVERLAP
    assert nat.add(reply, Redirect(Endpoint(H2, 53)), now=1.0) is AddError.OVERLAP


def test_redirect_both_directions_keep_the_client_address():
    nat, _ = make_nat()
    syn = parsed(tcp_bytes(REMOTE, 40000, PUBLIC, 8080))
    mapping = added(nat.add(syn, Redirect(Endpoint(H1, 80)), now=0.0))
    assert mapping.kind is MappingKind.REDIRECT
    inbound = translated(nat.translate(syn, now=0.0)).packet
    assert inbound.channel.src == REMOTE and (inbound.channel.dst, inbound.dst_port) == (H1, 80)
    assert inbound.src_port == 40000 and checksums_ok(inbound.raw)
    answer = parsed(tcp_bytes(H1, 80, REMOTE, 40000, bits=0x12))
    outbound = translated(nat.translate(answer, now=1.0)).packet
    assert (outbound.channel.src, outbound.src_port) == (PUBLIC, 8080)
    assert (outbound.channel.dst, outbound.dst_port) == (REMOTE, 40000)


def test_redirect_overlap():
    nat, _ = make_nat()
    syn = parsed(tcp_bytes(REMOTE, 40000, PUBLIC, 8080))
    added(nat.add(syn, Redirect(Endpoint(H1, 80)), now=0.0))
    # The private server's reply channel is taken: a second redirect to it from the same client fails.
    other = parsed(tcp_bytes(REMOTE, 40000, PUBLIC, 8081))
    assert nat.add(other, Redirect(Endpoint(H1, 80)), now=0.0) is AddError.OVERLAP


def test_hairpin_reaches_the_server_which_sees_the_public_address_and_mapped_port():
    nat, _ = make_nat()
    syn = parsed(tcp_bytes(H2, 7000, PUBLIC, 8080))
    mapping = added(nat.add(syn, Hairpin(Endpoint(H1, 80)), now=0.0))
    to_server = translated(nat.translate(syn, now=0.0)).packet
    mapped_port = mapping.public_endpoint.port
    assert (to_server.channel.src, to_server.src_port) == (PUBLIC, mapped_port)
    assert (to_server.channel.dst, to_server.dst_port) == (H1, 80)
    answer = parsed(tcp_bytes(H1, 80, PUBLIC, mapped_port, bits=0x12))
    to_client = translated(nat.translate(answer, now=0.0)).packet
    assert (to_client.channel.src, to_client.src_port) == (PUBLIC, 8080)
    assert (to_client.channel.dst, to_client.dst_port) == (H2, 7000)
    assert checksums_ok(to_server.raw) and checksums_ok(to_client.raw)
    assert set(mapping.private_hosts) == {int(H1), int(H2)}


@pytest.mark.parametrize("dst", ["255.255.255.255", "224.0.0.251", "127.0.0.1", "0.0.0.0", "169.254.1.1"])
def test_broadcast_multicast_loopback_unspecified_link_local_are_refused(dst):
    nat, _ = make_nat()
    assert nat.add(parsed(udp_bytes(H1, 5000, dst, 53)), SourceNat(), now=0.0) is AddError.CANNOT_NAT


def test_icmp_errors_and_port_zero_cannot_start_a_mapping():
    nat, _ = make_nat()
    error = parsed(icmp_error_bytes(H1, SERVER, udp_bytes(SERVER, 53, H1, 5000)))
    assert nat.add(error, SourceNat(), now=0.0) is AddError.CANNOT_NAT
    assert nat.add(parsed(udp_bytes(H1, 0, SERVER, 53)), SourceNat(), now=0.0) is AddError.CANNOT_NAT
    redirect_ping = parsed(echo_bytes(REMOTE, PUBLIC, 9))
    assert nat.add(redirect_ping, Redirect(Endpoint(H1, 0)), now=0.0) is AddError.CANNOT_NAT


@pytest.mark.parametrize("build_request,build_reply", [
    (lambda i: echo_bytes(H1, SERVER, i), lambda i: echo_bytes(SERVER, PUBLIC, i, request=False)),
    (lambda i: timestamp_bytes(H1, SERVER, i), lambda i: timestamp_bytes(SERVER, PUBLIC, i, request=False)),
])
def test_icmp_query_and_reply_translate_the_id(build_request, build_reply):
    nat, _ = make_nat()
    request = parsed(build_request(4242))
    mapping = added(nat.add(request, SourceNat(), now=0.0))
    out = translated(nat.translate(request, now=0.0)).packet
    public_id = mapping.public_endpoint.port
    assert (IPv4Address(out.src), out.src_port, out.dst_port) == (PUBLIC, public_id, public_id)
    assert checksums_ok(out.raw)
    back = translated(nat.translate(parsed(build_reply(public_id)), now=1.0)).packet
    assert (IPv4Address(back.dst), back.src_port) == (H1, 4242) and checksums_ok(back.raw)


def test_icmp_error_about_a_translated_udp_flow_returns_to_the_private_host():
    nat, _ = make_nat()
    pkt = parsed(udp_bytes(H1, 5000, SERVER, 9999))
    nat.add(pkt, SourceNat(), now=0.0)
    sent = translated(nat.translate(pkt, now=0.0)).packet
    error = parsed(icmp_error_bytes(SERVER, PUBLIC, sent.raw, kind=3, code=3))
    result = translated(nat.translate(error, now=1.0))
    out = result.packet
    assert (IPv4Address(out.src), IPv4Address(out.dst)) == (SERVER, H1)
    assert out.embedded is not None
    inner = out.embedded
    assert (IPv4Address(inner.src), inner.src_port, IPv4Address(inner.dst), inner.dst_port) == (H1, 5000, SERVER, 9999)
    assert checksums_ok(out.raw)
    # The quoted header is the one the private host sent, but for the TTL the
    # NAT spent (and the IP checksum that covers it); the quoted UDP header,
    # checksum included, is the original's byte for byte.
    assert inner.raw[:8] == pkt.raw[:8] and inner.raw[12:20] == pkt.raw[12:20]
    assert inner.raw[8] == 63 and inner.raw[20:28] == pkt.raw[20:28]


def test_icmp_error_from_a_router_keeps_the_router_address():
    nat, _ = make_nat()
    probe = parsed(udp_bytes(H1, 33434, REMOTE, 33434, ttl=2))
    nat.add(probe, SourceNat(), now=0.0)
    sent = translated(nat.translate(probe, now=0.0)).packet
    router = IPv4Address("192.168.3.254")
    error = parsed(icmp_error_bytes(router, PUBLIC, sent.raw, kind=11, code=0))
    out = translated(nat.translate(error, now=0.0)).packet
    assert (IPv4Address(out.src), IPv4Address(out.dst)) == (router, H1)


def test_icmp_error_about_a_translated_ping_restores_the_id():
    nat, _ = make_nat()
    ping = parsed(echo_bytes(H1, REMOTE, 77))
    nat.add(ping, SourceNat(), now=0.0)
    sent = translated(nat.translate(ping, now=0.0)).packet
    error = parsed(icmp_error_bytes(IPv4Address("192.168.3.254"), PUBLIC, sent.raw, kind=3, code=1))
    out = translated(nat.translate(error, now=0.0)).packet
    assert out.embedded is not None and out.embedded.src_port == 77
    assert IPv4Address(out.dst) == H1 and checksums_ok(out.raw)


def test_icmp_error_from_a_redirected_private_server_leaves_from_the_public_address():
    nat, _ = make_nat()
    request = parsed(udp_bytes(REMOTE, 6000, PUBLIC, 5353))
    nat.add(request, Redirect(Endpoint(H1, 53)), now=0.0)
    delivered = translated(nat.translate(request, now=0.0)).packet
    error = parsed(icmp_error_bytes(H1, REMOTE, delivered.raw, kind=3, code=3))
    out = translated(nat.translate(error, now=0.0)).packet
    assert (IPv4Address(out.src), IPv4Address(out.dst)) == (PUBLIC, REMOTE)
    assert out.embedded is not None
    assert (IPv4Address(out.embedded.dst), out.embedded.dst_port) == (PUBLIC, 5353)


def test_icmp_error_about_an_unknown_flow_is_untranslated():
    nat, _ = make_nat()
    error = parsed(icmp_error_bytes(SERVER, PUBLIC, udp_bytes(PUBLIC, 4000, SERVER, 53)))
    assert nat.translate(error, now=0.0) is TranslateError.UNTRANSLATED


def test_ttl_one_is_not_forwarded():
    nat, _ = make_nat()
    pkt = parsed(udp_bytes(H1, 5000, SERVER, 53, ttl=1))
    added(nat.add(pkt, SourceNat(), now=0.0))
    assert nat.translate(pkt, now=0.0) is TranslateError.TTL_EXCEEDED
    assert nat.translate(parsed(udp_bytes(H1, 5000, SERVER, 53, ttl=2)), now=0.0).packet.ttl == 1


def test_unknown_packet_is_untranslated():
    nat, _ = make_nat()
    assert nat.translate(parsed(udp_bytes(REMOTE, 53, PUBLIC, 4000)), now=0.0) is TranslateError.UNTRANSLATED


def test_endpoint_independent_mapping_same_public_port_for_every_remote():
    nat, _ = make_nat()
    a = added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0))
    b = added(nat.add(parsed(udp_bytes(H1, 5000, REMOTE, 53)), SourceNat(), now=0.0))
    c = added(nat.add(parsed(udp_bytes(H2, 5000, SERVER, 53)), SourceNat(), now=0.0))
    assert a.public_endpoint == b.public_endpoint
    assert c.public_endpoint.port != a.public_endpoint.port


def test_low_source_ports_map_below_1024_when_the_range_allows():
    nat, _ = make_nat(port_range=PortRange(500, 2000))
    low = added(nat.add(parsed(udp_bytes(H1, 123, SERVER, 123)), SourceNat(), now=0.0))
    high = added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 123)), SourceNat(), now=0.0))
    assert 500 <= low.public_endpoint.port < 1024
    assert 1024 <= high.public_endpoint.port <= 2000


def test_ports_exhausted_after_the_range_is_used_up():
    nat, _ = make_nat(port_range=PortRange(2000, 2001))
    for sport in (1, 2):
        added(nat.add(parsed(udp_bytes(H1, 5000 + sport, SERVER, 53)), SourceNat(), now=0.0))
    assert nat.add(parsed(udp_bytes(H1, 5003, SERVER, 53)), SourceNat(), now=0.0) is AddError.PORTS_EXHAUSTED


def test_port_generator_is_asked_at_most_100_times():
    nat, _ = make_nat(port_range=PortRange(2000, 2000))
    added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0))
    calls = []

    def always_taken(proto: Proto, private_port: int) -> int:
        calls.append(private_port)
        return 2000

    result = nat.add(parsed(udp_bytes(H2, 5000, SERVER, 53)), SourceNat(), now=0.0, port_generator=always_taken)
    assert result is AddError.PORTS_EXHAUSTED and len(calls) == 100


def test_redirect_ports_are_never_allocated():
    nat, _ = make_nat(port_range=PortRange(2000, 2001))
    nat.ports.reserve(Proto.UDP, 2000)
    mapping = added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0))
    assert mapping.public_endpoint.port == 2001
    assert nat.add(parsed(udp_bytes(H2, 5000, SERVER, 53)), SourceNat(), now=0.0) is AddError.PORTS_EXHAUSTED


def test_remove_connections_frees_the_ports_of_exactly_that_host():
    nat, rec = make_nat()
    h1_maps = [added(nat.add(parsed(udp_bytes(H1, 5000 + i, SERVER, 53)), SourceNat(), now=0.0)) for i in range(3)]
    h1_tcp = added(nat.add(parsed(tcp_bytes(H1, 6000, SERVER, 80)), SourceNat(), now=0.0))
    h2_map = added(nat.add(parsed(udp_bytes(H2, 5000, SERVER, 53)), SourceNat(), now=0.0))
    freed = nat.remove_connections(H1)
    assert freed.udp == {m.public_endpoint.port for m in h1_maps}
    assert freed.tcp == {h1_tcp.public_endpoint.port} and freed.icmp == frozenset()
    assert {m for m, _ in rec.removed} == {*h1_maps, h1_tcp}
    assert all(reason is RemovalReason.HOST_REMOVED for _, reason in rec.removed)
    assert list(nat.table.mappings()) == [h2_map]


def test_a_hairpin_client_keeps_its_port_when_the_server_is_flushed():
    """The table reports a port freed only when no live mapping holds it (RFC 4787 REQ-1: one per client)."""
    nat, _ = make_nat()
    to_server = added(nat.add(parsed(tcp_bytes(H2, 7000, PUBLIC, 8080)), Hairpin(Endpoint(H1, 80)), now=0.0))
    outside = added(nat.add(parsed(tcp_bytes(H2, 7000, SERVER, 80)), SourceNat(), now=0.0))
    port = outside.public_endpoint.port
    assert to_server.public_endpoint.port == port  # one public port for the client, whatever the remote
    assert nat.remove_connections(H1).tcp == frozenset()
    assert nat.ports.owner_of(Proto.TCP, port) is not None
    assert nat.remove_connections(H2).tcp == {port}
    assert nat.ports.owner_of(Proto.TCP, port) is None


def test_remove_connections_of_100k_mappings_removes_them_all():
    nat, rec = make_nat(size=200_000)
    for sport in range(10_000, 60_000):
        for remote in (SERVER, REMOTE):
            added(nat.add(udp_datagram(H1, sport, remote, 53), SourceNat(), now=0.0))
    other = added(nat.add(udp_datagram(H2, 5000, SERVER, 53), SourceNat(), now=0.0))
    freed = nat.remove_connections(H1)
    assert len(rec.removed) == 100_000 and len(freed.udp) == 50_000
    assert list(nat.table.mappings()) == [other]
    assert nat.ports.in_use(Proto.UDP) == 1


def test_is_port_free_before_and_after():
    nat, _ = make_nat()
    pkt = parsed(udp_bytes(H1, 5000, SERVER, 53))
    mapping = added(nat.add(pkt, SourceNat(), now=0.0))
    port = mapping.public_endpoint.port
    assert not nat.is_port_free(Proto.UDP, SERVER, PUBLIC, 53, port)
    assert not nat.is_port_free(Proto.UDP, REMOTE, PUBLIC, 53, port)  # held by H1:5000
    nat.remove(mapping)
    assert nat.is_port_free(Proto.UDP, SERVER, PUBLIC, 53, port)


def test_table_full_evicts_least_recently_used_and_reports_both_channels():
    nat, rec = make_nat(size=2)
    first = added(nat.add(parsed(udp_bytes(H1, 5001, SERVER, 53)), SourceNat(), now=0.0))
    second = added(nat.add(parsed(udp_bytes(H1, 5002, SERVER, 53)), SourceNat(), now=1.0))
    nat.translate(parsed(udp_bytes(H1, 5001, SERVER, 53)), now=2.0)  # first is now the more recent
    third = added(nat.add(parsed(udp_bytes(H1, 5003, SERVER, 53)), SourceNat(), now=3.0))
    assert rec.removed == [(second, RemovalReason.EVICTED)]
    assert nat.table.lookup(Proto.UDP, second.original) is None
    assert nat.table.lookup(Proto.UDP, second.reply) is None
    assert {m.id for m in nat.table.mappings()} == {first.id, third.id}


def test_freed_port_is_not_reused_at_once():
    nat, _ = make_nat(port_range=PortRange(3000, 3001))
    old = added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0))
    nat.remove(old)
    new = added(nat.add(parsed(udp_bytes(H2, 5000, SERVER, 53)), SourceNat(), now=10.0))
    assert new.public_endpoint.port != old.public_endpoint.port


def test_quarantined_port_is_used_when_nothing_else_is_free():
    nat, _ = make_nat(port_range=PortRange(3000, 3000))
    old = added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0))
    nat.remove(old)
    new = added(nat.add(parsed(udp_bytes(H2, 5000, SERVER, 53)), SourceNat(), now=10.0))
    assert new.public_endpoint.port == 3000


def test_quarantine_ends_after_120_s():
    nat, _ = make_nat(port_range=PortRange(3000, 3001), seed=1)
    old = added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0))
    nat.remove(old)
    assert nat.ports.availability(Proto.UDP, old.public_endpoint.port, 0, now=119.0) is None
    assert nat.ports.availability(Proto.UDP, old.public_endpoint.port, 0, now=120.0) is True


def test_idle_mappings_expire_per_protocol_timeout():
    nat, rec = make_nat(timeouts=Timeouts(udp_s=30.0, icmp_s=10.0))
    udp = added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0))
    ping = added(nat.add(parsed(echo_bytes(H1, SERVER, 5)), SourceNat(), now=0.0))
    assert nat.expire(now=9.9) == 0
    assert nat.expire(now=10.0) == 1 and rec.removed == [(ping, RemovalReason.EXPIRED)]
    nat.translate(parsed(udp_bytes(H1, 5000, SERVER, 53)), now=25.0)
    assert nat.expire(now=54.9) == 0
    assert nat.expire(now=55.0) == 1 and rec.removed[-1] == (udp, RemovalReason.EXPIRED)


def test_mappings_with_infinite_timeout_never_expire():
    nat, _ = make_nat(timeouts=Timeouts(udp_s=1.0))
    added(nat.add(parsed(udp_bytes(H1, 5000, SERVER, 53)), SourceNat(), now=0.0, idle_timeout_s=math.inf))
    assert nat.expire(now=1e9) == 0 and nat.table.count(Proto.UDP) == 1


def test_reset_removes_everything_and_reports_each_once():
    nat, rec = make_nat()
    maps = [added(nat.add(parsed(udp_bytes(H1, 5000 + i, SERVER, 53)), SourceNat(), now=0.0)) for i in range(5)]
    nat.reset()
    assert sorted(m.id for m, _ in rec.removed) == sorted(m.id for m in maps)
    assert all(r is RemovalReason.RESET for _, r in rec.removed)
    assert nat.table.count(Proto.UDP) == 0 and nat.ports.in_use(Proto.UDP) == 0
