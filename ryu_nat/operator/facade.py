"""The one object the REST layer talks to: the gateway, the switch connection, the flow counters, the reads
of the switch's rules (restore and audits), the redirects file.

Each method that changes something calls one gateway method and sends the plan
it returns with the app's own send; none validates its arguments
(:mod:`ryu_nat.operator.rest` does that first), and every method returns plain data,
ready for JSON, but :meth:`NatFacade.mappings_page`, whose page of mappings
:mod:`ryu_nat.operator.views` writes out. Methods run in a WSGI green thread: gateway methods never
yield, so a call cannot interleave with a switch event, and its plan goes to the
switch as one write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from ryu_nat.config import NatConfig, RedirectRule
from ryu_nat.core.addresses import Channel, Endpoint, Proto
from ryu_nat.core.table import Mapping, MappingKind, RemovalReason
from ryu_nat.gateway import Gateway
from ryu_nat.gateway.explain import Explanation, question
from ryu_nat.openflow.plan import Action, DecTtl, FlowRule, Output, Plan, SetField
from ryu_nat.operator.flowstats import FlowCounters
from ryu_nat.operator.statefile import StateFile
from ryu_nat.operator.switchread import SwitchReader
from ryu_nat.operator.views import MappingPage

Datapath = Any  # ryu.controller.controller.Datapath, or a test fake
Json = dict[str, Any]


class NatFacade:
    """What the operator may see and do, over one gateway and the switch it drives."""

    def __init__(self, gateway: Gateway, counters: FlowCounters, datapath: Callable[[], Datapath | None],
                 send: Callable[[Datapath, Plan], None], reader: SwitchReader, start_audit: Callable[[], bool],
                 state: StateFile | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        """``start_audit`` starts one (False: no switch, or a read runs); ``state`` keeps API-added redirects."""
        self._gateway = gateway
        self._counters = counters
        self._datapath = datapath
        self._send = send
        self._reader = reader
        self._start_audit = start_audit
        self._state = state
        self._saved: dict[tuple[Proto, int], RedirectRule] = {}  # redirects added through the API, kept in state
        self._clock = clock

    # --- what rest.py checks requests against ---------------------------------------------------

    @property
    def config(self) -> NatConfig:
        return self._gateway.config

    @property
    def switch_connected(self) -> bool:
        return self._datapath() is not None

    def has_redirect(self, proto: Proto, public_port: int) -> bool:
        return self._gateway.redirect(proto, public_port) is not None

    def port_holder(self, proto: Proto, public_port: int) -> Endpoint | None:
        """The private endpoint that source NAT gave ``public_port`` to, if any."""
        return self._gateway.port_holder(proto, public_port)

    # --- reading -------------------------------------------------------------------------------

    def mappings_page(self, after: int, limit: int, proto: Proto | None = None,
                      host: IPv4Address | None = None) -> MappingPage:
        """Up to ``limit`` live mappings with ids above ``after``, oldest first, optionally of one protocol
        and/or one private host; reading them keeps the flow-statistics sweeps going."""
        now = self._clock()
        self._counters.want(now)
        page = self._gateway.mappings_page(after, limit, proto, host)
        return MappingPage(page.mappings, page.next_after, self._gateway.mappings_matching(proto, host), now,
                           self._counters.traffic)

    def next_counted_mapping(self, after: int) -> int | None:
        """The lowest id above ``after`` of a live mapping whose rules the switch counts (TCP, UDP)."""
        pages = (self._gateway.mappings_page(after, 1, proto) for proto in (Proto.TCP, Proto.UDP))
        return min((page.mappings[0].id for page in pages if page.mappings), default=None)

    def stats(self) -> Json:
        """Every counter, table and port use against their sizes, and the switch's state."""
        counters = self._gateway.stats.as_dict()
        created, removed = counters.pop("mappings_created"), counters.pop("mappings_removed")
        assert isinstance(created, dict) and isinstance(removed, dict)
        gateway = self._gateway
        last_poll = self._counters.last_poll
        return {
            "switch": self._switch(),
            "mappings": {
                "live": sum(gateway.mapping_count(proto) for proto in Proto),
                "created": sum(created.values()),
                "created_by_kind": {kind.value: created.get(kind.value, 0) for kind in MappingKind},
                "expired": removed.get(RemovalReason.EXPIRED.value, 0),
                "evicted": removed.get(RemovalReason.EVICTED.value, 0),
                "removed": sum(removed.values()),
                "removed_by_reason": {reason.value: removed.get(reason.value, 0) for reason in RemovalReason},
            },
            **counters,
            "table": {proto.label: {"used": gateway.mapping_count(proto), "size": gateway.table_size(proto)}
                      for proto in Proto},
            "ports": {proto.label: {"used": gateway.ports_in_use(proto), "size": len(self.config.port_range)}
                      for proto in Proto},
            "flow_stats": {"polls": self._counters.polls, "interval_s": self._counters.interval_s,
                           "age_s": None if last_poll is None else _seconds(self._clock() - last_poll),
                           "slices": self._counters.slices, "abandoned": self._counters.abandoned},
        }

    def redirects(self) -> list[Json]:
        return [_redirect(rule) for rule in self._gateway.redirects()]

    def port_status(self, proto: Proto, public_port: int, remote: Endpoint | None) -> Json:
        """Whether ``public_port`` is free for a new mapping (with ``remote``, or with any remote)."""
        # No mapping has the unspecified address as its remote: asking for it asks about the port alone.
        src = remote or Endpoint(IPv4Address(0), 0)
        free = self._gateway.is_port_free(proto, src, public_port)
        holder = self.port_holder(proto, public_port)
        return {"protocol": proto.label, "port": public_port, "remote": None if remote is None else _endpoint(remote),
                "free": free, "held_by": None if holder is None else _endpoint(holder),
                "redirected": self.has_redirect(proto, public_port)}

    def effective_config(self) -> Json:
        return self.config.as_dict()

    def consistency(self) -> Json:
        """The read of the switch's rules that runs, the last restore and the last audit, and the counters."""
        stats = self._gateway.stats
        return {**self._reader.report(self._clock()), "restoring": self._gateway.review.restoring,
                "restore": dict(sorted(stats.restore.items())), "audit": dict(sorted(stats.audit.items()))}

    def start_audit(self) -> Json | None:
        """Start an audit now; the report, or None if no switch is connected. A read already running is the
        one reported (a restore goes first)."""
        if not self.switch_connected:
            return None
        self._start_audit()
        return self.consistency()

    def explain(self, proto: Proto, src: Endpoint, dst: Endpoint) -> Json:
        """What the NAT would do with that packet, and why (ICMP: an echo request, ``src.port`` its id);
        nothing changes."""
        now = self._clock()
        d = question(proto, int(src.ip), int(dst.ip), src.port, dst.port)
        answer = self._gateway.review.explain(d, now)
        return _explanation(answer, proto, src, dst, now)

    def note_handler_error(self) -> None:
        """A REST handler failed (a bug): counted with the event handlers' failures."""
        self._gateway.stats.handler_errors += 1

    # --- changing ------------------------------------------------------------------------------

    def restore_redirects(self, rules: list[RedirectRule]) -> None:
        """At start: the redirects the state file kept (added through the API before a restart)."""
        for rule in rules:
            self._gateway.add_redirect(rule)
            self._saved[(rule.proto, rule.public_port)] = rule

    def add_redirect(self, rule: RedirectRule) -> Json:
        """Forward a port; with a state file, only once the file says so (OSError if it cannot be written:
        nothing changed)."""
        self._save({**self._saved, (rule.proto, rule.public_port): rule})
        self._send_plan(self._gateway.add_redirect(rule))
        return _redirect(rule)

    def remove_redirect(self, proto: Proto, public_port: int) -> Json | None:
        """Stop forwarding a port (one of [nat] redirects until the next start); OSError as for adding."""
        if (proto, public_port) in self._saved:
            self._save({key: rule for key, rule in self._saved.items() if key != (proto, public_port)})
        rule = self._gateway.remove_redirect(proto, public_port)
        return None if rule is None else _redirect(rule)

    def remove_connections(self, host: IPv4Address) -> Json:
        """Every mapping of a private host, and their rules; which public ports that freed."""
        removed = sum(1 for _ in self._gateway.mappings(host=host))
        freed, plan = self._gateway.remove_connections(host)
        self._send_plan(plan)
        return {"host": str(host), "removed": removed,
                "freed_ports": {proto.label: sorted(freed.for_proto(proto)) for proto in Proto}}

    def reset(self) -> Json:
        removed = sum(self._gateway.mapping_count(proto) for proto in Proto)
        self._send_plan(self._gateway.reset())
        return {"removed": removed}

    # --- helpers ---------------------------------------------------------------------------------

    def _save(self, saved: dict[tuple[Proto, int], RedirectRule]) -> None:
        if self._state is not None:
            self._state.save(rule for _, rule in sorted(saved.items()))
        self._saved = saved

    def _send_plan(self, plan: Plan) -> None:
        datapath = self._datapath()
        if datapath is not None:
            self._send(datapath, plan)

    def _switch(self) -> Json:
        datapath = self._datapath()
        return {"connected": datapath is not None,
                "dpid": None if datapath is None else f"{datapath.id:016x}"}


