"""[nat] options: defaults, and one clear message per wrong value."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from ryu_nat.config import ApiConfig, ConfigError, check_api_exposure, parse_config, read_token
from ryu_nat.core.addresses import Endpoint, Proto
from ryu_nat.core.ports import PortRange

BASE = {"public_ipv4": "192.168.3.1/24", "public_ipv4_gateway": "192.168.3.254", "private_ipv4": "10.0.0.1/24"}


def test_defaults_for_all_but_the_addresses():
    config = parse_config(BASE)
    assert config.public_port == 1 and config.redirects == () and config.dpid is None
    assert config.port_range == PortRange(1024, 65535)
    assert config.timeouts.tcp_established_s == 7440 and config.timeouts.udp_s == 300
    assert config.timeouts.tcp_transitory_s == 240 and config.timeouts.icmp_s == 60


def test_the_seed_example():
    config = parse_config({**BASE, "public_port": "1", "redirects": "tcp:8080=10.0.0.2:80, udp:5353=10.0.0.3:53",
                           "port_range": "1024-65535", "tcp_table_size": "100", "udp_table_size": "50",
                           "icmp_table_size": "10", "udp_idle_timeout": "30", "dpid": "0x1"})
    assert [(r.proto, r.public_port, r.private) for r in config.redirects] == [
        (Proto.TCP, 8080, Endpoint(IPv4Address("10.0.0.2"), 80)),
        (Proto.UDP, 5353, Endpoint(IPv4Address("10.0.0.3"), 53))]
    assert config.table_sizes == {Proto.TCP: 100, Proto.UDP: 50, Proto.ICMP: 10}
    assert config.timeouts.udp_s == 30 and config.dpid == 1
    assert config.as_dict()["redirects"] == ["tcp:8080=10.0.0.2:80", "udp:5353=10.0.0.3:53"]


@pytest.mark.parametrize("override,message", [
    ({"public_ipv4": "192.168.3.300/24"}, "[nat] public_ipv4 = '192.168.3.300/24' is not an IPv4 address"),
    ({"public_ipv4": ""}, "[nat] public_ipv4 is required"),
    ({"public_ipv4": "192.168.3.1"}, "[nat] public_ipv4 = '192.168.3.1' needs a prefix"),
    ({"private_ipv4": "10.0.0.0/24"}, "[nat] private_ipv4 = '10.0.0.0/24' is not a usable host address"),
    ({"private_ipv4": "192.168.3.2/16"}, "[nat] private_ipv4 = '192.168.3.2/16' overlaps public_ipv4"),
    ({"public_ipv4_gateway": "10.0.0.254"}, "[nat] public_ipv4_gateway = '10.0.0.254' must be another host"),
    ({"public_ipv4_gateway": "gw"}, "[nat] public_ipv4_gateway = 'gw' is not an IPv4 address"),
    ({"public_port": "uplink"}, "[nat] public_port = 'uplink' is not a whole number"),
    ({"public_port": "0"}, "[nat] public_port = '0' is out of range"),
    ({"redirects": "tcp:8080"}, "[nat] redirects: bad rule 'tcp:8080' (want proto:port=ip:port"),
    ({"redirects": "sctp:80=10.0.0.2:80"}, "[nat] redirects: bad rule 'sctp:80=10.0.0.2:80'"),
    ({"redirects": "tcp:70000=10.0.0.2:80"}, "[nat] redirects: bad rule 'tcp:70000=10.0.0.2:80': port 70000"),
    ({"redirects": "tcp:80=192.168.3.9:80"}, "[nat] redirects: bad rule 'tcp:80=192.168.3.9:80': 192.168.3.9 is not a host of the private network 10.0.0.0/24"),
    ({"redirects": "tcp:80=10.0.0.2:80,tcp:80=10.0.0.3:80"}, "[nat] redirects: tcp port 80 is forwarded twice"),
    ({"port_range": "1024"}, "[nat] port_range = '1024' is not a range like 1024-65535"),
    ({"port_range": "2000-1000"}, "[nat] port_range = '2000-1000' is out of range"),
    ({"port_range": "1-70000"}, "[nat] port_range = '1-70000' is out of range"),
    ({"udp_table_size": "0"}, "[nat] udp_table_size = '0' is out of range"),
    ({"tcp_idle_timeout": "100000"}, "[nat] tcp_idle_timeout = '100000' is out of range (1..65535)"),
    ({"icmp_idle_timeout": "1.5"}, "[nat] icmp_idle_timeout = '1.5' is not a whole number"),
    ({"dpid": "nat"}, "[nat] dpid = 'nat' is not a whole number"),
    ({"router_mac": "01:00:5e:00:00:01"}, "[nat] router_mac = '01:00:5e:00:00:01' is not a unicast"),
    ({"api_hosts": "nat.example:8080"}, "[nat] api_hosts: 'nat.example:8080' is not a host name or address"),
    ({"api_hosts": "http://nat.example"}, "[nat] api_hosts: 'http://nat.example' is not a host name"),
    ({"api_cors_origins": "nat.example"}, "[nat] api_cors_origins: 'nat.example' is not an origin"),
    ({"api_cors_origins": "http://a.example/page"}, "[nat] api_cors_origins: 'http://a.example/page' is not"),
    ({"api_insecure": "maybe"}, "[nat] api_insecure = 'maybe' is not true or false"),
])
def test_each_wrong_value_gets_one_line_naming_option_and_value(override, message):
    with pytest.raises(ConfigError) as error:
        parse_config({**BASE, **override})
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_api_options_default_to_no_token_no_extra_hosts_and_no_cors():
    config = parse_config(BASE)
    assert config.api == ApiConfig("", (), (), False)
    assert {k: v for k, v in config.as_dict().items() if k.startswith("api_")} == {
        "api_token_file": "", "api_hosts": [], "api_cors_origins": [], "api_insecure": False}


def test_api_options_are_normalised():
    api = parse_config({**BASE, "api_hosts": "NAT.example.net., 192.168.3.1, [::1]", "api_token_file": "/etc/t",
                        "api_cors_origins": "HTTP://Dash.example:3000/", "api_insecure": "yes"}).api
    assert api == ApiConfig("/etc/t", ("nat.example.net", "192.168.3.1", "::1"), ("http://dash.example:3000",), True)


def test_the_token_is_read_from_its_file(tmp_path):
    path = tmp_path / "token"
    path.write_text("  0123456789abcdef0123\n")
    assert read_token(str(path)) == "0123456789abcdef0123"


@pytest.mark.parametrize(("content", "says"), [
    (b"short", "must hold one token of 16 to 4096 printable ASCII characters"),
    (b"0123456789abcdef 0123", "without spaces"),
    (b"\xff" * 20, "must hold one token"),
    (b"", "must hold one token"),
])
def test_a_token_file_without_a_good_token_stops_start_up(tmp_path, content, says):
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as error:
        read_token(str(path))
    assert str(error.value).startswith(f"[nat] api_token_file = {str(path)!r}") and "\n" not in str(error.value)


def test_a_missing_token_file_stops_start_up(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read: No such file or directory"):
        read_token(str(tmp_path / "absent"))


@pytest.mark.parametrize(("host", "api", "refused"), [
    ("127.0.0.1", ApiConfig(), False),
    ("localhost", ApiConfig(), False),
    ("::1", ApiConfig(), False),
    ("0.0.0.0", ApiConfig(), True),
    ("192.168.3.1", ApiConfig(), True),
    ("nat.example.net", ApiConfig(), True),
    ("0.0.0.0", ApiConfig(token_file="/etc/token"), False),
    ("0.0.0.0", ApiConfig(insecure=True), False),
])
def test_the_api_beyond_loopback_needs_a_token_or_an_explicit_insecure(host, api, refused):
    if not refused:
        check_api_exposure(host, api)
        return
    with pytest.raises(ConfigError) as error:
        check_api_exposure(host, api)
    assert str(error.value) == (f"the REST API would listen on {host} (--wsapi-host) with no token: anyone who "
                                "reaches it could reset the NAT; set [nat] api_token_file, or api_insecure = true")
