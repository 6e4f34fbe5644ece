"""[nat] options: defaults, one clear message per wrong value, and the files as oslo.config reads them."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest
from oslo_config import cfg as oslo_cfg

from ryu_nat.config import (DEFAULTS, OPTIONS, RFC_MINIMUM_S, ApiConfig, ConfigError, NatConfig,
                            check_api_exposure, parse_config, rfc_warnings)
from ryu_nat.configfiles import check_files, read_token
from ryu_nat.core.addresses import Endpoint, Proto
from ryu_nat.core.filtering import Filtering
from ryu_nat.core.limits import Limits, Timeouts
from ryu_nat.core.ports import PortRange

from .lab import readme_nat_conf

BASE = {"public_ipv4": "192.168.3.1/24", "public_ipv4_gateway": "192.168.3.254", "private_ipv4": "10.0.0.1/24"}


def test_defaults_for_all_but_the_addresses():
    config = parse_config(BASE)
    assert config.public_port == 1 and config.redirects == () and config.dpid is None
    assert config.port_range == PortRange(1, 65535) and config.port_parity
    assert config.filtering is Filtering.ADDRESS_DEPENDENT and config.limits == Limits(per_host=4096, evict=True)
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
    ({"filtering": "full-cone"}, "[nat] filtering = 'full-cone' is not one of: endpoint-independent, "
                                 "address-dependent, address-and-port-dependent"),
    ({"when_full": "drop"}, "[nat] when_full = 'drop' is not one of: evict, refuse"),
    ({"max_mappings_per_host": "0"}, "[nat] max_mappings_per_host = '0' is out of range (1..10000000)"),
    ({"max_mappings_per_host": "many"}, "[nat] max_mappings_per_host = 'many' is not a whole number"),
    ({"port_parity": "even"}, "[nat] port_parity = 'even' is not true or false"),
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


# --- the files: what oslo.config reads, and what it would let pass ---------------------------------------------


def read_like_ryu_manager(*files: Path) -> NatConfig:
    """The [nat] options through a ConfigOpts of their own, as the app registers them on Ryu's CONF."""
    conf = oslo_cfg.ConfigOpts()
    conf.register_opts([oslo_cfg.StrOpt(name, default=DEFAULTS.get(name)) for name in OPTIONS], group="nat")
    conf(args=[arg for path in files for arg in ("--config-file", str(path))], default_config_files=[])
    check_files([str(path) for path in files])
    return parse_config({name: conf.nat[name] for name in OPTIONS})


def test_the_readme_sample_starts_as_written(tmp_path):
    conf = tmp_path / "nat.conf"
    conf.write_text(readme_nat_conf())
    config = read_like_ryu_manager(conf)
    assert (str(config.public), str(config.public_gateway), str(config.private)) == (
        "192.168.3.1/24", "192.168.3.254", "10.0.0.1/24")
    assert config.public_port == 1 and config.port_range == PortRange(1, 65535) and config.port_parity
    assert (config.filtering, config.limits) == (Filtering.ADDRESS_DEPENDENT, Limits(per_host=4096, evict=True))
    assert [str(rule) for rule in config.redirects] == ["tcp:8080=10.0.0.2:80", "udp:5353=10.0.0.3:53"]
    assert config.table_sizes == {Proto.TCP: 16384, Proto.UDP: 16384, Proto.ICMP: 1024}
    assert config.timeouts == Timeouts(7440, 240, 300, 60)
    assert config.dpid is None and config.router_mac == "02:4e:41:54:00:01"
    assert rfc_warnings(config) == []


@pytest.mark.parametrize("text,expected", [
    ("30   # seconds", "30"),
    ("30\t; seconds", "30"),
    ("tcp:8080=10.0.0.2:80,   # web\n# dns, next line\nudp:5353=10.0.0.3:53  # dns",
     "tcp:8080=10.0.0.2:80,udp:5353=10.0.0.3:53"),
])
def test_inline_comments_are_comments(text, expected):
    option = "redirects" if "tcp" in text else "udp_idle_timeout"
    effective = parse_config({**BASE, option: text}).as_dict()[option]
    assert (",".join(effective) if isinstance(effective, list) else str(effective)) == expected


def test_a_continued_value_keeps_its_lines_apart_from_comments(tmp_path):
    conf = tmp_path / "nat.conf"
    conf.write_text("[nat]\n" + "".join(f"{k} = {v}\n" for k, v in BASE.items())
                    + "redirects = tcp:8080=10.0.0.2:80,    # web\n    udp:5353=10.0.0.3:53   # dns\n")
    assert [str(r) for r in read_like_ryu_manager(conf).redirects] == ["tcp:8080=10.0.0.2:80", "udp:5353=10.0.0.3:53"]


def test_an_unknown_option_names_the_closest_known_one(tmp_path):
    with pytest.raises(ConfigError) as error:
        parse_config({**BASE, "pubic_port": "2"})
    assert str(error.value) == "[nat] pubic_port is not an option: did you mean public_port?"
    conf = tmp_path / "nat.conf"
    conf.write_text("[nat]\n" + "".join(f"{k} = {v}\n" for k, v in BASE.items()) + "pubic_port = 2\n")
    with pytest.raises(ConfigError) as error:
        read_like_ryu_manager(conf)
    assert str(error.value) == f"{conf}: [nat] pubic_port is not an option: did you mean public_port?"


