"""Controller flow set-up: an OpenFlow 1.3 load generator, and the runs that use it.

The generator (asyncio, raw sockets and ``struct``; no Ryu on its hot path)
emulates switches. Each connects to the controller, says HELLO, answers the
features request (its datapath id), the port-description request (ports 1..3;
port 1 is the NAT's uplink), echo and barrier requests, flow- and
aggregate-statistics requests (from its flow table when a run keeps one, as
none otherwise: a starting controller reads its rules back), and then keeps K
packet-ins outstanding. Each packet-in carries the first packet of a new TCP
flow: a SYN from private host 10.0.x.y (its own MAC) on port 2 to the public
server 192.168.3.10:80, sent to the NAT's router MAC. A set-up is complete when
the flow-mods the app is expected to send for that flow (matched by the 5-tuple
in their match, by the private endpoint their set-fields restore, or by the
source MAC) and the packet-out carrying the packet have all arrived. ARP
requests the controller sends for the server are answered on port 1, as the
server would.

Contenders, each a fresh controller process on a free port per repetition:
``ryu_nat`` (2 flow-mods + 1 packet-out per set-up), Ryu's
``simple_switch_13`` (1 + 1), ``bench/ceiling_app.py`` (0 + 1), and an
instant-echo controller in this file that answers like ryu_nat from byte
templates (2 + 1): the generator's own limit. Run from the Ryu environment
with ``.venv-osken`` built, ``ryu_nat on os-ken`` (its ``ryu-nat``) runs beside
``ryu_nat`` on Ryu. Run from the os-ken environment, the Ryu-only contenders
(``simple_switch_13``, the ceiling app under ``ryu-manager``) are left out:
os-ken has neither the app nor a manager command. ``--before REV`` adds ryu_nat
as it was at git revision REV (exported with ``git archive``, run with this
environment's launcher), so a change's before and after are measured side by
side in one run.

Stress (``--stress SECONDS``): ryu_nat under churn while threads write through
the REST API (redirects added and deleted, hosts flushed, the mappings read);
errors are 5xx answers, failed requests, handler errors and tracebacks.

Shape: ryu_nat drives exactly one NAT datapath (the first to connect), so an
"N switches x K outstanding" load is offered to every contender as one
connection with N*K packet-ins outstanding. See bench/README.md.

Churn: after a set-up completes, the generator sends the flow-removed
messages (reason idle timeout) of both mapping rules, as the switch would when
they idle out; the app answers with a delete flow-mod for the mapping. A
teardown is complete when that delete arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import socket
import struct
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common import (BENCH, DIE_WITH_PARENT, OSKEN_RYU_NAT, REPO, RYU_MANAGER, VENV_BIN, Row, Summary, Target,
                    cpu_seconds, higher, paired)
from topologies.controller import ControllerDied, free_port, http_json, start_listening

from ryu_nat import backend

OFP_VERSION = 4
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY = 0, 1, 2, 3
FEATURES_REQUEST, FEATURES_REPLY = 5, 6
PACKET_IN, FLOW_REMOVED, PACKET_OUT, FLOW_MOD = 10, 11, 13, 14
MULTIPART_REQUEST, MULTIPART_REPLY = 18, 19
BARRIER_REQUEST, BARRIER_REPLY = 20, 21
MP_FLOW, MP_AGGREGATE, MP_PORT_DESC = 1, 2, 13
MPF_REPLY_MORE = 1
FC_ADD, FC_DELETE, FC_DELETE_STRICT = 0, 3, 4
OXM_CLASS = 0x8000
OXM_IN_PORT, OXM_ETH_SRC, OXM_IPV4_SRC, OXM_IPV4_DST, OXM_TCP_SRC, OXM_TCP_DST = 0, 4, 11, 12, 13, 14
INSTRUCTION_APPLY = 4
ACTION_OUTPUT, ACTION_SET_FIELD = 0, 25
NO_BUFFER = 0xFFFFFFFF
OFPP_CONTROLLER = 0xFFFFFFFD
IDLE_TIMEOUT = 0

UPLINK, PRIVATE_PORT = 1, 2
PORTS = (1, 2, 3)
ROUTER_MAC = bytes.fromhex("024e41540001")
SERVER_MAC = bytes.fromhex("00000000030a")
SERVER_IP = 0xC0A8030A  # 192.168.3.10
PUBLIC_IP = 0xC0A80301  # 192.168.3.1
SERVER_PORT = 80
HOSTS = 65_000  # private hosts 10.0.0.2 .. 10.0.253.233 (private network 10.0.0.0/16)
FIRST_SPORT = 10_000

FLOW_TIMEOUT_S = 3.0
CHURN_DELAY_S = 0.05  # set-up to flow-removed: a stand-in for a short idle timeout
DRAIN_S = 5.0
READY_TIMEOUT_S = 30.0

OURS_TAG = 0x4E41  # ryu_nat's cookies (ryu_nat/openflow/cookies.py): tag | kind << 40 | mapping id
ID_MASK = (1 << 40) - 1
MAPPING_MASK = 0xFFFF << 48 | ID_MASK
MAX_MESSAGE = 65535

_HEADER = struct.Struct("!BBHI")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


# --- frames and messages -----------------------------------------------------------------


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _words(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def message(msg_type: int, body: bytes, xid: int = 0) -> bytes:
    return _HEADER.pack(OFP_VERSION, msg_type, 8 + len(body), xid) + body


def whole_messages(buf: bytearray) -> Iterator[tuple[int, int, int]]:
    """(type, start, length) of each whole OpenFlow message at the front of ``buf``.

    Once iterated to the end, the messages are cut from ``buf``; a partial one stays for the next read.
    """
    pos, end = 0, len(buf)
    while end - pos >= 8:
        length = buf[pos + 2] << 8 | buf[pos + 3]
        if length < 8 or end - pos < length:
            break
        yield buf[pos + 1], pos, length
        pos += length
    del buf[:pos]


def oxm(field_no: int, value: bytes) -> bytes:
    return _U32.pack(OXM_CLASS << 16 | field_no << 9 | len(value)) + value


def ofp_match(*oxms: bytes) -> bytes:
    """An OXM match, padded to a multiple of 8 bytes."""
    body = b"".join(oxms)
    raw = _U16.pack(1) + _U16.pack(4 + len(body)) + body
    return raw + b"\0" * (-len(raw) % 8)


class SynTemplate:
    """The first packet of flow ``i``: a TCP SYN with correct checksums, patched per flow.

    Flow ``i`` comes from host ``10.0.0.2 + i % HOSTS`` (one MAC per host) and
    port ``FIRST_SPORT + i // HOSTS``, so every flow has its own 5-tuple and
    private endpoint.
    """

    def __init__(self) -> None:
        tcp = struct.pack("!HHIIBBHHH", 0, SERVER_PORT, 1000, 0, 6 << 4, 0x02, 64240, 0, 0) + bytes.fromhex("020405b4")
        ip = struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, 0, SERVER_IP)
        eth = ROUTER_MAC + b"\0" * 6 + b"\x08\x00"
        frame = eth + ip + tcp
        self.frame = frame + b"\0" * (60 - len(frame))
        self.ip_sum = _words(ip)
        self.tcp_sum = _words(tcp) + _words(struct.pack("!IBBH", SERVER_IP, 0, 6, len(tcp)))
        match = ofp_match(oxm(OXM_IN_PORT, _U32.pack(PRIVATE_PORT)))
        head = struct.pack("!IHBBQ", NO_BUFFER, len(self.frame), 0, 0, 0) + match + b"\0\0"
        self.packet_in = bytearray(message(PACKET_IN, head + self.frame))
        self.frame_at = 8 + len(head)

    @staticmethod
    def endpoint(i: int) -> tuple[int, int]:
        """(private ip, source port) of flow ``i``."""
        host, round_no = i % HOSTS, i // HOSTS
        return 0x0A000002 + host, FIRST_SPORT + round_no

    @staticmethod
    def mac(i: int) -> bytes:
        return b"\x02\x00\x00\x00" + _U16.pack(i % HOSTS)

    def build(self, i: int, xid: int) -> bytes:
        src, sport = self.endpoint(i)
        msg = self.packet_in
        at = self.frame_at
        _U32.pack_into(msg, 4, xid)
        msg[at + 6: at + 12] = self.mac(i)
        _U32.pack_into(msg, at + 26, src)
        src_words = (src >> 16) + (src & 0xFFFF)
        _U16.pack_into(msg, at + 24, _fold(self.ip_sum + src_words))
        _U16.pack_into(msg, at + 34, sport)
        _U16.pack_into(msg, at + 50, _fold(self.tcp_sum + src_words + sport))
        return bytes(msg)


def packet_in(frame: bytes, in_port: int, xid: int = 0) -> bytes:
    match = ofp_match(oxm(OXM_IN_PORT, _U32.pack(in_port)))
    return message(PACKET_IN, struct.pack("!IHBBQ", NO_BUFFER, len(frame), 0, 0, 0) + match + b"\0\0" + frame, xid)


def arp_reply_frame(to_mac: bytes, to_ip: int) -> bytes:
    """The server's ARP reply to the NAT."""
    arp = struct.pack("!HHBBH6sI6sI", 1, 0x0800, 6, 4, 2, SERVER_MAC, SERVER_IP, to_mac, to_ip)
    frame = to_mac + SERVER_MAC + b"\x08\x06" + arp
    return frame + b"\0" * (60 - len(frame))


