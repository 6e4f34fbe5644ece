"""The REST API without a server: every endpoint, every error, and the answers against openapi.json.

Mappings come from real frames through the simulated switch (``Lab``); plans the
API sends are applied to that switch, so removals are checked on its rules.
"""

from __future__ import annotations

import json
import logging
import re

import pytest

from ryu_nat.operator import guard, rest, wsgi
from ryu_nat.operator.statefile import StateFile
from ryu_nat.core.addresses import Proto
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind

from . import openapi_check
from .builders import echo_bytes, tcp_bytes, udp_bytes
from .lab import H1, H1_PORT, H2, H2_PORT, PRIVATE, PUBLIC, SERVER, UPLINK, Lab, arp_request, from_host
from .restlab import BYTES_PER_PACKET, Api

NEW_REDIRECT = {"protocol": "tcp", "public_port": 9090, "private": {"ip": H2, "port": 80}}


@pytest.fixture
def api() -> Api:
    return Api()


def udp_from_h1(api: Api, sport: int = 5000) -> int:
    """H1 sends UDP to SERVER:53; the public port it left from."""
    [(port, out)] = api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, sport, SERVER, 53)))
    assert port == UPLINK
    return int(out["udp_src"])


def tcp_from_h2(api: Api) -> int:
    [(port, out)] = api.lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6000, SERVER, 80)))
    assert port == UPLINK
    return int(out["tcp_src"])


def mapping_rules(api: Api) -> list:
    return [rule for rule in api.lab.switch.rules()
            if cookies.kind_of(rule.cookie) in (RuleKind.ORIGINAL, RuleKind.REPLY)]


def mapping_rules_of(api: Api, host: str) -> list:
    """Rewrite rules that match on ``host`` or rewrite to it."""
    return [rule for rule in mapping_rules(api) if f"'{host}'" in str(rule)]


# --- the page and the description ---------------------------------------------------------------------


def test_page_is_self_contained_html_that_polls_the_api(api):
    response = api.request("GET", "/nat/")
    page = response.text
    assert response.status_int == 200 and response.content_type == "text/html"
    assert '<table id="mappings"' in page and "/nat/mappings" in page and "/nat/stats" in page
    assert not re.search(r"""(src|href)\s*=|https?://|@import""", page)  # no external assets


def test_page_shows_the_first_page_of_mappings_in_its_html(api):
    public_port = udp_from_h1(api)
    tcp_from_h2(api)
    api.lab.now = 2.5
    page = api.request("GET", "/nat/").text
    assert "loading" not in page and '<div id="status">switch 0000000000000001</div>' in page
    rows = re.findall(r'<tr class="nat" data-id="\d+" data-private="([\d.]+:\d+)">(.*?)</tr>', page)
    assert [private for private, _ in rows] == [f"{H1}:5000", f"{H2}:6000"]
    assert re.sub("<[^>]+>", " ", rows[0][1]).split() == ["udp", "nat", f"{H1}:5000", f"{PUBLIC}:{public_port}",
                                                          f"{SERVER}:53", "2.5", "2.5", "-", "-"]
    assert '<span id="count">2</span>' in page and '<p id="empty" hidden>' in page
    assert "{{" not in page


def test_page_of_an_empty_table_says_so_and_has_no_next_page():
    page = Api(connected=False).request("GET", "/nat/").text
    assert '<div id="status">no switch connected</div>' in page and '<p id="empty">no mappings</p>' in page
    assert 'data-next-after=""' in page


def test_page_holds_one_live_page_of_rows_and_the_cursor_of_the_next(api):
    for sport in range(5000, 5000 + rest.LIVE_PAGE_ROWS + 1):
        udp_from_h1(api, sport)
    page = api.request("GET", "/nat/").text
    rows = re.findall(r'<tr class="nat" data-id="(\d+)"', page)
    assert len(rows) == rest.LIVE_PAGE_ROWS and f'data-next-after="{rows[-1]}"' in page
    assert f'<span id="count">{rest.LIVE_PAGE_ROWS + 1}</span>' in page


def test_page_without_slash_redirects_to_it(api):
    response = api.request("GET", "/nat")
    assert response.status_int == 301 and response.location.endswith("/nat/")


def test_openapi_description_is_served(api):
    assert api.get("/nat/openapi.json") == openapi_check.SPEC


