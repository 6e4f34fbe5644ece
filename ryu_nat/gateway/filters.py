"""Filter rules: inbound traffic that filtering lets reach a private endpoint's public port, on the switch.

With endpoint-independent filtering one rule per public port in use lets
anyone in; with address-dependent filtering one rule per (public port, remote
address) the endpoint talks to lets that address in from any port (RFC 4787
REQ-8, RFC 5382 REQ-3). A rule is installed when the first such packet reaches
the controller (the NAT path said :class:`~ryu_nat.core.filtering.Admitted`),
so setting up a mapping costs nothing more, and deleted, first in the next
plan, when what it rests on is gone: the port's owner, or the last mapping with
that address. Traffic through a filter rule keeps no mapping alive (RFC 4787
REQ-6 asks for outbound refresh only). No mapping is made for it: the private
host's answer makes one. No I/O.
"""

from __future__ import annotations

import itertools

from ryu_nat.config import NatConfig
from ryu_nat.core.addresses import Proto
from ryu_nat.core.filtering import Admitted
from ryu_nat.core.neighbours import Location
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import PacketOut, Plan

FilterKey = tuple[Proto, int, "int | None"]  # (protocol, public port, remote address or None)


class FilterRules:
    """Which filter rules the switch holds, by what they let in."""

    def __init__(self, config: NatConfig, stats: Stats) -> None:
        self._uplink = config.public_port
        self._public_ip = int(config.public.ip)
        self._mac = config.router_mac
        self._stats = stats
        self._ids = itertools.count(1)
        self._rules: dict[FilterKey, int] = {}
        self._deletions: Plan = []

    def admit(self, admitted: Admitted, came_from: Location, goes_to: Location, data: bytes) -> Plan:
        """The packet at hand through the filter rule that lets it in; the rule too, unless it is installed."""
        key = (admitted.proto, admitted.public_port, admitted.remote)
        rule_id = self._rules.get(key)
        installed = rule_id is not None
        if rule_id is None:
            rule_id = self._rules[key] = next(self._ids)
        rule = rules.filter_rule(rule_id, self._uplink, self._public_ip, admitted.proto, admitted.public_port,
                                 admitted.remote, admitted.private_ip, admitted.private_port, self._mac,
                                 goes_to.mac, goes_to.port)
        self._stats.packet_ins["admitted"] += 1
        packet_out = PacketOut(data, rule.actions, came_from.port)
        return [packet_out] if installed else [rule, packet_out]

    def withdraw(self, proto: Proto, public_port: int, remote: int | None) -> None:
        """What let (``proto``, ``public_port``, ``remote``) in is gone: its rule leaves with the next plan."""
        rule_id = self._rules.pop((proto, public_port, remote), None)
        if rule_id is not None:
            self._deletions.append(rules.delete_filter(rule_id))

    def forget(self) -> None:
        """The switch (re)connected without our rules: they come back with the next packet they let in."""
        self._rules.clear()

    def take_deletions(self) -> Plan:
        """The deletions not sent yet; they go before anything else."""
        deletions = self._deletions
        if deletions:
            self._deletions = []
        return deletions
