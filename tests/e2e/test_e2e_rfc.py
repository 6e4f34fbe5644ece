"""RFC 4787 / 5382 / 5508 behaviour on real packets: hairpinning, filtering modes, ICMP 3/13, TCP timeouts.

Each test's name starts with the requirement it proves (docs/rfc.md names them).
Timers are shortened by config where a test waits for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from topologies import lab
from topologies.two_networks import INTERNET_SERVER_IP, NAT_SWITCH, PUBLIC_IP, SERVER_IP, NatNet

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 2
UDP_PORT = 9999
TCP_PORT = 8000


def public_port(host, private_port: int) -> int:
    """Open a UDP mapping from ``private_port`` to srv (whose answer names the public port)."""
    [result] = lab.probe(host, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", private_port)["results"]
    assert result.get("echo_ok") and result["reply"]["peer"][0] == PUBLIC_IP, result
    return int(result["reply"]["peer"][1])


def heard_from(result: dict) -> set[tuple[str, int, str | None]]:
    """(address, port, the sender's tag) of the requests a udp-peer received (answers left out)."""
    return {(r["peer"][0], r["peer"][1], r["header"].get("tag")) for r in result["received"]
            if "peer" not in r["header"]}


def test_rfc4787_req9_udp_hairpin_between_two_private_hosts_through_their_public_mappings(
        lab_net: NatNet, nat: lab.Controller) -> None:
    """Default filtering (address-dependent): each host punches towards the other's public endpoint;
    each hears the other from that endpoint, never from a private address."""
    h1, h2 = lab_net.private[:2]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        p1, p2 = public_port(h1, 41001), public_port(h2, 42001)
    peers = [lab.start_probe(h1, "udp-peer", "--from-port", 41001, "--to", f"{PUBLIC_IP}:{p2}", "--count", 10,
                             "--tag", "h1"),
             lab.start_probe(h2, "udp-peer", "--from-port", 42001, "--to", f"{PUBLIC_IP}:{p1}", "--count", 10,
                             "--tag", "h2")]
    at_h1, at_h2 = (lab.probe_result(peer, 15) for peer in peers)
    assert heard_from(at_h1) == {(PUBLIC_IP, p2, "h2")}, at_h1
    assert heard_from(at_h2) == {(PUBLIC_IP, p1, "h1")}, at_h2


def test_rfc5382_req8_tcp_hairpin_between_two_private_hosts_through_their_public_mappings(
        lab_net: NatNet, start_nat: Callable[..., lab.Controller]) -> None:
    """Endpoint-independent filtering: h2's public port for its port 42002 reaches h2's server there, and
    the server sees h1 as the public address and h1's own public port."""
    controller = start_nat(filtering="endpoint-independent")
    h1, h2 = lab_net.private[:2]
    with lab.server(lab_net.srv, "tcp", TCP_PORT):
        opened = lab.probe(h2, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--from-port", 42002)
    assert opened.get("download_ok"), opened
    p2 = opened["reply"]["peer"][1]
    with lab.server(h2, "tcp", 42002) as server:  # the mapping of h2:42002 lives on, closing
        result = lab.probe(h1, "tcp-client", "--to", f"{PUBLIC_IP}:{p2}", "--from-port", 41002, "--download",
                           100_000)
    assert result.get("download_ok") and result["upload_ok"], result
    assert result["reply"]["server"] == "h2" and result["reply"]["peer"][0] == PUBLIC_IP, result
    [hairpin] = [m for m in controller.rest("/nat/mappings")[1]["mappings"] if m["kind"] == "hairpin"]
    assert hairpin["private"] == {"ip": h1.IP(), "port": 41002}
    assert hairpin["remote"] == {"ip": PUBLIC_IP, "port": p2}
    [seen] = server.json_lines()
    assert seen["peer"] == [PUBLIC_IP, hairpin["public"]["port"]]  # h1's own public port


@pytest.mark.parametrize("mode, from_other_port, from_other_address", [
    ("endpoint-independent", True, True),
    ("address-dependent", True, False),
    ("address-and-port-dependent", False, False),
])
def test_rfc4787_req8_each_filtering_mode_on_real_packets(lab_net: NatNet, start_nat: Callable[..., lab.Controller],
                                                          mode: str, from_other_port: bool,
                                                          from_other_address: bool) -> None:
    """h1 talks to srv:9999 only; then inet, and srv from another port, send to h1's public port. inet comes
    first: the drop rule its refusal may leave must not keep out what the mode lets in (RFC 4787 REQ-11)."""
    start_nat(filtering=mode)
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        listener = lab.start_probe(h1, "udp-peer", "--from-port", 41003, "--to", f"{SERVER_IP}:{UDP_PORT}",
                                   "--listen", 6, "--tag", "h1")
        answer = json.loads(listener.wait_for_line(r'"server": "srv"'))
    port = answer["header"]["peer"][1]
    tries = ("--timeout", 1, "--tries", 2)
    [other_address] = lab.probe(lab_net.inet, "udp-client", "--from-port", 9997, "--to", f"{PUBLIC_IP}:{port}",
                                *tries)["results"]
    [other_port] = lab.probe(lab_net.srv, "udp-client", "--from-port", 9998, "--to", f"{PUBLIC_IP}:{port}",
                             *tries)["results"]
    heard = heard_from(lab.probe_result(listener, 15))
    assert bool(other_port.get("echo_ok")) is from_other_port, other_port
    assert bool(other_address.get("echo_ok")) is from_other_address, other_address
    expected = {(SERVER_IP, 9998, "")} if from_other_port else set()
    assert heard == expected | ({(INTERNET_SERVER_IP, 9997, "")} if from_other_address else set())


def admin_prohibited(capture: lab.HostProcess, host) -> list[str]:
    """The ICMP destination unreachable, administratively prohibited, that ``host`` got from the NAT."""
    icmp = [line for line in lab.packets(capture) if ": ICMP " in line]  # not the quoted packets' lines
    assert all(line.startswith(f"10.0.0.1 > {host.IP()}: ICMP") for line in icmp), capture.output()
    return [line for line in icmp if "admin prohibited" in line]


def test_rfc5508_req8_ports_run_out_and_the_host_is_told_administratively_prohibited(
        lab_net: NatNet, start_nat: Callable[..., lab.Controller]) -> None:
    """Two public ports, two UDP mappings: the third flow fails at once, told by the NAT, not by a timeout."""
    controller = start_nat(port_range="40000-40001")
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT), lab.capture(h1, "icmp") as capture:
        assert {public_port(h1, port) for port in (6001, 6002)} == {40000, 40001}
        [udp] = lab.probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 6003,
                          "--timeout", 5)["results"]
        lab.wait_until(lambda: lab.packets(capture), 5, what="an ICMP error at h1")
    assert udp.get("error") == "unreachable", udp
    assert len(admin_prohibited(capture, h1)) == 1, capture.output()
    stats = controller.rest("/nat/stats")[1]
    assert stats["drops"]["ports_exhausted"] == 1 and stats["icmp_sent"]["prohibited"] == 1, stats


