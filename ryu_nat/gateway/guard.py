"""The inbound guard: what happens to unsolicited traffic from the uplink.

Inbound TCP or UDP with no mapping and no redirect is dropped, and the switch
drops that public port for a few seconds more, so a flood costs the controller
one packet-in per port, not one per packet. A redirect added for a port that
has such a drop rule takes effect at once: the drop rules are deleted. No I/O;
time is passed in.
"""

from __future__ import annotations

from ryu_nat.core.addresses import Proto
from ryu_nat.core.packet import Datagram
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import Plan

DROP_RULE_S = 10


class InboundGuard:
    """The short-lived drop rules on public ports, and when each was sent."""

    def __init__(self, uplink: int, public_ip: int, stats: Stats) -> None:
        self._uplink = uplink
        self._public_ip = public_ip
        self._stats = stats
        self._drop_rules: dict[tuple[Proto, int], float] = {}

    def refuse(self, d: Datagram, now: float) -> Plan:
        """Drop an unsolicited TCP or UDP packet; a drop rule for its port unless one is on the switch."""
        self._stats.drop(DropReason.UNSOLICITED)
        if d.proto not in (Proto.TCP, Proto.UDP) or not d.dst_port:
            return []
        key = (Proto(d.proto), d.dst_port)
        if key in self._drop_rules:
            return []
        self._drop_rules[key] = now
        return [rules.drop_unsolicited(self._uplink, self._public_ip, key[0], key[1], DROP_RULE_S)]

    def dropping(self, proto: Proto, port: int) -> bool:
        """True while the switch drops inbound traffic to ``port`` (a drop rule sent, not yet timed out)."""
        return (proto, port) in self._drop_rules

    def open_port(self, proto: Proto, port: int) -> Plan:
        """Traffic to ``port`` is welcome now (a redirect): delete the drop rules if it has one."""
        if (proto, port) not in self._drop_rules:
            return []
        self._drop_rules.clear()
        return [rules.delete_drops()]

    def expire(self, now: float) -> None:
        """Forget drop rules the switch has timed out."""
        for key, since in list(self._drop_rules.items()):
            if now - since >= DROP_RULE_S:
                del self._drop_rules[key]

    def forget(self) -> None:
        """The switch (re)connected and lost every drop rule."""
        self._drop_rules.clear()