def test_every_route_is_described_and_every_description_is_routed(api):
    routed = {(path, method.lower()) for _, path, methods, _ in wsgi.routes_of(rest.NatController) for method in methods}
    described = {(path, method) for path, item in openapi_check.SPEC["paths"].items() for method in item}
    assert routed == described


# --- mappings -----------------------------------------------------------------------------------------------


def test_no_mappings_at_first(api):
    assert api.get("/nat/mappings") == {"mappings": [], "count": 0, "total": 0, "next_after": None}


def test_a_mapping_shows_its_endpoints_kind_and_age(api):
    public_port = udp_from_h1(api)
    api.lab.now = 12.5
    [mapping] = api.get("/nat/mappings")["mappings"]
    assert {k: mapping[k] for k in ("protocol", "kind", "private", "public", "remote", "age_s", "idle_s")} == {
        "protocol": "udp", "kind": "nat", "private": {"ip": H1, "port": 5000},
        "public": {"ip": PUBLIC, "port": public_port}, "remote": {"ip": SERVER, "port": 53},
        "age_s": 12.5, "idle_s": 12.5}
    assert (mapping["packets"], mapping["bytes"]) == (None, None)  # no flow-statistics poll yet


def test_packets_bytes_and_idle_time_come_from_flow_statistics(api):
    public_port = udp_from_h1(api)
    api.lab.now = 10.0
    api.lab.switch.advance(10.0)
    api.poll()
    [idle] = api.get("/nat/mappings")["mappings"]
    assert (idle["packets"], idle["idle_s"]) == (0, 10.0)
    api.lab.now = 30.0
    api.lab.switch.advance(30.0)
    for _ in range(3):  # three more packets out and two back, all on the switch's rules alone
        assert api.lab.switch.fate(in_port=H1_PORT, eth_src="00:00:00:00:00:02", eth_dst="02:4e:41:54:00:01",
                                   eth_type=0x0800, ipv4_src=H1, ipv4_dst=SERVER, ip_proto=17, udp_src=5000,
                                   udp_dst=53, ip_ttl=64)
    for _ in range(2):
        assert api.lab.switch.fate(in_port=UPLINK, eth_src="00:00:00:00:03:0a", eth_dst="02:4e:41:54:00:01",
                                   eth_type=0x0800, ipv4_src=SERVER, ipv4_dst=PUBLIC, ip_proto=17, udp_src=53,
                                   udp_dst=public_port, ip_ttl=64)
    api.poll()
    api.lab.now = 34.0
    [used] = api.get("/nat/mappings")["mappings"]
    assert (used["packets"], used["bytes"], used["age_s"], used["idle_s"]) == (5, 5 * BYTES_PER_PACKET, 34.0, 4.0)


def test_mappings_of_each_kind_and_protocol(api):
    udp_from_h1(api)
    tcp_from_h2(api)
    api.lab.send(H1_PORT, from_host(H1, echo_bytes(H1, SERVER, ident=77)))
    api.lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)))  # config: tcp:8080=H1:80
    found = api.get("/nat/mappings")
    summary = sorted((m["protocol"], m["kind"], m["private"]["ip"], m["remote"]["ip"]) for m in found["mappings"])
    assert summary == [("icmp", "nat", H1, SERVER), ("tcp", "nat", H2, SERVER), ("tcp", "redirect", H1, SERVER),
                       ("udp", "nat", H1, SERVER)]
    assert found["count"] == 4
    [redirect] = [m for m in found["mappings"] if m["kind"] == "redirect"]
    assert (redirect["private"], redirect["public"]) == ({"ip": H1, "port": 80}, {"ip": PUBLIC, "port": 8080})


def test_mappings_filtered_by_protocol_and_private_host(api):
    udp_from_h1(api)
    udp_from_h1(api, sport=5001)
    tcp_from_h2(api)
    assert [m["private"]["port"] for m in api.get("/nat/mappings?proto=udp")["mappings"]] == [5000, 5001]
    assert [m["protocol"] for m in api.get(f"/nat/mappings?private_ip={H2}")["mappings"]] == ["tcp"]
    assert api.get(f"/nat/mappings?proto=udp&private_ip={H2}")["count"] == 0
    assert api.get("/nat/mappings?proto=ICMP")["count"] == 0