def learning_frame() -> bytes:
    """A UDP frame from the router MAC on the uplink: a learning switch learns where that MAC is.

    ryu_nat drops it (not addressed to its MAC); simple_switch_13 then has a
    port for the SYNs' destination MAC and installs a flow per new source MAC.
    """
    udp = struct.pack("!HHHH", 9, 9, 8, 0)
    ip = struct.pack("!BBHHHBBHII", 0x45, 0, 28, 0, 0, 64, 17, 0, PUBLIC_IP, SERVER_IP)
    ip = ip[:10] + _U16.pack(_fold(_words(ip))) + ip[12:]
    frame = SERVER_MAC + ROUTER_MAC + b"\x08\x00" + ip + udp
    return frame + b"\0" * (60 - len(frame))


def features_reply(dpid: int, xid: int) -> bytes:
    return message(FEATURES_REPLY, struct.pack("!QIBB2xII", dpid, 0, 254, 0, 0x4F, 0), xid)


def port_desc_reply(xid: int, dpid: int) -> bytes:
    body = b""
    for port in PORTS:
        mac = struct.pack("!HI", 0x0200 | dpid & 0xFF, port)
        name = f"s{dpid}-eth{port}".encode().ljust(16, b"\0")
        body += struct.pack("!I4x6s2x16sIIIIIIII", port, mac, name, 0, 4, 0x2840, 0x2840, 0x2840, 0,
                            10_000_000, 10_000_000)
    return message(MULTIPART_REPLY, struct.pack("!HH4x", MP_PORT_DESC, 0) + body, xid)


def flow_removed(cookie: int, priority: int, match: bytes, idle_timeout: int) -> bytes:
    """A rule idled out after ``idle_timeout`` seconds, having matched no packet (the generator sends none
    through rules): ryu_nat tells a never-answered TCP connection's rules by that count."""
    body = struct.pack("!QHBBIIHHQQ", cookie, priority, IDLE_TIMEOUT, 0, idle_timeout, 0, idle_timeout, 0, 0, 0)
    return message(FLOW_REMOVED, body + match)


def aggregate_reply(xid: int, flow_count: int) -> bytes:
    return message(MULTIPART_REPLY, struct.pack("!HH4xQQI4x", MP_AGGREGATE, 0, 0, 0, flow_count), xid)


def empty_flow_reply(xid: int) -> bytes:
    return message(MULTIPART_REPLY, struct.pack("!HH4x", MP_FLOW, 0), xid)


def parse_oxms(buf: bytes | bytearray, start: int, end: int) -> dict[int, int]:
    """OpenFlow-basic OXM fields between ``start`` and ``end``: field number -> value as an int."""
    fields: dict[int, int] = {}
    while start + 4 <= end:
        header = _U32.unpack_from(buf, start)[0]
        length = header & 0xFF
        if header >> 16 == OXM_CLASS:
            fields[header >> 9 & 0x7F] = int.from_bytes(buf[start + 4: start + 4 + length], "big")
        start += 4 + length
    return fields


def parse_set_fields(buf: bytes | bytearray, start: int, end: int) -> dict[int, int]:
    """The set-field actions of the apply-actions instructions between ``start`` and ``end``."""
    sets: dict[int, int] = {}
    while start + 8 <= end:
        kind, length = struct.unpack_from("!HH", buf, start)
        if length < 8:
            break
        if kind == INSTRUCTION_APPLY:
            at, stop = start + 8, start + length
            while at + 4 <= stop:
                action, action_len = struct.unpack_from("!HH", buf, at)
                if action_len < 8:
                    break
                if action == ACTION_SET_FIELD:
                    sets.update(parse_oxms(buf, at + 4, at + action_len))
                at += action_len
        start += length
    return sets


# --- the emulated switch's flow table (for flow statistics) ------------------------------------


