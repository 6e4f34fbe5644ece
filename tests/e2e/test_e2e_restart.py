"""A controller restart breaks no connection, and the switch and the table always agree, on Open vSwitch.

The controller is killed with SIGKILL (no handler runs) while a TCP and a UDP
session hold their sockets open; the new controller reads the mappings back
from the switch's rules, and the same sockets go on in both directions, from
the same public ports. A redirect added through the REST API outlives a
restart; 16,384 mappings installed with ``ovs-ofctl`` as the app would install
them are all read back. Each kind of disagreement between the switch and the
table, made with ``ovs-ofctl``, is found and repaired by ``ryu-nat-ctl check``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from ryu_nat.core.addresses import Proto, pack_key, reverse_key
from ryu_nat.openflow import cookies, rules
from ryu_nat.openflow.cookies import RuleKind
from topologies import lab
from topologies.two_networks import (INTERNET_SERVER_IP, NAT_SWITCH, PUBLIC_IP, SERVER_IP, UPLINK_PORT, NatNet,
                                     private_ip)

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 2
TCP_PORT, UDP_PORT = 8000, 9999
ROUTER_MAC = "02:4e:41:54:00:01"
PRIVATE_PORT = 2  # every private host is behind sp, on the NAT switch's port 2
CTL = Path(sys.executable).parent / "ryu-nat-ctl"
MANY = 16_384


def api(nat: lab.Controller, path: str, method: str = "GET", body: object = None) -> Any:
    status, answer = nat.rest(path, method, body)
    assert status in (200, 201, 202), (path, status, answer)
    return answer


def restart_after_kill(nat: lab.Controller, net: NatNet, timeout_s: float = 60) -> dict[str, Any]:
    """SIGKILL, start again, reconnect; the restore's report once the table is read back."""
    nat.kill()
    nat.start()
    nat.wait_connected(net.nat.name, keep_flows=True)
    report = lab.wait_until(lambda: api(nat, "/nat/consistency")["last_restore"], timeout_s,
                            what="the table to be read back from the switch")
    return report


def ctl(nat: lab.Controller, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CTL), "--url", f"http://127.0.0.1:{nat.wsapi_port}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def mapping_flows(protocol: str) -> dict[int, list[lab.Flow]]:
    """Mapping flows of ``protocol`` by mapping id."""
    found: dict[int, list[lab.Flow]] = {}
    for flow in lab.rewrite_flows(NAT_SWITCH, protocol):
        mapping_id = cookies.mapping_id_of(flow.cookie)
        if mapping_id:
            found.setdefault(mapping_id, []).append(flow)
    return found


def test_a_tcp_and_a_udp_session_survive_kill_9_of_the_controller(lab_net: NatNet, nat: lab.Controller,
                                                                  tmp_path: Path) -> None:
    h1, h2 = lab_net.private[:2]
    go = tmp_path / "go"
    with lab.server(lab_net.srv, "tcp-echo", TCP_PORT), lab.server(lab_net.srv, "udp", UDP_PORT):
        tcp = lab.start_probe(h1, "session-client", "--proto", "tcp", "--to", f"{SERVER_IP}:{TCP_PORT}",
                              "--go", go, "--rounds", 3)
        udp = lab.start_probe(h2, "session-client", "--proto", "udp", "--to", f"{SERVER_IP}:{UDP_PORT}",
                              "--go", go, "--rounds", 3)
        tcp.wait_for_line(r'"round": 1')
        udp.wait_for_line(r'"round": 1')
        before = {m["protocol"]: m for m in api(nat, "/nat/mappings")["mappings"]}
        flows_before = {flow.cookie for flow in lab.rewrite_flows(NAT_SWITCH)}
        report = restart_after_kill(nat, lab_net)
        assert report["counts"] == {"restored": 2} and report["unreadable"] == 0
        after = {m["protocol"]: m for m in api(nat, "/nat/mappings")["mappings"]}
        for proto in ("tcp", "udp"):
            assert {key: after[proto][key] for key in ("id", "private", "public", "remote")} == \
                {key: before[proto][key] for key in ("id", "private", "public", "remote")}
        assert {flow.cookie for flow in lab.rewrite_flows(NAT_SWITCH)} == flows_before  # the same rules, kept
        # The UDP reply's rule goes: the server's next answer reaches the new controller, which has the mapping.
        [udp_id] = [m["id"] for m in after.values() if m["protocol"] == "udp"]
        lab.run("ovs-ofctl", "-O", "OpenFlow13", "del-flows", NAT_SWITCH,
                f"cookie={cookies.make(RuleKind.REPLY, udp_id):#x}/-1")
        go.touch()
        tcp_result, udp_result = lab.probe_result(tcp), lab.probe_result(udp)
    public = {proto: [PUBLIC_IP, after[proto]["public"]["port"]] for proto in ("tcp", "udp")}
    assert "error" not in tcp_result and "error" not in udp_result, (tcp_result, udp_result)
    assert [r["peer"] for r in tcp_result["rounds"]] == [public["tcp"]] * 3 and all(r["ok"] for r in tcp_result["rounds"])
    assert [r["peer"] for r in udp_result["rounds"]] == [public["udp"]] * 3 and all(r["ok"] for r in udp_result["rounds"])
    # The server's FIN came to the new controller (the FIN rule), which translated it with the restored mapping.
    assert tcp_result["closed_by_server"]
    assert len(mapping_flows("udp")[udp_id]) == 2  # the reply's rule is back