@pytest.mark.parametrize(("query", "code", "says"), [
    ("proto=sctp", "unknown_protocol", "unknown protocol 'sctp'"),
    ("private_ip=10.0.0.300", "bad_address", "'10.0.0.300' is not an IPv4 address"),
    (f"private_ip={SERVER}", "not_private", f"{SERVER} is not a host of the private network 10.0.0.0/24"),
    ("private_ip=10.0.0.1", "not_private", "10.0.0.1 is not a host"),
    ("private_ip=10.0.0.255", "not_private", "10.0.0.255 is not a host"),
    ("protocol=udp", "unknown_parameter",
     "unknown query parameter 'protocol' (allowed: proto, private_ip, limit, after)"),
    ("proto=udp&proto=tcp", "bad_parameter", "'proto' given 2 times"),
    ("limit=0", "bad_parameter", "limit 0 is out of range (1..1000)"),
    ("limit=1001", "bad_parameter", "limit 1001 is out of range (1..1000)"),
    ("limit=ten", "bad_parameter", "limit 'ten' is not a whole number"),
    ("limit=-1", "bad_parameter", "limit '-1' is not a whole number"),
    ("after=1.5", "bad_parameter", "after '1.5' is not a whole number"),
    ("after=" + "9" * 30, "bad_parameter", "after '" + "9" * 30 + "' is not a whole number"),
    ("after=99999999999999999999", "bad_parameter", "after 99999999999999999999 is out of range"),
])
def test_bad_mapping_filters_are_refused(api, query, code, says):
    assert says in api.error("GET", f"/nat/mappings?{query}", 400, code)


def test_mappings_come_a_page_at_a_time_oldest_first(api):
    ports = list(range(5000, 5007))
    for sport in ports:
        udp_from_h1(api, sport)
    tcp_from_h2(api)
    first = api.get("/nat/mappings?limit=3")
    assert [m["private"]["port"] for m in first["mappings"]] == ports[:3]
    assert (first["count"], first["total"], first["next_after"]) == (3, 8, first["mappings"][-1]["id"])
    second = api.get(f"/nat/mappings?limit=3&after={first['next_after']}")
    assert [m["private"]["port"] for m in second["mappings"]] == ports[3:6]
    last = api.get(f"/nat/mappings?limit=3&after={second['next_after']}")
    assert [m["private"]["port"] for m in last["mappings"]] == [5006, 6000] and last["next_after"] is None
    assert [m["id"] for m in api.all_mappings("limit=2")] == [m["id"] for m in api.get("/nat/mappings")["mappings"]]


def test_pages_can_be_filtered_and_total_counts_what_matches(api):
    for sport in range(5000, 5005):
        udp_from_h1(api, sport)
    tcp_from_h2(api)
    udp = api.get("/nat/mappings?proto=udp&limit=2")
    assert (udp["count"], udp["total"]) == (2, 5)
    assert [m["private"]["port"] for m in api.all_mappings("proto=udp&limit=2")] == list(range(5000, 5005))
    assert [m["protocol"] for m in api.all_mappings(f"private_ip={H2}&limit=1")] == ["tcp"]
    assert api.get(f"/nat/mappings?private_ip={H1}&proto=tcp")["total"] == 0


def test_a_page_holds_at_most_a_thousand_mappings():
    api = Api(Lab(overrides={"udp_table_size": "2000"}))
    for sport in range(5000, 6001):
        udp_from_h1(api, sport)
    first = api.get("/nat/mappings")
    assert (first["count"], first["total"], first["next_after"]) == (1000, 1001, first["mappings"][-1]["id"])
    assert api.get(f"/nat/mappings?after={first['next_after']}")["count"] == 1


# --- stats and config -------------------------------------------------------------------------------------


def test_stats_count_packet_ins_mappings_and_use_against_sizes(api):
    udp_from_h1(api)
    udp_from_h1(api, sport=5001)
    tcp_from_h2(api)
    stats = api.get("/nat/stats")
    assert stats["switch"] == {"connected": True, "dpid": "0000000000000001"}
    assert stats["mappings"]["live"] == 3 and stats["mappings"]["created_by_kind"] == {
        "nat": 3, "redirect": 0, "hairpin": 0}
    assert stats["packet_ins"]["private"] >= 3 and stats["arp"]["replies_learned"] >= 1
    assert stats["table"] == {"tcp": {"used": 1, "size": 16384}, "udp": {"used": 2, "size": 16384},
                              "icmp": {"used": 0, "size": 1024}}
    # Endpoint-independent mapping: two private ports, two public ports; the range is 1024-65535.
    assert stats["ports"]["udp"] == {"used": 2, "size": 65535} and stats["ports"]["tcp"]["used"] == 1
    api.call("DELETE", f"/nat/connections/{H1}")
    after = api.get("/nat/stats")["mappings"]
    assert (after["live"], after["removed"], after["removed_by_reason"]["host_removed"]) == (1, 2, 2)