class FlowTable:
    """ryu_nat's mapping rules as the emulated switch holds them, to answer flow-statistics requests.

    Each rule keeps its match and instructions as the flow-mod carried them, so a
    reply is as long as a real switch's. Packet counts grow by one a second of a
    rule's age, so every poll sees them move.
    """

    _ENTRY = struct.Struct("!HBxIIHHHH4xQQQ")

    def __init__(self) -> None:
        self.rules: dict[int, tuple[float, int, int, bytes, int]] = {}  # cookie -> (added, priority, idle, tail, table)
        self.requests = 0
        self.entries_sent = 0

    def flow_mod(self, buf: bytearray, at: int, length: int, now: float) -> None:
        cookie, cookie_mask, table_id, command, idle, _, priority = struct.unpack_from("!QQBBHHH", buf, at + 8)
        if cookie >> 48 != OURS_TAG:
            return
        if command == FC_ADD:
            self.rules[cookie] = (now, priority, idle, bytes(buf[at + 48: at + length]), table_id)
        elif command in (FC_DELETE, FC_DELETE_STRICT):
            if cookie_mask == MAPPING_MASK:  # both rules of one mapping
                mapping = cookie & ID_MASK
                for kind in (2, 3):
                    self.rules.pop(OURS_TAG << 48 | kind << 40 | mapping, None)
            else:
                for doomed in [c for c in self.rules if c & cookie_mask == cookie & cookie_mask]:
                    del self.rules[doomed]

    def selected(self, cookie: int, mask: int) -> list[int]:
        """The cookies a request selects: a block of mapping ids is looked up, anything else scanned."""
        free = ~mask & ID_MASK
        if mask >> 48 == 0xFFFF and free & (free + 1) == 0 and free < 1 << 16:
            first = cookie & ID_MASK & ~free
            wanted = cookie & mask
            return [c for mapping in range(first, first + free + 1) for kind in (2, 3)
                    if (c := OURS_TAG << 48 | kind << 40 | mapping) in self.rules and c & mask == wanted]
        return [c for c in self.rules if c & mask == cookie & mask]

    def count(self, request: bytes) -> bytes:
        """The reply to an aggregate-statistics request: how many rules its cookie and mask select."""
        xid = _U32.unpack_from(request, 4)[0]
        cookie, mask = struct.unpack_from("!QQ", request, 32)
        self.requests += 1
        return aggregate_reply(xid, len(self.selected(cookie, mask)))

    def reply(self, request: bytes, now: float) -> bytes:
        """The multipart reply parts (each at most 64 KiB) to a flow-statistics request."""
        xid = _U32.unpack_from(request, 4)[0]
        cookie, mask = struct.unpack_from("!QQ", request, 32)
        self.requests += 1
        entries = []
        for rule_cookie in self.selected(cookie, mask):
            added, priority, idle, tail, table_id = self.rules[rule_cookie]
            age = max(now - added, 0.0)
            packets = int(age)
            entries.append(self._ENTRY.pack(48 + len(tail), table_id, int(age), int(age % 1 * 1e9), priority, idle, 0,
                                            1, rule_cookie, packets, packets * 100) + tail)
        self.entries_sent += len(entries)
        parts: list[list[bytes]] = [[]]
        size = 16
        for entry in entries:
            if size + len(entry) > MAX_MESSAGE:
                parts.append([])
                size = 16
            parts[-1].append(entry)
            size += len(entry)
        return b"".join(message(MULTIPART_REPLY, struct.pack("!HH4x", MP_FLOW, 0 if last else MPF_REPLY_MORE)
                                + b"".join(part), xid)
                        for last, part in ((i == len(parts) - 1, part) for i, part in enumerate(parts)))


# --- the generator ---------------------------------------------------------------------------


class Flow:
    """One new TCP flow: when its packet-in left, and what has come back for it."""

    __slots__ = ("index", "key", "mac", "switch", "sent", "flow_mods", "packet_out", "rules", "measured",
                 "done", "torn_down")

    def __init__(self, index: int, key: int, mac: bytes, switch: Switch, sent: float, measured: bool) -> None:
        self.index = index
        self.key = key
        self.mac = mac
        self.switch = switch
        self.sent = sent
        self.flow_mods = 0
        self.packet_out = False
        self.rules: list[tuple[int, int, bytes, int]] = []  # (cookie, priority, match, idle timeout) per rule
        self.measured = measured
        self.done = False
        self.torn_down = False


@dataclass
class Tally:
    """What one phase counted: flows sent while measuring, followed until they finished."""

    setups: int = 0
    flow_mods: int = 0
    unmatched_flow_mods: int = 0
    deletes: int = 0
    teardowns: int = 0
    packet_outs: int = 0
    lost: int = 0
    rtts: list[float] = field(default_factory=list)


