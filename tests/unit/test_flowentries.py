"""Rules read back from flow-statistics bytes: what the app installs comes back equal, and what it never
installs is told apart; hostile bytes are refused in bounded time."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.core.addresses import Proto, pack_key, reverse_key
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.flowentries import SwitchRule
from ryu_nat.openflow.multipart import (MIN_ENTRY_LEN, AggregatePart, DecodeError, FlowEntriesPart, decode_aggregate,
                                        decode_flow_entries)
from ryu_nat.openflow.plan import FlowRule, Match, Output

from .fakedp import aggregate_reply, flow_stats_entry, multipart_reply

ROUTER_MAC = "02:4e:41:54:00:01"
H1, SERVER, PUBLIC = 0x0A000002, 0xC0A8030A, 0xC0A80301
ORIGINAL_KEY = pack_key(H1, SERVER, 5000, 53)
REPLY_KEY = pack_key(SERVER, PUBLIC, 53, 40123)


def mapping_rules(mapping_id: int = 12, proto: Proto = Proto.UDP, timeout: int = 300) -> tuple[FlowRule, FlowRule]:
    original = rules.mapping_rewrite(RuleKind.ORIGINAL, mapping_id, proto, ORIGINAL_KEY, reverse_key(REPLY_KEY), 2,
                                     ROUTER_MAC, "00:00:00:00:03:fe", 1, timeout)
    reply = rules.mapping_rewrite(RuleKind.REPLY, mapping_id, proto, REPLY_KEY, reverse_key(ORIGINAL_KEY), 1,
                                  ROUTER_MAC, "00:00:00:00:00:02", 2, timeout)
    return original, reply


def flows(*entries: bytes, xid: int = 9, more: bool = False) -> bytes:
    return multipart_reply(xid, ofp.OFPMP_FLOW, b"".join(entries), more)


def test_the_rules_the_app_installs_come_back_equal_with_their_age_and_counters():
    original, reply = mapping_rules()
    drop = rules.drop_unsolicited(1, PUBLIC, Proto.TCP, 8080, 10)
    part = decode_flow_entries(flows(flow_stats_entry(original, 3.5, 7, 700), flow_stats_entry(reply),
                                     flow_stats_entry(drop), more=True))
    assert isinstance(part, FlowEntriesPart) and (part.xid, part.more) == (9, True)
    read = [rule.as_rule() for rule in part.rules]
    assert read == [original, reply, drop]
    assert (part.rules[0].duration_s, part.rules[0].packets, part.rules[0].bytes) == (3.5, 7, 700)


def test_a_rule_with_a_field_or_action_the_nat_never_uses_is_not_read_as_one_of_its_own():
    base = rules.base(ROUTER_MAC, 1)  # the FIN and RST rules match tcp_flags, an ONF field in OpenFlow 1.3
    fin = next(rule for rule in base if rule.match.get("tcp_flags") is not None)
    masked = FlowRule(200, Match.of(eth_type=0x0800, ipv4_src=("10.0.0.0", "255.0.0.0")), (Output(1),), 1)
    part = decode_flow_entries(flows(flow_stats_entry(fin), flow_stats_entry(masked)))
    assert isinstance(part, FlowEntriesPart)
    assert [(rule.match, rule.actions is not None) for rule in part.rules] == [(None, True), (None, True)]
    assert all(rule.as_rule() is None for rule in part.rules)


def test_a_mapping_rule_reads_back_as_the_rewrite_it_was_built_from():
    original, reply = mapping_rules(timeout=240)
    read = rules.read_rewrite(original, ROUTER_MAC)
    assert read == rules.Rewrite(RuleKind.ORIGINAL, 12, Proto.UDP, ORIGINAL_KEY, reverse_key(REPLY_KEY), 2, 1,
                                 "00:00:00:00:03:fe", 240)
    assert rules.read_rewrite(reply, ROUTER_MAC).leaving == reverse_key(ORIGINAL_KEY)
    hairpin = rules.mapping_rewrite(RuleKind.ORIGINAL, 3, Proto.TCP, ORIGINAL_KEY, reverse_key(REPLY_KEY), 2,
                                    ROUTER_MAC, "00:00:00:00:00:03", 2, 7440)  # back out of its own port
    assert rules.read_rewrite(hairpin, ROUTER_MAC).out_port == 2


def test_rules_of_another_shape_are_not_rewrites():
    original, _ = mapping_rules()
    other_mac = rules.read_rewrite(original, "02:00:00:00:00:99")
    no_flag = FlowRule(original.priority, original.match, original.actions, original.cookie, 300)
    base_cookie = FlowRule(200, original.match, original.actions, cookies.make(RuleKind.BASE), 300, 0, True)
    no_ttl = FlowRule(200, original.match, original.actions[1:], original.cookie, 300, 0, True)
    extra_field = FlowRule(200, Match((*original.match.fields, ("eth_dst", ROUTER_MAC))), original.actions,
                           original.cookie, 300, 0, True)
    assert [other_mac, *(rules.read_rewrite(rule, ROUTER_MAC) for rule in (no_flag, base_cookie, no_ttl,
                                                                           extra_field))] == [None] * 5


def test_an_aggregate_reply_gives_its_count():
    assert decode_aggregate(aggregate_reply(5, 123456)) == AggregatePart(5, 123456)
    assert decode_aggregate(aggregate_reply(5, 1)[:-4]) == DecodeError.SHORT
    assert decode_aggregate(flows()) == DecodeError.NOT_FLOW_STATS


def test_inner_lengths_that_lie_make_the_rule_unreadable_not_the_part():
    original, _ = mapping_rules()
    entry = bytearray(flow_stats_entry(original))
    at = 48 + (struct.unpack_from("!H", entry, 50)[0] + 7) // 8 * 8  # the instruction
    struct.pack_into("!H", entry, at + 2, 4096)
    part = decode_flow_entries(flows(bytes(entry)))
    assert isinstance(part, FlowEntriesPart) and part.rules[0].actions is None
    struct.pack_into("!H", entry, 50, 4000)  # a match longer than its entry: the part is refused
    assert decode_flow_entries(flows(bytes(entry))) == DecodeError.BAD_MATCH_LENGTH


@given(st.binary(max_size=600))
def test_any_bytes_decode_or_are_refused_without_raising(noise):
    head = flows()[:16]
    for data in (noise, head[:2] + struct.pack("!H", 16 + len(noise)) + head[4:] + noise):
        part = decode_flow_entries(data)
        assert isinstance(part, (FlowEntriesPart, DecodeError))
        if isinstance(part, FlowEntriesPart):
            assert len(part.rules) <= len(data) // MIN_ENTRY_LEN
            assert all(isinstance(rule, SwitchRule) for rule in part.rules)


@given(st.binary(min_size=8, max_size=200))
def test_any_bytes_inside_an_entry_give_a_rule_or_none_without_raising(inside):
    inside = inside[:len(inside) // 8 * 8]
    entry = struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, 48 + 8 + len(inside), 0, 0, 0, 200, 0, 0, 1, 7, 0, 0)
    match_head = struct.pack("!HH4x", 1, 4)
    part = decode_flow_entries(flows(entry + match_head + inside))
    assert isinstance(part, FlowEntriesPart)