def test_stats_count_expired_and_evicted_mappings():
    api = Api(Lab(overrides={"udp_table_size": "1"}))
    udp_from_h1(api)
    udp_from_h1(api, sport=5001)  # evicts the first
    api.lab.advance(301)  # the survivor's rules idle out: it expires
    mappings = api.get("/nat/stats")["mappings"]
    assert (mappings["evicted"], mappings["expired"], mappings["live"]) == (1, 1, 0)


def test_stats_say_when_no_switch_is_connected():
    assert Api(connected=False).get("/nat/stats")["switch"] == {"connected": False, "dpid": None}


def test_stats_tell_the_age_of_the_last_flow_statistics_poll(api):
    interval = api.counters.interval_s
    assert api.get("/nat/stats")["flow_stats"] == {"polls": 0, "interval_s": interval, "age_s": None, "slices": 0,
                                                   "abandoned": 0}
    udp_from_h1(api)
    api.poll()
    api.lab.now = 1.5
    assert api.get("/nat/stats")["flow_stats"] == {"polls": 1, "interval_s": interval, "age_s": 1.5, "slices": 1,
                                                   "abandoned": 0}


def test_config_is_the_effective_configuration(api):
    config = api.get("/nat/config")
    assert config == json.loads(json.dumps(api.lab.gateway.config.as_dict()))
    assert config["redirects"] == [f"tcp:8080={H1}:80", f"udp:5353={H2}:53"]


@pytest.mark.parametrize("path", ["/nat/?x=1", "/nat/stats?x=1", "/nat/config?verbose=1", "/nat/redirects?a=b",
                                  "/nat/openapi.json?v=2"])
def test_parameters_where_none_are_taken_are_refused(api, path):
    assert "unknown query parameter" in api.error("GET", path, 400, "unknown_parameter")


# --- redirects -----------------------------------------------------------------------------------------------


def test_redirects_from_the_configuration_are_listed(api):
    assert api.get("/nat/redirects") == {"redirects": [
        {"protocol": "tcp", "public_port": 8080, "private": {"ip": H1, "port": 80}, "rule": f"tcp:8080={H1}:80"},
        {"protocol": "udp", "public_port": 5353, "private": {"ip": H2, "port": 53}, "rule": f"udp:5353={H2}:53"}]}


def test_added_redirect_is_listed_and_forwards_at_once(api):
    api.lab.send(H2_PORT, arp_request(H2, PRIVATE))  # the NAT learns where H2 is
    status, added = api.call("POST", "/nat/redirects", NEW_REDIRECT)
    assert (status, added["rule"]) == (201, f"tcp:9090={H2}:80")
    assert added in api.get("/nat/redirects")["redirects"]
    [(port, out)] = api.lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 9090)))
    assert (port, out["ipv4_dst"], out["tcp_dst"], out["ipv4_src"]) == (H2_PORT, H2, 80, SERVER)


def test_added_redirect_lifts_the_drop_rule_left_by_earlier_probes(api):
    api.lab.send(H2_PORT, arp_request(H2, PRIVATE))
    probe = from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 9090))
    assert api.lab.send(UPLINK, probe) == []  # unsolicited: dropped, and a drop rule spares the controller
    assert [r for r in api.lab.switch.rules() if cookies.kind_of(r.cookie) is RuleKind.DROP]
    api.call("POST", "/nat/redirects", NEW_REDIRECT)
    assert not [r for r in api.lab.switch.rules() if cookies.kind_of(r.cookie) is RuleKind.DROP]
    [(port, _)] = api.lab.send(UPLINK, probe)
    assert port == H2_PORT


def test_added_redirect_takes_its_port_out_of_the_source_nat_pool(api):
    api.call("POST", "/nat/redirects", NEW_REDIRECT)
    assert api.get("/nat/ports/tcp/9090")["redirected"] is True
    assert api.lab.gateway.is_port_reserved(Proto.TCP, 9090)


