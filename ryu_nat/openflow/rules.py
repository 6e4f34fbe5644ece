"""One function per kind of flow rule, and the packet-outs that go with them.

Two tables. Table 0 only measures: routed IPv4 has its length tested against
the MTU of the side it leaves by (Open vSwitch's ``check_pkt_larger``, into
register 0), and everything goes on to table 1. Table 1 is the NAT;
priorities, highest first:

    400  a frame table 0 found too big -> controller, which cuts it or, with DF
         set, answers fragmentation needed (RFC 4787 REQ-13); so a mapping's
         rules never carry a datagram its next hop cannot take
    301  TCP RST to the router MAC -> controller (the mapping turns transitory)
    300  TCP FIN to the router MAC -> controller (the mapping turns transitory once both
         sides sent one, RFC 7857 section 2.1)
    299  TCP SYN without ACK to the router MAC -> controller (a new connection reaches the
         controller anyway; this one catches a SYN that reopens a transitory mapping)
    200  a mapping's rewrite rule, one per direction
    190  a filter rule: inbound traffic that filtering lets reach a private endpoint's
         public port, from anyone (endpoint-independent) or one address (address-dependent)
    150  short-lived drop of unsolicited inbound traffic to one public port (from one sender, if
         the port has an owner)
    100  ARP -> controller
     51  anything else from the uplink -> controller (keeps it off the L2 rules)
     50  switching between private hosts by destination MAC
      0  table-miss -> controller

The length test is in the base rules, not in each mapping's: a flow set-up
still sends two flow-mods. No Ryu imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from ryu_nat.core.addresses import Proto, pack_key, unpack_key
from ryu_nat.core.packet import ETH_HEADER_LEN, ETH_TYPE_ARP, ETH_TYPE_IPV4, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from ryu_nat.openflow import cookies
from ryu_nat.openflow.cookies import RuleKind
from ryu_nat.openflow.plan import (OFPP_CONTROLLER, OFPP_IN_PORT, Action, CheckPktLarger, DecTtl, FlowDelete,
                                   FlowRule, Match, MatchValue, Output, PacketOut, SetField, TABLE_NAT, ipv4_text)

TABLE_SIZE = 0
PRIORITY_TOO_BIG = 400
PRIORITY_TCP_SYN = 299
PRIORITY_TCP_FIN = 300
PRIORITY_TCP_RST = 301  # above FIN: a segment with both flags must match one rule only
PRIORITY_MAPPING = 200
# Kinds of rule a connection installs afresh (none is rebuilt from the switch after a restart, or audited).
SESSION_KINDS = (RuleKind.BASE, RuleKind.L2, RuleKind.DROP, RuleKind.FILTER)
PRIORITY_FILTER = 190
PRIORITY_DROP = 150
PRIORITY_ARP = 100
PRIORITY_UPLINK = 51
PRIORITY_L2 = 50
PRIORITY_MISS = 0
_PORT_FIELDS = {Proto.TCP: ("tcp_src", "tcp_dst"), Proto.UDP: ("udp_src", "udp_dst")}
OFFLOADED = frozenset(_PORT_FIELDS)
"""Protocols whose channels a rule can match (their ports): their mappings live in switch rules.
OpenFlow 1.3 cannot match an ICMP query id, so ICMP goes through the controller."""


def _output(port: int, in_port: int | None) -> Output:
    """OpenFlow drops output to the arrival port unless it is named OFPP_IN_PORT."""
    return Output(OFPP_IN_PORT if port == in_port else port)


def size_checks(router_mac: str, uplink: int, public_mtu: int, private_mtu: int) -> list[FlowRule]:
    """Table 0: routed IPv4 has its frame length tested, then every frame goes on to table 1.

    From the uplink, against the private side's MTU; routed from a private port
    (to the router MAC), against the smaller MTU: it leaves by the uplink, or by a
    private port when it hairpins. The controller checks again against the exact
    side. Open vSwitch counts the Ethernet header in the length.
    """
    cookie = cookies.make(RuleKind.BASE)
    inbound = Match.of(in_port=uplink, eth_type=ETH_TYPE_IPV4)
    routed = Match.of(eth_dst=router_mac, eth_type=ETH_TYPE_IPV4)
    return [FlowRule(2, inbound, (CheckPktLarger(private_mtu + ETH_HEADER_LEN),), cookie, table_id=TABLE_SIZE,
                     goto_table=TABLE_NAT),
            FlowRule(1, routed, (CheckPktLarger(min(public_mtu, private_mtu) + ETH_HEADER_LEN),), cookie,
                     table_id=TABLE_SIZE, goto_table=TABLE_NAT),
            FlowRule(0, Match(), (), cookie, table_id=TABLE_SIZE, goto_table=TABLE_NAT)]


def too_big_to_controller() -> FlowRule:
    """A frame table 0 found longer than its next hop's MTU goes to the controller, ahead of any rewrite."""
    return FlowRule(PRIORITY_TOO_BIG, Match.of(reg0=(1, 1)), (Output(OFPP_CONTROLLER),),
                    cookies.make(RuleKind.BASE))


