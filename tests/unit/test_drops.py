"""Every drop has a reason, every reason a meaning, and each reason is counted by a packet that earns it."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from ryu_nat.core.fragments import FragmentError, fragment
from ryu_nat.core.packet import ParseError
from ryu_nat.core.table import AddError
from ryu_nat.gateway.drops import DESCRIPTIONS, DropReason
from ryu_nat.gateway.stats import DESCRIPTIONS as COUNTERS

from ryu_nat.gateway.reassembly import Reassembly
from ryu_nat.gateway.restore import MAX_HELD
from ryu_nat.openflow.plan import OFPP_CONTROLLER

from .builders import frame, icmp_error_bytes, parsed, tcp_bytes, udp_bytes, with_ip_checksum
from .lab import (H1, H1_PORT, H2, H2_PORT, INTERNET, MACS, PRIVATE, PUBLIC, ROUTER_MAC, SERVER, UPLINK, Lab,
                  from_host)


def test_every_reason_has_a_description_and_every_description_a_reason():
    assert set(DESCRIPTIONS) == set(DropReason)
    assert all(text.strip() for text in DESCRIPTIONS.values())
    assert all(f"{reason.value} ({reason.description})" in COUNTERS["drops"] for reason in DropReason)


@pytest.mark.parametrize("error", [*ParseError, *FragmentError, *AddError])
def test_each_core_error_is_a_drop_reason_of_its_name(error):
    assert DropReason.of(error).value == error.value


def _bad_in_port(lab: Lab) -> None:
    lab.apply(lab.gateway.packet_in(OFPP_CONTROLLER, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)), lab.now))


def _bad_source_mac(lab: Lab) -> None:
    lab.send(H1_PORT, frame("ff:ff:ff:ff:ff:ff", ROUTER_MAC, udp_bytes(H1, 5000, SERVER, 53)))


def _truncated(lab: Lab) -> None:
    lab.apply(lab.gateway.packet_in(H1_PORT, bytes(10), lab.now))  # no switch would send it: straight in


def _not_ipv4(lab: Lab) -> None:
    lab.send(H1_PORT, frame(MACS[H1], ROUTER_MAC, b"\x60" + bytes(59), ethertype=0x86DD))


def _bad_header(lab: Lab) -> None:
    raw = bytearray(udp_bytes(H1, 5000, SERVER, 53))
    raw[2:4] = struct.pack("!H", 16)  # a total length shorter than the header itself
    lab.apply(lab.gateway.packet_in(H1_PORT, from_host(H1, with_ip_checksum(bytes(raw))), lab.now))


def _bad_ip_checksum(lab: Lab) -> None:
    raw = bytearray(udp_bytes(H1, 5000, SERVER, 53))
    raw[10] ^= 0xFF
    lab.send(H1_PORT, from_host(H1, bytes(raw)))


def _bad_transport(lab: Lab) -> None:
    raw = bytearray(udp_bytes(H1, 5000, SERVER, 53))
    raw[24:26] = struct.pack("!H", 4)  # a UDP length shorter than its header
    lab.send(H1_PORT, from_host(H1, bytes(raw)))


def _bad_icmp_checksum(lab: Lab) -> None:
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    error = bytearray(icmp_error_bytes(SERVER, PUBLIC, udp_bytes(PUBLIC, out["udp_src"], SERVER, 53)))
    error[22] ^= 0x01  # the ICMP checksum
    lab.send(UPLINK, from_host(SERVER, bytes(error)))


def _bad_embedded_checksum(lab: Lab) -> None:
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    about = bytearray(udp_bytes(PUBLIC, out["udp_src"], SERVER, 53))
    about[10] ^= 0x01  # the quoted header's checksum; the ICMP checksum covers the change
    lab.send(UPLINK, from_host(SERVER, icmp_error_bytes(SERVER, PUBLIC, bytes(about))))


def _dont_fragment(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53, payload=bytes(1600), flags=0b010)))


def _bad_arp(lab: Lab) -> None:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x86DD, 6, 4, 1, bytes.fromhex("000000000002"), bytes(4), bytes(6),
                       bytes(4))
    lab.send(H1_PORT, frame(MACS[H1], "ff:ff:ff:ff:ff:ff", body, ethertype=0x0806))


def _pieces(cut: int) -> list[bytes]:
    return fragment(parsed(udp_bytes(H1, 5000, SERVER, 9000, payload=bytes(3000))), cut)


def _fragment_overlap(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, _pieces(1480)[0]))  # payload bytes 0..1480
    lab.send(H1_PORT, from_host(H1, _pieces(1000)[1]))  # 1000..2000


def _fragment_too_big(lab: Lab) -> None:
    last = bytearray(_pieces(1480)[-1])
    last[6:8] = struct.pack("!H", 0x1FFF)  # offset 65,528 bytes
    lab.send(H1_PORT, from_host(H1, with_ip_checksum(bytes(last))))


def _fragment_unaligned(lab: Lab) -> None:
    more_to_come = udp_bytes(H1, 5000, SERVER, 9000, payload=bytes(4), flags=1)  # 12 bytes, not whole blocks
    lab.send(H1_PORT, from_host(H1, more_to_come))


def _fragment_no_room(lab: Lab) -> None:
    # Through the fragments part itself: through the gateway, a cache full of trusted datagrams takes live
    # mappings with four remotes at least (16 datagrams per source), and only a stranger's piece finds no room.
    part = Reassembly(lab.gateway.stats)
    for ident in range(64):  # the cache holds 64 datagrams, each from its own source here
        assert part.add(parsed(_pieces_from(f"198.51.100.{ident + 1}", ident)[0]), now=0.0) is None
    part.add(parsed(_pieces_from("203.0.113.9", 99)[0]), now=0.0, trusted=False)


def _pieces_from(src: str, ident: int) -> list[bytes]:
    return fragment(parsed(udp_bytes(src, 53, PUBLIC, 40000, payload=bytes(3000), ident=ident)), 1480)


def _fragment_evicted(lab: Lab) -> None:
    for ident in range(64):  # strangers' pieces fill the cache, each from its own (spoofed) source
        lab.send(UPLINK, from_host(SERVER, _pieces_from(f"198.51.100.{ident + 1}", ident)[0]))
    lab.send(H1_PORT, from_host(H1, _pieces(1480)[0]))  # a private host's piece is trusted: it displaces one


def _fragment_timeout(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, _pieces(1480)[0]))
    lab.advance(11)


def _fragment_malformed(lab: Lab) -> None:
    first, *rest = _pieces(1480)
    broken = bytearray(first)
    broken[24:26] = struct.pack("!H", 5000)  # UDP length past the datagram's end: fine in a piece, not whole
    for piece in (bytes(broken), *rest):
        lab.send(H1_PORT, from_host(H1, piece))


def _overlap(lab: Lab) -> None:
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)))
    lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8081)))  # to the same server port


def _cannot_nat(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, "192.168.3.255", 53)))


def _ports_exhausted(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 5000, SERVER, 53)))


def _table_full(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 5000, SERVER, 53)))


def _host_limit(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5001, SERVER, 53)))


def _hairpin_filtered(lab: Lab) -> None:
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 6000, PUBLIC, out["udp_src"])))  # H1 never sent to PUBLIC


def _not_for_us(lab: Lab) -> None:
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, "192.168.3.77", 53)))


def _spoofed_source(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(SERVER, 5000, INTERNET, 53)))


def _private_destination(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, H2, 53)))


def _local(lab: Lab) -> None:
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, PRIVATE, 53)))


def _unsolicited(lab: Lab) -> None:
    lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, 40000)))


def _untranslated_icmp_error(lab: Lab) -> None:
    about = udp_bytes(PUBLIC, 41000, SERVER, 53)
    lab.send(UPLINK, from_host(SERVER, icmp_error_bytes(SERVER, PUBLIC, about)))


def _ttl_exceeded(lab: Lab) -> None:
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    about = udp_bytes(PUBLIC, out["udp_src"], SERVER, 53)
    lab.send(UPLINK, from_host(SERVER, icmp_error_bytes(SERVER, PUBLIC, about, ttl=1)))  # no error about an error


def _arp_timeout(lab: Lab) -> None:
    lab.answer_arp = False
    lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, INTERNET, 53)))
    lab.advance(4)


def _arp_queue_full(lab: Lab) -> None:
    lab.answer_arp = False
    for sport in range(5000, 5017):  # 16 may wait for one next hop
        lab.send(H1_PORT, from_host(H1, udp_bytes(H1, sport, INTERNET, 53)))


def _restore_queue_full(lab: Lab) -> None:
    lab.restart(read_back=False)  # the table is being read back: routed packets wait, up to a bound
    for sport in range(5000, 5000 + MAX_HELD + 1):
        lab.send(H1_PORT, from_host(H1, udp_bytes(H1, sport, SERVER, 53)))


TRIGGERS: dict[DropReason, tuple[Callable[[Lab], None], dict[str, str]]] = {
    DropReason.BAD_IN_PORT: (_bad_in_port, {}),
    DropReason.BAD_SOURCE_MAC: (_bad_source_mac, {}),
    DropReason.TRUNCATED: (_truncated, {}),
    DropReason.NOT_IPV4: (_not_ipv4, {}),
    DropReason.BAD_HEADER: (_bad_header, {}),
    DropReason.BAD_IP_CHECKSUM: (_bad_ip_checksum, {}),
    DropReason.BAD_TRANSPORT: (_bad_transport, {}),
    DropReason.BAD_ICMP_CHECKSUM: (_bad_icmp_checksum, {}),
    DropReason.BAD_EMBEDDED_CHECKSUM: (_bad_embedded_checksum, {}),
    DropReason.DONT_FRAGMENT: (_dont_fragment, {}),
    DropReason.BAD_ARP: (_bad_arp, {}),
    DropReason.FRAGMENT_OVERLAP: (_fragment_overlap, {}),
    DropReason.FRAGMENT_TOO_BIG: (_fragment_too_big, {}),
    DropReason.FRAGMENT_MALFORMED: (_fragment_malformed, {}),
    DropReason.FRAGMENT_UNALIGNED: (_fragment_unaligned, {}),
    DropReason.FRAGMENT_NO_ROOM: (_fragment_no_room, {}),
    DropReason.FRAGMENT_EVICTED: (_fragment_evicted, {}),
    DropReason.FRAGMENT_TIMEOUT: (_fragment_timeout, {}),
    DropReason.OVERLAP: (_overlap, {"redirects": f"tcp:8080={H1}:80, tcp:8081={H1}:80"}),
    DropReason.CANNOT_NAT: (_cannot_nat, {}),
    DropReason.PORTS_EXHAUSTED: (_ports_exhausted, {"port_range": "2000-2000"}),
    DropReason.TABLE_FULL: (_table_full, {"udp_table_size": "1", "when_full": "refuse"}),
    DropReason.HOST_LIMIT: (_host_limit, {"max_mappings_per_host": "1", "when_full": "refuse"}),
    DropReason.NOT_FOR_US: (_not_for_us, {}),
    DropReason.SPOOFED_SOURCE: (_spoofed_source, {}),
    DropReason.PRIVATE_DESTINATION: (_private_destination, {}),
    DropReason.LOCAL: (_local, {}),
    DropReason.UNSOLICITED: (_unsolicited, {}),
    DropReason.HAIRPIN_FILTERED: (_hairpin_filtered, {}),
    DropReason.UNTRANSLATED_ICMP_ERROR: (_untranslated_icmp_error, {}),
    DropReason.TTL_EXCEEDED: (_ttl_exceeded, {}),
    DropReason.ARP_TIMEOUT: (_arp_timeout, {}),
    DropReason.ARP_QUEUE_FULL: (_arp_queue_full, {}),
    DropReason.RESTORE_QUEUE_FULL: (_restore_queue_full, {}),
}


def test_every_reason_has_a_packet_that_earns_it():
    assert set(TRIGGERS) == set(DropReason)


@pytest.mark.parametrize("reason", list(DropReason), ids=lambda reason: reason.value)
def test_the_packet_that_earns_a_reason_is_counted_under_it_alone(reason):
    trigger, overrides = TRIGGERS[reason]
    lab = Lab(overrides)
    trigger(lab)
    counted = {name: count for name, count in lab.gateway.stats.drops.items() if count}
    assert counted == {reason.value: 1}
