"""The operator's REST API under ``/nat/``, and ``/metrics``: routes, request validation, errors as JSON.

Served by :mod:`ryu_nat.operator.server` (``--wsapi-host``, default 127.0.0.1;
``--wsapi-port``, default 8080), on Ryu and on os-ken alike; every request
runs on the app's event thread. :func:`make_wsgi_app` puts the request guard
(:mod:`ryu_nat.operator.guard`: Host, Origin, token, content type) in front of
the routes. Each handler validates the request completely, then makes one call
on the :class:`~ryu_nat.operator.facade.NatFacade` and serializes what it
returns, so a bad request changes nothing. Every error is ``{"error": {"code":
..., "message": ...}}`` with its HTTP status, and is logged as one line,
without a traceback. ``openapi.json`` beside this module describes every route;
``GET /nat/openapi.json`` serves it, ``GET /nat/`` the live page, ``GET
/metrics`` the Prometheus metrics.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import reprlib
from collections.abc import Callable
from importlib import resources
from ipaddress import IPv4Address
from typing import Any

from prometheus_client import CollectorRegistry
from webob import Request

from ryu_nat.config import RedirectRule
from ryu_nat.core.addresses import Endpoint, Proto, Subnet
from ryu_nat.operator import guard, metrics, views
from ryu_nat.operator.facade import NatFacade
from ryu_nat.operator.server import WsgiApp
from ryu_nat.operator.wsgi import Response, Router, route

LOG = logging.getLogger(__name__)

JSON_TYPE = "application/json"
REDIRECT_FIELDS = {"protocol", "public_port", "private"}
ENDPOINT_FIELDS = {"ip", "port"}
PAGE_LIMIT = 1000  # mappings per page, by default and at most
MAX_JSON_DEPTH = 8  # a body nests two levels (a redirect's private endpoint); a little room, then no further
LIVE_PAGE_ROWS = 100  # mappings per page of the live page
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60
_SHORT_REPR.maxlevel = 2
_shown = _SHORT_REPR.repr  # untrusted values in messages: bounded in length and depth

Handler = Callable[..., Response]


class ApiError(Exception):
    """A request the API refuses: becomes ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def make_wsgi_app(facade: NatFacade, metrics_registry: CollectorRegistry, policy: guard.Policy) -> WsgiApp:
    """The whole API as one WSGI app over ``facade``; any other path answers a JSON 404 (or 405).

    The request guard, which checks every request against ``policy``, wraps the router here.
    """
    return guard.Guard(Router([NatController(facade, metrics_registry)], not_routed), policy)


def json_response(body: object, status: int = 200) -> Response:
    return Response(status=status, content_type=JSON_TYPE,
                    body=(json.dumps(body, indent=1) + "\n").encode())


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def _api(handler: Handler) -> Handler:
    """Turn ApiError into its JSON answer; any other exception is a bug: 500, one log line."""

    @functools.wraps(handler)
    def guarded(self: NatController, req: Request, **kwargs: str) -> Response:
        try:
            return handler(self, req, **kwargs)
        except ApiError as exc:
            LOG.info("REST %s %s: %d %s: %s", req.method, req.path_qs, exc.status, exc.code, exc.message)
            return error_response(exc.status, exc.code, exc.message)
        except Exception as exc:  # last line of defence: answer, keep serving, count it
            self.nat.note_handler_error()
            LOG.error("REST %s %s failed: %s: %s", req.method, req.path_qs, type(exc).__name__, exc)
            LOG.debug("REST handler failure", exc_info=True)
            return error_response(500, "internal_error", "the controller failed on this request (see its log)")

    return guarded


