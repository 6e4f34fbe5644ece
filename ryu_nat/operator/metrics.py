"""Prometheus metrics for ``GET /metrics``, in the text format, through ``prometheus_client``.

Counters and gauges are read at scrape time from what ``/nat/stats`` shows (the
gateway's counters, table and port use, the flow-statistics sweeps): the NAT
keeps no second set of books on its packet path. The two histograms are the
exception, since a scrape cannot see past events: :class:`Histogram` records an
observation with a bisect and two additions (the set-up latency is observed on
the packet-in path), and the collector hands its buckets to ``prometheus_client``.
docs/operator.md lists every metric with a sample scrape.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping as MappingOf, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes (and prometheus_client's own server says)
# Packet-in received by the app's handler to the plan handed to the switch connection.
SETUP_LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# A whole flow-statistics sweep: every slice of the table, from its first request to its last reply.
POLL_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Labels that always appear (at 0 until counted): gateway/restore.py's and gateway/audit.py's enums, by value.
RESTORE_DELETED = ("one_rule_missing", "port_owned_twice", "overlap", "id_reused", "outside_layout", "unreadable")
AUDIT_FINDINGS = ("orphan_rule", "missing_rule", "mismatch", "port_owned_twice", "outside_layout")

Stats = MappingOf[str, Any]
Samples = int | tuple[str, MappingOf[str, int]]  # one value, or (label name, value per label value)


class Histogram:
    """Counts of observations per bucket, and their sum: cheap enough for the packet-in path."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last bucket is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The histogram as Prometheus wants it: cumulative buckets, their sum and count."""
        cumulative, buckets = 0, []
        for bound, count in zip((*map(_le, self.bounds), "+Inf"), self.counts):
            cumulative += count
            buckets.append((bound, cumulative))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.total)


class NatCollector:
    """Everything ``/metrics`` shows, read when Prometheus scrapes."""

    def __init__(self, stats: Callable[[], Stats], setup_latency: Histogram, poll_duration: Histogram) -> None:
        self._stats = stats
        self._setup_latency = setup_latency
        self._poll_duration = poll_duration

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        table, ports, mappings, flow_stats = stats["table"], stats["ports"], stats["mappings"], stats["flow_stats"]
        yield _gauge("ryu_nat_switch_connected", "1 while the NAT switch is connected, else 0.",
                     int(stats["switch"]["connected"]))
        yield _gauge("ryu_nat_mappings", "Live mappings, per protocol.", _per_protocol(table, "used"))
        yield _gauge("ryu_nat_mappings_max", "Most mappings each protocol's table holds ([nat] *_table_size).",
                     _per_protocol(table, "size"))
        yield _gauge("ryu_nat_ports_in_use", "Public ports (ICMP: query ids) held by source NAT, per protocol.",
                     _per_protocol(ports, "used"))
        yield _gauge("ryu_nat_ports_max", "Public ports source NAT may hand out per protocol ([nat] port_range).",
                     _per_protocol(ports, "size"))
        yield _counter("ryu_nat_mappings_created", "Mappings added, by kind (nat, redirect, hairpin).",
                       ("kind", mappings["created_by_kind"]))
        yield _counter("ryu_nat_setups", "Set-ups: mappings whose two rewrite rules were sent to the switch "
                                         "(rules installed again included).", stats["flow_setups"])
        yield _counter("ryu_nat_mappings_removed", "Mappings removed, by reason.",
                       ("reason", mappings["removed_by_reason"]))
        yield _counter("ryu_nat_drops", "Packets dropped, by reason.", ("reason", stats["drops"]))
        yield _counter("ryu_nat_packet_ins", "Packet-ins, by kind.", ("kind", stats["packet_ins"]))
        yield _counter("ryu_nat_arp", "ARP and neighbour events (requests, new neighbours, re-checks, MAC "
                       "changes, mappings moved or unreachable).", ("event", stats["arp"]))
        yield _counter("ryu_nat_icmp_sent", "ICMP messages the NAT sent itself, by type.",
                       ("type", stats["icmp_sent"]))
        yield _counter("ryu_nat_handler_errors", "Event or REST handlers that raised (a bug; the controller "
                                                 "keeps running).", stats["handler_errors"])
        yield _counter("ryu_nat_openflow_errors", "OpenFlow error messages from the switch.", stats["openflow_errors"])
        yield _counter("ryu_nat_rules_rejected", "Mappings ended because the switch refused one of their rules.",
                       stats["rules_rejected"])
        yield _counter("ryu_nat_flow_stats_sweeps", "Complete flow-statistics sweeps of the table.",
                       flow_stats["polls"])
        yield _counter("ryu_nat_flow_stats_slices", "Flow-statistics slice replies taken in.", flow_stats["slices"])
        restore, audit = stats["restore"], stats["audit"]
        yield _counter("ryu_nat_restore_mappings", "Mappings put back from the switch's rules after a restart, by how "
                                                   "(restored: both rules; restored_one_rule: UDP with one).",
                       ("how", {how: restore.get(how, 0) for how in ("restored", "restored_one_rule")}))
        yield _counter("ryu_nat_restore_deleted", "Rules an earlier run left that rebuild nothing, deleted after a "
                                                  "restart, by reason (unreadable counts slices).",
                       ("reason", {reason: restore.get(reason, 0) for reason in RESTORE_DELETED}))
        yield _counter("ryu_nat_restore_held", "Routed packets that waited while the table was read back.",
                       restore.get("held", 0))
        yield _counter("ryu_nat_consistency_audits", "Audits of the switch's rules against the table, completed.",
                       audit.get("runs", 0))
        yield _counter("ryu_nat_consistency_repairs", "Disagreements between the switch's rules and the table "
                                                      "that audits found and repaired, by finding.",
                       ("finding", {finding: audit.get(finding, 0) for finding in AUDIT_FINDINGS}))
        yield _counter("ryu_nat_flow_stats_abandoned", "Flow-statistics slices given up: unanswered, too big "
                                                       "or undecodable.", flow_stats["abandoned"])
        yield self._setup_latency.family("ryu_nat_setup_latency_seconds",
                                         "Packet-in received by the app to the set-up's plan sent to the switch.")
        yield self._poll_duration.family("ryu_nat_flow_stats_poll_seconds",
                                         "Duration of a whole flow-statistics sweep (first request to last reply).")


def registry(collector: NatCollector) -> CollectorRegistry:
    """A registry of the NAT's metrics alone (not the process's default one)."""
    own = CollectorRegistry(auto_describe=False)
    own.register(collector)
    return own


def render(metrics: CollectorRegistry) -> bytes:
    """The text exposition format, version 0.0.4."""
    return bytes(generate_latest(metrics))


def _le(bound: float) -> str:
    return repr(float(bound))


def _per_protocol(by_protocol: MappingOf[str, MappingOf[str, int]], figure: str) -> Samples:
    return "protocol", {protocol: use[figure] for protocol, use in by_protocol.items()}


def _gauge(name: str, documentation: str, samples: Samples) -> GaugeMetricFamily:
    if isinstance(samples, int):
        return GaugeMetricFamily(name, documentation, value=samples)
    label, values = samples
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for label_value, value in values.items():
        family.add_metric([label_value], value)
    return family


def _counter(name: str, documentation: str, samples: Samples) -> CounterMetricFamily:
    if isinstance(samples, int):
        return CounterMetricFamily(name, documentation, value=samples)
    label, values = samples
    family = CounterMetricFamily(name, documentation, labels=[label])
    for label_value, value in values.items():
        family.add_metric([label_value], value)
    return family
