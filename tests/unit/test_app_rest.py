"""The app's side of the operator interface: the REST API over its gateway, flow-statistics slices
requested and their replies taken off the framework's receive path as bytes, the set-up latency, and the
API's listen address and start-up checks."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import time

import pytest
from ryu_nat.backend import DEAD_DISPATCHER
from ryu_nat.backend import ofproto_parser
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser
from webob import Request

from ryu_nat.app import EventFlowStatsPart
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
    response = Request.blank(path, method=method, content_type="application/json").get_response(wsgi)
    return response.status_int, json.loads(response.body)


def open_udp_mapping(app, dp: FakeDatapath) -> list:
    """H1 -> SERVER:53 through the app; the two rewrite rules it installed."""
    switch = connect(app, dp)
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    app._packet_in(packet_in_event(dp, UPLINK, arp_reply(SERVER, PUBLIC)))
    switch.apply_ryu(dp.sent)
    dp.sent.clear()
    return sorted((r for r in switch.rules() if cookies.mapping_id_of(r.cookie)), key=lambda r: r.cookie)


def flow_stats_reply(xid: int, entries: list[tuple[int, int, int, int]], more: bool) -> bytes:
    """A flow-statistics reply part as the switch sends it: (cookie, packets, bytes, age_s) each, with a match
    and an apply-actions instruction like our rules'."""
    body = bytearray()
    for cookie, packets, byte_count, age_s in entries:
        match = bytearray()
        parser.OFPMatch(in_port=2, eth_type=0x0800, ipv4_src="10.0.0.2").serialize(match, 0)
        instructions = bytearray()
        parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [parser.OFPActionOutput(1)]).serialize(instructions, 0)
        length = ofp.OFP_FLOW_STATS_0_SIZE + len(match) + len(instructions)
        body += struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, length, 0, age_s, 0, 200, 300, 0, 0, cookie, packets,
                            byte_count) + match + instructions
    head = struct.pack(ofp.OFP_HEADER_PACK_STR, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY,
                       ofp.OFP_MULTIPART_REPLY_SIZE + len(body), xid)
    flags = ofp.OFPMPF_REPLY_MORE if more else 0
    return head + struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, ofp.OFPMP_FLOW, flags) + bytes(body)


def receive(app, dp: FakeDatapath, data: bytes) -> None:
    """The bytes arrive from the switch: through Ryu's parser (and our tap), then the app's event thread."""
    arrived = []
    app._stats_part_arrived = lambda datapath, part: arrived.append(EventFlowStatsPart(datapath, part))
    app.stats_tap._deliver = app._stats_part_arrived
    msg = ofproto_parser.msg(dp, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(data),
                             int.from_bytes(data[4:8], "big"), bytearray(data))
    assert msg is None  # taken off Ryu's path: no Ryu object, no Ryu event
    for ev in arrived:
        app._flow_stats_part(ev)


def requests_sent(dp: FakeDatapath) -> list:
    return [m for m in dp.sent if isinstance(m, parser.OFPFlowStatsRequest)]


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


def test_a_slice_is_asked_for_only_while_someone_reads_the_mappings(app, monkeypatch):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    original, _ = open_udp_mapping(app, dp)
    now = [100.0]
    monkeypatch.setattr("ryu_nat.app.time.monotonic", lambda: now[0])
    app._stats_due(None)
    assert dp.sent == []  # nobody asked for the mappings: no request
    app.flow_counters.want(now[0])
    app._stats_due(None)
    [request] = requests_sent(dp)
    mapping_id = cookies.mapping_id_of(original.cookie)
    assert (request.cookie, request.cookie_mask, request.table_id, request.out_port) == (
        *cookies.mapping_block(mapping_id >> flowstats.BLOCK_BITS, flowstats.BLOCK_BITS), ofp.OFPTT_ALL, ofp.OFPP_ANY)
    now[0] += flowstats.POLL_INTERVAL_S  # the reply still outstanding: nothing
    app._stats_due(None)
    assert len(dp.sent) == 1
    now[0] += flowstats.POLL_TIMEOUT_S  # never answered: given up, and the next sweep asks again
    app._stats_due(None)
    app._stats_due(None)
    assert len(requests_sent(dp)) == 2 and dp.sent[1].xid != request.xid
    assert app.flow_counters.abandoned == 1


def test_a_reply_in_two_parts_gives_the_mapping_its_packets(app, wsgi):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    original, reply = open_udp_mapping(app, dp)
    app.flow_counters.want(time.monotonic())
    app._stats_due(None)
    [request] = requests_sent(dp)
    receive(app, dp, flow_stats_reply(request.xid, [(original.cookie, 7, 700, 3)], more=True))
    [mapping] = get(wsgi, "/nat/mappings")[1]["mappings"]
    assert mapping["packets"] is None  # not before the last part
    receive(app, dp, flow_stats_reply(request.xid, [(reply.cookie, 4, 480, 3)], more=False))
    [mapping] = get(wsgi, "/nat/mappings")[1]["mappings"]
    assert (mapping["packets"], mapping["bytes"]) == (11, 1180)
    assert app.flow_counters.slices == 1 and not app.stats_tap.expecting(request.xid)
    assert app.flow_counters.polls == 1  # no block left: the sweep ended with its last reply


