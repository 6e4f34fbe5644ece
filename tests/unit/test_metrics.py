"""GET /metrics: the Prometheus text format, read back with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ryu_nat.operator import guard, metrics

from .builders import tcp_bytes, udp_bytes
from .lab import H1, H1_PORT, H2, H2_PORT, PUBLIC, SERVER, UPLINK, Lab, from_host
from .restlab import Api

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(api: Api) -> Samples:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    response = api.request("GET", "/metrics", content_type=None)
    assert response.status_int == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def api() -> Api:
    return Api()


def test_an_idle_nat_exports_every_metric(api):
    samples = scrape(api)
    names = {name for name, _ in samples}
    assert {"ryu_nat_switch_connected", "ryu_nat_mappings", "ryu_nat_ports_in_use", "ryu_nat_setups_total",
            "ryu_nat_mappings_created_total", "ryu_nat_mappings_removed_total", "ryu_nat_handler_errors_total",
            "ryu_nat_openflow_errors_total", "ryu_nat_rules_rejected_total", "ryu_nat_setup_latency_seconds_bucket",
            "ryu_nat_setup_latency_seconds_count", "ryu_nat_flow_stats_poll_seconds_bucket"} <= names
    assert value(samples, "ryu_nat_switch_connected") == 1
    assert value(samples, "ryu_nat_mappings", protocol="tcp") == 0
    assert value(samples, "ryu_nat_mappings_max", protocol="icmp") == 1024
    assert value(samples, "ryu_nat_mappings_removed_total", reason="evicted") == 0
    assert value(samples, "ryu_nat_setup_latency_seconds_bucket", le="+Inf") == 0


def test_traffic_shows_in_mappings_ports_setups_packet_ins_removals_and_drops(api):
    api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5000, SERVER, 53)))
    api.lab.send(H1_PORT, from_host(H1, udp_bytes(H1, 5001, SERVER, 53)))
    api.lab.send(H2_PORT, from_host(H2, tcp_bytes(H2, 6000, SERVER, 80)))
    api.lab.send(UPLINK, from_host(SERVER, tcp_bytes(SERVER, 40000, PUBLIC, 7777)))  # unsolicited: dropped
    api.call("DELETE", f"/nat/connections/{H2}")
    samples = scrape(api)
    assert value(samples, "ryu_nat_mappings", protocol="udp") == 2
    assert value(samples, "ryu_nat_mappings", protocol="tcp") == 0
    assert value(samples, "ryu_nat_ports_in_use", protocol="udp") == 2
    assert value(samples, "ryu_nat_ports_max", protocol="udp") == 65535
    assert value(samples, "ryu_nat_setups_total") == 3
    assert value(samples, "ryu_nat_mappings_created_total", kind="nat") == 3
    assert value(samples, "ryu_nat_mappings_removed_total", reason="host_removed") == 1
    assert value(samples, "ryu_nat_drops_total", reason="unsolicited") == 1
    packet_ins = api.lab.gateway.stats.packet_ins
    assert value(samples, "ryu_nat_packet_ins_total", kind="private") == packet_ins["private"] >= 3
    assert value(samples, "ryu_nat_packet_ins_total", kind="public") == packet_ins["public"] >= 1


def test_errors_and_histograms_follow_what_was_recorded():
    api = Api(Lab(), connected=False)
    api.lab.gateway.stats.handler_errors = 2
    api.lab.gateway.stats.openflow_errors = 5
    api.lab.gateway.stats.rules_rejected = 3
    for seconds in (0.0002, 0.0002, 0.003, 7.0):
        api.setup_latency.observe(seconds)
    api.poll_duration.observe(1.5)
    samples = scrape(api)
    assert value(samples, "ryu_nat_switch_connected") == 0
    assert (value(samples, "ryu_nat_handler_errors_total"), value(samples, "ryu_nat_openflow_errors_total")) == (2, 5)
    assert value(samples, "ryu_nat_rules_rejected_total") == 3
    buckets = {le: value(samples, "ryu_nat_setup_latency_seconds_bucket", le=le)
               for le in ("0.0001", "0.00025", "0.0025", "0.005", "1.0", "+Inf")}
    assert buckets == {"0.0001": 0, "0.00025": 2, "0.0025": 2, "0.005": 3, "1.0": 3, "+Inf": 4}
    assert value(samples, "ryu_nat_setup_latency_seconds_count") == 4
    assert value(samples, "ryu_nat_setup_latency_seconds_sum") == pytest.approx(7.0034)
    assert value(samples, "ryu_nat_flow_stats_poll_seconds_bucket", le="2.5") == 1
    assert value(samples, "ryu_nat_flow_stats_poll_seconds_bucket", le="1.0") == 0


def test_a_histogram_puts_a_value_on_its_bound_in_that_bucket():
    histogram = metrics.Histogram((1.0, 2.0))
    for seconds in (1.0, 1.5, 2.0, 2.5):
        histogram.observe(seconds)
    assert histogram.counts == [1, 2, 1]


def test_metrics_take_no_parameters_and_need_the_token_when_there_is_one():
    api = Api(policy=guard.Policy(token="0123456789abcdef"))
    assert api.call("GET", "/metrics")[0] == 401
    assert api.request("GET", "/metrics", headers={"Authorization": "Bearer 0123456789abcdef"}).status_int == 200
    api.error("GET", "/metrics?format=json", 400, "unknown_parameter",
              headers={"Authorization": "Bearer 0123456789abcdef"})
    api.error("POST", "/metrics", 405, "method_not_allowed", headers={"Authorization": "Bearer 0123456789abcdef"})
