"""Path MTU through the NAT, and ICMP errors from a router behind it, with real hosts, Open vSwitch and ryu-manager.

RFC 4787 REQ-13 / RFC 5508 REQ-10: a datagram with DF set that is bigger than
the MTU of the side it leaves by gets an ICMP fragmentation needed naming that
MTU, whether the controller (ICMP, a first packet) or the switch (a mapping's
rules, by Open vSwitch's length check) met it; path-MTU discovery then works
for UDP and TCP, both ways. RFC 5508 REQ-5c: an error a private router sends
about a translated flow leaves from the public address.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from topologies import lab
from topologies.two_networks import PRIVATE_GATEWAY, PUBLIC_IP, SERVER_IP, NatNet, private_ip

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 2
UDP_PORT = 9999
TCP_PORT = 8000


@pytest.fixture(autouse=True)
def forget_path_mtus(lab_net: NatNet) -> Iterator[None]:
    """Each test starts with hosts that know no path MTU (the kernel keeps what it learnt per route)."""
    for host in lab_net.hosts:
        host.cmd("ip route flush cache")
    yield


def fragmentation_needed_sent(nat: lab.Controller) -> int:
    status, stats = nat.rest("/nat/stats")
    assert status == 200, stats
    return stats["icmp_sent"].get("fragmentation_needed", 0)


def test_ping_too_big_for_the_uplink_is_told_the_uplinks_mtu(lab_net: NatNet,
                                                             start_nat: lab.Controller) -> None:
    """ICMP goes through the controller, which checks the length itself."""
    nat = start_nat(public_mtu=1200)
    output = lab_net.private[0].cmd(f"ping -n -M do -s 1300 -c 2 -i 0.3 -W 1 {SERVER_IP}")
    assert f"From {PRIVATE_GATEWAY} icmp_seq=1 Frag needed and DF set (mtu = 1200)" in output, output
    assert "2 received" not in output
    assert fragmentation_needed_sent(nat) >= 1


def test_udp_on_a_mappings_rules_learns_the_path_mtu_and_gets_through(lab_net: NatNet,
                                                                      start_nat: lab.Controller) -> None:
    """The mapping's rules are on the switch; its length check sends the big datagram up instead."""
    nat = start_nat(public_mtu=1200)
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        small = lab.probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 5002)
        assert small["results"][0]["echo_ok"], small
        assert lab.mapping_flows(lab_net.nat.name, "udp", 5002), lab.dump_flows(lab_net.nat.name)
        big = lab.probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 5002,
                        "--size", 1400, "--tries", 3, "--timeout", 1)
    # The first try (DF set) is answered with fragmentation needed; the next leaves h1 in pieces, which the NAT
    # takes whole and cuts again to 1,200 bytes.
    assert big["path_mtu"] == 1200 and big["results"][0]["echo_ok"], big
    assert fragmentation_needed_sent(nat) >= 1


def test_tcp_path_mtu_discovery_works_both_ways(lab_net: NatNet, start_nat: lab.Controller) -> None:
    """Uploads meet the uplink's 1,200 and downloads the private side's 1,300: both senders learn and adapt."""
    nat = start_nat(public_mtu=1200, private_mtu=1300)
    with lab.server(lab_net.srv, "tcp", TCP_PORT):
        result = lab.probe(lab_net.private[0], "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}",
                           "--upload", 200_000, "--download", 200_000, "--timeout", 20, timeout_s=60)
    assert result.get("upload_ok") and result.get("download_ok"), result
    assert fragmentation_needed_sent(nat) >= 2
    assert "mtu 1300" in lab_net.srv.cmd(f"ip route get {PUBLIC_IP}")


def test_an_error_from_a_private_router_leaves_from_the_public_address(lab_net: NatNet,
                                                                        start_nat: lab.Controller) -> None:
    """h2 plays a router between the NAT and h1 that drops srv's datagram (TTL exceeded) and says so."""
    start_nat(redirects=f"udp:5353={private_ip(1)}:53")
    listener = lab.HostProcess(lab_net.srv, lab.netprobe_command("icmp-listen", "--timeout", 10, "--type", 11))
    try:
        listener.wait_for_line(r"^READY")
        sent = lab.probe(lab_net.srv, "udp-client", "--to", f"{PUBLIC_IP}:5353", "--from-port", 40000,
                         "--timeout", 1)
        assert sent["results"][0].get("error") in ("refused", "timeout"), sent  # nothing on h1:53; the mapping is made
        lab.probe(lab_net.private[1], "icmp-error", "--to", SERVER_IP,
                  "--about", f"{SERVER_IP}:40000>{private_ip(1)}:53")
        heard = lab.probe_result(listener, timeout_s=15)
    finally:
        listener.stop()
    assert heard.get("from") == PUBLIC_IP and heard["icmp_checksum_ok"], heard
    assert heard["quoted"] == {"src": SERVER_IP, "dst": PUBLIC_IP, "sport": 40000, "dport": 5353}, heard