@pytest.mark.parametrize(("body", "code", "says"), [
    ([NEW_REDIRECT], "bad_request", "the body must be a JSON object"),
    ({"protocol": "tcp", "public_port": 9090}, "bad_request", "missing private"),
    ({**NEW_REDIRECT, "comment": "x"}, "bad_request", "unknown field 'comment'"),
    ({**NEW_REDIRECT, "protocol": "sctp"}, "unknown_protocol", "unknown protocol 'sctp'"),
    ({**NEW_REDIRECT, "protocol": 6}, "unknown_protocol", "protocol must be a string"),
    ({**NEW_REDIRECT, "protocol": "icmp"}, "unknown_protocol", "only tcp and udp can be redirected"),
    ({**NEW_REDIRECT, "public_port": 0}, "bad_port", "public_port 0 is out of range (1..65535)"),
    ({**NEW_REDIRECT, "public_port": 65536}, "bad_port", "public_port 65536 is out of range"),
    ({**NEW_REDIRECT, "public_port": "9090"}, "bad_port", "public_port '9090' is not a port number"),
    ({**NEW_REDIRECT, "public_port": True}, "bad_port", "public_port True is not a port number"),
    ({**NEW_REDIRECT, "private": f"{H2}:80"}, "bad_request", "private must be a JSON object"),
    ({**NEW_REDIRECT, "private": {"ip": H2}}, "bad_request", "private: missing port"),
    ({**NEW_REDIRECT, "private": {"ip": "10.0.0", "port": 80}}, "bad_address", "'10.0.0' is not an IPv4 address"),
    ({**NEW_REDIRECT, "private": {"ip": SERVER, "port": 80}}, "not_private", "not a host of the private network"),
    ({**NEW_REDIRECT, "private": {"ip": "10.0.0.1", "port": 80}}, "not_private", "10.0.0.1 is not a host"),
    ({**NEW_REDIRECT, "private": {"ip": H2, "port": 0}}, "bad_port", "private port 0 is out of range"),
])
def test_bad_redirects_are_refused_and_change_nothing(api, body, code, says):
    before = api.state(9090, 80)
    assert says in api.error("POST", "/nat/redirects", 400, code, body)
    assert api.state(9090, 80) == before


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"{'protocol': 'tcp'}"])
def test_malformed_json_is_refused(api, raw):
    before = api.state(9090)
    assert api.error("POST", "/nat/redirects", 400, "bad_json", raw=raw).startswith("the body is not valid JSON")
    assert api.state(9090) == before


@pytest.mark.parametrize("raw", [b"[" * 1000 + b"]" * 1000, b"[" * 30000 + b"]" * 30000,
                                 b'{"protocol": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                 json.dumps({**NEW_REDIRECT, "private": {"ip": H2, "port": [[[[[[[[80]]]]]]]]}}).encode()])
def test_deeply_nested_json_is_refused(api, raw):
    before = api.state(9090)
    assert api.error("POST", "/nat/redirects", 400, "bad_json", raw=raw) == "the body nests deeper than 8 levels"
    assert api.state(9090) == before


def test_values_in_messages_are_cut_short(api):
    deep = json.loads("[" * 6 + "]" * 6)
    message = api.error("POST", "/nat/redirects", 400, "unknown_protocol", {**NEW_REDIRECT, "protocol": deep})
    assert message == "protocol must be a string (tcp, udp or icmp), not [[[...]]]"
    long_name = "x" * 10_000
    message = api.error("POST", "/nat/redirects", 400, "bad_request", {**NEW_REDIRECT, long_name: 1})
    assert len(message) < 100 and message.startswith("the body: unknown field 'xxx")


def test_a_redirected_port_cannot_be_redirected_again(api):
    before = api.state(8080)
    message = api.error("POST", "/nat/redirects", 409, "duplicate_redirect",
                        {**NEW_REDIRECT, "public_port": 8080})
    assert message.startswith("tcp port 8080 is already redirected")
    assert api.state(8080) == before


def test_a_port_source_nat_gave_away_cannot_be_redirected(api):
    public_port = udp_from_h1(api)
    before = api.state(public_port)
    message = api.error("POST", "/nat/redirects", 409, "port_in_use",
                        {"protocol": "udp", "public_port": public_port, "private": {"ip": H2, "port": 53}})
    assert f"the public port of {H1}:5000's mappings" in message
    assert api.state(public_port) == before


def test_removed_redirect_is_gone_and_its_port_back_in_the_pool(api):
    status, removed = api.call("DELETE", "/nat/redirects/tcp/8080")
    assert (status, removed["rule"]) == (200, f"tcp:8080={H1}:80")
    assert [r["rule"] for r in api.get("/nat/redirects")["redirects"]] == [f"udp:5353={H2}:53"]
    assert not api.lab.gateway.is_port_reserved(Proto.TCP, 8080)
    assert api.lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080))) == []


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/nat/redirects/tcp/9999", 404, "unknown_redirect"),
    ("/nat/redirects/udp/8080", 404, "unknown_redirect"),
    ("/nat/redirects/sctp/8080", 400, "unknown_protocol"),
    ("/nat/redirects/tcp/0", 400, "bad_port"),
    ("/nat/redirects/tcp/65536", 400, "bad_port"),
    ("/nat/redirects/tcp/http", 400, "bad_port"),
    ("/nat/redirects/tcp/8080?force=1", 400, "unknown_parameter"),
])
def test_bad_redirect_removals_are_refused_and_change_nothing(api, path, status, code):
    before = api.state(8080)
    api.error("DELETE", path, status, code)
    assert api.state(8080) == before


