"""The Ryu adapter, driven with real events and a fake datapath; what it sends is replayed into
the simulated switch."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from ryu.controller import ofp_event
from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from ryu.ofproto import ofproto_v1_3 as ofp

from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind

from .builders import udp_bytes
from .fakedp import FakeDatapath, flow_removed_event, packet_in_event, state_change_event
from .fakeswitch import connect
from .lab import BASE_CONFIG, H1, H1_PORT, SERVER, UPLINK, arp_reply, from_host, readme_nat_conf

NAT_OPTIONS = {**BASE_CONFIG, "udp_table_size": "1"}


@pytest.fixture
def app(make_app):
    return make_app(NAT_OPTIONS)


def test_connect_sends_setup_delete_and_base_rules(app):
    dp = FakeDatapath(ports=(UPLINK, H1_PORT))
    app._state_change(state_change_event(dp, MAIN_DISPATCHER))
    kinds = [type(msg).__name__ for msg in dp.sent]
    assert kinds[:4] == ["OFPSetConfig", "OFPSetAsync", "OFPFlowMod", "OFPBarrierRequest"]
    assert dp.sent[2].command == ofp.OFPFC_DELETE and dp.sent[2].cookie_mask == cookies.OURS_MASK
    assert dp.sent[1].packet_in_mask[0] & (1 << ofp.OFPR_INVALID_TTL)
    assert len(dp.writes) == 1  # one write for the whole plan
    assert app.datapath is dp


def test_packet_in_to_flow_rules_and_flow_removed_to_deletion(app):
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
    app._flow_removed(flow_removed_event(dp, original.cookie, ofp.OFPRR_IDLE_TIMEOUT))
    app._flow_removed(flow_removed_event(dp, reply.cookie, ofp.OFPRR_IDLE_TIMEOUT))
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


def test_openflow_errors_are_logged_beside_the_message_they_answer(app, caplog):
    from ryu.ofproto import ofproto_v1_3_parser as parser

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


@pytest.mark.parametrize("command", ["ryu-manager", "ryu-nat"])
def test_both_commands_start_the_app_and_listen(tmp_path, command):
    import pathlib
    import socket
    import time

    conf = tmp_path / "nat.conf"
    conf.write_text(readme_nat_conf())  # the README's sample, comments and all, starts as written
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    port, api_port = ports
    exe = pathlib.Path(sys.executable).parent / command
    args = [str(exe), "--config-file", str(conf), "--ofp-tcp-listen-port", str(port), "--wsapi-port", str(api_port)]
    if command == "ryu-manager":
        args.append("ryu_nat.app")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        listening = False
        while time.monotonic() < deadline and proc.poll() is None and not listening:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                listening = True
            except OSError:
                time.sleep(0.2)
        assert listening, f"{command} did not listen on {port}"
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert "instantiating app ryu_nat.app of NatApp" in output
    assert ("ryu_nat: public 192.168.3.1/24 (gateway 192.168.3.254, uplink port 1), private 10.0.0.1/24, "
            "redirects: tcp:8080=10.0.0.2:80, udp:5353=10.0.0.3:53") in output
    assert "Traceback" not in output


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


@pytest.mark.parametrize("command", ["ryu-manager", "ryu-nat"])
def test_an_unknown_option_stops_either_command_with_one_line(tmp_path, command):
    import pathlib

    conf = tmp_path / "nat.conf"
    conf.write_text("[nat]\n" + "".join(f"{k} = {v}\n" for k, v in BASE_CONFIG.items()) + "pubic_port = 2\n")
    args = [str(pathlib.Path(sys.executable).parent / command), "--config-file", str(conf)]
    if command == "ryu-manager":
        args.append("ryu_nat.app")
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
    from ryu.lib import hub

    from ryu_nat import app as app_module

    monkeypatch.setattr(app_module, "TICK_S", 0.01)
    nat_app = make_app(BASE_CONFIG)
    with caplog.at_level(logging.DEBUG):
        hub.sleep(0.2)
    ticks = 0
    while not nat_app.events.empty():
        event, _ = nat_app.events.get()
        ticks += isinstance(event, app_module.EventTick)
    assert ticks >= 3
    assert "EventTick" not in caplog.text
