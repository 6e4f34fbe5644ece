"""The controller application: OpenFlow events in, gateway calls, plans out to the switch.

Load it with ``ryu-manager --config-file nat.conf ryu_nat.app`` or ``ryu-nat``
(Ryu 4.34), or with ``ryu-nat`` alone (os-ken, see :mod:`ryu_nat.backend`).
Each handler is a few lines: it turns an event into one gateway call and sends
the plan that comes back. State changes only on this app's event thread: the
ticker merely posts an event, and the REST server hands each request to this
thread and waits for the answer, so nothing interleaves with a switch event
even where os-ken runs everything on truly parallel threads.

One SIGINT or SIGTERM stops the controller, under either launcher: the apps are
stopped in order and the process exits (``ryu-manager`` alone would not stop
on a Ctrl-C, and os-ken's threads cannot be killed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ryu_nat.backend import (DEAD_DISPATCHER, MAIN_DISPATCHER, BaseApp, Datapath, app_manager, cfg, event, hub,
                             ofp_event, ofproto_v1_3, set_ev_cls)
from ryu_nat.config import (DEFAULTS, OPTIONS, ConfigError, NatConfig, check_api_exposure, parse_config,
                            rfc_warnings)
from ryu_nat.configfiles import check_files, read_token
from ryu_nat.gateway import FlowRemovedReason, Gateway, PacketInReason
from ryu_nat.gateway.stats import Stats
from ryu_nat.openflow import encoder, sentlog
from ryu_nat.openflow.plan import Plan
from ryu_nat.openflow.reasons import refused_cookie
from ryu_nat.operator import guard, metrics, rest
from ryu_nat.operator.facade import NatFacade
from ryu_nat.operator.flowstats import FlowCounters
from ryu_nat.operator.server import EventThreadCall, RestServer
from ryu_nat.operator.statefile import StateFile, check_state_file
from ryu_nat.operator.stats_tap import FlowStatsTap
from ryu_nat.operator.statsrequests import StatsRequests
from ryu_nat.operator.switchread import Purpose, SwitchReader
from ryu_nat.ratelimit import LogLimiter, limit_framework_warnings

LOG = logging.getLogger(__name__)
CONF = cfg.CONF
CONF.register_opts([cfg.StrOpt(name, default=DEFAULTS.get(name), help=text) for name, text in OPTIONS.items()],
                   group="nat")
# ryu-manager has these options from ryu.app.wsgi; ryu-nat imports this module before it parses the command line.
if "wsapi_host" not in CONF:
    CONF.register_cli_opts([cfg.StrOpt("wsapi-host", help="REST API listen address (default 127.0.0.1)"),
                            cfg.IntOpt("wsapi-port", default=8080, help="REST API listen port (default 8080)")])
# The REST API may reset the NAT: listen on loopback unless --wsapi-host (or a config file) says otherwise.
# ryu-manager parses its options before it imports apps, and the server reads the value after.
CONF.set_default("wsapi_host", "127.0.0.1")

TICK_S = 1.0
REST_WAIT_S = 10.0  # a REST request the event thread has not taken by then is answered 503
STOP_POLL_S = 0.1  # how often the stopper looks for a stop signal


class EventTick(event.EventBase):  # type: ignore[misc]
    """Time for periodic work (expiry, ARP retries)."""


class EventStatsDue(event.EventBase):  # type: ignore[misc]
    """Time to ask for the next slice of flow statistics, if one is due (see operator/flowstats.py)."""


class EventFlowStatsPart(event.EventBase):  # type: ignore[misc]
    """A part of the reply to our flow- or aggregate-statistics request, as bytes (see operator/stats_tap.py)."""

    def __init__(self, datapath: Datapath, data: bytes) -> None:
        super().__init__()
        self.datapath = datapath
        self.data = data


class EventRestCall(event.EventBase):  # type: ignore[misc]
    """A REST request, read whole by the server, to be answered on the event thread."""

    def __init__(self, call: EventThreadCall) -> None:
        super().__init__()
        self.call = call


def load_config() -> NatConfig:
    """The ``[nat]`` group of Ryu's CONF, validated; ConfigError on a wrong value.

    The files CONF was read from are checked too, for what oslo.config lets
    pass: an unknown option (a typo would leave its default in force) or one set twice.
    """
    check_files(getattr(CONF, "config_file", None) or [], CONF.config_dirs)  # unset until CONF() parsed a command line
    group = CONF.nat
    return parse_config({name: getattr(group, name) for name in OPTIONS})


def api_policy(config: NatConfig, listen_host: str) -> guard.Policy:
    """Who may use the REST API; ConfigError if it would listen beyond loopback unprotected, or if the
    token file is wrong."""
    check_api_exposure(listen_host, config.api)
    token = read_token(config.api.token_file) if config.api.token_file else None
    return guard.Policy(hosts=guard.allowed_hosts(listen_host, config.api.hosts), token=token,
                        cors_origins=frozenset(config.api.cors_origins))


class NatApp(BaseApp):  # type: ignore[misc]
    """Makes one OpenFlow 1.3 switch a NAT gateway between a private and a public network."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        try:
            self.config = load_config()
            policy = api_policy(self.config, CONF.wsapi_host)
            if self.config.state_file:
                check_state_file(self.config.state_file)
        except ConfigError as exc:
            LOG.error("ryu_nat: %s", exc)  # to stderr, or wherever --log-file sends it: one line either way
            raise SystemExit(1) from None
        for warning in rfc_warnings(self.config):
            LOG.warning("ryu_nat: %s", warning)
        self.stats = Stats()
        # One limiter for every line traffic can cause: ours, and the framework's own (Ryu's or os-ken's).
        self.limiter = LogLimiter()
        limit_framework_warnings(self.limiter)
        # RFC 6056: public ports an off-path attacker cannot predict, so from the kernel, not a seeded PRNG.
        self.gateway = Gateway(self.config, random.SystemRandom(), self.stats, self.limiter)
        self.datapath: Datapath | None = None
        self.encoder = encoder.Encoder()
        self.sent = sentlog.SentLog()
        self.reraise = False
        self.setup_latency = metrics.Histogram(metrics.SETUP_LATENCY_BUCKETS_S)
        self.poll_duration = metrics.Histogram(metrics.POLL_DURATION_BUCKETS_S)
        self.flow_counters = FlowCounters(on_sweep=self.poll_duration.observe)
        self.stats_tap = FlowStatsTap(self._stats_part_arrived)
        self.reader = SwitchReader(self.gateway, self.config.audit_interval_s)
        state = StateFile(self.config.state_file) if self.config.state_file else None
        self.facade = NatFacade(self.gateway, self.flow_counters, lambda: self.datapath, self._send, self.reader,
                                self._start_audit, state)
        self.requests = StatsRequests(self.flow_counters, self.reader, self.stats_tap,
                                      self.facade.next_counted_mapping, self._send, self.limiter)
        if state is not None:
            self._restore_redirects(state)
        registry = metrics.registry(metrics.NatCollector(self.facade.stats, self.setup_latency, self.poll_duration))
        self.rest_app = rest.make_wsgi_app(self.facade, registry, policy)
        self.rest_server: RestServer | None = None
        self._stop_signals = 0
        LOG.info("ryu_nat: public %s (gateway %s, uplink port %d), private %s, redirects: %s",
                 self.config.public, self.config.public_gateway, self.config.public_port, self.config.private,
                 ", ".join(str(r) for r in self.config.redirects) or "none")

    def _restore_redirects(self, state: StateFile) -> None:
        """The redirects added through the API before a restart, from ``[nat] state_file``."""
        loaded = state.load(self.config.private, self.config.redirects)
        for problem in loaded.problems:
            LOG.error("ryu_nat: %s", problem)
        self.facade.restore_redirects(loaded.redirects)
        if loaded.redirects:
            LOG.info("ryu_nat: redirects added through the API, restored from %s: %s", state.path,
                     ", ".join(str(rule) for rule in loaded.redirects))

    def start(self) -> Any:
        """After every app is made: the event thread, the ticker, the REST server and the stop signals."""
        started = super().start()
        hub.spawn(self._ticker)  # not joined at stop: it ends by itself within TICK_S
        hub.spawn(self._stats_ticker)  # likewise, within SLICE_GAP_S
        host, port = CONF.wsapi_host, CONF.wsapi_port
        self.rest_server = RestServer(self.rest_app, host, port, self._on_event_thread, limiter=self.limiter)
        try:
            self.rest_server.start()
        except OSError as exc:
            LOG.error("ryu_nat: the REST API cannot listen on %s:%d: %s", host, port, exc)
            raise SystemExit(f"ryu_nat: the REST API cannot listen on {host}:{port}: {exc}") from None
        LOG.info("ryu_nat: REST API on http://%s:%d/nat/", host, port)
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._stop_signal)
        except ValueError:  # not the main thread (an embedding): whoever started the app stops it
            return started
        hub.spawn(self._stopper)
        return started

    def stop(self) -> None:
        """Stop serving REST, then the event thread; the ticker sees it and ends within TICK_S."""
        if self.rest_server is not None:
            self.rest_server.stop()
        super().stop()

    # --- events ------------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev: ofp_event.EventOFPStateChange) -> None:
        dp = ev.datapath
        if ev.state == DEAD_DISPATCHER:
            if self.datapath is not None and dp is self.datapath:
                LOG.info("dpid=%016x: NAT switch disconnected", dp.id)
                self.datapath = None
                self.reader.stop()
            return
        if not self._claim(dp):
            return
        self.flow_counters.cancel_poll()  # a poll of an earlier connection: its xid means nothing now
        self.reader.stop()
        self.stats_tap.forget()
        with self._guard("switch_connected", dp):
            LOG.info("dpid=%016x: NAT switch connected, ports %s", dp.id, sorted(dp.ports))
            now = time.monotonic()
            self._send(dp, self.gateway.switch_connected(list(dp.ports), now))
            if self.gateway.review.restoring:
                LOG.info("dpid=%016x: the table is empty: reading the mappings back from the switch's rules "
                         "(ICMP query mappings lived only in the controller: they are lost)", dp.id)
                self.requests.start(dp, Purpose.RESTORE)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: ofp_event.EventOFPPacketIn) -> None:
        msg = ev.msg
        if msg.datapath is not self.datapath:
            self.stats.packet_ins["not_ours"] += 1
            return
        with self._guard("packet_in", msg.datapath):
            received = time.monotonic()
            setups = self.stats.flow_setups
            plan = self.gateway.packet_in(msg.match.get("in_port"), bytes(msg.data), received,
                                          PacketInReason.of(msg.reason))
            self._send(msg.datapath, plan)
            if self.stats.flow_setups != setups:
                self.setup_latency.observe(time.monotonic() - received)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev: ofp_event.EventOFPFlowRemoved) -> None:
        msg = ev.msg
        if msg.datapath is self.datapath:
            with self._guard("flow_removed", msg.datapath):
                self._send(msg.datapath, self.gateway.flow_removed(msg.cookie, FlowRemovedReason.of(msg.reason),
                                                                   time.monotonic(), msg.packet_count,
                                                                   msg.idle_timeout))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: ofp_event.EventOFPPortStatus) -> None:
        msg = ev.msg
        if msg.datapath is self.datapath:
            present = msg.reason != msg.datapath.ofproto.OFPPR_DELETE
            with self._guard("port_status", msg.datapath):
                self._send(msg.datapath, self.gateway.port_changed(msg.desc.port_no, present))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def _error(self, ev: ofp_event.EventOFPErrorMsg) -> None:
        """Logged (through the limiter: a switch may send many); a refused rule of a live mapping ends it.
        An experimenter error has no code (None)."""
        msg = ev.msg
        dp = msg.datapath
        self.stats.openflow_errors += 1
        now = time.monotonic()
        self.limiter.log(LOG, logging.ERROR, ("openflow_error", msg.type), now,
                         "dpid=%016x: OpenFlow error type=%d code=%s for xid=%d: %s", dp.id, msg.type, msg.code,
                         msg.xid, self.sent.describe(msg.xid))
        cookie = refused_cookie(bytes(msg.data or b""))
        if cookie is not None and dp is self.datapath:
            with self._guard("error", dp):
                self._send(dp, self.gateway.review.rule_refused(cookie, now))

    @set_ev_cls(EventTick)
    def _tick(self, ev: EventTick) -> None:
        dp = self.datapath
        if dp is not None:
            with self._guard("expire", dp):
                now = time.monotonic()
                self._send(dp, self.gateway.expire(now))
                if not (self.reader.audit_due(now) and self.requests.start(dp, Purpose.AUDIT)):
                    self.requests.ask_reader(dp)  # a request asked again after a timeout, if one is due

    @set_ev_cls(EventStatsDue)
    def _stats_due(self, ev: EventStatsDue) -> None:
        """Ask for the next slice of our rules' counters, if one is due (see :mod:`ryu_nat.operator.flowstats`)."""
        dp = self.datapath
        if dp is not None:
            with self._guard("flow_stats_request", dp):
                self.requests.ask_next_slice(dp)

    @set_ev_cls(EventFlowStatsPart)
    def _flow_stats_part(self, ev: EventFlowStatsPart) -> None:
        """A reply part to our request: its rules' counters, or (a restore's or an audit's) the rules read
        back, from the bytes."""
        if ev.datapath is self.datapath:
            with self._guard("flow_stats_reply", ev.datapath):
                self.requests.part(ev.datapath, ev.data)

    # --- plumbing ------------------------------------------------------------------------------------

    def _claim(self, dp: Datapath) -> bool:
        """The NAT is the configured datapath, or else the first one to connect."""
        wanted = self.config.dpid
        if wanted is not None and dp.id != wanted:
            LOG.info("dpid=%016x: not the NAT switch (dpid = %016x); leaving it alone", dp.id, wanted)
            return False
        if wanted is None and self.datapath is not None and self.datapath.id != dp.id:
            self.limiter.log(LOG, logging.WARNING, "second_switch", time.monotonic(),
                             "dpid=%016x: a second switch; the NAT is dpid=%016x (set [nat] dpid to choose)",
                             dp.id, self.datapath.id)
            return False
        self.datapath = dp
        return True

    def _send(self, dp: Datapath, plan: Plan) -> None:
        if plan:
            data, sent = self.encoder.encode(dp, plan)
            dp.send(data)
            self.sent.record(sent)

    def _start_audit(self) -> bool:
        """An audit asked for through the API: False if no switch, or another read runs."""
        return self.datapath is not None and self.requests.start(self.datapath, Purpose.AUDIT)

    def _stats_part_arrived(self, dp: Datapath, data: bytes) -> None:
        """From the receive loop (stats_tap): the app reads it on its own event thread."""
        self._send_event(EventFlowStatsPart(dp, data), None)

    def _ticker(self) -> None:
        while self.is_active:
            hub.sleep(TICK_S)
            if self.is_active:
                # Straight onto our own queue: send_event would log every tick at --verbose, one line a second.
                self._send_event(EventTick(), None)

    def _stats_ticker(self) -> None:
        """Wakes the event thread for flow statistics only while someone reads them."""
        while self.is_active:
            hub.sleep(self.flow_counters.slice_gap_s)
            if self.is_active and self.datapath is not None and self.flow_counters.wanted(time.monotonic()):
                self._send_event(EventStatsDue(), None)  # as the ticker does: no log line per wake-up

    @set_ev_cls(EventRestCall)
    def _rest_call(self, ev: EventRestCall) -> None:
        ev.call.run()

    def _on_event_thread(self, work: Callable[[], bytes]) -> bytes:
        """Run ``work`` (a REST request) on the event thread and wait for its result."""
        call = EventThreadCall(work)
        self.send_event(self.name, EventRestCall(call))
        result: bytes = call.result(REST_WAIT_S)
        return result

    # --- stopping ------------------------------------------------------------------------------------

    def _stop_signal(self, signum: int, frame: object) -> None:
        """Only counts: under eventlet a signal handler may run inside any green thread."""
        self._stop_signals += 1
        if self._stop_signals > 1:
            os._exit(128 + signum)  # a second signal: the orderly stop is stuck, so do not wait for it

    def _stopper(self) -> None:
        """On a stop signal: stop every app in order, then end the process (os-ken's threads cannot be killed)."""
        while not self._stop_signals:
            hub.sleep(STOP_POLL_S)
        LOG.info("ryu_nat: stopping")
        app_manager.AppManager.get_instance().close()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)

    @contextlib.contextmanager
    def _guard(self, event_name: str, dp: Datapath) -> Iterator[None]:
        try:
            yield
        except Exception:  # last line of defence: a bug in one event must not stop the controller
            self.stats.handler_errors += 1
            # Through the limiter: a bug that every packet of a flood triggers must not flood the log too.
            self.limiter.log(LOG, logging.ERROR, ("handler", event_name), time.monotonic(),
                             "dpid=%016x: %s handler failed", dp.id, event_name, exc_info=True)
            if self.reraise:
                raise
