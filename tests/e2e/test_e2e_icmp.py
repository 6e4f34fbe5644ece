"""ICMP through the NAT: errors about translated flows find their private sender; traceroute works."""

from __future__ import annotations

import re

import pytest

from topologies import lab
from topologies.two_networks import (
    INTERNET_SERVER_IP,
    PRIVATE_GATEWAY,
    PUBLIC_GATEWAY,
    SERVER_IP,
    NatNet,
)

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 2
CLOSED_PORT = 9


@pytest.mark.parametrize("server_ip", [SERVER_IP, INTERNET_SERVER_IP])
def test_udp_to_a_closed_port_brings_back_port_unreachable(lab_net: NatNet, nat: lab.Controller,
                                                          server_ip: str) -> None:
    """The kernel reports the translated ICMP error as ECONNREFUSED on the connected socket."""
    [result] = lab.probe(lab_net.private[0], "udp-client", "--to", f"{server_ip}:{CLOSED_PORT}",
                         "--timeout", 2)["results"]
    assert result.get("error") == "refused", result


def test_traceroute_shows_the_nat_the_gateway_and_the_server(lab_net: NatNet,
                                                              nat: lab.Controller) -> None:
    """Hop 1: the NAT's private address; hop 2: gw (its error translated back); hop 3: the server."""
    hops = lab.traceroute(lab_net.private[1], INTERNET_SERVER_IP)
    assert hops == [PRIVATE_GATEWAY, PUBLIC_GATEWAY, INTERNET_SERVER_IP]


def test_pings_from_two_hosts_at_once_both_come_back(lab_net: NatNet, nat: lab.Controller) -> None:
    """ICMP queries are told apart by their identifiers, which the NAT translates."""
    pings = [lab.HostProcess(host, ["ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", SERVER_IP])
             for host in lab_net.private]
    received = []
    for process in pings:
        process.wait(20)
        received.append(int(re.search(r"(\d+) received", process.output())[1]))
    # The first echo may wait for address resolution; the rest must all return.
    assert min(received) >= 4, [p.output() for p in pings]