def table_miss() -> FlowRule:
    """Whatever no rule matches goes to the controller, whole."""
    return FlowRule(PRIORITY_MISS, Match(), (Output(OFPP_CONTROLLER),), cookies.make(RuleKind.BASE))


def arp_to_controller() -> FlowRule:
    """The controller answers ARP for the NAT's addresses and relays it between private hosts."""
    return FlowRule(PRIORITY_ARP, Match.of(eth_type=ETH_TYPE_ARP), (Output(OFPP_CONTROLLER),),
                    cookies.make(RuleKind.BASE))


def uplink_to_controller(uplink: int) -> FlowRule:
    """Uplink traffic that no mapping claims goes to the controller, never to the private L2 rules."""
    return FlowRule(PRIORITY_UPLINK, Match.of(in_port=uplink), (Output(OFPP_CONTROLLER),),
                    cookies.make(RuleKind.BASE))


def tcp_flag_to_controller(router_mac: str, flag: int) -> FlowRule:
    """Routed TCP segments with ``flag`` (FIN or RST; SYN: without ACK) reach the controller, which
    tracks the connection's state (:mod:`ryu_nat.core.tcp`) and forwards them."""
    mask, priority = {TCP_RST: (TCP_RST, PRIORITY_TCP_RST), TCP_FIN: (TCP_FIN, PRIORITY_TCP_FIN),
                      TCP_SYN: (TCP_SYN | TCP_ACK, PRIORITY_TCP_SYN)}[flag]
    match = Match.of(eth_dst=router_mac, eth_type=ETH_TYPE_IPV4, ip_proto=int(Proto.TCP), tcp_flags=(flag, mask))
    return FlowRule(priority, match, (Output(OFPP_CONTROLLER),), cookies.make(RuleKind.BASE))


def base(router_mac: str, uplink: int, public_mtu: int = 1500, private_mtu: int = 1500) -> list[FlowRule]:
    """The rules that stay while the switch is connected: the size checks and frames too big to the
    controller, table-miss, ARP, the uplink's catch-all, and TCP RST, FIN and SYN (from anywhere) to the
    controller."""
    return [*size_checks(router_mac, uplink, public_mtu, private_mtu), too_big_to_controller(), table_miss(),
            arp_to_controller(), uplink_to_controller(uplink),
            *(tcp_flag_to_controller(router_mac, flag) for flag in (TCP_RST, TCP_FIN, TCP_SYN))]


def channel_match(proto: Proto, key: int, in_port: int) -> Match:
    """The match of one channel (a packed key) arriving on ``in_port``, prerequisites included.

    Built in :meth:`Match.of`'s field order directly: this runs twice per flow setup.
    """
    src, dst, src_port, dst_port = unpack_key(key)
    src_field, dst_field = _PORT_FIELDS[proto]
    return Match((("eth_type", ETH_TYPE_IPV4), ("in_port", in_port), ("ip_proto", int(proto)),
                  ("ipv4_dst", ipv4_text(dst)), ("ipv4_src", ipv4_text(src)), (dst_field, dst_port),
                  (src_field, src_port)))