def _endpoint(endpoint: Endpoint) -> Json:
    return {"ip": str(endpoint.ip), "port": endpoint.port}


def _redirect(rule: RedirectRule) -> Json:
    return {"protocol": rule.proto.label, "public_port": rule.public_port, "private": _endpoint(rule.private),
            "rule": str(rule)}


def _seconds(value: float) -> float:
    return round(max(value, 0.0), 1)


def _explanation(answer: Explanation, proto: Proto, src: Endpoint, dst: Endpoint, now: float) -> Json:
    """The answer of ``GET /nat/explain``."""
    reason = answer.reason
    ended = None
    if answer.ended is not None:
        mapping, why, at = answer.ended
        ended = {"mapping": _mapping(mapping), "reason": why.value, "ago_s": _seconds(now - at)}
    return {
        "packet": {"protocol": proto.label, "src": _endpoint(src), "dst": _endpoint(dst),
                   "from": "private" if answer.from_private else "public"},
        "outcome": answer.outcome.value,
        "reason": None if reason is None else {"code": reason.value, "description": reason.description},
        "mapping": None if answer.mapping is None else _mapping(answer.mapping),
        "leaves_as": None if answer.leaves_as is None else _channel(answer.leaves_as),
        "rule_state": answer.rule_state,
        "rules": [_rule(rule) for rule in answer.rules],
        "redirect": None if answer.redirect is None else _redirect(answer.redirect),
        "drop_rule": answer.drop_rule,
        "ended": ended,
        "fragments_waiting": answer.fragments_waiting,
    }


