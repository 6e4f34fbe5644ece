"""Properties of the NAT core over random sequences of operations (hypothesis)."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ryu_nat.core.addresses import Endpoint, Proto
from ryu_nat.core.limits import Timeouts
from ryu_nat.core.nat import Hairpin, Redirect, SourceNat, Translated
from ryu_nat.core.ports import PortRange
from ryu_nat.core.table import Mapping, MappingKind

from .builders import parsed, tcp_bytes, udp_bytes
from .corefix import PUBLIC, make_nat

PRIVATE_HOSTS = [IPv4Address(f"10.0.0.{i}") for i in range(2, 6)]
REMOTES = [IPv4Address("192.168.3.10"), IPv4Address("198.51.100.10"), IPv4Address("203.0.113.5")]
ports = st.sampled_from([53, 80, 1000, 5000, 5001, 40000])
SIZES = {Proto.TCP: 6, Proto.UDP: 5, Proto.ICMP: 3}


@given(host=st.sampled_from(PRIVATE_HOSTS),
       remote=st.ip_addresses(v=4).filter(lambda a: a.is_global and not a.is_multicast),
       sport=st.integers(1, 65535), dport=st.integers(1, 65535))
def test_reply_to_a_translated_packet_returns_to_its_sender(host, remote, sport, dport):
    nat, _ = make_nat()
    pkt = parsed(udp_bytes(host, sport, remote, dport))
    assert isinstance(nat.add(pkt, SourceNat(), now=0.0), Mapping)
    out = nat.translate(pkt, now=0.0)
    assert isinstance(out, Translated)
    reply = parsed(udp_bytes(out.packet.channel.dst, dport, PUBLIC, out.packet.src_port))
    back = nat.translate(reply, now=1.0)
    assert isinstance(back, Translated)
    assert back.packet.channel == pkt.channel.reversed()


class NatMachine(RuleBasedStateMachine):
    """Random adds, translations, removals and expiry against a small table."""

    def __init__(self) -> None:
        super().__init__()
        self.nat, self.recorder = make_nat(sizes=SIZES, port_range=PortRange(2000, 2015),
                                           timeouts=Timeouts(udp_s=20.0, tcp_established_s=40.0,
                                                             tcp_transitory_s=5.0))
        self.now = 0.0
        self.added_ids: set[int] = set()

    def _add(self, raw: bytes, mode: SourceNat | Redirect | Hairpin) -> None:
        result = self.nat.add(parsed(raw), mode, now=self.now)
        if isinstance(result, Mapping):
            self.added_ids.add(result.id)

    @rule(host=st.sampled_from(PRIVATE_HOSTS), remote=st.sampled_from(REMOTES), sport=ports, dport=ports,
          tcp=st.booleans())
    def add_source_nat(self, host, remote, sport, dport, tcp):
        build = tcp_bytes if tcp else udp_bytes
        self._add(build(host, sport, remote, dport), SourceNat())

    @rule(remote=st.sampled_from(REMOTES), sport=ports, server=st.sampled_from(PRIVATE_HOSTS))
    def add_redirect(self, remote, sport, server):
        self._add(tcp_bytes(remote, sport, PUBLIC, 8080), Redirect(Endpoint(server, 80)))

    @rule(client=st.sampled_from(PRIVATE_HOSTS), sport=ports, server=st.sampled_from(PRIVATE_HOSTS))
    def add_hairpin(self, client, sport, server):
        self._add(udp_bytes(client, sport, PUBLIC, 5353), Hairpin(Endpoint(server, 53)))

    @rule(data=st.data())
    def translate_both_ways(self, data):
        live = list(self.nat.table.mappings())
        if not live:
            return
        mapping = data.draw(st.sampled_from(live))
        build = tcp_bytes if mapping.proto is Proto.TCP else udp_bytes
        original = mapping.original_channel
        pkt = parsed(build(original.src, original.src_port, original.dst, original.dst_port))
        out = self.nat.translate(pkt, now=self.now)
        assert isinstance(out, Translated)
        # The reply to what left comes back as the reply to what arrived.
        sent = out.packet.channel
        reply = parsed(build(sent.dst, sent.dst_port, sent.src, sent.src_port))
        back = self.nat.translate(reply, now=self.now)
        assert isinstance(back, Translated)
        assert back.packet.channel == original.reversed()

    @rule(host=st.sampled_from(PRIVATE_HOSTS))
    def remove_connections(self, host):
        freed = self.nat.remove_connections(host)
        assert not list(self.nat.table.mappings(host=host))
        for proto in Proto:
            for port in freed.for_proto(proto):
                assert self.nat.ports.owner_of(proto, port) is None

    @rule(seconds=st.floats(0.5, 30.0))
    def advance_and_expire(self, seconds):
        self.now += seconds
        self.nat.expire(self.now)
        assert all(m.deadline > self.now for m in self.nat.table.mappings())

    @rule()
    def reset(self):
        self.nat.reset()

    @invariant()
    def sizes_are_never_exceeded(self):
        for proto, size in SIZES.items():
            assert self.nat.table.count(proto) <= size

    @invariant()
    def every_removal_is_reported_once_and_the_rest_are_live(self):
        removed = [m.id for m, _ in self.recorder.removed]
        assert len(removed) == len(set(removed))
        live = {m.id for m in self.nat.table.mappings()}
        assert live | set(removed) == self.added_ids and not live & set(removed)

    @invariant()
    def no_two_private_endpoints_share_a_public_slot(self):
        owners: dict[tuple[Proto, int], Endpoint] = {}
        for mapping in self.nat.table.mappings():
            if mapping.kind is MappingKind.REDIRECT:
                continue
            slot = (mapping.proto, mapping.public_endpoint.port)
            assert owners.setdefault(slot, mapping.private_endpoint) == mapping.private_endpoint

    @invariant()
    def pages_of_any_size_and_filter_give_the_live_mappings_in_id_order(self):
        table = self.nat.table
        for proto in (None, *Proto):
            for host in (None, PRIVATE_HOSTS[0]):
                expected = sorted((m.id for m in table.mappings(proto, host)))
                for limit in (1, 2, 7):
                    walked, after = [], -1
                    while True:
                        page = table.page(after, limit, proto, host)
                        assert len(page.mappings) <= limit
                        walked += [m.id for m in page.mappings]
                        if page.next_after is None:
                            break
                        after = page.next_after
                    assert walked == expected
                assert table.matching(proto, host) == len(expected)

    @invariant()
    def both_channels_of_every_mapping_are_present(self):
        for mapping in self.nat.table.mappings():
            assert self.nat.table.lookup(mapping.proto, mapping.original) is mapping
            assert self.nat.table.lookup(mapping.proto, mapping.reply) is mapping


NatMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_nat_state_machine = NatMachine.TestCase
