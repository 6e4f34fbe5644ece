"""The coursework layout (``natlab``): private hosts straight on NAT switch ports 2..N+1.

The app switches traffic between private ports itself here, and several
private ports feed one set of mappings.
"""

from __future__ import annotations

import pytest

from topologies import lab
from topologies.two_networks import INTERNET_SERVER_IP, PUBLIC_IP, SERVER_IP, NatNet

pytestmark = pytest.mark.e2e

LAYOUT = "natlab"
PRIVATE_HOSTS = 3
UDP_PORT = 9999
TCP_PORT = 8000


def test_private_hosts_reach_each_other_and_both_servers(lab_net: NatNet,
                                                         nat: lab.Controller) -> None:
    targets = [SERVER_IP, INTERNET_SERVER_IP, *(h.IP() for h in lab_net.private)]
    unreachable = [(host.name, target) for host in lab_net.private for target in targets
                   if target != host.IP() and not lab.ping(host, target)]
    assert unreachable == []


def test_every_host_uses_the_same_source_port_at_once(lab_net: NatNet, nat: lab.Controller) -> None:
    with lab.server(lab_net.srv, "udp", UDP_PORT) as udp_server:
        udp = [r["results"][0] for r in lab.probe_all(
            lab_net.private, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 40000)]
    with lab.server(lab_net.inet, "tcp", TCP_PORT) as tcp_server:
        tcp = lab.probe_all(lab_net.private, "tcp-client", "--to", f"{INTERNET_SERVER_IP}:{TCP_PORT}",
                            "--from-port", 40000, "--hold", 1, "--download", 50_000)
    names = [h.name for h in lab_net.private]
    assert [r["reply"]["tag"] for r in udp if r.get("echo_ok")] == names, udp
    assert [r["reply"]["tag"] for r in tcp if r.get("download_ok")] == names, tcp
    for server in (udp_server, tcp_server):
        peers = {tuple(event["peer"]) for event in server.json_lines()}
        assert len(peers) == len(names) and {address for address, _ in peers} == {PUBLIC_IP}


def test_redirect_reaches_h1_on_its_own_port(lab_net: NatNet, nat: lab.Controller) -> None:
    with lab.server(lab_net.private[0], "tcp", 80):
        result = lab.probe(lab_net.srv, "tcp-client", "--to", f"{PUBLIC_IP}:8080")
    assert result.get("download_ok"), result
    assert (result["reply"]["server"], result["reply"]["peer"][0]) == ("h1", SERVER_IP)