def test_an_option_like_no_other_lists_them_all():
    with pytest.raises(ConfigError) as error:
        parse_config({**BASE, "verbose": "1"})
    assert str(error.value).startswith("[nat] verbose is not an option: the options are public_ipv4, ")
    assert all(name in str(error.value) for name in OPTIONS)


def test_every_declared_option_is_known():
    parse_config({**BASE, **{name: value for name, value in DEFAULTS.items() if value}})


def test_an_option_set_twice_in_one_file_is_an_error(tmp_path):
    conf = tmp_path / "nat.conf"
    conf.write_text("[nat]\n" + "".join(f"{k} = {v}\n" for k, v in BASE.items())
                    + "udp_idle_timeout = 30\n[NAT]\nudp_idle_timeout = 60\n")
    with pytest.raises(ConfigError) as error:
        check_files([str(conf)])
    assert str(error.value) == f"{conf}: [nat] udp_idle_timeout is set 2 times: keep one"


def test_a_later_file_overrides_an_earlier_one(tmp_path):
    base, local = tmp_path / "base.conf", tmp_path / "local.conf"
    base.write_text("[nat]\n" + "".join(f"{k} = {v}\n" for k, v in BASE.items()) + "udp_idle_timeout = 300\n")
    local.write_text("[NAT]\nudp_idle_timeout = 600\n")
    assert read_like_ryu_manager(base, local).timeouts.udp_s == 600


def test_other_sections_are_not_ours_to_check(tmp_path):
    conf = tmp_path / "nat.conf"
    conf.write_text("[DEFAULT]\nverbose = true\nverbose = false\n[nat]\n"
                    + "".join(f"{k} = {v}\n" for k, v in BASE.items()))
    check_files([str(conf)])


@pytest.mark.parametrize("content,message", [
    (None, "cannot read the config file {path}: No such file or directory"),
    (b"public_ipv4 = 192.168.3.1/24\n[nat]\n",
     "{path}: public_ipv4 comes before any section header (start the file with [nat])"),
    (b"[nat]\npublic_ipv4\n", "{path} line 2: No ':' or '=' found in assignment: 'public_ipv4'"),
    (b"[nat\n", "{path} line 1: Invalid section (must end with ]): '[nat'"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "{path} is not a text file (byte 0x89 at offset 0 is not UTF-8)"),
    (b"\x00" * 10_000, "{path} line 1: No ':' or '=' found in assignment: '\\x00\\x00"),
])
def test_an_unreadable_file_gets_one_line(tmp_path, content, message):
    path = tmp_path / "nat.conf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        check_files([str(path)])
    assert str(error.value).startswith(message.format(path=path)), str(error.value)
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_a_config_directory_is_read_like_oslo_reads_it(tmp_path):
    (tmp_path / "10-base.conf").write_text("[nat]\n" + "".join(f"{k} = {v}\n" for k, v in BASE.items()))
    (tmp_path / "20-typo.conf").write_text("[nat]\nudp_idle_timout = 30\n")
    (tmp_path / "notes.txt").write_text("not a config file\n")
    with pytest.raises(ConfigError) as error:
        check_files([], [str(tmp_path)])
    assert str(error.value) == (f"{tmp_path / '20-typo.conf'}: [nat] udp_idle_timout is not an option: "
                                "did you mean udp_idle_timeout?")
    with pytest.raises(ConfigError) as error:
        check_files([], [str(tmp_path / "missing")])
    assert str(error.value) == f"config directory {tmp_path / 'missing'} does not exist"


@pytest.mark.parametrize("option,value,rfc", [
    ("udp_idle_timeout", "1", "RFC 4787 REQ-5"),
    ("udp_idle_timeout", "119", "RFC 4787 REQ-5"),
    ("tcp_idle_timeout", "7439", "RFC 5382 REQ-5"),
    ("tcp_transitory_timeout", "10", "RFC 5382 REQ-5"),
    ("icmp_idle_timeout", "59", "RFC 5508 REQ-1"),
])
def test_a_timeout_below_its_rfc_minimum_starts_with_one_warning(option, value, rfc):
    [warning] = rfc_warnings(parse_config({**BASE, option: value}))
    assert warning.startswith(f"[nat] {option} = {value} is below the {RFC_MINIMUM_S[option][0]} s that {rfc} requires")
    assert "\n" not in warning


def test_timeouts_at_their_rfc_minimums_warn_of_nothing():
    minimums = {name: str(minimum) for name, (minimum, _) in RFC_MINIMUM_S.items()}
    assert rfc_warnings(parse_config({**BASE, **minimums})) == []
    assert len(rfc_warnings(parse_config({**BASE, **{name: "1" for name in RFC_MINIMUM_S}}))) == len(RFC_MINIMUM_S)


@pytest.mark.parametrize(("raw", "filtering", "limits", "parity"), [
    ({"filtering": "Endpoint-Independent", "when_full": "refuse", "max_mappings_per_host": "10",
      "port_parity": "false"}, Filtering.ENDPOINT_INDEPENDENT, Limits(10, False), False),
    ({"filtering": "address-and-port-dependent"}, Filtering.ADDRESS_AND_PORT_DEPENDENT, Limits(4096, True), True),
])
def test_the_rfc_behaviour_options_are_read_and_shown(raw, filtering, limits, parity):
    config = parse_config({**BASE, **raw})
    assert (config.filtering, config.limits, config.port_parity) == (filtering, limits, parity)
    shown = config.as_dict()
    assert (shown["filtering"], shown["max_mappings_per_host"], shown["when_full"], shown["port_parity"]) == (
        filtering.value, limits.per_host, "evict" if limits.evict else "refuse", parity)

