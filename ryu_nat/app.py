"""The Ryu application: OpenFlow events in, gateway calls, plans out to the switch.

Load it with ``ryu-manager --config-file nat.conf ryu_nat.app`` (or ``ryu-nat``).
Each handler is a few lines: it turns an event into one gateway call and sends
the plan that comes back. State changes only on this app's event thread (the
timer merely posts an event), and in the REST API's handlers: gateway methods
never yield, so a request cannot interleave with an event.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from ryu import cfg
from ryu.app.wsgi import WSGIApplication
from ryu.base import app_manager
from ryu.controller import event, ofp_event
from ryu.controller.controller import Datapath
from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3

from ryu_nat.openflow import encoder
from ryu_nat.operator import rest
from ryu_nat.config import DEFAULTS, OPTIONS, ConfigError, NatConfig, check_files, parse_config, rfc_warnings
from ryu_nat.entropy import BlockSystemRandom
from ryu_nat.operator.facade import NatFacade
from ryu_nat.operator.flowstats import FlowCounters, RuleCounts
from ryu_nat.gateway import Gateway, PacketInReason
from ryu_nat.openflow import cookies
from ryu_nat.openflow.plan import Plan
from ryu_nat.stats import Stats

LOG = logging.getLogger(__name__)
CONF = cfg.CONF
CONF.register_opts([cfg.StrOpt(name, default=DEFAULTS.get(name), help=text) for name, text in OPTIONS.items()],
                   group="nat")
# The REST API may reset the NAT: listen on loopback unless --wsapi-host (or a config file) says otherwise.
# ryu-manager parses its options before it imports apps, and the server reads the value after.
CONF.set_default("wsapi_host", "127.0.0.1")

TICK_S = 1.0


class EventTick(event.EventBase):
    """Time for periodic work (expiry, ARP retries)."""


def load_config() -> NatConfig:
    """The ``[nat]`` group of Ryu's CONF, validated; ConfigError on a wrong value.

    The files CONF was read from are checked too, for what oslo.config lets
    pass: an unknown option (a typo would leave its default in force) or one set twice.
    """
    check_files(getattr(CONF, "config_file", None) or [], CONF.config_dirs)  # unset until CONF() parsed a command line
    group = CONF.nat
    return parse_config({name: getattr(group, name) for name in OPTIONS})


class NatApp(app_manager.RyuApp):  # type: ignore[misc]
    """Makes one OpenFlow 1.3 switch a NAT gateway between a private and a public network."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.config = load_config()
        except ConfigError as exc:
            LOG.error("ryu_nat: %s", exc)  # to stderr, or wherever --log-file sends it: one line either way
            raise SystemExit(1) from None
        for warning in rfc_warnings(self.config):
            LOG.warning("ryu_nat: %s", warning)
        self.stats = Stats()
        self.gateway = Gateway(self.config, BlockSystemRandom(), self.stats)
        self.datapath: Datapath | None = None
        self.encoder = encoder.Encoder()
        self.sent = encoder.SentLog()
        self.reraise = False
        self.flow_counters = FlowCounters()
        wsgi = kwargs.get("wsgi")
        if isinstance(wsgi, WSGIApplication):
            rest.register(wsgi, NatFacade(self.gateway, self.flow_counters, lambda: self.datapath, self._send))
        LOG.info("ryu_nat: public %s (gateway %s, uplink port %d), private %s, redirects: %s",
                 self.config.public, self.config.public_gateway, self.config.public_port, self.config.private,
                 ", ".join(str(r) for r in self.config.redirects) or "none")
        self.threads.append(hub.spawn(self._ticker))

    # --- events ------------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: ofp_event.EventOFPStateChange) -> None:
        dp = ev.datapath
        if ev.state == DEAD_DISPATCHER:
            if self.datapath is not None and dp is self.datapath:
                LOG.info("dpid=%016x: NAT switch disconnected", dp.id)
                self.datapath = None
            return
        if not self._claim(dp):
            return
        self.flow_counters.cancel_poll()  # a poll of an earlier connection: its xid means nothing now
        with self._guard("switch_connected", dp):
            LOG.info("dpid=%016x: NAT switch connected, ports %s", dp.id, sorted(dp.ports))
            self._send(dp, self.gateway.switch_connected(list(dp.ports), time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: ofp_event.EventOFPPacketIn) -> None:
        msg = ev.msg
        if msg.datapath is not self.datapath:
            self.stats.packet_ins["not_ours"] += 1
            return
        with self._guard("packet_in", msg.datapath):
            plan = self.gateway.packet_in(msg.match["in_port"], bytes(msg.data), time.monotonic(),
                                          PacketInReason(msg.reason) if msg.reason in (0, 1, 2) else
                                          PacketInReason.NO_MATCH)
            self._send(msg.datapath, plan)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev: ofp_event.EventOFPFlowRemoved) -> None:
        msg = ev.msg
        if msg.datapath is self.datapath:
            with self._guard("flow_removed", msg.datapath):
                self._send(msg.datapath, self.gateway.flow_removed(msg.cookie, msg.reason, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: ofp_event.EventOFPPortStatus) -> None:
        msg = ev.msg
        if msg.datapath is self.datapath:
            present = msg.reason != msg.datapath.ofproto.OFPPR_DELETE
            with self._guard("port_status", msg.datapath):
                self._send(msg.datapath, self.gateway.port_changed(msg.desc.port_no, present))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def _error(self, ev: ofp_event.EventOFPErrorMsg) -> None:
        msg = ev.msg
        self.stats.openflow_errors += 1
        LOG.error("dpid=%016x: OpenFlow error type=%d code=%d for xid=%d: %s", msg.datapath.id, msg.type,
                  msg.code, msg.xid, self.sent.describe(msg.xid))

    @set_ev_cls(EventTick)
    def _tick(self, ev: EventTick) -> None:
        dp = self.datapath
        if dp is not None:
            with self._guard("expire", dp):
                self._send(dp, self.gateway.expire(time.monotonic()))
                self._poll_flow_stats(dp)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats_reply(self, ev: ofp_event.EventOFPFlowStatsReply) -> None:
        msg = ev.msg
        if msg.datapath is self.datapath:
            with self._guard("flow_stats_reply", msg.datapath):
                rules = [RuleCounts(s.cookie, s.packet_count, s.byte_count, s.duration_sec + s.duration_nsec / 1e9)
                         for s in msg.body]
                more = bool(msg.flags & ofproto_v1_3.OFPMPF_REPLY_MORE)
                self.flow_counters.reply(msg.xid, rules, more, time.monotonic())

    # --- plumbing ------------------------------------------------------------------------------------

    def _claim(self, dp: Datapath) -> bool:
        """The NAT is the configured datapath, or else the first one to connect."""
        wanted = self.config.dpid
        if wanted is not None and dp.id != wanted:
            LOG.info("dpid=%016x: not the NAT switch (dpid = %016x); leaving it alone", dp.id, wanted)
            return False
        if wanted is None and self.datapath is not None and self.datapath.id != dp.id:
            LOG.warning("dpid=%016x: a second switch; the NAT is dpid=%016x (set [nat] dpid to choose)",
                        dp.id, self.datapath.id)
            return False
        self.datapath = dp
        return True

    def _send(self, dp: Datapath, plan: Plan) -> None:
        if plan:
            data, sent = self.encoder.encode(dp, plan)
            dp.send(data)
            self.sent.record(sent)

    def _poll_flow_stats(self, dp: Datapath) -> None:
        """Ask for our rules' counters every few seconds (see :mod:`ryu_nat.operator.flowstats`)."""
        now = time.monotonic()
        if self.flow_counters.poll_due(now):
            request = encoder.flow_stats_request(dp, cookies.OURS, cookies.OURS_MASK)
            dp.send_msg(request)
            self.flow_counters.poll_sent(request.xid, now)

    def _ticker(self) -> None:
        while True:
            hub.sleep(TICK_S)
            # Straight onto our own queue: send_event would log every tick at --verbose, one line a second.
            self._send_event(EventTick(), None)

    @contextlib.contextmanager
    def _guard(self, event_name: str, dp: Datapath) -> Iterator[None]:
        try:
            yield
        except Exception:  # last line of defence: a bug in one event must not stop the controller
            self.stats.handler_errors += 1
            LOG.exception("dpid=%016x: %s handler failed", dp.id, event_name)
            if self.reraise:
                raise
