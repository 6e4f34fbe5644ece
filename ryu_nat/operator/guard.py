"""The request guard: WSGI middleware in front of the operator API, for an API safe to leave on.

Every request passes these checks, in this order, before any route sees it;
each refusal is a JSON error (``{"error": {"code", "message"}}``), changes
nothing, and is logged as one line:

1. **Host** (DNS rebinding): the ``Host`` header must name this API: the address
   it listens on, ``localhost`` (or a loopback address), or a name of
   ``[nat] api_hosts``. Otherwise 403 ``host_not_allowed``.
2. **Origin** (pages in the operator's browser): a request that carries an
   ``Origin`` must come from the API's own origin or one of
   ``[nat] api_cors_origins``. Otherwise 403 ``foreign_origin``. CORS headers are
   sent only to the configured origins (and only when some are configured).
3. **Token**: with ``[nat] api_token_file``, every request needs
   ``Authorization: Bearer <token>`` (or HTTP Basic with the token as password,
   which is how a browser sends it after asking once). Otherwise 401 ``unauthorized``.
4. **Content type**: requests that change state (POST, PUT, PATCH, DELETE) must say
   ``Content-Type: application/json``: the types a page on another site may send
   without a preflight (``text/plain``, forms) get 415 ``unsupported_media_type``.

It knows nothing of the routes behind it: wrap any WSGI app. The size of a
request, its body's included, and the time it may take to arrive are the
server's to bound (:mod:`ryu_nat.operator.server`), before this runs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from webob import Request, Response

from ryu_nat.operator.server import WsgiApp

LOG = logging.getLogger(__name__)

CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
CORS_METHODS = "GET, POST, DELETE"
CORS_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE_S = 600
_REALM = 'Basic realm="ryu_nat", charset="UTF-8"'


@dataclass(frozen=True, slots=True)
class Policy:
    """What the guard lets through.

    ``hosts``: names and addresses a ``Host`` header may carry (lower case, no port)
    besides ``localhost`` and loopback addresses; ``token``: the bearer token, or
    None for no authentication; ``cors_origins``: other origins (``http://host:port``)
    allowed to call the API from a browser.
    """

    hosts: frozenset[str] = field(default_factory=frozenset)
    token: str | None = None
    cors_origins: frozenset[str] = field(default_factory=frozenset)


class Refused(Exception):
    """A request the guard turns away: becomes ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Guard:
    """WSGI middleware: refuses what :class:`Policy` does not allow, passes the rest to ``app``."""

    def __init__(self, app: WsgiApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        req = Request(environ)
        try:
            origin = self._check_host_and_origin(req)
            if origin is not None and req.method == "OPTIONS":
                return _answer(self._preflight(origin), environ, start_response)
            self._check_token(req)
            self._check_content_type(req)
        except Refused as refusal:
            LOG.info("REST %s %s: %d %s: %s", _cut(req.method, 20), _cut(req.path_qs, 200), refusal.status,
                     refusal.code, refusal.message)
            response = _error(refusal.status, refusal.code, refusal.message)
            if refusal.status == 401:
                response.headers.add("WWW-Authenticate", _REALM)
                response.headers.add("WWW-Authenticate", 'Bearer realm="ryu_nat"')
            return _answer(response, environ, start_response)
        if origin is None:
            return self.app(environ, start_response)
        response = req.get_response(self.app)
        response.headers.update(_cors(origin))
        return _answer(response, environ, start_response)

    # --- the checks ---------------------------------------------------------------------------

    def _check_host_and_origin(self, req: Request) -> str | None:
        """Refused unless Host names this API and any Origin is its own or a configured one;
        the Origin to answer with CORS headers, if it is a configured one."""
        host_header = req.environ.get("HTTP_HOST", "")
        name = _host_name(host_header)
        if name is None or not self._is_our_name(name):
            raise Refused(403, "host_not_allowed",
                          f"Host {_shown(host_header)} is not a name of this API: use localhost, the address it "
                          "listens on, or a name listed in [nat] api_hosts")
        origin: str | None = req.environ.get("HTTP_ORIGIN")
        if origin is None or origin.lower() in (f"http://{host_header.lower()}", f"https://{host_header.lower()}"):
            return None
        if origin.lower() in self.policy.cors_origins:
            return origin
        raise Refused(403, "foreign_origin", f"requests from pages of {_shown(origin)} are not allowed "
                                             "(see [nat] api_cors_origins)")

    def _is_our_name(self, name: str) -> bool:
        if name in LOOPBACK_NAMES or name in self.policy.hosts:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def _check_token(self, req: Request) -> None:
        token = self.policy.token
        if token is None:
            return
        given = _credential(req.environ.get("HTTP_AUTHORIZATION", ""))
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise Refused(401, "unauthorized", "this API needs its token: Authorization: Bearer <token> "
                                               "(the file named by [nat] api_token_file)")

    def _check_content_type(self, req: Request) -> None:
        if req.method in CHANGING_METHODS and req.content_type.lower() != "application/json":
            raise Refused(415, "unsupported_media_type",
                          f"{req.method} takes Content-Type: application/json, not {_shown(req.content_type)}")

    def _preflight(self, origin: str) -> Response:
        """A configured origin's browser asks whether it may send a request: yes, with these."""
        response = Response(status=204)
        response.headers.update(_cors(origin))
        response.headers.update({"Access-Control-Allow-Methods": CORS_METHODS,
                                 "Access-Control-Allow-Headers": CORS_HEADERS,
                                 "Access-Control-Max-Age": str(CORS_MAX_AGE_S)})
        return response


def _answer(response: Response, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body: Iterable[bytes] = response(environ, start_response)
    return body


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _host_name(header: str) -> str | None:
    """The name in a Host header, lower case, without port or final dot; None if it is not one."""
    text = header.strip().lower()
    if text.startswith("["):  # an IPv6 address: [::1]:8080
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
    else:
        name, colon, port = text.partition(":")
        if colon and not port.isdigit():
            return None
    return name.rstrip(".") or None


def _credential(header: str) -> str | None:
    """The token in ``Bearer <token>``, or the password in ``Basic base64(user:password)``."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon else None
    return None


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most] + "..."


def _shown(text: str) -> str:
    """Untrusted text in a message: quoted, and cut at 80 characters."""
    return repr(_cut(text, 80))


def _error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": {"code": code, "message": message}}, indent=1) + "\n"
    return Response(status=status, content_type="application/json", body=body.encode())


def allowed_hosts(listen_host: str, configured: Iterable[str]) -> frozenset[str]:
    """The names a Host header may carry: the listening address (unless it is every address) and ``configured``."""
    names = {name.strip().lower().rstrip(".") for name in configured if name.strip()}
    try:
        if not ipaddress.ip_address(listen_host).is_unspecified:
            names.add(str(ipaddress.ip_address(listen_host)))
    except ValueError:
        names.add(listen_host.lower())
    return frozenset(names)
