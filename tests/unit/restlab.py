"""The REST API's WSGI app over a Lab's gateway (no server), every answer checked against openapi.json."""

from __future__ import annotations

import json
from typing import Any

from webob import Request, Response

from ryu_nat.operator import rest
from ryu_nat.core.addresses import Proto
from ryu_nat.operator.facade import NatFacade
from ryu_nat.operator.flowstats import FlowCounters, RuleCounts
from ryu_nat.openflow.plan import Plan

from . import openapi_check
from .fakedp import FakeDatapath
from .lab import Lab

BYTES_PER_PACKET = 100  # the simulated switch counts packets only


class Api:
    """Requests to the API of one simulated NAT; plans it sends are applied to the Lab's switch.

    Answers for a documented route must fit openapi.json; any other answer must
    be a JSON error (404 or 405). ``seen`` collects (method, path template, status).
    """

    def __init__(self, lab: Lab | None = None, connected: bool = True) -> None:
        self.lab = lab or Lab()
        self.datapath: FakeDatapath | None = FakeDatapath() if connected else None
        self.counters = FlowCounters()
        self.plans: list[Plan] = []
        self.facade = NatFacade(self.lab.gateway, self.counters, lambda: self.datapath, self._send,
                                clock=lambda: self.lab.now)
        self.wsgi = rest.make_wsgi_app(self.facade)
        self.seen: set[tuple[str, str, int]] = set()

    def _send(self, datapath: FakeDatapath, plan: Plan) -> None:
        assert datapath is self.datapath
        self.plans.append(plan)
        self.lab.apply(plan)

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Response:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        req = Request.blank(path, method=method, body=data, content_type="application/json")
        response = req.get_response(self.wsgi)
        try:
            template, _ = openapi_check.operation(method, path.split("?", 1)[0])
        except KeyError:
            assert response.status_int in (404, 405), f"{method} {path}: {response.status}"
            errors = openapi_check.problems(json.loads(response.body), "components", "schemas", "Error")
            assert not errors, errors
        else:
            openapi_check.check_response(method, path, response.status_int, response.content_type or "",
                                         response.body)
            self.seen.add((method, template, response.status_int))
        return response

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body)."""
        response = self.request(method, path, body, raw)
        return response.status_int, json.loads(response.body)

    def get(self, path: str) -> Any:
        """The body of a GET that must succeed."""
        status, body = self.call("GET", path)
        assert status == 200, body
        return body

    def error(self, method: str, path: str, status: int, code: str, body: Any = None,
              raw: bytes | None = None) -> str:
        """Assert the request fails with ``status`` and ``code``; its message."""
        got, answer = self.call(method, path, body, raw)
        assert (got, answer["error"]["code"]) == (status, code), answer
        return str(answer["error"]["message"])

    def poll(self) -> None:
        """A flow-statistics poll of the simulated switch, as the app makes every few seconds."""
        switch = self.lab.switch
        self.counters.update([RuleCounts(e.rule.cookie, e.packets, e.packets * BYTES_PER_PACKET,
                                         switch.now - e.installed_at) for e in switch.entries()], self.lab.now)

    def state(self, *ports: int) -> tuple[Any, ...]:
        """What a request could change: mappings, redirects, whether ``ports`` are reserved, switch rules."""
        reserved = [(proto.label, port, self.lab.gateway.is_port_reserved(proto, port))
                    for proto in (Proto.TCP, Proto.UDP) for port in ports]
        return (self.get("/nat/mappings"), self.get("/nat/redirects"), reserved,
                sorted(map(str, self.lab.switch.rules())))