class NatController:
    """Routes of the API over one façade (and the registry of its metrics)."""

    def __init__(self, facade: NatFacade, metrics_registry: CollectorRegistry) -> None:
        self.nat = facade
        self.metrics_registry = metrics_registry

    # --- pages ----------------------------------------------------------------------------------

    @route("nat_page", "/nat/", methods=["GET"])
    @_api
    def page(self, req: Request, **_: str) -> Response:
        """The live page: the mappings table (its first page already in the HTML) and the counters,
        refreshed by the browser."""
        _no_parameters(req)
        first = self.nat.mappings_page(0, LIVE_PAGE_ROWS)
        switch = self.nat.stats()["switch"]
        status = f"switch {switch['dpid']}" if switch["connected"] else "no switch connected"
        filled = {"status": status, "total": str(first.total), "rows": views.rows_html(first.rows()),
                  "page_rows": str(LIVE_PAGE_ROWS), "next_after": "" if first.next_after is None else
                  str(first.next_after), "empty_hidden": " hidden" if first.mappings else ""}
        text = _package_file("live.html").decode()
        for name, value in filled.items():
            text = text.replace("{{" + name + "}}", value if name == "rows" else html.escape(value))
        return Response(content_type="text/html", body=text.encode())

    @route("nat_page_no_slash", "/nat", methods=["GET"])
    @_api
    def page_no_slash(self, req: Request, **_: str) -> Response:
        return Response(status=301, location="/nat/")

    @route("nat_openapi", "/nat/openapi.json", methods=["GET"])
    @_api
    def openapi(self, req: Request, **_: str) -> Response:
        _no_parameters(req)
        return Response(content_type=JSON_TYPE, body=_package_file("openapi.json"))

    # --- reading --------------------------------------------------------------------------------

    @route("nat_mappings", "/nat/mappings", methods=["GET"])
    @_api
    def mappings(self, req: Request, **_: str) -> Response:
        params = _parameters(req, "proto", "private_ip", "limit", "after")
        proto = _proto(params["proto"]) if "proto" in params else None
        host = self._private_host(params["private_ip"]) if "private_ip" in params else None
        limit = _count_text(params["limit"], "limit", 1, PAGE_LIMIT) if "limit" in params else PAGE_LIMIT
        after = _count_text(params["after"], "after", 0, 2**63) if "after" in params else 0
        page = self.nat.mappings_page(after, limit, proto, host)
        return Response(content_type=JSON_TYPE, body=page.json())

    @route("metrics", "/metrics", methods=["GET"])
    @_api
    def prometheus(self, req: Request, **_: str) -> Response:
        """Prometheus metrics in the text format."""
        _no_parameters(req)
        response = Response(body=metrics.render(self.metrics_registry))
        response.headers["Content-Type"] = metrics.CONTENT_TYPE
        return response

    @route("nat_stats", "/nat/stats", methods=["GET"])
    @_api
    def stats(self, req: Request, **_: str) -> Response:
        _no_parameters(req)
        return json_response(self.nat.stats())

    @route("nat_config", "/nat/config", methods=["GET"])
    @_api
    def config(self, req: Request, **_: str) -> Response:
        _no_parameters(req)
        return json_response(self.nat.effective_config())

    @route("nat_consistency", "/nat/consistency", methods=["GET"])
    @_api
    def consistency(self, req: Request, **_: str) -> Response:
        """The switch's rules against the table: the read running, the last restore and audit, the counters."""
        _no_parameters(req)
        return json_response(self.nat.consistency())

    @route("nat_consistency_check", "/nat/consistency", methods=["POST"])
    @_api
    def check(self, req: Request, **_: str) -> Response:
        """Start an audit now (it runs a slice at a time; GET /nat/consistency follows it)."""
        _no_parameters(req)
        report = self.nat.start_audit()
        if report is None:
            raise ApiError(503, "no_switch", "no NAT switch is connected: there are no rules to audit")
        return json_response(report, 202)

    @route("nat_explain", "/nat/explain", methods=["GET"])
    @_api
    def explain(self, req: Request, **_: str) -> Response:
        """What the NAT would do with a packet, and why; nothing changes."""
        params = _parameters(req, "proto", "src", "dst", "id")
        for name in ("proto", "src", "dst"):
            if name not in params:
                raise ApiError(400, "bad_parameter", f"query parameter {name!r} is required (e.g. "
                               "?proto=udp&src=10.0.0.2:5000&dst=192.168.3.10:53)")
        proto = _proto(params["proto"])
        if proto is Proto.ICMP:
            ident = _count_text(params["id"], "id", 0, 65535) if "id" in params else 1
            src, dst = Endpoint(_address(params["src"]), ident), Endpoint(_address(params["dst"]), ident)
        else:
            if "id" in params:
                raise ApiError(400, "bad_parameter", "id is the ICMP query id: give ports in src and dst instead")
            src, dst = _endpoint_text(params["src"], "src"), _endpoint_text(params["dst"], "dst")
        return json_response(self.nat.explain(proto, src, dst))

    @route("nat_port", "/nat/ports/{proto}/{port}", methods=["GET"])
    @_api
    def port(self, req: Request, proto: str, port: str, **_: str) -> Response:
        params = _parameters(req, "remote")
        remote = _endpoint_text(params["remote"], "remote") if "remote" in params else None
        return json_response(self.nat.port_status(_proto(proto), _port_text(port, "port"), remote))

    # --- redirects ------------------------------------------------------------------------------

    @route("nat_redirects", "/nat/redirects", methods=["GET"])
    @_api
    def redirects(self, req: Request, **_: str) -> Response:
        _no_parameters(req)
        return json_response({"redirects": self.nat.redirects()})

    @route("nat_redirect_add", "/nat/redirects", methods=["POST"])
    @_api
    def add_redirect(self, req: Request, **_: str) -> Response:
        _no_parameters(req)
        rule = self._redirect_rule(_json_body(req))
        if self.nat.has_redirect(rule.proto, rule.public_port):
            raise ApiError(409, "duplicate_redirect",
                           f"{rule.proto.label} port {rule.public_port} is already redirected "
                           f"(delete /nat/redirects/{rule.proto.label}/{rule.public_port} first)")
        holder = self.nat.port_holder(rule.proto, rule.public_port)
        if holder is not None:
            raise ApiError(409, "port_in_use", f"{rule.proto.label} port {rule.public_port} is the public port of "
                                               f"{holder}'s mappings (flush {holder.ip} first)")
        try:
            added = self.nat.add_redirect(rule)
        except OSError as exc:
            raise _not_saved(exc) from None
        LOG.info("REST: redirect %s added", rule)
        return json_response(added, 201)

    @route("nat_redirect_remove", "/nat/redirects/{proto}/{port}", methods=["DELETE"])
    @_api
    def remove_redirect(self, req: Request, proto: str, port: str, **_: str) -> Response:
        _no_parameters(req)
        protocol, public_port = _proto(proto), _port_text(port, "public port")
        try:
            removed = self.nat.remove_redirect(protocol, public_port)
        except OSError as exc:
            raise _not_saved(exc) from None
        if removed is None:
            raise ApiError(404, "unknown_redirect", f"{protocol.label} port {public_port} is not redirected")
        LOG.info("REST: redirect %s removed", removed["rule"])
        return json_response(removed)

    # --- removing mappings -------------------------------------------------------------------------

    @route("nat_connections_remove", "/nat/connections/{ip}", methods=["DELETE"])
    @_api
    def remove_connections(self, req: Request, ip: str, **_: str) -> Response:
        _no_parameters(req)
        host = self._private_host(ip)
        self._need_switch()
        result = self.nat.remove_connections(host)
        LOG.info("REST: mappings of %s removed (%d)", host, result["removed"])
        return json_response(result)

    @route("nat_reset", "/nat/mappings", methods=["DELETE"])
    @_api
    def reset(self, req: Request, **_: str) -> Response:
        _no_parameters(req)
        self._need_switch()
        result = self.nat.reset()
        LOG.info("REST: every mapping removed (%d)", result["removed"])
        return json_response(result)

    # --- validation that needs the configuration ---------------------------------------------------

    def _private_host(self, text: str) -> IPv4Address:
        """A host address of the private network (not the NAT's own, the network's or the broadcast)."""
        ip = _address(text)
        private = self.nat.config.private
        if not Subnet.of(private).is_other_host(int(ip)):
            raise ApiError(400, "not_private", f"{ip} is not a host of the private network {private.network}")
        return ip

    def _redirect_rule(self, body: object) -> RedirectRule:
        fields = _object(body, REDIRECT_FIELDS, "the body")
        proto = _proto(fields["protocol"])
        if proto is Proto.ICMP:
            raise ApiError(400, "unknown_protocol", "only tcp and udp can be redirected")
        private = _object(fields["private"], ENDPOINT_FIELDS, "private")
        return RedirectRule(proto, _port(fields["public_port"], "public_port"),
                            Endpoint(self._private_host(private["ip"]), _port(private["port"], "private port")))

    def _need_switch(self) -> None:
        if not self.nat.switch_connected:
            raise ApiError(503, "no_switch", "no NAT switch is connected: its rules cannot be deleted now")