def _mapping(mapping: Mapping) -> Json:
    """A mapping as explain shows it (id 0: one that would be made)."""
    return {"id": mapping.id, "protocol": mapping.proto.label, "kind": mapping.kind.value,
            "private": _endpoint(mapping.private_endpoint), "public": _endpoint(mapping.public_endpoint),
            "remote": _endpoint(mapping.remote_endpoint), "closing": mapping.closing}


def _channel(channel: Channel) -> Json:
    return {"src": _endpoint(Endpoint(channel.src, channel.src_port)),
            "dst": _endpoint(Endpoint(channel.dst, channel.dst_port))}


def _rule(rule: FlowRule) -> Json:
    """A rule in the words of ``ovs-ofctl dump-flows``, as far as they go."""
    return {"cookie": f"{rule.cookie:#x}", "priority": rule.priority, "idle_timeout": rule.idle_timeout_s,
            "match": {name: value if isinstance(value, (int, str)) else list(value) for name, value in rule.match.fields},
            "actions": [_action(action) for action in rule.actions]}


def _action(action: Action) -> str:
    if isinstance(action, SetField):
        return f"set_field:{action.value}->{action.field}"
    if isinstance(action, DecTtl):
        return "dec_ttl"
    assert isinstance(action, Output)
    return f"output:{action.port}"
