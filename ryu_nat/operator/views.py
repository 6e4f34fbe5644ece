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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ryu_nat.core.addresses import Proto
from ryu_nat.core.table import Mapping, MappingKind
from ryu_nat.operator.flowstats import Traffic

# By the members' values: a plain attribute, where hashing an Enum member is a Python call.
_LABELS = {proto.value: proto.label for proto in Proto}
_pack_ip = struct.Struct("!I").pack
_JSON_ROW = ('{"id": %d, "protocol": "%s", "kind": "%s", "private": {"ip": "%s", "port": %d}, '
             '"public": {"ip": "%s", "port": %d}, "remote": {"ip": "%s", "port": %d}, "age_s": %.1f, '
             '"idle_s": %.1f, "packets": %s, "bytes": %s, "closing": %s}')
_HTML_ROW = ('<tr class="%s" data-id="%d" data-private="%s:%d"><td>%s</td><td>%s</td><td class="ep">%s:%d</td>'
             '<td class="ep">%s:%d</td><td class="ep">%s:%d</td><td class="num">%.1f</td><td class="num">%.1f</td>'
             '<td class="num">%s</td><td class="num">%s</td></tr>')


class MappingRow(NamedTuple):
    """One mapping: endpoints as the private host sees them, ages in seconds (shown to 0.1 s), switch counters."""

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


Values = tuple[int, str, str, str, int, str, int, str, int, float, float, int | None, int | None, bool]


@dataclass(frozen=True, slots=True)
class MappingPage:
    """One page of mappings, where the next starts (None: nothing follows), and how many match in all.

    Rows are read from ``mappings`` when asked for, with the time and the switch's
    counters (``traffic``) given here: as JSON for the API, as :class:`MappingRow`
    for the live page.
    """

    mappings: tuple[Mapping, ...]
    next_after: int | None
    total: int
    now: float
    traffic: Callable[[int], Traffic | None]

    def rows(self) -> list[MappingRow]:
        return [MappingRow._make(values) for values in _values(self.mappings, self.now, self.traffic)]

    def json(self) -> bytes:
        """The answer of ``GET /nat/mappings``: one mapping per line."""
        lines = [_JSON_ROW % (*values[:11], "null" if values[11] is None else values[11],
                              "null" if values[12] is None else values[12], "true" if values[13] else "false")
                 for values in _values(self.mappings, self.now, self.traffic)]
        mappings = "[\n " + ",\n ".join(lines) + "\n]" if lines else "[]"
        next_after = "null" if self.next_after is None else str(self.next_after)
        return (f'{{"mappings": {mappings}, "count": {len(lines)}, "total": {self.total}, '
                f'"next_after": {next_after}}}\n').encode()


def _values(mappings: Iterable[Mapping], now: float, traffic: Callable[[int], Traffic | None]) -> Iterator[Values]:
    """A row's values per mapping, read straight off its packed channel keys."""
    ips: dict[int, str] = {}  # addresses repeat (the public one in every row): each is formatted once
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
        age, idle = now - mapping.created, now - last_used
        yield (mapping.id, _LABELS[mapping.proto._value_], mapping.kind._value_,
               ips.get(private) or ips.setdefault(private, _ip(private)), private_port,
               ips.get(public) or ips.setdefault(public, _ip(public)), public_port,
               ips.get(remote) or ips.setdefault(remote, _ip(remote)), remote_port,
               age if age > 0.0 else 0.0, idle if idle > 0.0 else 0.0, packets, byte_count, mapping.closing)


def rows_html(rows: Iterable[MappingRow]) -> str:
    """Table rows for the live page, as its script makes them (every value escaped)."""
    e = html.escape
    return "\n".join(_HTML_ROW % (e(row.kind), row.id, e(row.private_ip), row.private_port, e(row.protocol),
                                  e(row.kind), e(row.private_ip), row.private_port, e(row.public_ip), row.public_port,
                                  e(row.remote_ip), row.remote_port, row.age_s, row.idle_s,
                                  _html_count(row.packets), _html_count(row.bytes)) for row in rows)


def _ip(value: int) -> str:
    return socket.inet_ntoa(_pack_ip(value))


def _html_count(value: int | None) -> str:
    return "-" if value is None else str(value)
