"""Attacks on the real thing (issue 11): each sent from the side it comes from, as raw frames on a
Mininet host's interface, against ryu-manager on Open vSwitch. After each, legitimate flows must still
work, the controller must answer and stay within a memory bound, and its log must hold no traceback
(the ``start_nat`` fixture checks that)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from ryu_nat.config import DEFAULTS
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from tests.unit import hostile
from topologies import lab
from topologies.two_networks import (INTERNET_SERVER_IP, PUBLIC_GATEWAY, PUBLIC_IP, SERVER_IP, NatNet,
                                     private_ip)

pytestmark = pytest.mark.e2e

LAYOUT = "two_networks"
PRIVATE_HOSTS = 1
ROUTER_MAC = DEFAULTS["router_mac"]
RSS_GROWTH_BOUND = 40 * 2**20  # what the attacks may add to the controller's memory, at most
STRANGER = "198.51.100.66"  # an internet host, its packets routed to the public LAN by gw
UDP_PORT = 9999


def send_frames(host: Any, frames: list[bytes], tmp_path: Path, rate: float = 0.0) -> dict[str, Any]:
    """Put ``frames`` on ``host``'s LAN as they are (an attacker there could)."""
    path = tmp_path / f"frames-{host.name}-{random.getrandbits(32):08x}.hex"
    path.write_text("".join(frame.hex() + "\n" for frame in frames))
    return lab.probe(host, "raw-send", "--intf", host.defaultIntf().name, "--frames", path, "--rate", rate,
                     timeout_s=120)


