"""The REST API's WSGI app over a Lab's gateway (no server), every answer checked against openapi.json."""

from __future__ import annotations

import json
from typing import Any

from webob import Request, Response

from ryu_nat.operator import guard, metrics, rest
from ryu_nat.core.addresses import Proto
from ryu_nat.operator.facade import NatFacade
from ryu_nat.operator.flowstats import FlowCounters, RuleCounts
from ryu_nat.operator.statefile import StateFile
from ryu_nat.operator.switchread import Purpose, SwitchReader
from ryu_nat.openflow.plan import Plan

from . import openapi_check
from .fakedp import FakeDatapath
from .lab import Lab
from .sweeps import sweep

BYTES_PER_PACKET = 100  # the simulated switch counts packets only


class Api:
    """Requests to the API of one simulated NAT; plans it sends are applied to the Lab's switch.

    Requests go through the request guard with ``policy`` (by default: no token,
    no CORS), as ``localhost`` unless ``headers`` say otherwise. Answers for a
    documented route must fit openapi.json; any other answer must be a JSON error
    (404 or 405). ``seen`` collects (method, path template, status).
    """

    def __init__(self, lab: Lab | None = None, connected: bool = True, policy: guard.Policy | None = None,
                 state: StateFile | None = None) -> None:
        self.lab = lab or Lab()
        self.datapath: FakeDatapath | None = FakeDatapath() if connected else None
        self.setup_latency = metrics.Histogram(metrics.SETUP_LATENCY_BUCKETS_S)
        self.poll_duration = metrics.Histogram(metrics.POLL_DURATION_BUCKETS_S)
        self.counters = FlowCounters(interval_s=0.0, slice_gap_s=0.0, on_sweep=self.poll_duration.observe)
        self.plans: list[Plan] = []
        self.reader = SwitchReader(self.lab.gateway)
        self.facade = NatFacade(self.lab.gateway, self.counters, lambda: self.datapath, self._send, self.reader,
                                lambda: self.lab.drive(self.reader, Purpose.AUDIT), state, clock=lambda: self.lab.now)
        self.registry = metrics.registry(metrics.NatCollector(self.facade.stats, self.setup_latency,
                                                              self.poll_duration))
        self.wsgi = rest.make_wsgi_app(self.facade, self.registry, policy or guard.Policy())
        self.seen: set[tuple[str, str, int]] = set()

    def _send(self, datapath: FakeDatapath, plan: Plan) -> None:
        assert datapath is self.datapath
        self.plans.append(plan)
        self.lab.apply(plan)

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
                headers: dict[str, str] | None = None, content_type: str | None = "application/json") -> Response:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        req = Request.blank(path, method=method, body=data, headers=headers or {})
        if content_type is None:
            del req.content_type
        else:
            req.content_type = content_type
        response = req.get_response(self.wsgi)
        if method == "OPTIONS":
            return response  # a CORS preflight, answered by the request guard (see guard.py)
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

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, content_type: str | None = "application/json") -> tuple[int, Any]:
        """(status, decoded JSON body)."""
        response = self.request(method, path, body, raw, headers, content_type)
        return response.status_int, json.loads(response.body)

    def get(self, path: str) -> Any:
        """The body of a GET that must succeed."""
        status, body = self.call("GET", path)
        assert status == 200, body
        return body

    def error(self, method: str, path: str, status: int, code: str, body: Any = None, raw: bytes | None = None,
              headers: dict[str, str] | None = None, content_type: str | None = "application/json") -> str:
        """Assert the request fails with ``status`` and ``code``; its message."""
        got, answer = self.call(method, path, body, raw, headers, content_type)
        assert (got, answer["error"]["code"]) == (status, code), answer
        return str(answer["error"]["message"])

    def poll(self) -> None:
        """A whole flow-statistics sweep of the simulated switch, as the app makes every few seconds."""
        switch = self.lab.switch
        sweep(self.counters, [RuleCounts(e.rule.cookie, e.packets, e.packets * BYTES_PER_PACKET,
                                         switch.now - e.installed_at) for e in switch.entries()], self.lab.now)

    def state(self, *ports: int) -> tuple[Any, ...]:
        """What a request could change: mappings, redirects, whether ``ports`` are reserved, switch rules."""
        reserved = [(proto.label, port, self.lab.gateway.is_port_reserved(proto, port))
                    for proto in (Proto.TCP, Proto.UDP) for port in ports]
        return (self.all_mappings(), self.get("/nat/redirects"), reserved, sorted(map(str, self.lab.switch.rules())))

    def all_mappings(self, query: str = "") -> list[Any]:
        """Every mapping, page after page (``query``: more parameters, e.g. ``proto=udp&limit=2``)."""
        found, after = [], 0
        while True:
            page = self.get(f"/nat/mappings?after={after}" + (f"&{query}" if query else ""))
            found += page["mappings"]
            if page["next_after"] is None:
                return found
            after = page["next_after"]