# --- removing mappings ------------------------------------------------------------------------------------------


def test_flush_removes_a_hosts_mappings_and_their_rules_and_frees_its_ports(api):
    udp_port = udp_from_h1(api)
    api.lab.send(H1_PORT, from_host(H1, tcp_bytes(H1, 7000, SERVER, 80)))
    tcp_from_h2(api)
    assert len(mapping_rules_of(api, H1)) == 4
    status, flushed = api.call("DELETE", f"/nat/connections/{H1}")
    assert status == 200
    assert (flushed["host"], flushed["removed"], flushed["freed_ports"]["udp"]) == (H1, 2, [udp_port])
    assert len(flushed["freed_ports"]["tcp"]) == 1 and flushed["freed_ports"]["icmp"] == []
    assert mapping_rules_of(api, H1) == [] and len(mapping_rules_of(api, H2)) == 2
    assert [m["private"]["ip"] for m in api.get("/nat/mappings")["mappings"]] == [H2]


def test_flush_of_a_host_without_mappings_removes_nothing(api):
    status, flushed = api.call("DELETE", f"/nat/connections/{H2}")
    assert (status, flushed["removed"], flushed["freed_ports"]) == (200, 0, {"tcp": [], "udp": [], "icmp": []})


@pytest.mark.parametrize(("ip", "code"), [("10.0.0", "bad_address"), ("h1", "bad_address"),
                                          (SERVER, "not_private"), ("10.0.0.0", "not_private"),
                                          ("10.0.0.1", "not_private"), ("10.0.0.255", "not_private")])
def test_flush_of_an_address_outside_the_private_hosts_is_refused(api, ip, code):
    udp_from_h1(api)
    before = api.state()
    api.error("DELETE", f"/nat/connections/{ip}", 400, code)
    assert api.state() == before


def test_flush_and_reset_need_a_switch_and_change_nothing_without_one():
    api = Api(connected=False)
    udp_from_h1(api)
    before = api.state()
    assert "no NAT switch is connected" in api.error("DELETE", f"/nat/connections/{H1}", 503, "no_switch")
    api.error("DELETE", "/nat/mappings", 503, "no_switch")
    assert api.state() == before and api.plans == []


def test_reset_removes_every_mapping_and_rule(api):
    udp_from_h1(api)
    tcp_from_h2(api)
    status, answer = api.call("DELETE", "/nat/mappings")
    assert (status, answer) == (200, {"removed": 2})
    assert api.get("/nat/mappings")["total"] == 0 and mapping_rules(api) == []
    assert api.get("/nat/stats")["mappings"]["removed_by_reason"]["reset"] == 2


def test_reset_with_a_parameter_is_refused(api):
    udp_from_h1(api)
    api.error("DELETE", "/nat/mappings?proto=udp", 400, "unknown_parameter")
    assert api.get("/nat/mappings")["total"] == 1


# --- is_port_free ------------------------------------------------------------------------------------------------