def rss(controller: lab.Controller) -> int:
    """The controller's resident memory, in bytes."""
    for line in Path(f"/proc/{controller.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def stats(controller: lab.Controller) -> dict[str, Any]:
    """/nat/stats, which a frozen controller could not answer within the bound."""
    status, body = controller.rest("/nat/stats", timeout_s=5)
    assert status == 200, body
    return body


def legitimate_flows_work(net: NatNet) -> None:
    """TCP to the public server and to the internet, and UDP whose 4000-byte datagrams come in pieces."""
    h1 = net.private[0]
    with lab.server(net.srv, "tcp", 8000), lab.server(net.srv, "udp", UDP_PORT), lab.server(net.inet, "tcp", 8000):
        to_srv = lab.probe(h1, "tcp-client", "--to", f"{SERVER_IP}:8000", "--download", 100_000)
        to_inet = lab.probe(h1, "tcp-client", "--to", f"{INTERNET_SERVER_IP}:8000", "--download", 100_000)
        [udp] = lab.probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--size", 4000, "--tries", 3)["results"]
    assert to_srv.get("download_ok") and to_srv["upload_ok"], to_srv
    assert to_inet.get("download_ok") and to_inet["upload_ok"], to_inet
    assert udp.get("echo_ok") and udp["upload_ok"], udp


def hostile_syns(src_mac: str, src: str, dst: str) -> list[bytes]:
    """SYNs whose options Ryu 4.34 never finished parsing (SACK, TCP-AO, unknown kinds with length 0)."""
    frames = []
    for kind in (5, 29, 2, 99, 254):
        segment = hostile.tcp(src, 40000 + kind, dst, 2000 + kind, options=bytes((kind, 0, 1, 1)))
        frames.append(hostile.ethernet(ROUTER_MAC, src_mac, hostile.ETH_IPV4, hostile.ipv4(src, dst, 6, segment)))
    return frames


def forged_arps(sender_mac_of_frame: str) -> list[bytes]:
    """ARP from the public LAN claiming the gateway's address from MACs no host can have."""
    frames = []
    for forged in (hostile.BROADCAST_MAC, hostile.ZERO_MAC):
        for target in (PUBLIC_GATEWAY, PUBLIC_IP):  # gratuitous, and a request for the NAT
            body = hostile.arp(1, forged, PUBLIC_GATEWAY, hostile.ZERO_MAC, target)
            frames.append(hostile.ethernet(hostile.BROADCAST_MAC, sender_mac_of_frame, hostile.ETH_ARP, body))
    return frames


def fragment_junk(gw_mac: str, count: int, rng: random.Random) -> list[bytes]:
    """First pieces of UDP datagrams that never complete, from spoofed internet sources."""
    frames = []
    for _ in range(count):
        src = f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        payload = hostile.udp(src, rng.randrange(1024, 65536), PUBLIC_IP, rng.randrange(1024, 65536),
                              payload=rng.randbytes(992))
        datagram = hostile.ipv4(src, PUBLIC_IP, 17, payload[:1000], ident=rng.randrange(65536),
                                flags_offset=0x2000)
        frames.append(hostile.ethernet(ROUTER_MAC, gw_mac, hostile.ETH_IPV4, datagram))
    return frames


def test_hostile_syns_forged_arp_and_a_fragment_flood_leave_legitimate_flows_working(
        lab_net: NatNet, start_nat: Any, tmp_path: Path) -> None:
    nat = start_nat()
    srv, gw, h1 = lab_net.srv, lab_net.gw, lab_net.private[0]
    # Forged ARP first, while the NAT does not know the gateway yet, and again once it does.
    send_frames(srv, forged_arps(srv.MAC()), tmp_path)
    legitimate_flows_work(lab_net)
    rss_before = rss(nat)
    send_frames(srv, forged_arps(srv.MAC()), tmp_path)
    # The hostile SYN from the public server, and one from a private host.
    send_frames(srv, hostile_syns(srv.MAC(), SERVER_IP, PUBLIC_IP), tmp_path)
    send_frames(h1, hostile_syns(h1.MAC(), private_ip(1), SERVER_IP), tmp_path)
    counted = stats(nat)
    assert counted["drops"]["bad_source_mac"] == 8 and counted["drops"]["unsolicited"] >= 5, counted["drops"]
    # A fragment flood from the public LAN, and a reply in pieces through it.
    flood = lab.start_probe(gw, "raw-send", "--intf", gw.defaultIntf().name, "--frames",
                            _written(tmp_path, fragment_junk(gw.MAC(), 6000, random.Random(11))), "--rate", 2000)
    with lab.server(srv, "udp", UDP_PORT):
        during = [lab.probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--size", 4000, "--tries", 3)
                  ["results"][0] for _ in range(3)]
    assert lab.probe_result(flood, timeout_s=60)["sent"] == 6000
    assert all(result.get("echo_ok") for result in during), during
    legitimate_flows_work(lab_net)
    after = stats(nat)
    assert after["handler_errors"] == 0 and after["drops"].get("fragment_evicted", 0) > 0, after
    assert rss(nat) - rss_before < RSS_GROWTH_BOUND


def _written(tmp_path: Path, frames: list[bytes]) -> Path:
    path = tmp_path / "flood.hex"
    path.write_text("".join(frame.hex() + "\n" for frame in frames))
    return path


def test_a_strangers_packet_does_not_blind_a_one_way_udp_flow(lab_net: NatNet, start_nat: Any,
                                                               tmp_path: Path) -> None:
    """RFC 4787 REQ-11: after the reply rule of a one-way flow idled out, one stranger's packet to its
    public port must not make the switch drop the real remote's replies."""
    nat = start_nat(udp_idle_timeout=10)
    srv, gw, h1 = lab_net.srv, lab_net.gw, lab_net.private[0]
    one_way = ("udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 40123, "--timeout", 0.3)
    with lab.server(srv, "udp", UDP_PORT, None, "--silent") as sink:
        lab.probe(h1, *one_way)
        seen = lab.wait_until(lambda: sink.json_lines(), 5, what="the first datagram at srv")
        public_port = seen[0]["peer"][1]

        def reply_rule_gone() -> bool:
            lab.probe(h1, *one_way)  # the stream goes on: the original direction stays
            kinds = [cookies.kind_of(f.cookie) for f in lab.mapping_flows(lab_net.nat.name, "udp", public_port)]
            return RuleKind.ORIGINAL in kinds and RuleKind.REPLY not in kinds

        lab.wait_until(reply_rule_gone, 30, interval_s=1.0, what="the reply rule idling out")
        stranger = hostile.udp(STRANGER, 5555, PUBLIC_IP, public_port, payload=b"knock")
        send_frames(gw, [hostile.ethernet(ROUTER_MAC, gw.MAC(), hostile.ETH_IPV4,
                                          hostile.ipv4(STRANGER, PUBLIC_IP, 17, stranger))], tmp_path)
        [drop] = lab.wait_until(lambda: [f for f in lab.flows(lab_net.nat.name)
                                          if cookies.kind_of(f.cookie) is RuleKind.DROP], 5, what="the drop rule")
        waiting = lab.start_probe(h1, "udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 40123,
                                  "--timeout", 15)
        header = b'{"tag": "the real reply", "sha256": ""}\n'
        reply = hostile.udp(SERVER_IP, UDP_PORT, PUBLIC_IP, public_port, payload=header + b"hello")
        lab.wait_until(lambda: len(sink.json_lines()) >= len(seen) + 1, 5, what="h1's datagram at srv")
        send_frames(srv, [hostile.ethernet(ROUTER_MAC, srv.MAC(), hostile.ETH_IPV4,
                                           hostile.ipv4(SERVER_IP, PUBLIC_IP, 17, reply))], tmp_path)
        [result] = lab.probe_result(waiting)["results"]
    assert result.get("reply", {}).get("tag") == "the real reply", result
    # The port has an owner: the rule drops only the stranger (address and port).
    assert f"nw_src={STRANGER}" in drop.match and "tp_src=5555" in drop.match, drop
    assert stats(nat)["drops"]["unsolicited"] >= 1


def test_hosts_replaced_behind_a_reconnecting_switch_are_found_again(lab_net: NatNet, start_nat: Any) -> None:
    """Mininet restarted while the controller ran on: the switch connects again, the hosts behind it have
    new Ethernet addresses. Old and new flows must reach them again within seconds, not never."""
    nat = start_nat()
    srv, h1 = lab_net.srv, lab_net.private[0]
    exchange = ("udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--from-port", 40200, "--timeout", 1)
    old_macs = {host: host.MAC() for host in (srv, h1)}
    with lab.server(srv, "udp", UDP_PORT):
        [before] = lab.probe(h1, *exchange)["results"]
        assert before.get("echo_ok"), before
        try:
            for index, host in enumerate(old_macs):
                set_mac(host, f"02:00:00:00:7e:{index:02x}")
            lab.reset_hosts(lab_net.hosts)
            lab.attach_controller(lab_net.nat.name, lab_net.controller_port)
            lab.wait_until(lambda: nat.log_text().count("NAT switch connected") >= 2, 15, what="the reconnect")

            def works(*args: object) -> bool:
                return bool(lab.probe(h1, *args)["results"][0].get("echo_ok"))

            lab.wait_until(lambda: works(*exchange), 15, interval_s=0.5, what="the old flow again")
            assert works("udp-client", "--to", f"{SERVER_IP}:{UDP_PORT}", "--timeout", 1)  # and a new one
        finally:
            for host, mac in old_macs.items():
                set_mac(host, mac)
            lab.reset_hosts(lab_net.hosts)
    moved = stats(nat)["arp"]
    assert moved.get("mappings_moved", 0) >= 1 and moved.get("forgotten", 0) >= 1, moved


def set_mac(host: Any, mac: str) -> None:
    """A new Ethernet address for ``host``, its routes kept (Mininet's setMAC takes the link down)."""
    routes = [line for line in host.cmd("ip route show default").splitlines() if line.strip()]
    host.setMAC(mac)
    for route in routes:
        host.cmd(f"ip route replace {route}")