def test_a_redirect_added_through_the_api_survives_a_restart(lab_net: NatNet,
                                                             start_nat: Callable[..., lab.Controller],
                                                             tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    nat = start_nat(state_file=state)
    h2 = lab_net.private[1]
    api(nat, "/nat/redirects", "POST", {"protocol": "tcp", "public_port": 8081,
                                        "private": {"ip": private_ip(2), "port": TCP_PORT}})
    restart_after_kill(nat, lab_net)
    assert "tcp:8081=10.0.0.3:8000" in [r["rule"] for r in api(nat, "/nat/redirects")["redirects"]]
    with lab.server(h2, "tcp", TCP_PORT):
        reached = lab.probe(lab_net.srv, "tcp-client", "--to", f"{PUBLIC_IP}:8081", "--download", 1000)
    assert reached.get("download_ok") and reached["reply"]["server"] == "h2", reached


def test_a_restarted_controller_reads_back_16384_mappings(lab_net: NatNet, nat: lab.Controller,
                                                          tmp_path: Path) -> None:
    srv_mac = lab_net.srv.MAC()
    h1_mac = lab_net.private[0].MAC()
    public, h1, server = int(IPv4Address(PUBLIC_IP)), int(IPv4Address(private_ip(1))), int(IPv4Address(SERVER_IP))
    flows = []
    for index in range(MANY):
        original = pack_key(h1, server, 10_000 + index, 53)
        reply = pack_key(server, public, 53, 30_000 + index)
        flows += [rules.mapping_rewrite(RuleKind.ORIGINAL, index + 1, Proto.UDP, original, reverse_key(reply),
                                        PRIVATE_PORT, ROUTER_MAC, srv_mac, UPLINK_PORT, 300),
                  rules.mapping_rewrite(RuleKind.REPLY, index + 1, Proto.UDP, reply, reverse_key(original),
                                        UPLINK_PORT, ROUTER_MAC, h1_mac, PRIVATE_PORT, 300)]
    nat.kill()
    lab.add_flows(NAT_SWITCH, flows, tmp_path / "flows.txt")
    nat.start()
    nat.wait_connected(lab_net.nat.name, keep_flows=True)
    report = lab.wait_until(lambda: api(nat, "/nat/consistency")["last_restore"], 120,
                            what=f"{MANY} mappings to be read back")
    # Besides the mappings' rules, the slices hold the connection's own few (base rules), left as they are.
    assert report["counts"] == {"restored": MANY} and 2 * MANY <= report["rules_read"] <= 2 * MANY + 16, report
    print(f"restore of {MANY} mappings from Open vSwitch: {report}")
    stats = api(nat, "/nat/stats")
    assert stats["table"]["udp"]["used"] == MANY and stats["ports"]["udp"]["used"] == MANY
    held = api(nat, "/nat/ports/udp/30000")
    assert held["held_by"] == {"ip": private_ip(1), "port": 10_000}
    # A new conversation gets an id above every one read back, and a port none of them holds.
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        [result] = lab.probe(lab_net.private[1], "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}")["results"]
    assert result.get("echo_ok"), result
    assert not 30_000 <= result["reply"]["peer"][1] < 30_000 + MANY
    newest = api(nat, f"/nat/mappings?private_ip={private_ip(2)}")["mappings"]
    assert newest and newest[0]["id"] > MANY


def test_the_audit_repairs_each_disagreement_made_with_ovs_ofctl(lab_net: NatNet, nat: lab.Controller) -> None:
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        for port in (41001, 41002):
            [result] = lab.probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", port)["results"]
            assert result.get("echo_ok"), result
    by_port = {m["private"]["port"]: m for m in api(nat, "/nat/mappings?proto=udp")["mappings"]}
    first, second = by_port[41001], by_port[41002]
    flows = mapping_flows("udp")
    assert len(flows[first["id"]]) == len(flows[second["id"]]) == 2
    clean = ctl(nat, "check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    public, server = int(IPv4Address(PUBLIC_IP)), int(IPv4Address(SERVER_IP))
    inet = int(IPv4Address(INTERNET_SERVER_IP))
    h2 = int(IPv4Address(private_ip(2)))
    # An orphan: a pair of mapping 900000, which no mapping has.
    orphan = pack_key(h2, server, 7000, UDP_PORT), pack_key(server, public, UDP_PORT, 7000)
    # A port owned twice: mapping 900001 gives the first mapping's public port to h2:7001 (for another remote).
    stolen = pack_key(h2, inet, 7001, 53), pack_key(inet, public, 53, first["public"]["port"])
    injected = [*_pair(900_000, *orphan), *_pair(900_001, *stolen)]
    injected.append(rules.drop_unsolicited(UPLINK_PORT, public, Proto.UDP, 1, 0))  # then given a strange cookie
    lines = [lab.ofctl_flow(rule) for rule in injected[:-1]]
    lines.append(lab.ofctl_flow(injected[-1]).replace(f"cookie={injected[-1].cookie:#x}", "cookie=0x4e41770000000003"))
    for line in lines:
        lab.run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", NAT_SWITCH, line)
    # A missing rule: the first mapping's reply rule, replaced by one without send_flow_rem, then deleted: the
    # controller hears of neither.
    reply_cookie = cookies.make(RuleKind.REPLY, first["id"])
    [reply_flow] = [flow for flow in flows[first["id"]] if flow.cookie == reply_cookie]
    where = f"table={reply_flow.table},priority=200,{reply_flow.match}"
    lab.run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", NAT_SWITCH,
            f"cookie={reply_cookie:#x},{where},actions={reply_flow.actions}")
    lab.run("ovs-ofctl", "-O", "OpenFlow13", "del-flows", "--strict", NAT_SWITCH, where)
    # A mismatch: the second mapping's original rule now writes another public port.
    original_cookie = cookies.make(RuleKind.ORIGINAL, second["id"])
    [original_flow] = [flow for flow in flows[second["id"]] if flow.cookie == original_cookie]
    wrong = original_flow.actions.replace(f"set_field:{second['public']['port']}->udp_src", "set_field:9->udp_src")
    assert wrong != original_flow.actions
    lab.run("ovs-ofctl", "-O", "OpenFlow13", "mod-flows", "--strict", NAT_SWITCH,
            f"table={original_flow.table},priority=200,{original_flow.match},actions={wrong}")
    found = ctl(nat, "--json", "check")
    report = __import__("json").loads(found.stdout)
    assert report["last_audit"]["counts"] == {"orphan_rule": 2, "port_owned_twice": 2, "outside_layout": 1,
                                              "missing_rule": 1, "mismatch": 1}, found.stdout
    after = mapping_flows("udp")
    assert set(after) == {first["id"], second["id"]}  # orphans and the stolen port's pair deleted
    assert len(after[first["id"]]) == 2  # the missing rule installed again
    assert [flow.cookie for flow in after[second["id"]]] == [cookies.make(RuleKind.REPLY, second["id"])]
    assert not any(flow.cookie >> 40 & 0xFF == 0x77 for flow in lab.flows(NAT_SWITCH))
    # The mismatched rule comes back with the mapping's next packet, rewriting right.
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        [again] = lab.probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 41002)["results"]
    assert again.get("echo_ok") and again["reply"]["peer"] == [PUBLIC_IP, second["public"]["port"]], again
    assert ctl(nat, "check").returncode == 0  # and now they agree


