"""A gateway wired to the simulated switch, with hosts that answer ARP: plan tests assert fates."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from ryu_nat.backend import arp

from ryu_nat.config import parse_config
from ryu_nat.core.packet import ETH_TYPE_ARP, ethernet_frame
from ryu_nat.gateway import FlowRemovedReason, Gateway, PacketInReason
from ryu_nat.openflow.flowentries import OFPFF_SEND_FLOW_REM, SwitchRule
from ryu_nat.openflow.plan import Plan
from ryu_nat.openflow.scan import Ask
from ryu_nat.operator.switchread import Purpose, SwitchReader

from .builders import frame
from .fakeswitch import FakeSwitch

UPLINK, H1_PORT, H2_PORT = 1, 2, 3
ROUTER_MAC = "02:4e:41:54:00:01"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
PUBLIC = "192.168.3.1"
PRIVATE = "10.0.0.1"
GATEWAY = "192.168.3.254"
SERVER = "192.168.3.10"
INTERNET = "198.51.100.10"
H1, H2 = "10.0.0.2", "10.0.0.3"
MACS = {H1: "00:00:00:00:00:02", H2: "00:00:00:00:00:03", SERVER: "00:00:00:00:03:0a", GATEWAY: "00:00:00:00:03:fe"}
HOME = {H1: H1_PORT, H2: H2_PORT, SERVER: UPLINK, GATEWAY: UPLINK}  # where each host is
BASE_CONFIG = {"public_ipv4": f"{PUBLIC}/24", "public_ipv4_gateway": GATEWAY, "private_ipv4": f"{PRIVATE}/24",
               "public_port": str(UPLINK), "redirects": f"tcp:8080={H1}:80, udp:5353={H2}:53"}

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_nat_conf() -> str:
    """The ``nat.conf`` sample of README.md, verbatim: the ini block after the line "`nat.conf`:"."""
    found = re.search(r"^`nat\.conf`:\n\n```ini\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    assert found, "README.md has no ```ini block after `nat.conf`:"
    return found.group(1)


@dataclass
class Lab:
    """One NAT switch with H1 on port 2, H2 on port 3, and the public LAN (SERVER, GATEWAY) on port 1."""

    overrides: dict[str, str] = field(default_factory=dict)
    now: float = 0.0
    answer_arp: bool = True
    macs: dict[str, str] = field(default_factory=lambda: dict(MACS))  # a host's MAC now (a restart changes it)

    def __post_init__(self) -> None:
        self.gateway = Gateway(parse_config({**BASE_CONFIG, **self.overrides}), random.Random(3))
        self.switch = FakeSwitch(ports=(UPLINK, H1_PORT, H2_PORT))
        self.plans: list[Plan] = []
        self._xid = 0
        self.connect()

    def connect(self, read_back: bool = True, ports: tuple[int, ...] = (UPLINK, H1_PORT, H2_PORT, 0xFFFFFFFE)) -> None:
        """The switch connects; with an empty table the gateway reads its rules back (unless told not to)."""
        self.apply(self.gateway.switch_connected(list(ports), self.now))
        if read_back and self.gateway.review.restoring:
            self.read_back()

    def restart(self, read_back: bool = True) -> None:
        """The controller restarts: a new gateway, with the same configuration, meets the switch as it is."""
        self.gateway = Gateway(parse_config({**BASE_CONFIG, **self.overrides}), random.Random(4))
        self.connect(read_back)

    def switch_rules(self, cookie: int, mask: int) -> list[SwitchRule]:
        """The rules a flow-statistics request for (cookie, mask) gets, as the switch reports them."""
        return [SwitchRule(entry.rule.cookie, entry.rule.priority, entry.rule.idle_timeout_s, entry.rule.hard_timeout_s,
                           OFPFF_SEND_FLOW_REM if entry.rule.notify_removed else 0, self.now - entry.installed_at,
                           entry.packets, entry.packets * 100, entry.rule.match, entry.rule.actions, entry.rule.table_id)
                for entry in self.switch.entries() if entry.rule.cookie & mask == cookie & mask]

    def read_back(self) -> list[tuple[int, dict[str, Any]]]:
        """Every slice of our rules, as the app asks for them after a restart, fed to the gateway; then done:
        where the packets that waited went (ARP answered, as in :meth:`send`)."""
        assert self.drive(SwitchReader(self.gateway), Purpose.RESTORE)
        return self._answer_arp(self.switch.emitted())

    def audit(self) -> None:
        """One audit, slice after slice, as the app runs it."""
        assert self.drive(SwitchReader(self.gateway), Purpose.AUDIT)

    def drive(self, reader: SwitchReader, purpose: Purpose) -> bool:
        """One read by ``reader``: its requests to the switch and the answers back, as the app sends them;
        False if the reader would not start it."""
        if not reader.start(purpose, self.now):
            return False
        while True:
            request, plan = reader.next_request(self.now)
            self.apply(plan)
            if request is None:
                return True
            self._xid += 1
            reader.sent(request, self._xid, self.now)
            found = self.switch_rules(request.node.cookie, request.node.mask)
            if request.ask is Ask.COUNT:
                answered = reader.counted(self._xid, len(found), self.now)
            else:
                answered = reader.part(self._xid, found, False, self.now)
            assert answered is not None
            self.apply(answered)

    def apply(self, plan: Plan) -> None:
        self.plans.append(plan)
        self.switch.apply(plan)

    def send(self, port: int, data: bytes) -> list[tuple[int, dict[str, Any]]]:
        """A frame arrives on ``port``: where it and whatever the controller sent in answer went.

        Packet-ins carry the frame as it arrived (mapping rules spend the TTL before
        they rewrite), and ARP requests from the NAT to known hosts are answered.
        """
        from .fakeswitch import fields_of_frame

        delivered = self.switch.fate(**fields_of_frame(data, port))
        for packet_in in self.switch.packet_ins():
            self.apply(self.gateway.packet_in(packet_in.in_port, data, self.now, PacketInReason(packet_in.reason)))
        delivered += self.switch.emitted()
        return self._answer_arp(delivered)

    def _answer_arp(self, delivered: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
        """Hosts answer the NAT's ARP requests for them: broadcast ones, and those sent to their MAC now."""
        rest = []
        for port, fields in delivered:
            target = fields.get("arp_tpa")
            asked_here = HOME.get(target) == port  # a request flooded to every private port: the host's answers
            asked = (self.answer_arp and fields.get("arp_op") == 1 and fields.get("arp_sha") == ROUTER_MAC
                     and target in self.macs and fields.get("eth_dst") in (BROADCAST_MAC, self.macs[target]))
            if asked and asked_here:
                rest += self.send(port, arp_reply(target, fields["arp_spa"], self.macs[target]))
            elif fields.get("arp_op") == 1 and target in self.macs and not asked_here:
                continue
            else:
                rest.append((port, fields))
        return rest

    def advance(self, seconds: float) -> list[tuple[int, dict[str, Any]]]:
        """Time passes: the switch idles rules out, the controller hears of it and ticks; hosts answer
        the ARP requests the tick sent them. What the tick sent out and nobody answered."""
        self.now += seconds
        self.switch.advance(self.now)
        for removed in self.switch.flow_removed_events():
            self.apply(self.gateway.flow_removed(removed.cookie, FlowRemovedReason(removed.reason), self.now,
                                                 removed.packets, removed.rule.idle_timeout_s))
        self.apply(self.gateway.expire(self.now))
        return self._answer_arp(self.switch.emitted())

    def last_packet_outs(self) -> list[bytes]:
        from ryu_nat.openflow.plan import PacketOut

        return [item.data for item in self.plans[-1] if isinstance(item, PacketOut)]


def arp_request(sender: str, target: str, mac: str | None = None) -> bytes:
    """``sender`` (from its usual MAC, or ``mac``) asks who has ``target``."""
    mac = mac or MACS[sender]
    packet = arp.arp_ip(arp.ARP_REQUEST, mac, sender, "00:00:00:00:00:00", target)
    return ethernet_frame(BROADCAST_MAC, mac, bytes(packet.serialize(b"", None)), ETH_TYPE_ARP)


def arp_reply(sender: str, to: str, mac: str | None = None) -> bytes:
    """``sender`` (from its usual MAC, or ``mac``) tells the NAT it is there."""
    mac = mac or MACS[sender]
    packet = arp.arp_ip(arp.ARP_REPLY, mac, sender, ROUTER_MAC, to)
    return ethernet_frame(ROUTER_MAC, mac, bytes(packet.serialize(b"", None)), ETH_TYPE_ARP)


def from_host(host: str, ip_bytes: bytes) -> bytes:
    """A frame a host sends to its gateway (private hosts) or the NAT (public side)."""
    return frame(MACS[host], ROUTER_MAC, ip_bytes)


def ip(text: str) -> IPv4Address:
    return IPv4Address(text)
