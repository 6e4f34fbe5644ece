"""The inbound guard: what happens to unsolicited traffic from the uplink.

Inbound TCP or UDP that the NAT path refused (no mapping, no redirect takes it)
is dropped, and the switch drops more like it for ``DROP_RULE_S`` seconds, so a
flood costs the controller one packet-in per port, or per sender and port, not
one per packet. A drop rule must never match traffic that a live mapping or a
redirect would accept (RFC 4787 REQ-11: a remote's replies get through even
after its mapping's reply rule idled out). The guard does not work out what a
mapping accepts: the caller says whether the port has an owner (the NAT path's
answer). A port without one accepts nothing, so its rule drops the whole port;
on a port with an owner the rule drops only the refused sender (address and
port), traffic the NAT path has just refused. When a port gains an owner (a new
mapping or a redirect), its drop rules are deleted at once.

At most ``MAX_DROP_RULES`` rules at a time: past that, unsolicited packets each
reach the controller, which drops them. The switch counts what its rules drop
and says so when each rule ends (flow-removed): those packets are counted as
drops too. No I/O; time is passed in.
"""

from __future__ import annotations

import logging

from ryu_nat.core.addresses import Proto
from ryu_nat.core.packet import Datagram
from ryu_nat.gateway.drops import DropReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import rules
from ryu_nat.openflow.plan import Plan
from ryu_nat.ratelimit import LogLimiter

LOG = logging.getLogger(__name__)

DROP_RULE_S = 10
MAX_DROP_RULES = 8192

DropKey = tuple[Proto, int] | tuple[Proto, int, int, int]
"""(protocol, public port), or (protocol, public port, sender address, sender port)."""


class InboundGuard:
    """The short-lived drop rules on public ports, and when each was sent."""

    def __init__(self, uplink: int, public_ip: int, stats: Stats, limiter: LogLimiter) -> None:
        self._uplink = uplink
        self._public_ip = public_ip
        self._stats = stats
        self._limiter = limiter
        self._drop_rules: dict[DropKey, float] = {}  # oldest first
        self._per_port: dict[tuple[Proto, int], dict[DropKey, None]] = {}  # a port's rules, as an ordered set

    def refuse(self, d: Datagram, now: float, port_has_owner: bool) -> Plan:
        """Drop an unsolicited packet; for TCP or UDP, a drop rule unless one on the switch covers it:
        for the whole port, or, if ``port_has_owner``, for this sender alone."""
        self._stats.drop(DropReason.UNSOLICITED)
        if d.proto not in (Proto.TCP, Proto.UDP) or not d.dst_port:
            return []
        proto = Proto(d.proto)
        port = (proto, d.dst_port)
        key: DropKey = (proto, d.dst_port, d.src, d.src_port) if port_has_owner else port
        if key in self._drop_rules or port in self._drop_rules:
            return []  # it reached the controller before its rule reached the switch
        if len(self._drop_rules) >= MAX_DROP_RULES:
            self._limiter.log(LOG, logging.WARNING, "guard_full", now, "inbound guard: %d drop rules on the switch; "
                              "more unsolicited traffic reaches the controller", MAX_DROP_RULES)
            return []
        self._drop_rules[key] = now
        self._per_port.setdefault(port, {})[key] = None
        sender = (d.src, d.src_port) if port_has_owner else None
        return [rules.drop_unsolicited(self._uplink, self._public_ip, proto, d.dst_port, DROP_RULE_S, sender)]

    def dropping(self, proto: Proto, port: int) -> bool:
        """True while the switch drops inbound traffic to ``port`` (a drop rule sent, not yet timed out)."""
        return (proto, port) in self._drop_rules

    def open_port(self, proto: Proto, port: int) -> Plan:
        """``port`` has an owner now (a new mapping, a redirect): its drop rules go, if it has any."""
        keys = self._per_port.pop((proto, port), None)
        if keys is None:
            return []
        for key in keys:
            del self._drop_rules[key]
        return [rules.delete_drops(proto, port)]

    def rule_ended(self, packets: int) -> None:
        """A drop rule left the switch having dropped ``packets``."""
        self._stats.drop(DropReason.UNSOLICITED, packets)

    def expire(self, now: float) -> None:
        """Forget drop rules the switch has timed out."""
        while self._drop_rules:
            key, since = next(iter(self._drop_rules.items()))
            if now - since < DROP_RULE_S:
                break
            del self._drop_rules[key]
            port = (key[0], key[1])
            keys = self._per_port[port]
            del keys[key]
            if not keys:
                del self._per_port[port]

    def forget(self) -> None:
        """The switch (re)connected and lost every drop rule."""
        self._drop_rules.clear()
        self._per_port.clear()
