"""The operator's side of reading the switch's rules back: POST and GET /nat/consistency, /metrics for the
repairs, GET /nat/explain; every answer checked against openapi.json (restlab.Api)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ryu_nat.gateway.audit import Finding
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.restore import RestoreOutcome
from ryu_nat.openflow import cookies
from ryu_nat.operator import metrics

from .builders import udp_bytes
from .lab import H1, H1_PORT, H2, INTERNET, PUBLIC, SERVER, from_host
from .restlab import Api
from .test_restore import mapping_rules, udp_rules


def repairs(api: Api) -> dict[str, float]:
    text = api.request("GET", "/metrics", content_type=None).text
    return {sample.labels["finding"]: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == "ryu_nat_consistency_repairs_total"}


def test_an_audit_asked_for_repairs_and_reports_what_it_found():
    api = Api()
    api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    api.lab.apply(udp_rules(700, H2, 7000, INTERNET, 53, 30000))  # an orphan pair
    before = api.get("/nat/consistency")
    assert before["last_audit"] is None and not before["restoring"]
    status, started = api.call("POST", "/nat/consistency")
    assert status == 202 and started["running"] is None  # the simulated switch answered at once
    report = api.get("/nat/consistency")
    audit = report["last_audit"]
    assert (audit["purpose"], audit["running"], audit["counts"]) == ("audit", False, {"orphan_rule": 2})
    assert audit["slices"] >= 1 and audit["rules_read"] >= 4 and report["audit"]["runs"] == 1
    assert {cookies.mapping_id_of(r.cookie) for r in mapping_rules(api.lab)} == {1}
    assert repairs(api) == {"orphan_rule": 2.0, "missing_rule": 0.0, "mismatch": 0.0, "port_owned_twice": 0.0,
                            "outside_layout": 0.0}
    assert report["next_audit_in_s"] == 600.0


def test_the_metrics_name_every_finding_and_every_reason_to_delete_a_rule_at_a_restore():
    assert set(metrics.AUDIT_FINDINGS) == {finding.value for finding in Finding}
    kept = {RestoreOutcome.RESTORED.value, RestoreOutcome.RESTORED_ONE_RULE.value}
    assert set(metrics.RESTORE_DELETED) == {outcome.value for outcome in RestoreOutcome} - kept


def test_explain_answers_in_json_with_the_mapping_its_rules_and_where_the_packet_goes():
    api = Api()
    [(_, out)] = api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    answer = api.get(f"/nat/explain?proto=udp&src={SERVER}:53&dst={PUBLIC}:{out['udp_src']}")
    assert (answer["outcome"], answer["packet"]["from"], answer["rule_state"]) == ("translated", "public",
                                                                                   "installed")
    assert answer["mapping"]["private"] == {"ip": H1, "port": 5000}
    assert answer["leaves_as"] == {"src": {"ip": SERVER, "port": 53}, "dst": {"ip": H1, "port": 5000}}
    assert [rule["cookie"] for rule in answer["rules"]] == [hex(cookies.make(kind, 1)) for kind in
                                                             (cookies.RuleKind.ORIGINAL, cookies.RuleKind.REPLY)]
    assert f"set_field:{H1}->ipv4_dst" in answer["rules"][1]["actions"]
    dropped = api.get(f"/nat/explain?proto=tcp&src={INTERNET}:7000&dst={PUBLIC}:7777")
    assert dropped["reason"] == {"code": "unsolicited", "description": DropReason.UNSOLICITED.description}
    ping = api.get(f"/nat/explain?proto=icmp&src={H1}&dst={PUBLIC}&id=9")
    assert (ping["outcome"], ping["packet"]["src"]["port"]) == ("answered", 9)
    assert api.lab.gateway.stats.drops["unsolicited"] == 0  # explaining a drop does not count one


def test_explain_refuses_what_describes_no_packet():
    api = Api()
    api.error("GET", f"/nat/explain?proto=udp&src={H1}:5000", 400, "bad_parameter")
    api.error("GET", f"/nat/explain?proto=gre&src={H1}:1&dst={SERVER}:1", 400, "unknown_protocol")
    api.error("GET", f"/nat/explain?proto=udp&src={H1}&dst={SERVER}:53", 400, "bad_address")
    api.error("GET", f"/nat/explain?proto=udp&src={H1}:5000&dst={SERVER}:53&id=1", 400, "bad_parameter")
    api.error("GET", f"/nat/explain?proto=icmp&src={H1}&dst={SERVER}&id=70000", 400, "bad_parameter")
    api.error("GET", f"/nat/explain?proto=udp&src={H1}:0&dst={SERVER}:53", 400, "bad_port")


def test_an_audit_while_no_switch_is_connected_is_refused():
    api = Api(connected=False)
    api.error("POST", "/nat/consistency", 503, "no_switch")
    assert api.get("/nat/consistency")["running"] is None