def test_replies_to_other_requests_still_reach_ryus_parser(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    open_udp_mapping(app, dp)
    app.flow_counters.want(time.monotonic())
    app._stats_due(None)
    [request] = requests_sent(dp)
    data = flow_stats_reply(request.xid + 1, [(cookies.make(cookies.RuleKind.BASE), 1, 60, 3)], more=False)
    msg = ofproto_parser.msg(dp, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(data), request.xid + 1,
                             bytearray(data))
    assert isinstance(msg, parser.OFPFlowStatsReply) and msg.body[0].packet_count == 1


def test_a_reply_that_does_not_decode_is_given_up_with_one_warning(app, caplog):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    original, _ = open_udp_mapping(app, dp)
    app.flow_counters.want(time.monotonic())
    app._stats_due(None)
    [request] = requests_sent(dp)
    data = bytearray(flow_stats_reply(request.xid, [(original.cookie, 7, 700, 3)], more=True))
    data[16:18] = b"\0\0"  # an entry of length 0: Ryu's own parser would loop on it forever
    with caplog.at_level(logging.WARNING, logger="ryu_nat.app"):
        receive(app, dp, bytes(data))
        receive(app, dp, bytes(data))
    assert app.flow_counters.abandoned == 1 and app.flow_counters.slices == 0
    assert [r.getMessage() for r in caplog.records] == [
        f"dpid=0000000000000001: flow-statistics reply xid={request.xid} refused: bad_entry_length"]


def test_a_reply_from_before_a_reconnect_is_ignored(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    original, _ = open_udp_mapping(app, dp)
    app.flow_counters.want(time.monotonic())
    app._stats_due(None)
    [request] = requests_sent(dp)
    app._state_change(state_change_event(dp, DEAD_DISPATCHER))
    again = FakeDatapath(ports=(UPLINK, H1_PORT))
    connect(app, again)
    data = flow_stats_reply(request.xid, [(original.cookie, 7, 700, 3)], more=False)
    msg = ofproto_parser.msg(again, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(data), request.xid,
                             bytearray(data))
    assert isinstance(msg, parser.OFPFlowStatsReply)  # not expected any more: Ryu parses it, the app ignores it
    app._flow_stats_part(EventFlowStatsPart(dp, data))
    assert app.flow_counters.slices == 0


def test_a_set_up_is_timed_from_packet_in_to_plan_sent(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    open_udp_mapping(app, dp)
    assert sum(app.setup_latency.counts) == 1  # the ARP reply released the packet: one set-up
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5001, SERVER, 53))))
    assert sum(app.setup_latency.counts) == 2 and 0 < app.setup_latency.total < 1.0
    app._packet_in(packet_in_event(dp, UPLINK, arp_reply(SERVER, PUBLIC)))  # no set-up
    assert sum(app.setup_latency.counts) == 2


@pytest.mark.parametrize(("extra", "options", "expected"), [
    ((), {}, "127.0.0.1"),
    (("--wsapi-host", "0.0.0.0"), {"api_insecure": "true"}, "0.0.0.0"),
])
def test_the_api_listens_on_loopback_unless_told_otherwise(tmp_path, extra, options, expected):
    api_port = launch.free_port()
    args = launch.command(launch.LAUNCHERS[0], launch.write_config(tmp_path / "nat.conf", {**BASE_CONFIG, **options}),
                          launch.free_port(), api_port, *extra)
    with launch.controller(args) as proc:
        assert listening_address(api_port) == expected
        status, stats = http_json("GET", f"http://127.0.0.1:{api_port}/nat/stats")
        assert (status, stats["switch"]["connected"]) == (200, False)
    output, _ = proc.communicate(timeout=10)
    assert "Traceback" not in output


@pytest.mark.parametrize("launcher", launch.LAUNCHERS)
def test_the_api_beyond_loopback_without_a_token_refuses_to_start_with_one_line(tmp_path, launcher):
    args = launch.command(launcher, launch.write_config(tmp_path / "nat.conf", BASE_CONFIG), launch.free_port(),
                          launch.free_port(), "--wsapi-host", "0.0.0.0")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=launch.START_TIMEOUT_S)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "Traceback" not in output
    why = "the REST API would listen on 0.0.0.0 (--wsapi-host) with no token"
    assert [line for line in output.splitlines() if why in line] == [
        f"ryu_nat: {why}: anyone who reaches it could reset the NAT; set [nat] api_token_file, or api_insecure = true"]


def test_with_a_token_file_the_served_api_wants_the_token(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("tok-0123456789abcdef\n")
    api_port = launch.free_port()
    config = launch.write_config(tmp_path / "nat.conf", {**BASE_CONFIG, "api_token_file": str(token_file)})
    args = launch.command(launch.LAUNCHERS[0], config, launch.free_port(), api_port, "--wsapi-host", "0.0.0.0")
    with launch.controller(args) as proc:
        url = f"http://127.0.0.1:{api_port}/nat/stats"
        assert http_json("GET", url, timeout_s=30)[0] == 401
        status, stats = http_json("GET", url, timeout_s=30, headers={"Authorization": "Bearer tok-0123456789abcdef"})
        assert (status, stats["switch"]["connected"]) == (200, False)
    output, _ = proc.communicate(timeout=10)
    assert "Traceback" not in output
