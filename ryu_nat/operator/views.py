"""Mappings as the operator sees them: one page of rows, as the API's JSON and as the live page's HTML.

A page of 1,000 mappings must cost the controller a few milliseconds, not the
tens that ``IPv4Address`` objects, a dict per endpoint and ``json.dumps(indent=1)``
took. So a row is a tuple read straight off the mapping's packed channel keys,
and its JSON is one fixed template per row: every value in it is a number, a
dotted quad, ``null``/``true``/``false`` or a word from a closed set, so there is
nothing to escape (tests parse every answer and check it against openapi.json).
The HTML escapes every value all the same.
"""

from __future__ import annotations

import html
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ryu_nat.core.addresses import Proto
from ryu_nat.core.table import Mapping, MappingKind
from ryu_nat.operator.flowstats import Traffic

_LABELS = {proto: proto.label for proto in Proto}
_KINDS = {kind: kind.value for kind in MappingKind}
_pack_ip = struct.Struct("!I").pack
_JSON_ROW = ('{"id": %d, "protocol": "%s", "kind": "%s", "private": {"ip": "%s", "port": %d}, '
             '"public": {"ip": "%s", "port": %d}, "remote": {"ip": "%s", "port": %d}, "age_s": %r, "idle_s": %r, '
             '"packets": %s, "bytes": %s, "closing": %s}')
_HTML_ROW = ('<tr class="%s" data-id="%d" data-private="%s:%d"><td>%s</td><td>%s</td><td class="ep">%s:%d</td>'
             '<td class="ep">%s:%d</td><td class="ep">%s:%d</td><td class="num">%.1f</td><td class="num">%.1f</td>'
             '<td class="num">%s</td><td class="num">%s</td></tr>')


class MappingRow(NamedTuple):
    """One mapping: endpoints as the private host sees them, ages in seconds (0.1 s), switch counters."""

    id: int
    protocol: str
    kind: str
    private_ip: str
    private_port: int
    public_ip: str
    public_port: int
    remote_ip: str
    remote_port: int
    age_s: float
    idle_s: float
    packets: int | None
    bytes: int | None
    closing: bool


@dataclass(frozen=True, slots=True)
class MappingPage:
    """One page of mappings, where the next starts (None: nothing follows), and how many match in all."""

    rows: list[MappingRow]
    next_after: int | None
    total: int


def mapping_rows(mappings: Iterable[Mapping], now: float,
                 traffic: Callable[[int], Traffic | None]) -> list[MappingRow]:
    """Rows for ``mappings``; packets, bytes and the last use the switch saw come from ``traffic``."""
    rows = []
    for mapping in mappings:
        original, reply = mapping.original, mapping.reply
        # Keys pack (src ip, dst ip, src port, dst port) as 32, 32, 16, 16 bits (core.addresses.pack_key).
        if mapping.kind is MappingKind.REDIRECT:
            private, private_port = reply >> 64, reply >> 16 & 0xFFFF
            public, public_port = original >> 32 & 0xFFFFFFFF, original & 0xFFFF
            remote, remote_port = original >> 64, original >> 16 & 0xFFFF
        else:
            private, private_port = original >> 64, original >> 16 & 0xFFFF
            public, public_port = reply >> 32 & 0xFFFFFFFF, reply & 0xFFFF
            remote, remote_port = original >> 32 & 0xFFFFFFFF, original & 0xFFFF
        counted = traffic(mapping.id)
        last_used = mapping.last_used
        packets = byte_count = None
        if counted is not None:
            packets, byte_count = counted.packets, counted.bytes
            if counted.last_active is not None and counted.last_active > last_used:
                last_used = counted.last_active
        rows.append(MappingRow(mapping.id, _LABELS[mapping.proto], _KINDS[mapping.kind],
                               _ip(private), private_port, _ip(public), public_port, _ip(remote), remote_port,
                               _seconds(now - mapping.created), _seconds(now - last_used), packets, byte_count,
                               mapping.closing))
    return rows


def page_json(page: MappingPage) -> bytes:
    """The answer of ``GET /nat/mappings``: one mapping per line."""
    lines = [_JSON_ROW % (row.id, row.protocol, row.kind, row.private_ip, row.private_port, row.public_ip,
                          row.public_port, row.remote_ip, row.remote_port, row.age_s, row.idle_s,
                          _json_int(row.packets), _json_int(row.bytes), "true" if row.closing else "false")
             for row in page.rows]
    mappings = "[\n " + ",\n ".join(lines) + "\n]" if lines else "[]"
    next_after = "null" if page.next_after is None else str(page.next_after)
    return (f'{{"mappings": {mappings}, "count": {len(lines)}, "total": {page.total}, '
            f'"next_after": {next_after}}}\n').encode()


def rows_html(rows: Iterable[MappingRow]) -> str:
    """Table rows for the live page, as its script makes them (every value escaped)."""
    e = html.escape
    return "\n".join(_HTML_ROW % (e(row.kind), row.id, e(row.private_ip), row.private_port, e(row.protocol),
                                  e(row.kind), e(row.private_ip), row.private_port, e(row.public_ip), row.public_port,
                                  e(row.remote_ip), row.remote_port, row.age_s, row.idle_s,
                                  _html_count(row.packets), _html_count(row.bytes)) for row in rows)


def _ip(value: int) -> str:
    return socket.inet_ntoa(_pack_ip(value))


def _seconds(value: float) -> float:
    return round(max(value, 0.0), 1)


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(value)


def _html_count(value: int | None) -> str:
    return "-" if value is None else str(value)
