"""The app's side of the operator interface: the REST API over its gateway, flow-statistics polls and
replies through real OpenFlow messages, and the API's default listen address."""

from __future__ import annotations

import json
import struct
import time

import pytest
from ryu_nat.backend import ofp_event
from ryu_nat.backend import DEAD_DISPATCHER
from ryu_nat.backend import ofproto_parser
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser
from webob import Request

from ryu_nat.operator import flowstats
from ryu_nat.openflow import cookies

from topologies.controller import http_json, listening_address

from . import launch
from .builders import udp_bytes
from .fakedp import FakeDatapath, packet_in_event, state_change_event
from .fakeswitch import connect
from .lab import BASE_CONFIG, H1, H1_PORT, PUBLIC, SERVER, UPLINK, arp_reply, from_host


@pytest.fixture
def app(make_app):
    return make_app(BASE_CONFIG)


@pytest.fixture
def wsgi(app):
    """The app's REST API as the WSGI app its server runs (here on the test's thread)."""
    return app.rest_app


def get(wsgi, path: str, method: str = "GET") -> tuple[int, dict]:
    response = Request.blank(path, method=method).get_response(wsgi)
    return response.status_int, json.loads(response.body)


def open_udp_mapping(app, dp: FakeDatapath) -> list:
    """H1 -> SERVER:53 through the app; the two rewrite rules it installed."""
    switch = connect(app, dp)
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    app._packet_in(packet_in_event(dp, UPLINK, arp_reply(SERVER, PUBLIC)))
    switch.apply_ryu(dp.sent)
    dp.sent.clear()
    return sorted((r for r in switch.rules() if cookies.mapping_id_of(r.cookie)), key=lambda r: r.cookie)


def flow_stats_reply_event(dp: FakeDatapath, xid: int, entries: list[tuple[int, int, int, int]],
                           more: bool) -> ofp_event.EventOFPFlowStatsReply:
    """A flow-statistics reply part as the switch sends it, parsed by Ryu: (cookie, packets, bytes, age_s) each."""
    body = bytearray()
    for cookie, packets, byte_count, age_s in entries:
        match = bytearray()
        parser.OFPMatch().serialize(match, 0)
        length = ofp.OFP_FLOW_STATS_0_SIZE + len(match)
        body += struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, length, 0, age_s, 0, 200, 300, 0, 0, cookie, packets,
                            byte_count) + match
    head = struct.pack(ofp.OFP_HEADER_PACK_STR, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY,
                       ofp.OFP_MULTIPART_REPLY_SIZE + len(body), xid)
    flags = ofp.OFPMPF_REPLY_MORE if more else 0
    buf = head + struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, ofp.OFPMP_FLOW, flags) + bytes(body)
    msg = ofproto_parser.msg(dp, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(buf), xid, buf)
    assert isinstance(msg, parser.OFPFlowStatsReply)
    return ofp_event.EventOFPFlowStatsReply(msg)


def test_the_app_serves_the_api_over_its_gateway(app, wsgi):
    status, stats = get(wsgi, "/nat/stats")
    assert (status, stats["switch"]["connected"]) == (200, False)
    connect(app, FakeDatapath(dpid=0x1234))
    assert get(wsgi, "/nat/stats")[1]["switch"] == {"connected": True, "dpid": "0000000000001234"}


def test_a_flush_through_the_api_deletes_the_rules_on_the_switch(app, wsgi):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    [rule, _] = open_udp_mapping(app, dp)
    status, flushed = get(wsgi, f"/nat/connections/{H1}", method="DELETE")
    assert (status, flushed["removed"]) == (200, 1)
    [delete] = dp.sent
    assert delete.command == ofp.OFPFC_DELETE and delete.cookie == cookies.for_mapping(
        cookies.mapping_id_of(rule.cookie)) and delete.cookie_mask == cookies.MAPPING_MASK


def test_the_tick_asks_for_our_rules_statistics_only_while_someone_reads_them(app, monkeypatch):
    dp = FakeDatapath()
    connect(app, dp)
    now = [100.0]
    monkeypatch.setattr("ryu_nat.app.time.monotonic", lambda: now[0])
    app._tick(None)
    assert dp.sent == []  # nobody asked for the mappings: no poll
    app.flow_counters.want(now[0])
    app._tick(None)
    [request] = dp.sent
    assert isinstance(request, parser.OFPFlowStatsRequest)
    assert (request.cookie, request.cookie_mask, request.table_id, request.out_port) == (
        cookies.OURS, cookies.OURS_MASK, ofp.OFPTT_ALL, ofp.OFPP_ANY)
    now[0] += flowstats.POLL_INTERVAL_S  # the reply still outstanding: nothing
    app._tick(None)
    assert len(dp.sent) == 1
    now[0] += flowstats.POLL_TIMEOUT_S  # never answered: asked again
    app._tick(None)
    assert len(dp.sent) == 2 and dp.sent[1].xid != request.xid


def test_a_reply_in_two_parts_gives_the_mapping_its_packets(app, wsgi):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    original, reply = open_udp_mapping(app, dp)
    app.flow_counters.want(time.monotonic())
    app._tick(None)
    [request] = [m for m in dp.sent if isinstance(m, parser.OFPFlowStatsRequest)]
    base_rule = cookies.make(cookies.RuleKind.BASE)
    app._flow_stats_reply(flow_stats_reply_event(dp, request.xid, [(original.cookie, 7, 700, 3),
                                                                   (base_rule, 50, 5000, 9)], more=True))
    [mapping] = get(wsgi, "/nat/mappings")[1]["mappings"]
    assert mapping["packets"] is None  # not before the last part
    app._flow_stats_reply(flow_stats_reply_event(dp, request.xid, [(reply.cookie, 4, 480, 3)], more=False))
    [mapping] = get(wsgi, "/nat/mappings")[1]["mappings"]
    assert (mapping["packets"], mapping["bytes"]) == (11, 1180)


def test_a_reply_from_before_a_reconnect_is_ignored(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    original, _ = open_udp_mapping(app, dp)
    app.flow_counters.want(time.monotonic())
    app._tick(None)
    [request] = [m for m in dp.sent if isinstance(m, parser.OFPFlowStatsRequest)]
    app._state_change(state_change_event(dp, DEAD_DISPATCHER))
    again = FakeDatapath(ports=(UPLINK, H1_PORT))
    connect(app, again)
    app._flow_stats_reply(flow_stats_reply_event(again, request.xid, [(original.cookie, 7, 700, 3)], more=False))
    assert app.flow_counters.polls == 0


@pytest.mark.parametrize(("extra", "expected"), [((), "127.0.0.1"), (("--wsapi-host", "0.0.0.0"), "0.0.0.0")])
def test_the_api_listens_on_loopback_unless_told_otherwise(tmp_path, extra, expected):
    api_port = launch.free_port()
    args = launch.command(launch.LAUNCHERS[0], launch.write_config(tmp_path / "nat.conf", BASE_CONFIG),
                          launch.free_port(), api_port, *extra)
    with launch.controller(args) as proc:
        assert listening_address(api_port) == expected
        status, stats = http_json("GET", f"http://127.0.0.1:{api_port}/nat/stats")
        assert (status, stats["switch"]["connected"]) == (200, False)
    output, _ = proc.communicate(timeout=10)
    assert "Traceback" not in output
