"""``ryu-nat-ctl``: the operator's client of the REST API (standard library only).

Tables for people by default, the API's JSON with ``--json``. With
``--token-file`` (or ``RYU_NAT_TOKEN_FILE``) every request carries the API's
token, read from the same file as the controller's ``[nat] api_token_file``.
``mappings`` shows one page (``--limit``, ``--after``) or, with ``--all``, every
page. ``check`` starts an audit of the switch's rules and waits for it
(``--wait``); ``explain`` asks what the NAT would do with a packet. Exit status:
0 done, 1 the controller answered an error (or ``check`` found disagreements,
which it repaired), 2 bad usage, 3 controller not reachable. Errors are one line
on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"
TOKEN_FILE_VARIABLE = "RYU_NAT_TOKEN_FILE"
MAX_TOKEN_BYTES = 4096
EXIT_API_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
_REDIRECT = re.compile(r"^\s*(\w+):(\d+)=([\d.]+):(\d+)\s*$")
_PUBLIC_PORT = re.compile(r"^\s*(\w+):(\d+)\s*$")

Json = Any


class CtlError(Exception):
    """Ends the command with one line on stderr and ``exit_code``."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Client:
    """JSON over HTTP to the NAT's REST API at ``base_url``."""

    def __init__(self, base_url: str, timeout_s: float, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.token = token

    def call(self, method: str, path: str, body: Json = None, query: dict[str, str] | None = None) -> Json:
        """The decoded answer; CtlError for an error answer or an unreachable controller."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise CtlError(_error_line(exc), EXIT_API_ERROR) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CtlError(f"cannot reach the controller at {self.base_url}: {_reason(exc)}",
                           EXIT_UNREACHABLE) from None
        except ValueError:
            raise CtlError(f"{self.base_url} answered something that is not JSON: is it ryu_nat?",
                           EXIT_API_ERROR) from None


def read_token(path: str) -> str:
    """The token in ``path`` (the controller's ``[nat] api_token_file``); CtlError if it cannot be read."""
    try:
        with open(path, "rb") as token_file:
            token = token_file.read(MAX_TOKEN_BYTES + 1).decode("ascii").strip()
    except OSError as exc:
        raise CtlError(f"cannot read the token file {path!r}: {exc.strerror or exc}", EXIT_USAGE) from None
    except UnicodeDecodeError:
        token = ""
    if not token or len(token) > MAX_TOKEN_BYTES or any(c.isspace() for c in token):
        raise CtlError(f"the token file {path!r} does not hold one token", EXIT_USAGE)
    return token


def _reason(exc: OSError) -> str:
    """Why a connection failed, in words (``Connection refused``, ``timed out``)."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, OSError) and reason.errno:
        return os.strerror(reason.errno)
    return str(reason)


def _error_line(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read())["error"]
        return f"{error['message']} (HTTP {exc.code}, {error['code']})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code} {exc.reason} from {exc.url}"


# --- formatting ---------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    """Aligned columns; the columns numbered in ``numeric`` are right-aligned."""
    cells = [[_text(value) for value in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(widths[i]) if i in numeric else value.ljust(widths[i])
                         for i, value in enumerate(values)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _endpoint(endpoint: Json) -> str:
    return f"{endpoint['ip']}:{endpoint['port']}"


def format_mappings(answer: Json) -> str:
    rows = [(m["protocol"], m["kind"], _endpoint(m["private"]), _endpoint(m["public"]), _endpoint(m["remote"]),
             m["age_s"], m["idle_s"], m["packets"], m["bytes"]) for m in answer["mappings"]]
    if not rows:
        return "no mappings"
    headers = ("PROTO", "KIND", "PRIVATE", "PUBLIC", "REMOTE", "AGE_S", "IDLE_S", "PACKETS", "BYTES")
    shown = f"{answer['count']} mapping(s)" if answer["count"] == answer["total"] else \
        f"{answer['count']} of {answer['total']} mapping(s)"
    if answer["next_after"] is not None:
        shown += f"; more with --after {answer['next_after']}, or --all"
    return table(headers, rows, numeric=(5, 6, 7, 8)) + "\n" + shown


def all_mappings(client: Client, query: dict[str, str]) -> Json:
    """Every page, as one answer in the API's shape (``next_after`` null)."""
    found: list[Json] = []
    after = query.get("after", "0")
    while True:
        page = client.call("GET", "/nat/mappings", query={**query, "after": after})
        found += page["mappings"]
        if page["next_after"] is None:
            return {"mappings": found, "count": len(found), "total": len(found), "next_after": None}
        after = str(page["next_after"])


def format_stats(stats: Json) -> str:
    switch = stats["switch"]
    mappings = stats["mappings"]
    rows: list[tuple[str, str]] = [
        ("switch", f"connected, dpid {switch['dpid']}" if switch["connected"] else "not connected"),
        ("mappings", f"live {mappings['live']}, created {mappings['created']} ("
                     + _pairs(mappings["created_by_kind"]) + f"), expired {mappings['expired']}, evicted "
                     f"{mappings['evicted']}, removed {mappings['removed']}"),
        ("table use", ", ".join(f"{p} {u['used']}/{u['size']}" for p, u in stats["table"].items())),
        ("public ports", ", ".join(f"{p} {u['used']}/{u['size']}" for p, u in stats["ports"].items())),
        ("packet-ins", _pairs(stats["packet_ins"])),
        ("drops", _pairs(stats["drops"])),
        ("arp", _pairs(stats["arp"])),
        ("icmp sent", _pairs(stats["icmp_sent"])),
        ("flow setups", str(stats["flow_setups"])),
        ("errors", f"handler {stats['handler_errors']}, openflow {stats['openflow_errors']}"),
    ]
    return table(("COUNTER", "VALUE"), rows)


def _pairs(counters: dict[str, int]) -> str:
    return ", ".join(f"{name} {value}" for name, value in counters.items()) or "none"


def format_redirects(answer: Json) -> str:
    rows = [(r["protocol"], r["public_port"], _endpoint(r["private"])) for r in answer["redirects"]]
    return table(("PROTO", "PUBLIC_PORT", "PRIVATE"), rows, numeric=(1,)) if rows else "no redirects"


def format_flushed(answer: Json) -> str:
    freed = ", ".join(f"{proto} {' '.join(map(str, ports))}" for proto, ports in answer["freed_ports"].items() if ports)
    return f"removed {answer['removed']} mapping(s) of {answer['host']}; freed ports: {freed or 'none'}"


def format_port(answer: Json) -> str:
    remote = f" towards {_endpoint(answer['remote'])}" if answer["remote"] else ""
    verdict = "free" if answer["free"] else "in use"
    notes = []
    if answer["held_by"]:
        notes.append(f"held by {_endpoint(answer['held_by'])}")
    if answer["redirected"]:
        notes.append("redirected")
    details = f" ({', '.join(notes)})" if notes else ""
    return f"{answer['protocol']} port {answer['port']}{remote}: {verdict}{details}"


def format_consistency(report: Json) -> str:
    """The last restore and audit (or the read running), and what each found."""
    lines = []
    for title, key in (("running", "running"), ("last restore", "last_restore"), ("last audit", "last_audit")):
        read = report[key]
        if read is None:
            continue
        counts = _pairs({name: value for name, value in read["counts"].items() if value})
        when = "running" if read["running"] else f"{read['ago_s']:.1f} s ago"
        lines.append(f"{title}: {when}, {read['seconds']:.3f} s, {read['slices']} slice(s), {read['rules_read']} "
                     f"rule(s) read, {read['unreadable']} unreadable; {counts}")
    if not lines:
        lines.append("no read of the switch's rules yet")
    findings = {name: value for name, value in report["audit"].items() if name != "runs" and value}
    lines.append(f"audits: {report['audit'].get('runs', 0)}, repairs since start: {_pairs(findings)}")
    return "\n".join(lines)


def format_explanation(answer: Json) -> str:
    """The outcome in a sentence, then what went into it."""
    packet = answer["packet"]
    head = f"{packet['protocol']} {_endpoint(packet['src'])} -> {_endpoint(packet['dst'])} (from the {packet['from']} " \
           f"side): {answer['outcome'].replace('_', ' ')}"
    if answer["reason"]:
        head += f": {answer['reason']['code']} ({answer['reason']['description']})"
    lines = [head]
    mapping = answer["mapping"]
    if mapping:
        which = "a new mapping" if mapping["id"] == 0 else f"mapping {mapping['id']}"
        lines.append(f"  {which}: {mapping['kind']} {mapping['protocol']} private {_endpoint(mapping['private'])}, "
                     f"public {_endpoint(mapping['public'])}, remote {_endpoint(mapping['remote'])}"
                     + (", closing" if mapping["closing"] else ""))
    if answer["leaves_as"]:
        lines.append(f"  leaves as {_endpoint(answer['leaves_as']['src'])} -> {_endpoint(answer['leaves_as']['dst'])}")
    if answer["rule_state"]:
        lines.append(f"  rules on the switch: {answer['rule_state']}")
    lines += [f"    cookie={rule['cookie']} priority={rule['priority']} idle_timeout={rule['idle_timeout']} "
              f"{','.join(f'{k}={v}' for k, v in rule['match'].items())} actions={','.join(rule['actions'])}"
              for rule in answer["rules"]]
    if answer["redirect"]:
        lines.append(f"  redirect: {answer['redirect']['rule']}")
    if answer["drop_rule"]:
        lines.append("  the switch drops this port for a few seconds (unsolicited traffic came to it)")
    if answer["ended"]:
        ended = answer["ended"]
        lines.append(f"  mapping {ended['mapping']['id']} of this channel ended {ended['ago_s']:.1f} s ago "
                     f"({ended['reason']})")
    if answer["fragments_waiting"]:
        lines.append(f"  {answer['fragments_waiting']} datagram(s) of this source and destination wait for pieces")
    return "\n".join(lines)


def check(client: Client, wait_s: float, poll_s: float = 0.2) -> Json:
    """Start an audit and wait (up to ``wait_s``) for it to end; the report (CtlError if it does not end)."""
    client.call("POST", "/nat/consistency")
    deadline = time.monotonic() + wait_s
    while True:
        report = client.call("GET", "/nat/consistency")
        if report["running"] is None:
            return report
        if time.monotonic() >= deadline:
            raise CtlError(f"the audit did not end within {wait_s:g} s (GET /nat/consistency follows it)",
                           EXIT_API_ERROR)
        time.sleep(poll_s)


def _explain_query(args: argparse.Namespace) -> dict[str, str]:
    query = {"proto": args.proto, "src": args.src, "dst": args.dst}
    if args.id is not None:
        query["id"] = str(args.id)
    return query


def format_config(config: Json) -> str:
    return table(("OPTION", "VALUE"), [(name, ", ".join(value) if isinstance(value, list) else value)
                                       for name, value in config.items()])


# --- commands -----------------------------------------------------------------------------------------


def _redirect_body(text: str) -> Json:
    found = _REDIRECT.match(text)
    if not found:
        raise CtlError(f"bad redirect {text!r} (want proto:public_port=private_ip:port, e.g. tcp:8080=10.0.0.2:80)",
                       EXIT_USAGE)
    proto, public_port, ip, port = found.groups()
    return {"protocol": proto, "public_port": int(public_port), "private": {"ip": ip, "port": int(port)}}


def _public_port(text: str) -> tuple[str, str]:
    found = _PUBLIC_PORT.match(text)
    if not found:
        raise CtlError(f"bad redirect {text!r} (want proto:public_port, e.g. tcp:8080)", EXIT_USAGE)
    return found.group(1), found.group(2)


def run(args: argparse.Namespace, client: Client) -> tuple[Json, Callable[[Json], str]]:
    """Make the call a command stands for: (the answer, how to show it to a person)."""
    match args.command:
        case "mappings":
            query = {name: str(value) for name, value in (("proto", args.proto), ("private_ip", args.private_ip),
                                                          ("limit", args.limit), ("after", args.after))
                     if value is not None}
            if args.all:
                return all_mappings(client, query), format_mappings
            return client.call("GET", "/nat/mappings", query=query), format_mappings
        case "stats":
            return client.call("GET", "/nat/stats"), format_stats
        case "config":
            return client.call("GET", "/nat/config"), format_config
        case "port":
            remote = {"remote": args.remote} if args.remote else None
            path = f"/nat/ports/{_quote(args.proto)}/{_quote(args.port)}"
            return client.call("GET", path, query=remote), format_port
        case "flush":
            return client.call("DELETE", f"/nat/connections/{_quote(args.ip)}"), format_flushed
        case "reset":
            return client.call("DELETE", "/nat/mappings"), lambda answer: f"removed {answer['removed']} mapping(s)"
        case "check":
            return check(client, args.wait), format_consistency
        case "explain":
            return client.call("GET", "/nat/explain", query=_explain_query(args)), format_explanation
        case "redirect":
            if args.action == "list":
                return client.call("GET", "/nat/redirects"), format_redirects
            if args.action == "add":
                added = client.call("POST", "/nat/redirects", body=_redirect_body(args.rule))
                return added, lambda answer: f"added redirect {answer['rule']}"
            proto, port = _public_port(args.rule)
            removed = client.call("DELETE", f"/nat/redirects/{_quote(proto)}/{_quote(port)}")
            return removed, lambda answer: f"removed redirect {answer['rule']}"
    raise CtlError(f"unknown command {args.command!r}", EXIT_USAGE)


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ryu-nat-ctl", description="Inspect and steer a running ryu_nat controller.")
    top.add_argument("--url", default=DEFAULT_URL, help=f"the controller's REST API (default {DEFAULT_URL})")
    top.add_argument("--json", action="store_true", help="print the API's JSON answer instead of a table")
    top.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer (default 5)")
    top.add_argument("--token-file", default=os.environ.get(TOKEN_FILE_VARIABLE),
                     help=f"the API's token, as in [nat] api_token_file (default ${TOKEN_FILE_VARIABLE})")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mappings = commands.add_parser("mappings", help="live mappings")
    mappings.add_argument("--proto", help="only tcp, udp or icmp")
    mappings.add_argument("--private-ip", help="only the mappings of this private host")
    mappings.add_argument("--limit", type=int, help="mappings per page (default and most 1000)")
    mappings.add_argument("--after", type=int, help="only mappings with ids above this (the next page's start)")
    mappings.add_argument("--all", action="store_true", help="every page, not only the first")
    commands.add_parser("stats", help="counters, table and port use")
    commands.add_parser("config", help="the effective [nat] configuration")
    port = commands.add_parser("port", help="is a public port free? (is_port_free)")
    port.add_argument("proto", help="tcp, udp or icmp")
    port.add_argument("port", help="the public port (ICMP: query id)")
    port.add_argument("--remote", help="ip:port of the remote end (default: any remote)")
    redirect = commands.add_parser("redirect", help="destination-NAT rules: list, add, del")
    actions = redirect.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the redirects in force")
    add = actions.add_parser("add", help="forward a public port, e.g. tcp:8080=10.0.0.2:80")
    add.add_argument("rule", metavar="PROTO:PORT=IP:PORT")
    delete = actions.add_parser("del", help="stop forwarding a public port, e.g. tcp:8080")
    delete.add_argument("rule", metavar="PROTO:PORT")
    flush = commands.add_parser("flush", help="remove every mapping of a private host")
    flush.add_argument("ip")
    commands.add_parser("reset", help="remove every mapping")
    check_command = commands.add_parser("check", help="audit the switch's rules against the table now (repairs "
                                                      "what disagrees), and show what it found")
    check_command.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the audit (default 60)")
    explain = commands.add_parser("explain", help="what the NAT would do with a packet, and why (changes nothing)")
    explain.add_argument("proto", help="tcp, udp or icmp")
    explain.add_argument("src", help="ip:port (ICMP: ip)")
    explain.add_argument("dst", help="ip:port (ICMP: ip)")
    explain.add_argument("--id", type=int, help="ICMP only: the echo request's id (default 1)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status says how it went (see the module docstring)."""
    args = parser().parse_args(argv)
    if urllib.parse.urlsplit(args.url).scheme not in ("http", "https"):
        print(f"ryu-nat-ctl: --url {args.url!r} must start with http:// (e.g. {DEFAULT_URL})", file=sys.stderr)
        return EXIT_USAGE
    try:
        token = None if args.token_file is None else read_token(args.token_file)
        answer, show = run(args, Client(args.url, args.timeout, token))
    except CtlError as exc:
        print(f"ryu-nat-ctl: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(answer, indent=2) if args.json else show(answer))
    if args.command == "check" and answer["last_audit"] and any(answer["last_audit"]["counts"].values()):
        return EXIT_API_ERROR  # disagreements found (and repaired): worth a script's attention
    return 0


if __name__ == "__main__":
    sys.exit(main())