class Generator:
    """Flows, their lookup tables, and the phase's counters, shared by every emulated switch."""

    def __init__(self, expected_flow_mods: int) -> None:
        self.expected_flow_mods = expected_flow_mods
        self.syn = SynTemplate()
        self.next_index = 0
        self.by_key: dict[int, Flow] = {}
        self.by_mac: dict[bytes, Flow] = {}
        self.by_cookie: dict[int, Flow] = {}  # churn: rules not yet deleted
        self.by_masked_cookie: dict[int, dict[int, Flow]] = {}  # per cookie mask seen in a delete
        self.outstanding = 0
        self.measuring = False
        self.launching = True
        self.churn = False
        self.tally = Tally()
        self.teardown_queue: collections.deque[tuple[float, Flow]] = collections.deque()
        self.switches: list[Switch] = []
        self.settled = asyncio.Event()
        self.flow_table: FlowTable | None = None

    def new_flow(self, switch: Switch, now: float) -> bytes:
        i = self.next_index
        self.next_index += 1
        src, sport = SynTemplate.endpoint(i)
        mac = SynTemplate.mac(i)
        flow = Flow(i, src << 16 | sport, mac, switch, now, self.measuring)
        self.by_key[flow.key] = flow
        self.by_mac[mac] = flow
        self.outstanding += 1
        switch.outstanding += 1
        switch.xid += 1
        return self.syn.build(i, switch.xid)

    def flow_mod(self, buf: bytearray, at: int, length: int, now: float) -> None:
        if self.flow_table is not None:
            self.flow_table.flow_mod(buf, at, length, now)
        cookie, cookie_mask, command, priority = struct.unpack_from("!QQxB4xH", buf, at + 8)
        if command in (FC_DELETE, FC_DELETE_STRICT):
            self._delete(cookie, cookie_mask)
            return
        if command != FC_ADD:
            return
        if self.measuring:
            self.tally.flow_mods += 1
        match_len = _U16.unpack_from(buf, at + 50)[0]
        match_end = at + 48 + match_len
        fields = parse_oxms(buf, at + 52, match_end)
        flow = None
        src, sport = fields.get(OXM_IPV4_SRC), fields.get(OXM_TCP_SRC)
        if src is not None and sport is not None:
            flow = self.by_key.get(src << 16 | sport)
        if flow is None and OXM_ETH_SRC in fields:
            flow = self.by_mac.get(fields[OXM_ETH_SRC].to_bytes(6, "big"))
        if flow is None:
            # A reply-direction rule: its set-fields restore the private endpoint.
            sets = parse_set_fields(buf, at + 48 + (match_len + 7) // 8 * 8, at + length)
            dst = sets.get(OXM_IPV4_DST, fields.get(OXM_IPV4_DST))
            dport = sets.get(OXM_TCP_DST, fields.get(OXM_TCP_DST))
            if dst is not None and dport is not None:
                flow = self.by_key.get(dst << 16 | dport)
        if flow is None:
            if self.measuring:
                self.tally.unmatched_flow_mods += 1
            return
        flow.flow_mods += 1
        if self.churn:
            idle_timeout = _U16.unpack_from(buf, at + 26)[0]
            flow.rules.append((cookie, priority, bytes(buf[at + 48: at + 48 + (match_len + 7) // 8 * 8]), idle_timeout))
            self.by_cookie[cookie] = flow
            for mask, index in self.by_masked_cookie.items():
                index[cookie & mask] = flow
        self._maybe_done(flow, now)

    def packet_out(self, buf: bytearray, at: int, length: int, now: float) -> None:
        actions_len = _U16.unpack_from(buf, at + 16)[0]
        data = at + 24 + actions_len
        if self.measuring:
            self.tally.packet_outs += 1
        ethertype = _U16.unpack_from(buf, data + 12)[0] if at + length >= data + 14 else 0
        if ethertype == 0x0806:
            self._arp(buf, data, length - (data - at))
        elif ethertype == 0x0800 and at + length >= data + 38:
            key = _U32.unpack_from(buf, data + 26)[0] << 16 | _U16.unpack_from(buf, data + 34)[0]
            flow = self.by_key.get(key)
            if flow is not None:
                flow.packet_out = True
                self._maybe_done(flow, now)

    def _arp(self, buf: bytearray, data: int, length: int) -> None:
        """Answer the controller's ARP request for the server, from the server, on the uplink."""
        if length < 42:
            return
        opcode, sender_mac, sender_ip, target_ip = struct.unpack_from("!6xH6sI6xI", buf, data + 14)
        if opcode == 1 and target_ip == SERVER_IP:
            for switch in self.switches:
                switch.send(packet_in(arp_reply_frame(sender_mac, sender_ip), UPLINK))

    def _maybe_done(self, flow: Flow, now: float) -> None:
        if flow.packet_out and flow.flow_mods >= self.expected_flow_mods and not flow.done:
            flow.done = True
            del self.by_key[flow.key]
            if self.by_mac.get(flow.mac) is flow:
                del self.by_mac[flow.mac]
            self._finish(flow)
            if flow.measured and self.measuring:
                self.tally.setups += 1
                self.tally.rtts.append(now - flow.sent)
            if self.churn:
                self.teardown_queue.append((now + CHURN_DELAY_S, flow))
            flow.switch.refill(now)

    def _finish(self, flow: Flow) -> None:
        self.outstanding -= 1
        flow.switch.outstanding -= 1
        if self.outstanding == 0 and not self.launching:
            self.settled.set()

    def _delete(self, cookie: int, mask: int) -> None:
        """A delete flow-mod: the flow whose rules its cookie and mask select is torn down."""
        if self.measuring:
            self.tally.deletes += 1
        index = self.by_masked_cookie.get(mask)
        if index is None:
            index = self.by_masked_cookie[mask] = {c & mask: f for c, f in self.by_cookie.items()}
        flow = index.pop(cookie & mask, None)
        if flow is None or flow.torn_down:
            return
        flow.torn_down = True
        for rule_cookie, *_ in flow.rules:
            self.by_cookie.pop(rule_cookie, None)
            for other_mask, other in self.by_masked_cookie.items():
                if other.get(rule_cookie & other_mask) is flow:
                    del other[rule_cookie & other_mask]
        if self.measuring and flow.measured:
            self.tally.teardowns += 1

    def expire_lost(self, now: float) -> None:
        """Flows unanswered for FLOW_TIMEOUT_S count as lost and free their slot."""
        lost = [f for f in self.by_key.values() if now - f.sent > FLOW_TIMEOUT_S]
        for flow in lost:
            flow.done = True
            del self.by_key[flow.key]
            if self.by_mac.get(flow.mac) is flow:
                del self.by_mac[flow.mac]
            if flow.measured:
                self.tally.lost += 1
            self._finish(flow)
            flow.switch.refill(now)

    def send_teardowns(self, now: float) -> None:
        queue = self.teardown_queue
        while queue and queue[0][0] <= now:
            _, flow = queue.popleft()
            flow.switch.send(b"".join(flow_removed(*rule) for rule in flow.rules))


class Switch(asyncio.Protocol):
    """One emulated OpenFlow 1.3 switch."""

    def __init__(self, generator: Generator, dpid: int) -> None:
        self.generator = generator
        self.dpid = dpid
        self.window = 0  # packet-ins to keep outstanding
        self.outstanding = 0
        self.xid = 0
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()
        self.other_messages: collections.Counter[int] = collections.Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(message(HELLO, b""))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def refill(self, now: float) -> None:
        generator = self.generator
        while generator.launching and self.outstanding < self.window:
            self.out.append(generator.new_flow(self, now))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        generator = self.generator
        now = time.perf_counter()
        for kind, pos, length in whole_messages(buf):
            if kind == FLOW_MOD:
                generator.flow_mod(buf, pos, length, now)
            elif kind == PACKET_OUT:
                generator.packet_out(buf, pos, length, now)
            else:
                self._control(kind, bytes(buf[pos: pos + length]))
        if self.out:
            self.send(b"".join(self.out))
            self.out.clear()

    def _control(self, kind: int, msg: bytes) -> None:
        xid = _U32.unpack_from(msg, 4)[0]
        if kind == FEATURES_REQUEST:
            self.send(features_reply(self.dpid, xid))
        elif kind == MULTIPART_REQUEST and _U16.unpack_from(msg, 8)[0] == MP_PORT_DESC:
            self.send(port_desc_reply(xid, self.dpid))
            self.ready.set()
        elif kind == MULTIPART_REQUEST and _U16.unpack_from(msg, 8)[0] in (MP_FLOW, MP_AGGREGATE):
            # A controller that starts reads its rules back (a restore): a switch without a table has none.
            table, aggregate = self.generator.flow_table, _U16.unpack_from(msg, 8)[0] == MP_AGGREGATE
            if table is None:
                self.send(aggregate_reply(xid, 0) if aggregate else empty_flow_reply(xid))
            else:
                self.send(table.count(msg) if aggregate else table.reply(msg, time.perf_counter()))
        elif kind == ECHO_REQUEST:
            self.send(message(ECHO_REPLY, msg[8:], xid))
        elif kind == BARRIER_REQUEST:
            self.send(message(BARRIER_REPLY, b"", xid))
        else:
            self.other_messages[kind] += 1


# --- one session: a controller, its connections, phases ----------------------------------------------


@dataclass(frozen=True)
class Phase:
    """A load: ``switches`` connections used, ``outstanding`` packet-ins each, for ``seconds``."""

    name: str
    switches: int
    outstanding: int
    seconds: float
    churn: bool = False


@dataclass
class PhaseResult:
    """A phase's counts: set-ups and teardowns within the window give the rates; the counts
    that include the drain (every measured flow followed to its end) give per-set-up figures."""

    name: str
    seconds: float
    window_setups: int
    window_teardowns: int
    tally: Tally
    controller_cpu_s: float
    generator_cpu_s: float

    @property
    def setups_per_s(self) -> float:
        return self.window_setups / self.seconds

    @property
    def ops_per_s(self) -> float:
        return (self.window_setups + self.window_teardowns) / self.seconds

    @property
    def flow_mods_per_setup(self) -> float:
        return self.tally.flow_mods / self.tally.setups if self.tally.setups else float("nan")

    @property
    def deletes_per_teardown(self) -> float:
        return self.tally.deletes / self.tally.teardowns if self.tally.teardowns else float("nan")

    @property
    def controller_cpu_percent(self) -> float:
        return 100 * self.controller_cpu_s / self.seconds

    @property
    def generator_cpu_percent(self) -> float:
        return 100 * self.generator_cpu_s / self.seconds

    @property
    def controller_us_per_setup(self) -> float:
        done = self.window_setups + self.window_teardowns
        return 1e6 * self.controller_cpu_s / done if done else float("nan")

    def percentile_ms(self, q: float) -> float:
        rtts = sorted(self.tally.rtts)
        if not rtts:
            return float("nan")
        return rtts[min(len(rtts) - 1, int(q * len(rtts)))] * 1000


async def run_session(port: int, pid: int | None, expected_flow_mods: int, connections: int,
                      phases: Sequence[Phase], warmup_flows: int = 8) -> list[PhaseResult]:
    """Connect ``connections`` switches to the controller on ``port`` and run ``phases`` in order."""
    loop = asyncio.get_running_loop()
    generator = Generator(expected_flow_mods)
    switches = []
    for n in range(connections):
        switch = Switch(generator, dpid=n + 1)
        await loop.create_connection(lambda s=switch: s, "127.0.0.1", port)
        switches.append(switch)
    generator.switches = switches
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in switches)), READY_TIMEOUT_S)
    for switch in switches:
        switch.send(packet_in(learning_frame(), UPLINK))
    await asyncio.sleep(0.3)  # the app's connect-time messages (rules, barrier) come and are answered
    await _warm_up(generator, switches, warmup_flows)
    results = []
    for phase in phases:
        results.append(await _run_phase(generator, switches[: phase.switches], phase, pid))
    for switch in switches:
        if switch.transport is not None:
            switch.transport.close()
    return results


async def _warm_up(generator: Generator, switches: list[Switch], flows: int) -> None:
    """Flows that must complete before measuring: they prove the app is ready (and ARP is answered)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    generator.launching = True
    for switch in switches:
        switch.window = 1
        switch.refill(time.perf_counter())
        switch.send(b"".join(switch.out))
        switch.out.clear()
    while generator.next_index < flows * len(switches) or generator.outstanding:
        if time.monotonic() > deadline:
            raise TimeoutError(f"warm-up: {generator.outstanding} flows unanswered; is the app running?")
        await asyncio.sleep(0.05)
        generator.expire_lost(time.perf_counter())
        if generator.next_index >= flows * len(switches):
            generator.launching = False
    generator.tally = Tally()


async def _run_phase(generator: Generator, switches: list[Switch], phase: Phase, pid: int | None) -> PhaseResult:
    generator.tally = Tally()
    generator.churn = phase.churn
    generator.settled = asyncio.Event()
    generator.launching = True
    generator.measuring = True
    cpu0 = cpu_seconds(pid) if pid else 0.0
    own0 = time.process_time()
    start = time.perf_counter()
    for switch in switches:
        switch.window = phase.outstanding
        switch.refill(start)
        switch.send(b"".join(switch.out))
        switch.out.clear()
    end = start + phase.seconds
    while (now := time.perf_counter()) < end:
        await asyncio.sleep(0.005)
        generator.send_teardowns(now)
        generator.expire_lost(now)
    elapsed = time.perf_counter() - start
    window_setups, window_teardowns = generator.tally.setups, generator.tally.teardowns
    cpu1 = cpu_seconds(pid) if pid else 0.0
    own1 = time.process_time()
    # Stop launching and follow what is in flight to its end, so per-set-up counts are whole.
    generator.launching = False
    if generator.outstanding:
        try:
            await asyncio.wait_for(generator.settled.wait(), DRAIN_S)
        except asyncio.TimeoutError:
            generator.expire_lost(time.perf_counter() + FLOW_TIMEOUT_S)
    if phase.churn:
        while generator.teardown_queue:
            await asyncio.sleep(0.01)
            generator.send_teardowns(time.perf_counter())
        deadline = time.monotonic() + DRAIN_S
        while generator.tally.teardowns < generator.tally.setups and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    generator.measuring = False
    generator.churn = False
    return PhaseResult(phase.name, elapsed, window_setups, window_teardowns, generator.tally,
                       cpu1 - cpu0, own1 - own0)


def run_load(port: int, pid: int | None, expected_flow_mods: int, connections: int,
             phases: Sequence[Phase]) -> list[PhaseResult]:
    return asyncio.run(run_session(port, pid, expected_flow_mods, connections, phases))


# --- the instant-echo controller: the generator's own limit ----------------------------------------


class EchoController(asyncio.Protocol):
    """Answers each packet-in at once as ryu_nat would (two flow-mods, one packet-out), from templates."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.public_port = 1024

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(message(HELLO, b"") + message(FEATURES_REQUEST, b"", 1))

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        buf = self.buf
        buf += data
        out = []
        for kind, pos, length in whole_messages(buf):
            if kind == PACKET_IN:
                out.append(self._answer(bytes(buf[pos: pos + length])))
            elif kind == FEATURES_REPLY:
                out.append(message(MULTIPART_REQUEST, struct.pack("!HH4x", MP_PORT_DESC, 0), 2))
            elif kind == ECHO_REQUEST:
                out.append(message(ECHO_REPLY, bytes(buf[pos + 8: pos + length]), _U32.unpack_from(buf, pos + 4)[0]))
        if out:
            self.transport.write(b"".join(out))

    def _answer(self, msg: bytes) -> bytes:
        match_len = _U16.unpack_from(msg, 26)[0]
        in_port = parse_oxms(msg, 28, 24 + match_len).get(OXM_IN_PORT, PRIVATE_PORT)
        frame = msg[24 + (match_len + 7) // 8 * 8 + 2:]
        if len(frame) < 38 or frame[12:14] != b"\x08\x00":
            return b""
        src, dst = _U32.unpack_from(frame, 26)[0], _U32.unpack_from(frame, 30)[0]
        sport, dport = _U16.unpack_from(frame, 34)[0], _U16.unpack_from(frame, 36)[0]
        self.public_port = self.public_port + 1 if self.public_port < 65535 else 1024
        public = self.public_port
        forward = _flow_add(ofp_match(oxm(OXM_IN_PORT, _U32.pack(in_port)), *_tcp_oxms(src, dst, sport, dport)),
                            (_set(OXM_IPV4_SRC, _U32.pack(PUBLIC_IP)), _set(OXM_TCP_SRC, _U16.pack(public))), UPLINK)
        reply = _flow_add(ofp_match(oxm(OXM_IN_PORT, _U32.pack(UPLINK)), *_tcp_oxms(dst, PUBLIC_IP, dport, public)),
                          (_set(OXM_IPV4_DST, _U32.pack(src)), _set(OXM_TCP_DST, _U16.pack(sport))), in_port)
        actions = _output(UPLINK)
        out = message(PACKET_OUT, struct.pack("!IIH6x", NO_BUFFER, in_port, len(actions)) + actions + frame)
        return forward + reply + out


def _tcp_oxms(src: int, dst: int, sport: int, dport: int) -> tuple[bytes, ...]:
    return (oxm(5, _U16.pack(0x0800)), oxm(10, b"\x06"), oxm(OXM_IPV4_SRC, _U32.pack(src)),
            oxm(OXM_IPV4_DST, _U32.pack(dst)), oxm(OXM_TCP_SRC, _U16.pack(sport)), oxm(OXM_TCP_DST, _U16.pack(dport)))


def _set(field_no: int, value: bytes) -> bytes:
    body = oxm(field_no, value)
    length = 4 + len(body)
    return struct.pack("!HH", ACTION_SET_FIELD, length + -length % 8) + body + b"\0" * (-length % 8)


def _output(port: int) -> bytes:
    return struct.pack("!HHIH6x", ACTION_OUTPUT, 16, port, 0xFFFF)


def _flow_add(match: bytes, sets: tuple[bytes, ...], out_port: int) -> bytes:
    actions = b"".join(sets) + _output(out_port)
    instruction = struct.pack("!HH4x", INSTRUCTION_APPLY, 8 + len(actions)) + actions
    body = struct.pack("!QQBBHHHIIIH2x", 0, 0, 0, FC_ADD, 60, 0, 200, NO_BUFFER, 0xFFFFFFFF, 0xFFFFFFFF, 1)
    return message(FLOW_MOD, body + match + instruction)


def echo_controller(port: int) -> None:
    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(EchoController, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# --- controllers and contenders ---------------------------------------------------------------


NAT_APP = "ryu_nat.app"


@dataclass(frozen=True)
class Contender:
    """A controller under load: ``launcher`` with ``apps``, or (no apps) the echo controller.

    ``ryu-manager`` runs the apps it is given; ``ryu-nat`` runs ryu_nat.app and any others.
    ``source``: run the apps from that directory (another revision of ryu_nat) instead of this checkout.
    """

    name: str
    flow_mods_per_setup: int
    apps: tuple[str, ...] = ()
    launcher: Path = RYU_MANAGER
    source: Path | None = None


ON_RYU = backend.NAME == backend.RYU
RYU_NAT = Contender("ryu_nat", 2, (NAT_APP,), RYU_MANAGER if ON_RYU else VENV_BIN / "ryu-nat")
RYU_NAT_OSKEN = Contender("ryu_nat on os-ken", 2, (NAT_APP,), OSKEN_RYU_NAT)
SIMPLE_SWITCH = Contender("simple_switch_13", 1, ("ryu.app.simple_switch_13",))
CEILING = Contender("ceiling", 0, (str(BENCH / "ceiling_app.py"),))
ECHO = Contender("generator alone (echo)", 2)


def before(revision: str, workdir: Path) -> Contender:
    """ryu_nat as it was at git ``revision``, exported into ``workdir``, run by this environment's launcher."""
    source = workdir / f"ryu_nat-{revision}"
    source.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    return Contender(f"ryu_nat @ {revision}", RYU_NAT.flow_mods_per_setup, RYU_NAT.apps, RYU_NAT.launcher, source)


def available_contenders() -> tuple[Contender, ...]:
    """What this environment can run: the Ryu-only baselines on Ryu; os-ken's ryu_nat when .venv-osken exists."""
    if not ON_RYU:
        return RYU_NAT, ECHO
    return (RYU_NAT, *((RYU_NAT_OSKEN,) if OSKEN_RYU_NAT.exists() else ()), SIMPLE_SWITCH, CEILING, ECHO)

NAT_CONFIG = """[nat]
public_ipv4 = 192.168.3.1/24
public_ipv4_gateway = 192.168.3.254
private_ipv4 = 10.0.0.1/16
public_port = 1
redirects = tcp:8080=10.0.0.2:80, udp:5353=10.0.0.3:53
tcp_table_size = 200000
udp_table_size = 16384
"""


class Controller:
    """One contender's process on a free port, logging to a file."""

    def __init__(self, contender: Contender, workdir: Path, config: str = NAT_CONFIG) -> None:
        self.contender = contender
        self.port = free_port()
        self.api_port = free_port()
        self.log_path = workdir / f"{contender.name.replace(' ', '_')}-{self.port}.log"
        self.config = workdir / "nat.conf"
        self.config.write_text(config)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        if not self.contender.apps:
            return [sys.executable, str(Path(__file__).resolve()), "--echo-controller", str(self.port)]
        apps = self.contender.apps
        if self.contender.launcher.name == "ryu-nat":
            apps = tuple(app for app in apps if app != NAT_APP)
        return [str(self.contender.launcher), "--config-file", str(self.config), *apps,
                "--ofp-tcp-listen-port", str(self.port), "--wsapi-host", "127.0.0.1",
                "--wsapi-port", str(self.api_port)]

    def __enter__(self) -> Controller:
        source = self.contender.source
        # PYTHONPATH comes before site-packages: ryu_nat (and its compat shim) load from ``source``.
        env = os.environ if source is None else {**os.environ, "PYTHONPATH": str(source)}
        with self.log_path.open("wb") as log:
            try:
                self.process = start_listening([*DIE_WITH_PARENT, *self.command], self.port, READY_TIMEOUT_S,
                                               cwd=source or REPO, stdin=subprocess.DEVNULL, stdout=log,
                                               stderr=subprocess.STDOUT, env=env)
            except ControllerDied as exc:
                raise RuntimeError(f"{self.contender.name}: {exc}: {self.log_path.read_text()[-2000:]}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def log_problems(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if "Traceback" in line or "OpenFlow error" in line]


def session(contender: Contender, connections: int, phases: Sequence[Phase], workdir: Path) -> list[PhaseResult]:
    """Start ``contender``, run ``phases`` against it, stop it; a traceback or OpenFlow error in its log fails."""
    with Controller(contender, workdir) as controller:
        results = run_load(controller.port, controller.pid, contender.flow_mods_per_setup, connections, phases)
    problems = controller.log_problems()
    if problems:
        raise RuntimeError(f"{contender.name}: {problems[:3]} (log {controller.log_path})")
    return results


# --- the benchmark: contenders alternated, rows for results.md ---------------------------------------

LIGHT = ("light", 4, 1)  # (name, switches, outstanding per switch) as the issue states the loads
HEAVY = ("heavy", 16, 8)
PHASE_S = 4.0
SMOKE_PHASE_S = 0.3


def phases_for(contender: Contender, seconds: float) -> list[Phase]:
    """The loads, each offered on one connection (one NAT datapath) with N*K outstanding."""
    phases = [Phase(name, 1, switches * per_switch, seconds) for name, switches, per_switch in (LIGHT, HEAVY)]
    if contender in (RYU_NAT, RYU_NAT_OSKEN):
        phases.append(Phase("churn", 1, HEAVY[1] * HEAVY[2], seconds, churn=True))
    return phases


Results = dict[str, dict[str, list[PhaseResult]]]  # contender -> phase -> one result per repetition


def measure(reps: int, seconds: float, workdir: Path, contenders: Sequence[Contender] | None = None) -> Results:
    contenders = available_contenders() if contenders is None else contenders
    results: Results = {c.name: {} for c in contenders}
    for rep in range(reps):
        # Rotate the order each repetition, so no contender always runs first (or last).
        for contender in [*contenders[rep % len(contenders):], *contenders[:rep % len(contenders)]]:
            for result in session(contender, 1, phases_for(contender, seconds), workdir):
                results[contender.name].setdefault(result.name, []).append(result)
            print(f"  ofload: rep {rep + 1}/{reps} {contender.name} done", file=sys.stderr)
    return results


def _values(results: Results, contender: Contender, phase: str, figure: Callable[[PhaseResult], float]) -> list[float]:
    return [figure(r) for r in results.get(contender.name, {}).get(phase, [])]


def rows(results: Results, befores: Sequence[Contender] = ()) -> list[Row]:
    out: list[Row] = []
    rate: Callable[[PhaseResult], float] = lambda r: r.setups_per_s
    for phase, (name, switches, per_switch) in (("light", LIGHT), ("heavy", HEAVY)):
        load = f"{name} ({switches}x{per_switch} as 1 connection x {switches * per_switch})"
        ours = _values(results, RYU_NAT, phase, rate)
        if not ours:
            continue
        nat = results[RYU_NAT.name][phase]
        note = (f"controller CPU {Summary.of([r.controller_cpu_percent for r in nat]).text('%')}, "
                f"generator CPU {Summary.of([r.generator_cpu_percent for r in nat]).text('%')}, "
                f"lost {sum(r.tally.lost for r in nat)}")
        for baseline, target in ((SIMPLE_SWITCH, Target(">=", 1.5 if phase == "light" else 2.0)),
                                 (CEILING, Target(">=", 0.7))):
            base = _values(results, baseline, phase, rate)
            if base:
                out.append(Row("flow setup", f"set-ups/s, {load}", "/s", Summary.of(ours), Summary.of(base),
                               baseline.name, paired(ours, base, higher), target, note=note))
        osken = _values(results, RYU_NAT_OSKEN, phase, rate)
        if osken:
            runs = results[RYU_NAT_OSKEN.name][phase]
            out.append(Row("flow setup", f"set-ups/s on os-ken vs on Ryu, {load}", "/s", Summary.of(osken),
                           Summary.of(ours), "ryu_nat on Ryu", paired(osken, ours, higher),
                           note=f"os-ken controller CPU "
                                f"{Summary.of([r.controller_cpu_percent for r in runs]).text('%')}, "
                                f"lost {sum(r.tally.lost for r in runs)}"))
        fm = _values(results, RYU_NAT, phase, lambda r: r.flow_mods_per_setup)
        base_fm = _values(results, SIMPLE_SWITCH, phase, lambda r: r.flow_mods_per_setup)
        out.append(Row("flow setup", f"flow-mods per set-up, {name}", "", Summary.of(fm),
                       Summary.of(base_fm) if base_fm else None, SIMPLE_SWITCH.name, target=Target("==", 2.0, on="ours"),
                       note=f"unmatched flow-mods {sum(r.tally.unmatched_flow_mods for r in nat)}, "
                            f"deletes {sum(r.tally.deletes for r in nat)}"))
        for q in (0.5, 0.9, 0.99):
            ours_q = _values(results, RYU_NAT, phase, lambda r, q=q: r.percentile_ms(q))
            base_q = _values(results, SIMPLE_SWITCH, phase, lambda r, q=q: r.percentile_ms(q))
            target = Target("<=", 1.0, on="ours") if phase == "light" and q == 0.99 else None
            out.append(Row("flow setup", f"round trip p{round(q * 100)}, {name}", "ms", Summary.of(ours_q),
                           Summary.of(base_q) if base_q else None, SIMPLE_SWITCH.name,
                           paired(ours_q, base_q, lambda c, b: b / c) if base_q else None, target,
                           note="ratio: baseline / ours (higher is better)"))
        cpu = _values(results, RYU_NAT, phase, lambda r: r.controller_us_per_setup)
        for baseline in (SIMPLE_SWITCH, CEILING):
            base_cpu = _values(results, baseline, phase, lambda r: r.controller_us_per_setup)
            if base_cpu:
                out.append(Row("flow setup", f"controller CPU per set-up, {name}", "µs", Summary.of(cpu),
                               Summary.of(base_cpu), baseline.name, paired(cpu, base_cpu, lambda c, b: b / c),
                               note="from /proc/<pid>/stat; ratio: baseline / ours"))
        echo = _values(results, ECHO, phase, rate)
        if echo:
            out.append(Row("flow setup", f"generator alone (instant echo controller), {name}", "/s",
                           Summary.of(echo), Summary.of(ours), RYU_NAT.name, paired(echo, ours, higher),
                           note="the generator's own limit, with ryu_nat's answers; ratio: echo / ryu_nat"))
    out += _before_rows(results, befores)
    churn = _values(results, RYU_NAT, "churn", lambda r: r.ops_per_s)
    heavy = _values(results, RYU_NAT, "heavy", rate)
    if churn and heavy:
        runs = results[RYU_NAT.name]["churn"]
        out.append(Row("flow setup", "churn: set-ups + teardowns/s vs set-up only (heavy)", "/s", Summary.of(churn),
                       Summary.of(heavy), "ryu_nat set-up only", paired(churn, heavy, higher), Target(">=", 0.5),
                       note=f"deletes per teardown {Summary.of([r.deletes_per_teardown for r in runs]).text('')}, "
                            f"set-ups {Summary.of([r.setups_per_s for r in runs]).text('/s')}, "
                            f"flow-mods per set-up {Summary.of([r.flow_mods_per_setup for r in runs]).text('')}"))
    return out


def _before_rows(results: Results, befores: Sequence[Contender]) -> list[Row]:
    """This checkout's set-up rate against each earlier revision's, run by run (ratio: now / before)."""
    out: list[Row] = []
    rate: Callable[[PhaseResult], float] = lambda r: r.setups_per_s
    for contender in befores:
        for phase, (name, switches, per_switch) in (("light", LIGHT), ("heavy", HEAVY)):
            ours, theirs = _values(results, RYU_NAT, phase, rate), _values(results, contender, phase, rate)
            if ours and theirs:
                lost = sum(r.tally.lost for r in results[contender.name][phase])
                out.append(Row("flow setup", f"set-ups/s, {name} ({switches * per_switch} outstanding), this checkout "
                               f"vs {contender.name}", "/s", Summary.of(ours), Summary.of(theirs), contender.name,
                               paired(ours, theirs, higher), note=f"before: lost {lost}"))
    return out


def shape_check(reps: int, seconds: float, workdir: Path) -> list[Row]:
    """The baselines with N connections x K (the issue's shape) beside one connection x N*K (ours).

    ryu_nat serves one datapath, so this shows only what the one-connection shape
    changes for apps that serve many.
    """
    out: list[Row] = []
    for contender in (SIMPLE_SWITCH, CEILING):
        one: dict[str, list[float]] = {}
        many: dict[str, list[float]] = {}
        for rep in range(reps):
            for shape in (("one", "many") if rep % 2 == 0 else ("many", "one")):
                if shape == "one":
                    phases = [Phase(n, 1, s * k, seconds) for n, s, k in (LIGHT, HEAVY)]
                    connections = 1
                else:
                    phases = [Phase(n, s, k, seconds) for n, s, k in (LIGHT, HEAVY)]
                    connections = HEAVY[1]
                for result in session(contender, connections, phases, workdir):
                    (one if shape == "one" else many).setdefault(result.name, []).append(result.setups_per_s)
        for name, switches, per_switch in (LIGHT, HEAVY):
            out.append(Row("flow setup", f"{contender.name} {name}: {switches} connections x {per_switch} vs "
                           f"1 x {switches * per_switch}", "/s", Summary.of(many[name]), Summary.of(one[name]),
                           "one connection", paired(many[name], one[name], higher)))
    return out


# --- stress: set-ups under concurrent REST writes ---------------------------------------------------------

STRESS_WRITERS = 4
STRESS_PHASE_S = 10.0
SMOKE_STRESS_S = 1.0
STRESS_REQUEST_TIMEOUT_S = 15.0


@dataclass
class RestTally:
    requests: int = 0
    errors: int = 0  # 5xx answers and failed requests
    examples: list[str] = field(default_factory=list)  # the first few errors


@dataclass(frozen=True)
class StressResult:
    contender: str
    setups: int
    rest_requests: int
    rest_errors: int
    handler_errors: int
    log_problems: int
    examples: tuple[str, ...]

    @property
    def errors(self) -> int:
        return self.rest_errors + self.handler_errors + self.log_problems


def _error_code(answer: object) -> object:
    """The ``code`` of an error answer (``{"error": {"code": ...}}``), or None."""
    error = answer.get("error") if isinstance(answer, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _rest_writer(api: str, writer: int, stop: threading.Event, tally: RestTally) -> None:
    """Writes that change the NAT's state while switch events arrive: each writer owns its public ports."""
    i = 0
    while not stop.is_set():
        port = 20000 + writer * 1000 + i % 1000
        host = f"10.0.{i % 250}.{2 + writer}"  # hosts the generator uses too
        for method, path, body in (
                ("POST", "/nat/redirects", {"protocol": "tcp", "public_port": port,
                                            "private": {"ip": f"10.0.0.{10 + writer}", "port": 80}}),
                ("GET", "/nat/mappings", None),
                ("DELETE", f"/nat/connections/{host}", None),
                ("DELETE", f"/nat/redirects/tcp/{port}", None),
                ("GET", "/nat/stats", None)):
            tally.requests += 1
            sent = time.monotonic()
            status, answer = http_json(method, api + path, body, STRESS_REQUEST_TIMEOUT_S)
            # 503 no_switch is a right answer (before the generator connects, after it leaves); any other
            # 5xx, or no answer, is not.
            if status == 0 or (status >= 500 and _error_code(answer) != "no_switch"):
                tally.errors += 1
                if len(tally.examples) < 3:
                    tally.examples.append(f"{method} {path}: {status} after {time.monotonic() - sent:.1f} s: "
                                          f"{str(answer)[:200]}")
        i += 1


def stress(contender: Contender, seconds: float, workdir: Path) -> StressResult:
    """``contender`` (a ryu_nat) under churn for ``seconds`` while STRESS_WRITERS threads write through REST."""
    with Controller(contender, workdir) as controller:
        api = f"http://127.0.0.1:{controller.api_port}"
        stop = threading.Event()
        tallies = [RestTally() for _ in range(STRESS_WRITERS)]
        writers = [threading.Thread(target=_rest_writer, args=(api, n, stop, tallies[n]), daemon=True)
                   for n in range(STRESS_WRITERS)]
        for thread in writers:
            thread.start()
        try:
            [result] = run_load(controller.port, controller.pid, contender.flow_mods_per_setup, 1,
                                [Phase("stress", 1, HEAVY[1] * HEAVY[2], seconds, churn=True)])
        finally:
            stop.set()
            for thread in writers:
                thread.join(STRESS_REQUEST_TIMEOUT_S * 2)
        status, stats = http_json("GET", api + "/nat/stats", timeout_s=STRESS_REQUEST_TIMEOUT_S)
        handler_errors = stats["handler_errors"] if status == 200 else -1
    problems = controller.log_problems()
    return StressResult(contender.name, result.tally.setups, sum(t.requests for t in tallies),
                        sum(t.errors for t in tallies), handler_errors, len(problems),
                        tuple(e for t in tallies for e in t.examples)[:5] + tuple(problems[:3]))


def stress_rows(seconds: float, workdir: Path) -> list[Row]:
    out = []
    for contender in (c for c in available_contenders() if c in (RYU_NAT, RYU_NAT_OSKEN)):
        result = stress(contender, seconds, workdir)
        out.append(Row("flow setup", f"{contender.name}: errors during set-ups under concurrent REST writes", "",
                       Summary.of([result.errors]), target=Target("==", 0.0, on="ours"),
                       note=f"{result.setups:,} set-ups, {result.rest_requests:,} REST requests from "
                            f"{STRESS_WRITERS} threads in {seconds:g} s; 5xx/failed {result.rest_errors}, "
                            f"handler errors {result.handler_errors}, log problems {result.log_problems}"))
    return out


def profile(seconds: float, workdir: Path, top: int = 25) -> str:
    """Sample ryu_nat under the heavy load with py-spy; the functions that dominate, as text.

    py-spy (``pip install py-spy``) samples the controller from outside, so the
    eventlet greenlets are seen as they run; cProfile inside an eventlet
    process attributes time across greenlet switches poorly.
    """
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        raise SystemExit(f"{py_spy} is missing: {Path(sys.executable).parent / 'pip'} install py-spy")
    raw = workdir / "ryu_nat.stacks"
    name, switches, per_switch = HEAVY
    with Controller(RYU_NAT, workdir) as controller:
        sampler = subprocess.Popen([str(py_spy), "record", "--pid", str(controller.pid), "--rate", "200",
                                    "--duration", str(int(seconds)), "--format", "raw", "--output", str(raw)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        results = run_load(controller.port, controller.pid, RYU_NAT.flow_mods_per_setup, 1,
                           [Phase(name, 1, switches * per_switch, seconds + 1)])
        sampler.wait(timeout=60)
    return summarize_stacks(raw.read_text(), top) + f"\n\nload: {results[0].setups_per_s:,.0f} set-ups/s\n"


def summarize_stacks(collapsed: str, top: int) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "self (where the time is spent):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive (time under each function):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _function(frame: str) -> str:
    """'name (path/to/module.py:123)' -> 'name (module.py)': lines of one function merged."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[parts.index("site-packages") + 1:]) if "site-packages" in parts else "/".join(parts[-2:])
    return f"{name} ({short})"


def run(smoke: bool = False, reps: int = 3, befores: Sequence[str] = ()) -> tuple[list[Row], Results]:
    """The contenders, and ryu_nat at each revision in ``befores``, alternated; rows and per-run results."""
    with tempfile.TemporaryDirectory(prefix="ofload-") as workdir:
        earlier = [before(revision, Path(workdir)) for revision in befores]
        results = measure(reps, SMOKE_PHASE_S if smoke else PHASE_S, Path(workdir),
                          (*available_contenders(), *earlier))
        stressed = stress_rows(SMOKE_STRESS_S if smoke else STRESS_PHASE_S, Path(workdir))
    return rows(results, earlier) + stressed, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--echo-controller", type=int, metavar="PORT", help="serve as the instant-echo controller")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shapes", action="store_true",
                        help="compare N connections x K with 1 x N*K for the baselines, and nothing else")
    parser.add_argument("--profile", action="store_true", help="sample ryu_nat under heavy load with py-spy")
    parser.add_argument("--before", action="append", default=[], metavar="REV",
                        help="also run ryu_nat as at git revision REV, side by side (repeatable)")
    parser.add_argument("--stress", type=float, metavar="SECONDS",
                        help="only the stress run of this environment's ryu_nat; print its result as JSON")
    args = parser.parse_args()
    if args.stress:
        with tempfile.TemporaryDirectory(prefix="ofload-") as workdir:
            result = stress(RYU_NAT, args.stress, Path(workdir))
        print(json.dumps({**vars(result), "errors": result.errors}, indent=1))
        return
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="ofload-") as workdir:
            print(profile(SMOKE_PHASE_S * 10 if args.smoke else 10.0, Path(workdir)))
        return
    if args.echo_controller:
        echo_controller(args.echo_controller)
        return
    if args.shapes:
        with tempfile.TemporaryDirectory(prefix="ofload-") as workdir:
            result = shape_check(args.reps, SMOKE_PHASE_S if args.smoke else PHASE_S, Path(workdir))
    else:
        result, _ = run(args.smoke, args.reps, args.before)
    for row in result:
        base = f"  vs {row.baseline_name} {row.baseline.text(row.unit)}" if row.baseline else ""
        ratio = f"  ratio {row.ratio.text('x')}" if row.ratio else ""
        print(f"{row.benchmark}: {row.ours.text(row.unit) if row.ours else '-'}{base}{ratio}  {row.note}")


if __name__ == "__main__":
    main()
