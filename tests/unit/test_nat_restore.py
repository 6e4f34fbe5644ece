"""Mappings put back after a restart (ids kept, ports re-acquired, conflicts refused), and dry runs that decide
exactly as the real thing and change nothing."""

from __future__ import annotations

import math
import random

from ryu_nat.core.addresses import Endpoint, Proto, pack_key
from ryu_nat.core.nat import Hairpin, Redirect, SourceNat, Translated, TranslateError
from ryu_nat.core.putback import RestoreError, restore
from ryu_nat.core.ports import PortRange
from ryu_nat.core.table import AddError, Mapping, MappingKind

from .builders import parsed, tcp_bytes, udp_bytes
from .corefix import H1, H2, PUBLIC, REMOTE, SERVER, make_nat


def nat_mapping(mapping_id: int, host=H1, port: int = 5000, public_port: int = 40000,
                proto: Proto = Proto.UDP) -> Mapping:
    original = pack_key(int(host), int(SERVER), port, 53)
    reply = pack_key(int(SERVER), int(PUBLIC), 53, public_port)
    return Mapping(mapping_id, proto, original, reply, MappingKind.NAT, 0.0, math.inf)


def test_a_restored_mapping_translates_both_ways_and_holds_its_port():
    nat, _ = make_nat()
    assert restore(nat, nat_mapping(7)) is None
    out = nat.translate(parsed(udp_bytes(H1, 5000, SERVER, 53)), now=1.0)
    assert isinstance(out, Translated) and out.packet.src_port == 40000 and out.mapping.id == 7
    back = nat.translate(parsed(udp_bytes(SERVER, 53, PUBLIC, 40000)), now=1.0)
    assert isinstance(back, Translated) and back.mapping.id == 7
    assert nat.ports.owner_of(Proto.UDP, 40000) is not None
    # The same endpoint keeps its port for a new remote (RFC 4787 REQ-1).
    again = nat.add(parsed(udp_bytes(H1, 5000, REMOTE, 53)), SourceNat(), now=2.0)
    assert isinstance(again, Mapping) and again.public_endpoint.port == 40000


def test_a_port_owned_twice_an_endpoint_with_two_ports_a_redirected_port_and_an_overlap_are_refused():
    nat, _ = make_nat()
    nat.ports.reserve(Proto.UDP, 8080)
    assert restore(nat, nat_mapping(1)) is None
    assert restore(nat, nat_mapping(2, host=H2)) is RestoreError.PORT_OWNED_TWICE  # 40000 is H1:5000's
    assert restore(nat, nat_mapping(3, public_port=41000)) is RestoreError.PORT_OWNED_TWICE  # H1:5000 has 40000
    assert restore(nat, nat_mapping(4, host=H2, public_port=8080)) is RestoreError.PORT_OWNED_TWICE
    duplicate = Mapping(5, Proto.UDP, nat_mapping(1).original, pack_key(1, 2, 3, 4), MappingKind.REDIRECT, 0.0,
                        math.inf)
    assert restore(nat, duplicate) is RestoreError.OVERLAP
    assert restore(nat, nat_mapping(1, host=H2, public_port=42000)) is RestoreError.ID_REUSED
    assert [m.id for m in nat.table.mappings()] == [1] and nat.ports.in_use(Proto.UDP) == 1


def test_new_ids_start_above_the_highest_one_read_back():
    nat, _ = make_nat()
    restore(nat, nat_mapping(1000))
    nat.ids_above(5000)  # a rule deleted as unrebuildable had 5000: its id is not given out again
    added = nat.add(parsed(udp_bytes(H2, 6000, SERVER, 53)), SourceNat(), now=1.0)
    assert isinstance(added, Mapping) and added.id == 5001
    nat.ids_above(10)  # never backwards
    assert nat.add(parsed(udp_bytes(H2, 6001, SERVER, 53)), SourceNat(), now=1.0).id == 5002


def test_a_dry_run_add_decides_as_the_real_one_and_changes_nothing():
    nat, _ = make_nat(port_range=PortRange(2000, 2001))
    first = parsed(udp_bytes(H1, 5000, SERVER, 53))
    would = nat.add(first, SourceNat(), now=0.0, dry_run=True, port_generator=lambda proto, port: 2000)
    assert isinstance(would, Mapping) and would.id == 0 and would.public_endpoint.port == 2000
    assert nat.table.count(Proto.UDP) == 0 and nat.ports.in_use(Proto.UDP) == 0
    real = nat.add(first, SourceNat(), now=0.0)
    assert isinstance(real, Mapping) and real.id == 1  # the dry run took no id
    nat.add(parsed(udp_bytes(H2, 5000, SERVER, 53)), SourceNat(), now=0.0)
    third = parsed(udp_bytes(H2, 5001, SERVER, 53))
    generator = random.Random(1)
    assert nat.add(third, SourceNat(), now=0.0, dry_run=True,
                   port_generator=lambda proto, port: generator.choice((2000, 2001))) is AddError.PORTS_EXHAUSTED
    redirect = parsed(tcp_bytes(REMOTE, 7000, PUBLIC, 8080))
    would_redirect = nat.add(redirect, Redirect(Endpoint(H2, 80)), now=0.0, dry_run=True)
    assert isinstance(would_redirect, Mapping) and would_redirect.kind is MappingKind.REDIRECT
    hairpin = parsed(tcp_bytes(H1, 7000, PUBLIC, 8080))
    assert isinstance(nat.add(hairpin, Hairpin(Endpoint(H2, 80)), now=0.0, dry_run=True), Mapping)
    answer = parsed(udp_bytes(SERVER, 53, PUBLIC, real.public_endpoint.port))  # a reply channel, not a new one
    assert nat.add(answer, Redirect(Endpoint(H2, 53)), now=0.0, dry_run=True) is AddError.OVERLAP
    assert nat.table.count(Proto.TCP) == 0 and nat.ports.in_use(Proto.TCP) == 0


def test_a_dry_run_translation_neither_touches_nor_changes_the_connections_state():
    nat, _ = make_nat()
    syn = parsed(tcp_bytes(H1, 5000, SERVER, 80))
    mapping = nat.add(syn, SourceNat(), now=0.0)
    rst = parsed(tcp_bytes(H1, 5000, SERVER, 80, bits=0x04))
    would = nat.translate(rst, now=50.0, dry_run=True)
    assert isinstance(would, Translated) and would.mapping is mapping and would.tcp_change is None
    assert (mapping.last_used, mapping.flags, mapping.closing) == (0.0, 0, False)
    assert nat.translate(rst, now=50.0).tcp_change is not None and mapping.closing  # as a packet does
    assert nat.translate(parsed(tcp_bytes(H2, 1, SERVER, 80)), now=1.0, dry_run=True) is TranslateError.UNTRANSLATED
