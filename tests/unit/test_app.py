"""The app (on Ryu or os-ken), driven with real events and a fake datapath; what it sends is replayed into
the simulated switch."""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import sys
import time

import pytest
from ryu_nat.backend import ofp_event
from ryu_nat.backend import DEAD_DISPATCHER, MAIN_DISPATCHER
from ryu_nat.backend import ofproto_v1_3 as ofp
from ryu_nat.backend import ofproto_v1_3_parser as parser

from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind

from . import launch
from .builders import udp_bytes
from .fakedp import FakeDatapath, flow_removed_event, packet_in_event, state_change_event
from .fakeswitch import connect
from .lab import BASE_CONFIG, H1, H1_PORT, SERVER, UPLINK, arp_reply, from_host, readme_nat_conf

NAT_OPTIONS = {**BASE_CONFIG, "udp_table_size": "1"}
STOP_WITHIN_S = 2.0


@pytest.fixture
def app(make_app):
    return make_app(NAT_OPTIONS)


def test_connect_sends_setup_deletes_and_base_rules_then_reads_the_rules_back(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    app._state_change(state_change_event(dp, MAIN_DISPATCHER))
    kinds = [type(msg).__name__ for msg in dp.sent]
    deletes = len(rules.SESSION_KINDS)  # each kind of rule the connection installs afresh
    assert kinds[:3 + deletes] == ["OFPSetConfig", "OFPSetAsync", *["OFPFlowMod"] * deletes, "OFPBarrierRequest"]
    assert [(m.command, m.cookie_mask) for m in dp.sent[2:2 + deletes]] == [(ofp.OFPFC_DELETE,
                                                                            cookies.KIND_MASK)] * deletes
    assert dp.sent[1].packet_in_mask[0] & (1 << ofp.OFPR_INVALID_TTL)
    assert kinds[-1] == "OFPAggregateStatsRequest" and dp.sent[-1].cookie_mask == cookies.OURS_MASK
    assert len(dp.writes) == 2  # one write for the whole plan, then the first count asked for
    assert app.datapath is dp and app.gateway.review.restoring


def test_packet_in_to_flow_rules_and_flow_removed_to_deletion(app, monkeypatch):
    now = [time.monotonic()]
    monkeypatch.setattr("ryu_nat.app.time.monotonic", lambda: now[0])
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    switch = connect(app, dp)
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    # The NAT asks who SERVER is; the answer releases the packet.
    app._packet_in(packet_in_event(dp, UPLINK, arp_reply(SERVER, BASE_CONFIG["public_ipv4"].split("/")[0])))
    switch.apply_ryu(dp.sent)
    dp.sent.clear()
    [original, reply] = sorted((r for r in switch.rules() if cookies.mapping_id_of(r.cookie)),
                               key=lambda r: r.cookie >> 40)
    assert cookies.kind_of(original.cookie) is RuleKind.ORIGINAL and original.match.get("ipv4_src") == H1
    assert switch.emitted()[-1][1]["ipv4_src"] == "192.168.3.1"
    now[0] += 301  # the switch idles rules out after their timeout
    app._flow_removed(flow_removed_event(dp, original.cookie, ofp.OFPRR_IDLE_TIMEOUT, idle_timeout_s=300))
    app._flow_removed(flow_removed_event(dp, reply.cookie, ofp.OFPRR_IDLE_TIMEOUT, idle_timeout_s=300))
    [delete] = dp.sent
    assert delete.command == ofp.OFPFC_DELETE and delete.cookie == cookies.for_mapping(cookies.mapping_id_of(original.cookie))
    assert app.stats.mappings_removed["expired"] == 1


def test_packets_of_other_switches_are_left_alone(app):
    nat_dp, other = FakeDatapath(dpid=1), FakeDatapath(dpid=2)
    connect(app, nat_dp)
    app._state_change(state_change_event(other, MAIN_DISPATCHER))
    app._packet_in(packet_in_event(other, 2, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    assert other.sent == [] and app.stats.packet_ins["not_ours"] == 1


def test_disconnect_forgets_the_datapath(app):
    dp = FakeDatapath()
    connect(app, dp)
    app._state_change(state_change_event(dp, DEAD_DISPATCHER))
    assert app.datapath is None


def test_a_handler_bug_is_logged_and_counted_not_fatal(app, caplog, monkeypatch):
    dp = FakeDatapath()
    connect(app, dp)
    app.reraise = False

    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(app.gateway, "packet_in", broken)
    with caplog.at_level(logging.ERROR):
        app._packet_in(packet_in_event(dp, H1_PORT, b"\x00" * 60))
    assert app.stats.handler_errors == 1 and "packet_in handler failed" in caplog.text


def test_a_bug_every_packet_triggers_logs_one_traceback_per_5_s(app, caplog, monkeypatch):
    dp = FakeDatapath()
    connect(app, dp)
    app.reraise = False
    monkeypatch.setattr(app.gateway, "packet_in", lambda *args, **kwargs: 1 / 0)
    with caplog.at_level(logging.ERROR):
        for _ in range(100):
            app._packet_in(packet_in_event(dp, H1_PORT, b"\x00" * 60))
    assert app.stats.handler_errors == 100
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None


def test_a_packet_in_without_in_port_is_dropped_and_counted_not_a_handler_error(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    connect(app, dp)
    dp.sent.clear()
    app._packet_in(packet_in_event(dp, None, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    assert (app.stats.drops["bad_in_port"], app.stats.handler_errors, dp.sent) == (1, 0, [])


def test_what_a_drop_rule_dropped_is_counted_when_it_ends(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    connect(app, dp)
    app._flow_removed(flow_removed_event(dp, cookies.for_drops(17, 7777), ofp.OFPRR_HARD_TIMEOUT, packets=7))
    assert app.stats.drops["unsolicited"] == 7


def test_openflow_errors_are_logged_beside_the_message_they_answer(app, caplog):
    from ryu_nat.backend import ofproto_v1_3_parser as parser

    dp = FakeDatapath()
    connect(app, dp)
    app._send(dp, app.gateway.switch_connected([1, 2], 0.0))
    xid = dp.xid
    error = parser.OFPErrorMsg(dp, type_=ofp.OFPET_BAD_MATCH, code=ofp.OFPBMC_BAD_PREREQ)
    error.xid = xid
    with caplog.at_level(logging.ERROR):
        app._error(ofp_event.EventOFPErrorMsg(error))
    assert app.stats.openflow_errors == 1
    assert f"xid={xid}" in caplog.text and "flow_mod add" in caplog.text


def test_bad_config_stops_start_up_with_one_line(tmp_path):
    conf = tmp_path / "nat.conf"
    conf.write_text("[nat]\npublic_ipv4 = 192.168.3.1/24\npublic_ipv4_gateway = 10.9.9.9\n"
                    "private_ipv4 = 10.0.0.1/24\n")
    result = subprocess.run([sys.executable, "-m", "ryu_nat.cli", "--config-file", str(conf)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ryu_nat: [nat] public_ipv4_gateway = '10.9.9.9' must be another host address" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("launcher", launch.LAUNCHERS)
def test_each_launcher_starts_the_app_and_listens(tmp_path, launcher):
    conf = tmp_path / "nat.conf"
    conf.write_text(readme_nat_conf())  # the README's sample, comments and all, starts as written
    of_port = launch.free_port()
    args = launch.command(launcher, conf, of_port, launch.free_port())
    with launch.controller(args) as proc:
        # The REST API listens first: the OpenFlow listener follows within moments (a garbage collection
        # between the two took 40-50 ms here).
        deadline = time.monotonic() + 5
        while not launch.is_listening(of_port) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert launch.is_listening(of_port)
    output, _ = proc.communicate(timeout=10)
    assert "instantiating app ryu_nat.app of NatApp" in output
    assert ("ryu_nat: public 192.168.3.1/24 (gateway 192.168.3.254, uplink port 1), private 10.0.0.1/24, "
            "redirects: tcp:8080=10.0.0.2:80, udp:5353=10.0.0.3:53") in output
    assert "Traceback" not in output
    assert "Eventlet is deprecated" not in output  # compat drops the banner (README, Installing)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("launcher", launch.LAUNCHERS)
def test_one_signal_stops_the_controller_within_two_seconds(tmp_path, launcher, signum):
    """Issue 15: the ticker thread kept the process alive, and a Ctrl-C did nothing."""
    api_port = launch.free_port()
    args = launch.command(launcher, launch.write_config(tmp_path / "nat.conf", BASE_CONFIG), launch.free_port(),
                          api_port)
    with launch.controller(args) as proc:
        time.sleep(1.5)  # at least one tick, so the ticker is in its loop
        sent = time.monotonic()
        proc.send_signal(signum)
        try:
            proc.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{launcher} still runs {STOP_WITHIN_S} s after {signal.Signals(signum).name}")
        took = time.monotonic() - sent
    output, _ = proc.communicate(timeout=10)
    assert took < STOP_WITHIN_S and proc.returncode == 0, output[-2000:]
    assert "ryu_nat: stopping" in output and "Traceback" not in output
    assert not launch.is_listening(api_port)


def test_the_ticker_ends_once_the_app_stops(app, monkeypatch):
    """Issue 15: it looped for ever, and stopping the app waited for it."""
    from ryu_nat import app as app_module

    monkeypatch.setattr(app_module, "TICK_S", 0.02)
    ticks = []
    monkeypatch.setattr(app, "_send_event", lambda ev, state: ticks.append(type(ev).__name__))
    ticker = threading.Thread(target=app._ticker, daemon=True)
    ticker.start()
    deadline = time.monotonic() + 5
    while not ticks and time.monotonic() < deadline:
        time.sleep(0.01)
    app.is_active = False  # what stop() does first
    ticker.join(1)
    assert not ticker.is_alive() and ticks[0] == "EventTick"


@pytest.mark.parametrize("content,message", [
    (None, "cannot read the config file {path}: No such file or directory"),
    (b"public_ipv4 = 192.168.3.1/24\n", "{path}: public_ipv4 comes before any section header"),
    (b"\xff\xfe\x00garbage\x00", "{path} is not a text file"),
])
def test_ryu_nat_says_in_one_line_what_is_wrong_with_a_file(tmp_path, content, message):
    conf = tmp_path / "nat.conf"
    if content is not None:
        conf.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "ryu_nat.cli", "--config-file", str(conf)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("ryu_nat: " + message.format(path=conf)), result.stderr
    assert result.stderr.count("\n") == 1


def test_ryu_nat_finds_the_files_oslo_config_will_read():
    from ryu_nat.cli import config_files

    args = ["--config-file", "a.conf", "--ofp-tcp-listen-port", "6653", "--config-dir=lab", "--config-file=b.conf",
            "ryu_nat.app"]
    assert config_files(args) == (["a.conf", "b.conf"], ["lab"])
    assert config_files(["--config-f", "a.conf"]) == ([], [])  # abbreviations are left to ryu-manager
    assert config_files(["ryu_nat.app", "--config-file"]) == ([], [])  # so is a missing file name


@pytest.mark.parametrize("launcher", launch.LAUNCHERS)
def test_an_unknown_option_stops_either_command_with_one_line(tmp_path, launcher):
    conf = launch.write_config(tmp_path / "nat.conf", {**BASE_CONFIG, "pubic_port": "2"})
    args = launch.command(launcher, conf, launch.free_port(), launch.free_port())
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    line = f"ryu_nat: {conf}: [nat] pubic_port is not an option: did you mean public_port?"
    assert result.stderr.count(line) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_timeout_below_the_rfc_starts_with_one_warning(make_app, caplog):
    with caplog.at_level(logging.WARNING, logger="ryu_nat"):
        make_app({**BASE_CONFIG, "udp_idle_timeout": "1"})
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("ryu_nat: [nat] udp_idle_timeout = 1 is below the 120 s that "
                                          "RFC 4787 REQ-5 requires")


def test_ticks_reach_the_app_without_a_log_line_each(make_app, monkeypatch, caplog):
    from ryu_nat import app as app_module
    from ryu_nat.backend import hub

    monkeypatch.setattr(app_module, "TICK_S", 0.01)
    nat_app = make_app(BASE_CONFIG)
    nat_app.is_active = True  # what start() does before it spawns the ticker
    with caplog.at_level(logging.DEBUG):
        ticker = hub.spawn(nat_app._ticker)
        hub.sleep(0.2)
        nat_app.is_active = False
        hub.joinall([ticker])
    ticks = 0
    while not nat_app.events.empty():
        event, _ = nat_app.events.get()
        ticks += isinstance(event, app_module.EventTick)
    assert ticks >= 3
    assert "EventTick" not in caplog.text


def _mapping_made(app, dp):
    """One UDP mapping from H1, its rules sent; the flow-mod of its original rule as the app sent it."""
    connect(app, dp)
    app._packet_in(packet_in_event(dp, H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53))))
    app._packet_in(packet_in_event(dp, UPLINK, arp_reply(SERVER, BASE_CONFIG["public_ipv4"].split("/")[0])))
    [original] = [m for m in dp.sent if isinstance(m, parser.OFPFlowMod)
                  and cookies.kind_of(m.cookie) is RuleKind.ORIGINAL]
    dp.sent.clear()
    return original


def _error_event(dp, data, type_=ofp.OFPET_FLOW_MOD_FAILED, code=ofp.OFPFMFC_TABLE_FULL):
    error = parser.OFPErrorMsg(dp, type_=type_, code=code, data=data)
    error.xid = 0
    return ofp_event.EventOFPErrorMsg(error)


def test_a_mapping_whose_rule_the_switch_refuses_ends_and_its_other_rule_is_deleted(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    original = _mapping_made(app, dp)
    [mapping] = app.gateway.mappings()
    # The switch quotes the first 64 bytes of the refused flow-mod (OFPT_ERROR's data, OpenFlow 1.3 section 7.4.4).
    app._error(_error_event(dp, bytes(original.buf)[:64]))
    assert list(app.gateway.mappings()) == [] and app.gateway.rule_state(mapping) is None
    [delete] = dp.sent
    assert delete.command == ofp.OFPFC_DELETE and delete.cookie == cookies.for_mapping(mapping.id)
    assert (app.stats.rules_rejected, app.stats.openflow_errors, app.stats.handler_errors) == (1, 1, 0)
    assert app.gateway.port_holder(mapping.proto, mapping.allocated_port) is None


@pytest.mark.parametrize("data", [b"", b"\x04\x0e\x00\x40", b"\xff" * 64, b"\x04\x0d" + b"\x00" * 62,
                                  b"\x04\x0e\x00\x40\x00\x00\x00\x00" + b"\x4e\x41\x02\xff\xff\xff\xff\xff"],
                         ids=["empty", "header_only", "garbage", "not_a_flow_mod", "no_live_mapping"])
def test_a_short_or_garbage_quote_in_an_error_is_harmless(app, data, caplog):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    _mapping_made(app, dp)
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            app._error(_error_event(dp, data))
        app._error(_error_event(dp, data, type_=ofp.OFPET_BAD_REQUEST, code=ofp.OFPBRC_BAD_TYPE))
    assert len(list(app.gateway.mappings())) == 1 and dp.sent == []
    assert (app.stats.rules_rejected, app.stats.openflow_errors, app.stats.handler_errors) == (0, 4, 0)
    # One line per error type within the log limiter's interval.
    assert caplog.text.count("OpenFlow error type=5") == 1 and caplog.text.count("OpenFlow error type=1 ") == 1


def test_an_experimenter_error_quoting_a_mapping_rule_ends_the_mapping_too(app, caplog):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    original = _mapping_made(app, dp)
    error = parser.OFPErrorExperimenterMsg(dp, exp_type=1, experimenter=0x2320, data=bytes(original.buf))
    error.xid = 0
    with caplog.at_level(logging.ERROR):
        app._error(ofp_event.EventOFPErrorMsg(error))
    assert list(app.gateway.mappings()) == [] and app.stats.rules_rejected == 1
    assert f"type={ofp.OFPET_EXPERIMENTER} code=None" in caplog.text