def test_explain_on_a_running_controller(lab_net: NatNet, nat: lab.Controller) -> None:
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        [result] = lab.probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 41003)["results"]
    public_port = result["reply"]["peer"][1]
    answer = api(nat, f"/nat/explain?proto=udp&src={SERVER_IP}:{UDP_PORT}&dst={PUBLIC_IP}:{public_port}")
    assert answer["outcome"] == "translated" and answer["leaves_as"]["dst"] == {"ip": private_ip(1), "port": 41003}
    text = ctl(nat, "explain", "tcp", f"{SERVER_IP}:80", f"{PUBLIC_IP}:7777")
    assert text.returncode == 0 and "dropped: unsolicited" in text.stdout, text.stdout + text.stderr


def _pair(mapping_id: int, original: int, reply: int) -> list[Any]:
    """A UDP source-NAT mapping's two rules, as the app installs them."""
    return [rules.mapping_rewrite(RuleKind.ORIGINAL, mapping_id, Proto.UDP, original, reverse_key(reply),
                                  PRIVATE_PORT, ROUTER_MAC, "00:00:00:00:00:01", UPLINK_PORT, 300),
            rules.mapping_rewrite(RuleKind.REPLY, mapping_id, Proto.UDP, reply, reverse_key(original), UPLINK_PORT,
                                  ROUTER_MAC, "00:00:00:00:00:02", PRIVATE_PORT, 300)]