def test_port_held_by_a_mapping_is_not_free_for_any_remote(api):
    public_port = udp_from_h1(api)
    answer = api.get(f"/nat/ports/udp/{public_port}")
    assert answer == {"protocol": "udp", "port": public_port, "remote": None, "free": False,
                      "held_by": {"ip": H1, "port": 5000}, "redirected": False}
    other_remote = api.get(f"/nat/ports/udp/{public_port}?remote=198.51.100.10:53")
    assert (other_remote["free"], other_remote["remote"]) == (False, {"ip": "198.51.100.10", "port": 53})


def test_unused_port_is_free_and_a_redirected_one_is_not(api):
    free = api.get("/nat/ports/tcp/40000?remote=192.168.3.10:80")
    assert (free["free"], free["held_by"], free["redirected"]) == (True, None, False)
    redirected = api.get("/nat/ports/tcp/8080")
    assert (redirected["free"], redirected["redirected"]) == (False, True)
    assert api.get("/nat/ports/icmp/77")["free"] is True


@pytest.mark.parametrize(("path", "code"), [
    ("/nat/ports/sctp/80", "unknown_protocol"), ("/nat/ports/tcp/0", "bad_port"),
    ("/nat/ports/tcp/70000", "bad_port"), ("/nat/ports/tcp/-1", "bad_port"),
    ("/nat/ports/tcp/80?remote=192.168.3.10", "bad_address"),
    ("/nat/ports/tcp/80?remote=host:80", "bad_address"),
    ("/nat/ports/tcp/80?remote=192.168.3.10:0", "bad_port"),
    ("/nat/ports/tcp/80?private=10.0.0.2:80", "unknown_parameter"),
])
def test_bad_port_queries_are_refused(api, path, code):
    api.error("GET", path, 400, code)


# --- other paths and failures ---------------------------------------------------------------------------------------


def test_unknown_path_under_nat_is_a_json_404(api):
    assert "no such resource: /nat/tables" in api.error("GET", "/nat/tables", 404, "not_found")
    api.error("GET", "/nat/mappings/", 404, "not_found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/nat/stats", ["GET"]), ("POST", "/nat/mappings", ["GET", "DELETE"]),
    ("GET", f"/nat/connections/{H1}", ["DELETE"]), ("DELETE", "/nat/redirects", ["GET", "POST"]),
])
def test_wrong_method_is_a_json_405_naming_the_allowed_ones(api, method, path, allowed):
    response = api.request(method, path)
    assert response.status_int == 405 and json.loads(response.body)["error"]["code"] == "method_not_allowed"
    assert response.allow == tuple(allowed)


def test_a_bug_in_a_handler_answers_500_and_logs_one_line(api, monkeypatch, caplog):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(api.facade, "stats", broken)
    with caplog.at_level(logging.INFO, logger="ryu_nat.operator.rest"):
        status, answer = api.call("GET", "/nat/stats")
    assert (status, answer["error"]["code"]) == (500, "internal_error")
    assert "Traceback" not in json.dumps(answer)
    [record] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert record.getMessage() == "REST GET /nat/stats failed: RuntimeError: boom" and record.exc_info is None
    assert api.lab.gateway.stats.handler_errors == 1


def test_refused_requests_log_one_line_without_traceback(api, caplog):
    with caplog.at_level(logging.INFO, logger="ryu_nat.operator.rest"):
        api.call("GET", "/nat/mappings?proto=sctp")
    [record] = caplog.records
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage().startswith("REST GET /nat/mappings?proto=sctp: 400 unknown_protocol:")


# --- the description, answer by answer ---------------------------------------------------------------------------