def rewrite_actions(proto: Proto, arriving: int, leaving: int, eth_src: str, eth_dst: str, out_port: int,
                    in_port: int) -> tuple[Action, ...]:
    """Spend one TTL, set what differs between the arriving and leaving channel and both MACs, output.

    DecTtl comes first: Open vSwitch sends an invalid-TTL packet-in with the
    set-fields before it already applied, and the controller must see the
    packet as it arrived.
    """
    old = unpack_key(arriving)
    new = unpack_key(leaving)
    names = ("ipv4_src", "ipv4_dst", *_PORT_FIELDS[proto])
    sets = [SetField(name, ipv4_text(value) if name.startswith("ipv4") else value)
            for name, before, value in zip(names, old, new) if before != value]
    return (DecTtl(), *sets, SetField("eth_src", eth_src), SetField("eth_dst", eth_dst), _output(out_port, in_port))


def mapping_rewrite(kind: RuleKind, mapping_id: int, proto: Proto, arriving: int, leaving: int, in_port: int,
                    eth_src: str, eth_dst: str, out_port: int, idle_timeout_s: int) -> FlowRule:
    """One direction of a mapping: rewrite packets of channel ``arriving`` into ``leaving``.

    The switch tells the controller when the rule idles out (flow-removed), and
    the cookie names the mapping and the direction.
    """
    return FlowRule(PRIORITY_MAPPING, channel_match(proto, arriving, in_port),
                    rewrite_actions(proto, arriving, leaving, eth_src, eth_dst, out_port, in_port),
                    cookies.make(kind, mapping_id), idle_timeout_s=idle_timeout_s, notify_removed=True)


def drop_unsolicited(uplink: int, public_ip: int, proto: Proto, port: int, hard_timeout_s: int,
                     sender: tuple[int, int] | None = None) -> FlowRule:
    """Drop inbound traffic to a public port for a while, sparing the controller: all of it, or only
    that of ``sender`` (address, port). The switch reports how many packets it dropped when the rule ends."""
    src_field, dst_field = _PORT_FIELDS[proto]
    fields: dict[str, MatchValue] = {dst_field: port}
    if sender is not None:
        fields.update(ipv4_src=ipv4_text(sender[0]), **{src_field: sender[1]})
    match = Match.of(in_port=uplink, eth_type=ETH_TYPE_IPV4, ip_proto=int(proto), ipv4_dst=ipv4_text(public_ip),
                     **fields)
    return FlowRule(PRIORITY_DROP, match, (), cookies.for_drops(proto, port), hard_timeout_s=hard_timeout_s,
                    notify_removed=True)


def filter_rule(rule_id: int, uplink: int, public_ip: int, proto: Proto, public_port: int, remote: int | None,
                private: int, private_port: int, eth_src: str, eth_dst: str, out_port: int) -> FlowRule:
    """Inbound traffic to the public address:``public_port`` (from ``remote`` only, unless None) goes to
    the private endpoint that holds the port; deleted when what let it in is gone (no timeout)."""
    dst_field = _PORT_FIELDS[proto][1]
    match = Match.of(in_port=uplink, eth_type=ETH_TYPE_IPV4, ip_proto=int(proto), ipv4_dst=ipv4_text(public_ip),
                     ipv4_src=None if remote is None else ipv4_text(remote), **{dst_field: public_port})
    actions = rewrite_actions(proto, pack_key(0, public_ip, 0, public_port), pack_key(0, private, 0, private_port),
                              eth_src, eth_dst, out_port, uplink)
    return FlowRule(PRIORITY_FILTER, match, actions, cookies.make(RuleKind.FILTER, rule_id))


def private_l2(mac: str, port: int, idle_timeout_s: int) -> FlowRule:
    """Frames to a private host's MAC go out of its port (switching between private hosts)."""
    return FlowRule(PRIORITY_L2, Match.of(eth_dst=mac), (Output(port),), cookies.make(RuleKind.L2),
                    idle_timeout_s=idle_timeout_s)


def delete_mapping(mapping_id: int) -> FlowDelete:
    """Both rules of one mapping."""
    return FlowDelete(cookies.for_mapping(mapping_id), cookies.MAPPING_MASK)


def delete_filter(rule_id: int) -> FlowDelete:
    """One filter rule."""
    return FlowDelete(cookies.make(RuleKind.FILTER, rule_id), cookies.EXACT_MASK)


