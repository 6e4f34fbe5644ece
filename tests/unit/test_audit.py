"""The audit finds each kind of disagreement between the switch's rules and the table, repairs it, and counts
it; a table that agrees with its switch costs nothing but the reading."""

from __future__ import annotations

from ryu_nat.gateway.offload import RuleState
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import FlowRule, Match, SetField

from .builders import tcp_bytes, udp_bytes
from .lab import H1, H1_PORT, H2, H2_PORT, INTERNET, PUBLIC, SERVER, UPLINK, Lab, from_host
from .test_restore import mapping_rules, udp_rules


def findings(lab: Lab) -> dict[str, int]:
    return {name: count for name, count in lab.gateway.stats.audit.items() if count and name != "runs"}


def live_udp(lab: Lab) -> tuple[int, dict]:
    [(_, out)] = lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    [mapping] = lab.gateway.mappings()
    return mapping.id, out


def test_a_switch_that_agrees_with_the_table_has_nothing_to_repair():
    lab = Lab()
    live_udp(lab)
    lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6000, SERVER, 80)))
    before = sorted(lab.switch.rules(), key=repr)
    lab.audit()
    assert findings(lab) == {} and sorted(lab.switch.rules(), key=repr) == before


def test_an_orphan_rule_is_deleted():
    lab = Lab()
    live_udp(lab)
    lab.apply(udp_rules(700, H2, 7000, INTERNET, 53, 30000))
    lab.audit()
    assert findings(lab) == {"orphan_rule": 2}
    assert {cookies.mapping_id_of(r.cookie) for r in mapping_rules(lab)} == {1}


def test_a_missing_rule_is_installed_again():
    lab = Lab()
    mapping_id, _ = live_udp(lab)
    [gone] = lab.switch.remove_silently(cookies.make(RuleKind.REPLY, mapping_id))
    lab.audit()
    assert findings(lab) == {"missing_rule": 1}
    assert gone in lab.switch.rules() and len(mapping_rules(lab)) == 2


def test_a_missing_rule_whose_ends_are_unknown_waits_for_the_next_packet():
    lab = Lab()
    mapping_id, out = live_udp(lab)
    lab.switch.remove_silently(cookies.make(RuleKind.REPLY, mapping_id))
    lab.restart()  # the new controller knows the mapping, not yet where its ends are
    lab.switch.remove_silently(cookies.make(RuleKind.ORIGINAL, mapping_id))
    lab.audit()
    [mapping] = lab.gateway.mappings()
    assert findings(lab) == {"missing_rule": 1} and lab.gateway.rule_state(mapping) is RuleState.ABSENT
    [(port, back)] = lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, out["udp_src"])))
    assert (port, back["ipv4_dst"]) == (H1_PORT, H1) and len(mapping_rules(lab)) == 2


def test_a_rule_whose_rewrite_disagrees_is_deleted_and_comes_back_with_the_next_packet():
    lab = Lab()
    mapping_id, out = live_udp(lab)
    [reply] = lab.switch.remove_silently(cookies.make(RuleKind.REPLY, mapping_id))
    wrong = tuple(SetField("udp_dst", 9) if isinstance(a, SetField) and a.field == "udp_dst" else a
                  for a in reply.actions)
    lab.apply([FlowRule(reply.priority, reply.match, wrong, reply.cookie, reply.idle_timeout_s, 0, True)])
    lab.audit()
    assert findings(lab) == {"mismatch": 1}
    assert [cookies.kind_of(r.cookie) for r in mapping_rules(lab)] == [RuleKind.ORIGINAL]
    [(port, back)] = lab.send(UPLINK, from_host(SERVER, udp_bytes(SERVER, 53, PUBLIC, out["udp_src"])))
    assert (port, back["udp_dst"]) == (H1_PORT, 5000) and reply in lab.switch.rules()


def test_a_second_rule_of_one_kind_is_a_mismatch():
    lab = Lab()
    mapping_id, _ = live_udp(lab)
    [original] = lab.switch.rules_with_cookie(cookies.make(RuleKind.ORIGINAL, mapping_id))
    moved = Match(tuple(("in_port", H2_PORT) if k == "in_port" else (k, v) for k, v in original.match.fields))
    lab.apply([FlowRule(original.priority, moved, original.actions, original.cookie, 300, 0, True)])
    lab.audit()
    assert findings(lab) == {"mismatch": 1}
    assert [cookies.kind_of(r.cookie) for r in mapping_rules(lab)] == [RuleKind.REPLY]


def test_a_rule_that_gives_away_a_held_port_is_deleted():
    lab = Lab()
    _, out = live_udp(lab)
    lab.apply(udp_rules(700, H2, 7000, INTERNET, 53, out["udp_src"]))
    lab.audit()
    assert findings(lab) == {"port_owned_twice": 2}
    assert {cookies.mapping_id_of(r.cookie) for r in mapping_rules(lab)} == {1}


def test_a_rule_of_ours_in_no_known_shape_is_deleted():
    lab = Lab()
    live_udp(lab)
    lab.apply([FlowRule(10, Match(), (), cookies.OURS | 0x77 << 40 | 3),
               FlowRule(200, Match.of(eth_type=0x0800, in_port=H2_PORT), (), cookies.make(RuleKind.ORIGINAL, 800))])
    lab.audit()
    assert findings(lab) == {"outside_layout": 2} and len(mapping_rules(lab)) == 2


def test_rules_that_change_while_a_slice_is_asked_for_are_left_to_the_next_audit():
    lab = Lab()
    live_udp(lab)
    review = lab.gateway.review
    as_asked = lab.switch_rules(cookies.OURS, cookies.OURS_MASK)  # the reply, made when the request arrived
    review.audit_watch()
    lab.send(H2_PORT, from_host(H2, udp_bytes(H2, 5000, SERVER, 53)))  # installed after the request went out
    lab.apply(review.audit_slice((0, 2**40 - 1), as_asked, 512))
    assert findings(lab) == {} and len(mapping_rules(lab)) == 4
    lab.apply(review.audit_slice((0, 2**40 - 1), as_asked, 512))  # not watched: both of its rules look missing
    assert findings(lab) == {"missing_rule": 2}
