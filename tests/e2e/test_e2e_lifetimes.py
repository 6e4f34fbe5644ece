"""How long mappings live, read off the switch: eviction, idle expiry, many connections, restart.

A mapping's two flows both name its private and its public port (one matches
on them, the other writes them), which is how :func:`lab.mapping_flows`
finds them in ``ovs-ofctl dump-flows``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from topologies import lab
from topologies.two_networks import NAT_SWITCH, PUBLIC_IP, SERVER_IP, NatNet

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 2
UDP_PORT = 9999
TCP_PORT = 8000


def udp_mapping(host, private_port: int) -> tuple[int, int]:
    """Open a UDP mapping from ``private_port`` to srv; return (private port, public port)."""
    [result] = lab.probe(host, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}",
                         "--from-port", private_port)["results"]
    assert result.get("echo_ok"), result
    assert result["reply"]["peer"][0] == PUBLIC_IP
    return private_port, result["reply"]["peer"][1]


def wait_for_flows(mapping: tuple[int, int], count: int, timeout_s: float = 5) -> list[lab.Flow]:
    """The mapping's flows, once there are exactly ``count`` of them."""
    def found() -> list[lab.Flow] | None:
        flows = lab.mapping_flows(NAT_SWITCH, "udp", *mapping)
        return flows if len(flows) == count else None

    return lab.wait_until(found, timeout_s, what=f"{count} flows for UDP mapping {mapping}")


def test_tiny_table_evicts_the_oldest_mapping_with_its_flows(
        lab_net: NatNet, start_nat: Callable[..., lab.Controller]) -> None:
    start_nat(udp_table_size=2)
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        first = udp_mapping(h1, 41001)
        wait_for_flows(first, 2)
        udp_mapping(h1, 41002)
        last = udp_mapping(h1, 41003)
    wait_for_flows(last, 2)
    lab.wait_until(lambda: not lab.mapping_flows(NAT_SWITCH, "udp", *first), 5,
                   what="the evicted mapping's flows to leave the switch")
    assert len(lab.rewrite_flows(NAT_SWITCH, "udp")) <= 4


def test_idle_mapping_expires_with_its_flows(lab_net: NatNet,
                                             start_nat: Callable[..., lab.Controller]) -> None:
    start_nat(udp_idle_timeout=3)
    h1 = lab_net.private[0]
    with lab.server(lab_net.srv, "udp", UDP_PORT):
        mapping = udp_mapping(h1, 41010)
        assert {flow.idle_timeout for flow in wait_for_flows(mapping, 2)} == {3}
        # Open vSwitch checks idle flows about once a second: allow some seconds past the timeout.
        lab.wait_until(lambda: not lab.mapping_flows(NAT_SWITCH, "udp", *mapping), 15,
                       what="the idle mapping's flows to expire")
        again = udp_mapping(h1, 41010)
    wait_for_flows(again, 2)


def test_300_sequential_tcp_connections_all_succeed(lab_net: NatNet, nat: lab.Controller) -> None:
    with lab.server(lab_net.srv, "tcp", TCP_PORT):
        result = lab.probe(lab_net.private[0], "tcp-many", "--to", f"{SERVER_IP}:{TCP_PORT}",
                           "--count", 300, timeout_s=300)
    assert result["ok"] == 300, result["failures"]


def test_new_connections_work_after_the_controller_restarts(lab_net: NatNet,
                                                            nat: lab.Controller) -> None:
    h1, h2 = lab_net.private[:2]
    with lab.server(lab_net.srv, "tcp", TCP_PORT), lab.server(lab_net.srv, "udp", UDP_PORT):
        before = lab.probe(h1, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}")
        assert before.get("download_ok"), before
        nat.restart(lab_net.nat.name)
        after = lab.probe(h1, "tcp-client", "--to", f"{SERVER_IP}:{TCP_PORT}", "--download", 100_000)
        [udp] = lab.probe(h2, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}")["results"]
    assert after.get("download_ok") and after["reply"]["peer"][0] == PUBLIC_IP, after
    assert udp.get("echo_ok") and udp["reply"]["peer"][0] == PUBLIC_IP, udp
    assert lab.ping(h2, SERVER_IP)