def test_rfc6888_req4_a_host_at_its_limit_is_refused_with_3_13_and_the_others_are_not(
        lab_net: NatNet, start_nat: Callable[..., lab.Controller]) -> None:
    """max_mappings_per_host = 2, when_full = refuse: h1's third TCP connection fails at once (its SYN is
    answered administratively prohibited, Linux says "no route to host"); h2 still connects."""
    controller = start_nat(max_mappings_per_host=2, when_full="refuse")
    h1, h2 = lab_net.private[:2]
    with lab.server(lab_net.srv, "tcp", TCP_PORT), lab.capture(h1, "icmp") as capture:
        for port in (6001, 6002):
            assert lab.probe(h1, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--from-port", port).get(
                "download_ok")
        third = lab.probe(h1, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--from-port", 6003,
                          "--timeout", 5)
        other_host = lab.probe(h2, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--from-port", 6003)
        lab.wait_until(lambda: lab.packets(capture), 5, what="an ICMP error at h1")
    assert "No route to host" in third.get("error", ""), third
    assert other_host.get("download_ok"), other_host
    assert len(admin_prohibited(capture, h1)) == 1, capture.output()
    assert controller.rest("/nat/stats")[1]["drops"]["host_limit"] == 1


def test_rfc4787_req3_req4_port_class_and_parity_are_kept(nat: lab.Controller, lab_net: NatNet) -> None:
    """Default port_range: a private port below 1024 gets a public one below 1024; parity is kept."""
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        ports = {private: public_port(h1, private) for private in (500, 501, 41010, 41011)}
    assert all((public < 1024) == (private < 1024) for private, public in ports.items()), ports
    assert all(public % 2 == private % 2 for private, public in ports.items()), ports


def test_rfc5382_req5_a_half_open_connection_lives_by_the_transitory_timeout(
        lab_net: NatNet, start_nat: Callable[..., lab.Controller]) -> None:
    """A SYN to an address that never answers: its flows carry the transitory timeout, not the established."""
    controller = start_nat(tcp_idle_timeout=60, tcp_transitory_timeout=3)
    h1 = lab_net.private[0]
    result = lab.probe(h1, "tcp-client", "--to", "198.51.100.99:80", "--from-port", 41005, "--timeout", 1)
    assert "error" in result, result
    flows = lab.mapping_flows(NAT_SWITCH, "tcp", 41005)
    assert len(flows) == 2 and {flow.idle_timeout for flow in flows} == {3}, flows
    lab.wait_until(lambda: not lab.mapping_flows(NAT_SWITCH, "tcp", 41005), 12,
                   what="the half-open connection's flows to idle out")
    lab.wait_until(lambda: controller.rest("/nat/stats")[1]["table"]["tcp"]["used"] == 0, 5, what="no TCP mapping")


def test_rfc5382_req5_a_new_syn_on_a_closing_mapping_brings_back_the_established_timeout(
        lab_net: NatNet, start_nat: Callable[..., lab.Controller]) -> None:
    """A connection closes (FIN both ways: transitory), and the same ports connect again within the
    transitory timeout: while the new connection is open its flows carry the established timeout."""
    controller = start_nat(tcp_idle_timeout=60, tcp_transitory_timeout=5)
    h1 = lab_net.private[0]
    h1.cmd("sysctl -q -w net.ipv4.tcp_tw_reuse=1")  # connect again from the port in TIME_WAIT
    with lab.server(lab_net.srv, "tcp", TCP_PORT):
        first = lab.probe(h1, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--from-port", 41006)
        assert first.get("download_ok"), first
        assert {flow.idle_timeout for flow in lab.mapping_flows(NAT_SWITCH, "tcp", 41006)} == {5}
        lab.wait_until(lambda: controller.rest("/nat/mappings")[1]["mappings"][0]["closing"], 5, what="closing")
        h1.cmd("sleep 1.1")  # TIME_WAIT reuse needs a newer TCP timestamp second
        again = lab.start_probe(h1, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--from-port", 41006,
                                "--hold", 3, "--timeout", 10)
        lab.wait_until(lambda: {f.idle_timeout for f in lab.mapping_flows(NAT_SWITCH, "tcp", 41006)} == {60}, 3,
                       what="the reopened connection's flows with the established timeout")
        second = lab.probe_result(again, 15)
    assert second.get("download_ok") and second["reply"]["peer"] == first["reply"]["peer"], (first, second)


def test_rfc7857_s2_1_one_fin_leaves_the_connection_established(
        lab_net: NatNet, start_nat: Callable[..., lab.Controller]) -> None:
    """h1 sends its request and its FIN; srv answers 5 s later, after the rules (transitory timeout while
    the switch has not told the controller of srv's answer) idled out: the mapping lived on, established
    (the reply rule's packet count said srv had answered), and srv's answer gets through."""
    controller = start_nat(tcp_idle_timeout=60, tcp_transitory_timeout=2)
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "tcp", TCP_PORT):
        result = lab.probe(h1, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--from-port", 41012,
                           "--hold", 5, "--timeout", 10)
    assert result.get("download_ok"), result
    stats = controller.rest("/nat/stats")[1]
    assert stats["mappings"]["created"] == 1 and stats["flow_setups"] >= 2, stats


def test_rfc7857_s2_2_an_rst_makes_the_connection_transitory(
        lab_net: NatNet, start_nat: Callable[..., lab.Controller]) -> None:
    """An answered connection reset by h1: it is closing at once, and ends when its rules idle out after the
    transitory timeout, not the established one."""
    controller = start_nat(tcp_idle_timeout=60, tcp_transitory_timeout=2)
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "tcp", TCP_PORT) as server:
        result = lab.probe(h1, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--from-port", 41013, "--reset")
        assert result.get("reset") and "error" not in result, result
        server.wait_for_line(r'"error": "reset"')
    [mapping] = controller.rest("/nat/mappings")[1]["mappings"]
    assert mapping["closing"], mapping
    lab.wait_until(lambda: controller.rest("/nat/stats")[1]["table"]["tcp"]["used"] == 0, 8,
                   what="the reset connection's mapping to end")