def _not_saved(exc: OSError) -> ApiError:
    return ApiError(503, "state_not_saved", f"the state file ([nat] state_file) cannot be written: "
                                            f"{exc.strerror or exc}; nothing changed")


def not_routed(req: Request, allowed: list[str]) -> Response:
    """Any other request: 405 if the path exists for other methods (``allowed``), else 404."""
    if allowed:
        allowed = [method for method in ("GET", "POST", "DELETE") if method in allowed]
        response = error_response(405, "method_not_allowed",
                                  f"{req.method} is not allowed on {req.path} (allowed: {', '.join(allowed)})")
        response.allow = allowed
        return response
    return error_response(404, "not_found", f"no such resource: {req.path} (see /nat/openapi.json)")


# --- validation of values ---------------------------------------------------------------------------


def _parameters(req: Request, *known: str) -> dict[str, str]:
    """The query parameters, each at most once; 400 for any other."""
    unknown = sorted(set(req.GET.keys()) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ApiError(400, "unknown_parameter",
                       f"unknown query parameter {_shown(unknown[0])} (allowed: {allowed})")
    params: dict[str, str] = {}
    for name in known:
        values = req.GET.getall(name)
        if len(values) > 1:
            raise ApiError(400, "bad_parameter", f"query parameter {name!r} given {len(values)} times")
        if values:
            params[name] = values[0]
    return params


def _no_parameters(req: Request) -> None:
    _parameters(req)


def _json_body(req: Request) -> object:
    """The body's JSON; 400 if it is not JSON, or nests deeper than MAX_JSON_DEPTH (which interpreters
    differ on parsing: 3.11 gives up at 1,000 levels, 3.13 at 20,000)."""
    too_deep = ApiError(400, "bad_json", f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(req.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise too_deep from None
    if _nests_deeper(value, MAX_JSON_DEPTH):
        raise too_deep
    return value


def _nests_deeper(value: object, levels: int) -> bool:
    """True if arrays and objects in ``value`` nest more than ``levels`` deep (no recursion; stops early)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (list, dict)):
            if depth > levels:
                return True
            pending += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return False


def _object(value: object, fields: set[str], what: str) -> dict[str, Any]:
    """A JSON object with exactly ``fields``."""
    if not isinstance(value, dict):
        raise ApiError(400, "bad_request", f"{what} must be a JSON object with {', '.join(sorted(fields))}")
    missing, unknown = sorted(fields - value.keys()), sorted(value.keys() - fields)
    if missing:
        raise ApiError(400, "bad_request", f"{what}: missing {', '.join(missing)}")
    if unknown:
        raise ApiError(400, "bad_request", f"{what}: unknown field {_shown(unknown[0])}")
    return value


def _proto(value: object) -> Proto:
    if not isinstance(value, str):
        raise ApiError(400, "unknown_protocol", f"protocol must be a string (tcp, udp or icmp), not {_shown(value)}")
    try:
        return Proto.from_label(value)
    except ValueError as exc:
        raise ApiError(400, "unknown_protocol", str(exc)) from None


def _port(value: object, what: str) -> int:
    """A port number given as a JSON integer."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, "bad_port", f"{what} {_shown(value)} is not a port number")
    if not 1 <= value <= 65535:
        raise ApiError(400, "bad_port", f"{what} {value} is out of range (1..65535)")
    return value


def _port_text(text: str, what: str) -> int:
    """A port number given as decimal digits, in a path or a query."""
    if not (text.isascii() and text.isdigit()):
        raise ApiError(400, "bad_port", f"{what} {_shown(text)} is not a port number")
    return _port(int(text), what)


def _count_text(text: str, what: str, low: int, high: int) -> int:
    """A whole number in ``low``..``high`` given as decimal digits in a query."""
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise ApiError(400, "bad_parameter", f"{what} {_shown(text)} is not a whole number")
    value = int(text)
    if not low <= value <= high:
        raise ApiError(400, "bad_parameter", f"{what} {value} is out of range ({low}..{high})")
    return value


def _address(value: object) -> IPv4Address:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return IPv4Address(value)
    except ValueError:
        raise ApiError(400, "bad_address", f"{_shown(value)} is not an IPv4 address") from None


def _endpoint_text(text: str, what: str) -> Endpoint:
    """``ip:port``, as in ``?remote=198.51.100.10:53``."""
    ip_text, colon, port_text = text.rpartition(":")
    if not colon:
        raise ApiError(400, "bad_address", f"{what} {_shown(text)} is not an address and port (ip:port)")
    return Endpoint(_address(ip_text), _port_text(port_text, f"{what} port"))


@functools.cache
def _package_file(name: str) -> bytes:
    return resources.files(__package__).joinpath(name).read_bytes()