def delete_drops(proto: Proto, port: int) -> FlowDelete:
    """Every drop rule of one public port (they come back with the next unsolicited packet)."""
    return FlowDelete(cookies.for_drops(proto, port), cookies.EXACT_MASK)


def delete_ours() -> FlowDelete:
    """Every rule this app installed, from this run or an earlier one."""
    return FlowDelete(cookies.OURS, cookies.OURS_MASK)


def delete_session_rules() -> list[FlowDelete]:
    """Every rule of ours but the mappings' (:data:`SESSION_KINDS`): what a connection sets up afresh,
    while the mapping rules of an earlier run stay to be read back."""
    return [FlowDelete(cookies.make(kind), cookies.KIND_MASK) for kind in SESSION_KINDS]


def send_frame(frame: bytes, out_ports: list[int] | tuple[int, ...], in_port: int | None = None) -> PacketOut:
    """A frame the controller built or forwards as is, out of ``out_ports`` (at least one)."""
    if not out_ports:
        raise ValueError("a packet-out needs at least one output")
    actions = tuple(_output(port, in_port) for port in out_ports)
    return PacketOut(frame, actions, OFPP_CONTROLLER if in_port is None else in_port)


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What a mapping rule of ours says, read back: the inverse of :func:`mapping_rewrite`.

    Packets of channel ``arriving`` (a packed key) on ``in_port`` leave as ``leaving``
    out of ``out_port``, to ``eth_dst``.
    """

    kind: RuleKind
    mapping_id: int
    proto: Proto
    arriving: int
    leaving: int
    in_port: int
    out_port: int
    eth_dst: str
    idle_timeout_s: int


def read_rewrite(rule: FlowRule, router_mac: str) -> Rewrite | None:
    """The rewrite a rule read back from the switch carries, if it has exactly the shape
    :func:`mapping_rewrite` gives (cookie, priority, flags, the NAT's table, match fields, actions in that
    order, the NAT's MAC as source); None for any other rule."""
    kind, mapping_id = cookies.kind_of(rule.cookie), cookies.mapping_id_of(rule.cookie)
    if kind not in (RuleKind.ORIGINAL, RuleKind.REPLY) or not mapping_id or rule.priority != PRIORITY_MAPPING:
        return None
    if not rule.notify_removed or rule.hard_timeout_s or not rule.idle_timeout_s or rule.table_id != TABLE_NAT \
            or rule.goto_table is not None:
        return None
    fields = rule.match.as_dict()
    ip_proto, in_port = fields.get("ip_proto"), fields.get("in_port")
    proto = Proto.TCP if ip_proto == Proto.TCP else Proto.UDP if ip_proto == Proto.UDP else None
    if proto is None or fields.get("eth_type") != ETH_TYPE_IPV4 or not isinstance(in_port, int):
        return None
    names = ("ipv4_src", "ipv4_dst", *_PORT_FIELDS[proto])
    if set(fields) != {"eth_type", "in_port", "ip_proto", *names} or len(fields) != len(rule.match.fields):
        return None
    match rule.actions:
        case (DecTtl(), *sets, SetField("eth_src", src_mac), SetField("eth_dst", str(eth_dst)), Output(out_port)):
            pass
        case _:
            return None
    channel: list[MatchValue] = [fields[name] for name in names]
    leaving = list(channel)
    for item in sets:
        if not isinstance(item, SetField) or item.field not in names:
            return None
        leaving[names.index(item.field)] = item.value
    arriving_key, leaving_key = _key(channel), _key(leaving)
    if src_mac != router_mac or arriving_key is None or leaving_key is None:
        return None
    return Rewrite(kind, mapping_id, proto, arriving_key, leaving_key, in_port,
                   in_port if out_port == OFPP_IN_PORT else out_port, eth_dst, rule.idle_timeout_s)


def _key(channel: list[MatchValue]) -> int | None:
    """A channel's packed key from (ipv4_src, ipv4_dst, src port, dst port) as a rule writes them."""
    src, dst, src_port, dst_port = channel
    if not (isinstance(src, str) and isinstance(dst, str) and isinstance(src_port, int) and isinstance(dst_port, int)):
        return None
    try:
        return pack_key(int(IPv4Address(src)), int(IPv4Address(dst)), src_port, dst_port)
    except ValueError:
        return None