def test_every_documented_answer_is_produced_and_fits_the_description(tmp_path):
    """Each status openapi.json documents for each operation, produced once (Api checks each body)."""
    api = Api()
    udp_from_h1(api)
    requests = [
        ("GET", "/nat/", None), ("GET", "/nat/?x", None), ("GET", "/nat", None),
        ("GET", "/nat/openapi.json", None), ("GET", "/nat/openapi.json?x", None),
        ("GET", "/nat/mappings", None), ("GET", "/nat/mappings?proto=x", None),
        ("GET", "/nat/stats", None), ("GET", "/nat/stats?x", None),
        ("GET", "/nat/config", None), ("GET", "/nat/config?x", None),
        ("GET", "/nat/redirects", None), ("GET", "/nat/redirects?x", None),
        ("POST", "/nat/redirects", NEW_REDIRECT), ("POST", "/nat/redirects", {}),
        ("POST", "/nat/redirects", NEW_REDIRECT),
        ("DELETE", "/nat/redirects/tcp/9090", None), ("DELETE", "/nat/redirects/tcp/9090", None),
        ("DELETE", "/nat/redirects/tcp/x", None),
        ("GET", "/nat/ports/udp/1024", None), ("GET", "/nat/ports/udp/0", None),
        ("DELETE", f"/nat/connections/{H1}", None), ("DELETE", "/nat/connections/1.2.3.4", None),
        ("DELETE", "/nat/mappings", None), ("DELETE", "/nat/mappings?x", None),
        ("GET", "/nat/consistency", None), ("GET", "/nat/consistency?x", None),
        ("POST", "/nat/consistency", None), ("POST", "/nat/consistency?x", None),
        ("GET", f"/nat/explain?proto=udp&src={H1}:5000&dst={SERVER}:53", None), ("GET", "/nat/explain", None),
    ]
    for method, path, body in requests:
        api.request(method, path, body)
    api.request("GET", "/metrics")
    api.request("GET", "/metrics?x")
    offline = Api(connected=False)
    offline.request("DELETE", f"/nat/connections/{H1}")
    offline.request("DELETE", "/nat/mappings")
    offline.request("POST", "/nat/consistency")
    kept = tmp_path / "kept"
    kept.mkdir()
    saving = Api(state=StateFile(str(kept / "state.json")))
    saving.request("POST", "/nat/redirects", NEW_REDIRECT)
    kept.joinpath("state.json").unlink()
    kept.rmdir()  # the file cannot be written any more: a change is refused
    saving.request("POST", "/nat/redirects", {**NEW_REDIRECT, "public_port": 9091})
    saving.request("DELETE", "/nat/redirects/tcp/9090")
    # The request guard's answers, for every operation.
    guarded = Api(policy=guard.Policy(token="0123456789abcdef"))
    for template, item in openapi_check.SPEC["paths"].items():
        path = template.format(proto="tcp", port="9090", ip=H1)
        for method in (m.upper() for m in item):
            guarded.request(method, path)
            api.request(method, path, headers={"Host": "nat.example"})
            if method in guard.CHANGING_METHODS:
                api.request(method, path, content_type="text/plain")
    documented = {(method.upper(), path, int(status)) for path, item in openapi_check.SPEC["paths"].items()
                  for method, op in item.items() for status in op["responses"] if status != "default"}
    assert api.seen | offline.seen | guarded.seen | saving.seen == documented


def test_the_description_is_a_valid_openapi_3_1_document():
    spec = openapi_check.SPEC
    assert spec["openapi"].startswith("3.1")
    for path, item in spec["paths"].items():
        for method, op in item.items():
            names = set(re.findall(r"\{(\w+)\}", path))
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == params, f"{method} {path}: path parameters {names} vs {params}"
            for status, answer in op["responses"].items():
                assert "description" in openapi_check.response(answer)[0], f"{method} {path} {status}"
    openapi_check.check_document()


def test_private_ip_filter_takes_the_private_host_of_each_kind(api):
    api.lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 8080)))
    [mapping] = api.get(f"/nat/mappings?private_ip={H1}")["mappings"]
    assert (mapping["kind"], mapping["private"]) == ("redirect", {"ip": H1, "port": 80})


def test_the_checker_finds_what_is_wrong_with_a_body():
    endpoint = ("components", "schemas", "Endpoint")
    assert openapi_check.problems({"ip": "10.0.0.2", "port": 80}, *endpoint) == []
    assert openapi_check.problems({"ip": "10.0.0.300", "port": 80}, *endpoint) == ["$.ip: '10.0.0.300' is not a 'ipv4'"]
    assert openapi_check.problems({"ip": "10.0.0.2", "port": 70000, "x": 1}, *endpoint) == [
        "$.port: 70000 is greater than the maximum of 65535",
        "$: Additional properties are not allowed ('x' was unexpected)"]
    error = openapi_check.problems({"error": {"code": "bad_json"}}, "components", "schemas", "Error")
    assert error == ["$.error: 'message' is a required property"]


def test_the_description_names_every_drop_reason_and_no_other():
    from ryu_nat.gateway.drops import DropReason

    drops = openapi_check.SPEC["components"]["schemas"]["Stats"]["properties"]["drops"]
    assert drops["propertyNames"]["enum"] == [reason.value for reason in DropReason]
