"""Outbound translation on real packets: private hosts reach both servers as 192.168.3.1.

Servers report what arrived (peer address, TTL, payload hash), clients check
what came back, so each assertion rests on both ends' view.
"""

from __future__ import annotations

import re

import pytest

from topologies import lab
from topologies.two_networks import INTERNET_SERVER_IP, PUBLIC_IP, SERVER_IP, NatNet

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 3
UDP_PORT = 9999
TCP_PORT = 8000
MIB = 1 << 20
SERVERS = (SERVER_IP, INTERNET_SERVER_IP)


def test_every_private_host_pings_both_servers(lab_net: NatNet, nat: lab.Controller) -> None:
    unreachable = [(host.name, server) for host in lab_net.private for server in SERVERS
                   if not lab.ping(host, server)]
    assert unreachable == []


@pytest.mark.parametrize("server_name", ["srv", "inet"])
def test_server_sees_pings_from_the_public_address(lab_net: NatNet, nat: lab.Controller,
                                                   server_name: str) -> None:
    server = lab_net.net.get(server_name)
    with lab.capture(server, "icmp[icmptype] == icmp-echo") as capture:
        assert lab.ping(lab_net.private[0], server.IP())
        lab.wait_until(lambda: lab.packets(capture), 5, what="the echo request at the server")
    sources = {re.match(r"([\d.]+) > ", line)[1] for line in lab.packets(capture)}
    assert sources == {PUBLIC_IP}


def test_udp_request_response_from_every_private_host(lab_net: NatNet, nat: lab.Controller) -> None:
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        for host in lab_net.private:
            [result] = lab.probe(host, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}")["results"]
            assert result.get("echo_ok") and result["upload_ok"], (host.name, result)
            assert result["reply"]["peer"][0] == PUBLIC_IP


@pytest.mark.parametrize("server_ip", SERVERS)
def test_tcp_mebibyte_crosses_intact_both_ways(lab_net: NatNet, nat: lab.Controller,
                                               server_ip: str) -> None:
    server = lab_net.srv if server_ip == SERVER_IP else lab_net.inet
    with lab.server(server, "tcp", TCP_PORT):
        result = lab.probe(lab_net.private[0], "tcp-client", "--to", f"{server_ip}:{TCP_PORT}",
                           "--upload", MIB, "--download", MIB, "--timeout", 20)
    assert "error" not in result, result
    assert (result["reply"]["len"], result["upload_ok"]) == (MIB, True)
    assert (result["downloaded"], result["download_ok"]) == (MIB, True)
    assert result["reply"]["peer"][0] == PUBLIC_IP


@pytest.mark.parametrize("server_ip", SERVERS)
def test_4000_byte_udp_datagram_crosses_intact_both_ways(lab_net: NatNet, nat: lab.Controller,
                                                         server_ip: str) -> None:
    """At MTU 1500 the datagram travels as three fragments in each direction."""
    server = lab_net.srv if server_ip == SERVER_IP else lab_net.inet
    with lab.server(server, "udp", UDP_PORT):
        [result] = lab.probe(lab_net.private[1], "udp-client", "--to", f"{server_ip}:{UDP_PORT}",
                             "--size", 4000)["results"]
    assert "error" not in result, result
    assert (result["reply"]["len"], result["upload_ok"], result["echo_ok"]) == (4000, True, True)


def test_two_hosts_share_a_udp_source_port_at_once(lab_net: NatNet, nat: lab.Controller) -> None:
    hosts = lab_net.private[:2]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        results = [r["results"][0] for r in lab.probe_all(
            hosts, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 40000)]
    assert all(r.get("echo_ok") for r in results), results
    # Each host got the answer to its own datagram, not the other's.
    assert [r["reply"]["tag"] for r in results] == [h.name for h in hosts]
    peers = {tuple(r["reply"]["peer"]) for r in results}
    assert len(peers) == 2 and {address for address, _ in peers} == {PUBLIC_IP}


def test_two_hosts_share_a_tcp_source_port_at_once(lab_net: NatNet, nat: lab.Controller) -> None:
    """The server holds each answer for a second, so both connections are open together."""
    hosts = lab_net.private[:2]
    with lab.server(lab_net.srv, "tcp", TCP_PORT) as server:
        results = lab.probe_all(hosts, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}",
                                "--from-port", 40001, "--hold", 1, "--download", 10000)
    assert all(r.get("download_ok") and r["upload_ok"] for r in results), results
    assert [r["reply"]["tag"] for r in results] == [h.name for h in hosts]
    seen = {tuple(event["peer"]) for event in server.json_lines()}
    assert len(seen) == 2 and {address for address, _ in seen} == {PUBLIC_IP}


def test_one_udp_socket_has_one_public_port_for_every_server(lab_net: NatNet,
                                                             nat: lab.Controller) -> None:
    """Endpoint-independent mapping (RFC 4787 REQ-1)."""
    with lab.server(lab_net.srv, "udp", UDP_PORT), lab.server(lab_net.inet, "udp", UDP_PORT):
        results = lab.probe(lab_net.private[0], "udp-client", "--from-port", 40002,
                            *(arg for ip in SERVERS for arg in ("--to", f"{ip}:{UDP_PORT}")))["results"]
    assert all(r.get("echo_ok") for r in results), results
    seen = [tuple(r["reply"]["peer"]) for r in results]
    assert seen[0] == seen[1] and seen[0][0] == PUBLIC_IP


def test_ttl_at_the_receiver_is_one_less_than_without_the_nat(lab_net: NatNet,
                                                               nat: lab.Controller) -> None:
    """Baselines cross the same routers minus the NAT: gw -> srv (none), srv -> inet (gw)."""
    h1 = lab_net.private[0]

    def exchange(host, server_ip: str) -> dict:
        [result] = lab.probe(host, "udp-client", "--to", f"{server_ip}:{UDP_PORT}")["results"]
        assert result.get("echo_ok"), (host.name, result)
        return result

    with lab.server(lab_net.srv, "udp", UDP_PORT), lab.server(lab_net.inet, "udp", UDP_PORT):
        via_nat, direct = exchange(h1, SERVER_IP), exchange(lab_net.gw, SERVER_IP)
        via_nat_far, direct_far = exchange(h1, INTERNET_SERVER_IP), exchange(lab_net.srv, INTERNET_SERVER_IP)
    # Outbound (seen by the server) and inbound (seen by the client).
    assert (via_nat["reply"]["ttl"], direct["reply"]["ttl"]) == (63, 64)
    assert (via_nat["reply_ttl"], direct["reply_ttl"]) == (63, 64)
    assert (via_nat_far["reply"]["ttl"], direct_far["reply"]["ttl"]) == (62, 63)
    assert (via_nat_far["reply_ttl"], direct_far["reply_ttl"]) == (62, 63)
