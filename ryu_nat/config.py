"""The ``[nat]`` options, validated once at start-up into a frozen :class:`NatConfig`.

Every option is read as a string and parsed here, so a wrong value stops the
controller with one line naming the option and the value (:class:`ConfigError`).
The files themselves are read with oslo.config's own parser (the one
``ryu-manager`` uses), so :func:`ryu_nat.configfiles.check_files` sees what the
controller will see, and refuses, also in one line, what oslo.config would
ignore or turn into a traceback: an unreadable file, a syntax error, an unknown
or repeated option.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import TypeVar

from ryu_nat.core.addresses import Endpoint, Proto, Subnet, is_nattable
from ryu_nat.core.filtering import Filtering
from ryu_nat.core.limits import Limits, Timeouts
from ryu_nat.core.ports import PortRange
from ryu_nat.openflow.plan import OFPP_MAX

_T = TypeVar("_T")
OPENFLOW_MAX_TIMEOUT_S = 65535  # idle_timeout is 16 bits in OpenFlow 1.3
MIN_MTU = 68  # RFC 791: every IPv4 link carries 68 bytes whole
MAX_MTU = 65535 - 14  # the switch's length check counts the Ethernet header in 16 bits
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_ORIGIN = re.compile(r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
# oslo.config keeps "value  # note" whole; INI users expect the note to be a comment. A '#' or ';'
# at the start of a (continuation) line or after a blank starts one: no option's value holds either.
_INLINE_COMMENT = re.compile(r"(?:^|[ \t]+)[#;].*$", re.MULTILINE)
SECTION = "nat"

DEFAULTS: dict[str, str] = {
    "public_port": "1",
    "redirects": "",
    "port_range": "1-65535",
    "port_parity": "true",
    "filtering": "address-dependent",
    "max_mappings_per_host": "4096",
    "when_full": "evict",
    "tcp_table_size": "16384",
    "udp_table_size": "16384",
    "icmp_table_size": "1024",
    "tcp_idle_timeout": "7440",
    "tcp_transitory_timeout": "240",
    "udp_idle_timeout": "300",
    "icmp_idle_timeout": "60",
    "dpid": "",
    "router_mac": "02:4e:41:54:00:01",
    "public_mtu": "1500",
    "private_mtu": "1500",
    "api_token_file": "",
    "api_hosts": "",
    "api_cors_origins": "",
    "api_insecure": "false",
    "state_file": "",
    "audit_interval": "600",
}
OPTIONS: dict[str, str] = {
    "public_ipv4": "The NAT's public address and prefix, e.g. 192.168.3.1/24.",
    "public_ipv4_gateway": "Next hop for destinations off the public subnet, e.g. 192.168.3.254.",
    "private_ipv4": "The NAT's private address and prefix, the private hosts' gateway, e.g. 10.0.0.1/24.",
    "public_port": "Switch port number of the uplink; every other port is private.",
    "redirects": "Port forwards, comma separated: proto:public_port=private_ip:port (tcp or udp).",
    "port_range": "Public ports (and ICMP ids) handed out by source NAT, first-last; a private port below 1024 "
                  "gets one below 1024, the others one above (RFC 4787 REQ-3), as far as the range allows.",
    "port_parity": "true: public ports keep the private port's parity while one is free (RFC 4787 REQ-4).",
    "filtering": "Who reaches a private endpoint's public port unasked (RFC 4787 REQ-8): endpoint-independent, "
                 "address-dependent (an address it talks to) or address-and-port-dependent.",
    "max_mappings_per_host": "Most mappings one private host may open, per protocol (RFC 6888 REQ-4).",
    "when_full": "A full table or host: evict (LRU; the host's oldest) or refuse (ICMP 3/13) a new mapping.",
    "tcp_table_size": "Most TCP mappings; the least recently used goes when full.",
    "udp_table_size": "Most UDP mappings.",
    "icmp_table_size": "Most ICMP query mappings.",
    "tcp_idle_timeout": "Seconds an established TCP mapping lives idle (RFC 5382: at least 7440).",
    "tcp_transitory_timeout": "Seconds a TCP mapping lives idle after FIN or RST (RFC 5382: 240).",
    "udp_idle_timeout": "Seconds a UDP mapping lives idle (RFC 4787: at least 120, 300 recommended).",
    "icmp_idle_timeout": "Seconds an ICMP query mapping lives idle (RFC 5508: 60).",
    "dpid": "Datapath id of the NAT switch (decimal or 0x hex); empty: the first switch to connect.",
    "router_mac": "Ethernet address the NAT uses on both sides.",
    "public_mtu": "Largest IPv4 datagram (bytes) the uplink carries: bigger ones are cut, or with DF set "
                  "answered with ICMP fragmentation needed (RFC 4787 REQ-13, RFC 5508 REQ-10).",
    "private_mtu": "Largest IPv4 datagram (bytes) the private ports carry; the same for packets to private hosts.",
    "api_token_file": "File holding the REST API's token; every request then needs Authorization: Bearer <token>.",
    "api_hosts": "Further names (or addresses) of the REST API that a request's Host header may carry, comma "
                 "separated; localhost and the listening address are always allowed.",
    "api_cors_origins": "Origins (http://host:port) of other pages allowed to call the REST API from a browser, "
                        "comma separated; none by default, and no CORS headers are sent.",
    "api_insecure": "true to serve the REST API on a non-loopback address without a token.",
    "state_file": "File where redirects added through the REST API are kept across restarts (written atomically); "
                  "empty: they last until the controller stops.",
    "audit_interval": "Seconds between audits of the switch's rules against the table (0: only on request).",
}

# Timeouts below these break what hosts behind a NAT rely on; labs shorten them on purpose, so a warning.
RFC_MINIMUM_S: dict[str, tuple[int, str]] = {
    "tcp_idle_timeout": (7440, "RFC 5382 REQ-5"),
    "tcp_transitory_timeout": (240, "RFC 5382 REQ-5"),
    "udp_idle_timeout": (120, "RFC 4787 REQ-5"),
    "icmp_idle_timeout": (60, "RFC 5508 REQ-1"),
}


class ConfigError(ValueError):
    """A ``[nat]`` option has a wrong value; the message names option and value."""


@dataclass(frozen=True, slots=True)
class RedirectRule:
    """Destination NAT: traffic to the public address on ``public_port`` goes to ``private``."""

    proto: Proto
    public_port: int
    private: Endpoint

    def __str__(self) -> str:
        return f"{self.proto.label}:{self.public_port}={self.private}"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Who may use the REST API (see :mod:`ryu_nat.operator.guard`); the token stays in its file."""

    token_file: str = ""
    hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class NatConfig:
    """The validated configuration of one NAT gateway."""

    public: IPv4Interface
    public_gateway: IPv4Address
    private: IPv4Interface
    public_port: int = 1
    redirects: tuple[RedirectRule, ...] = ()
    port_range: PortRange = PortRange(1, 65535)
    port_parity: bool = True
    filtering: Filtering = Filtering.ADDRESS_DEPENDENT
    limits: Limits = Limits(per_host=4096, evict=True)
    table_sizes: MappingOf[Proto, int] = field(
        default_factory=lambda: {Proto.TCP: 16384, Proto.UDP: 16384, Proto.ICMP: 1024})
    timeouts: Timeouts = Timeouts()
    dpid: int | None = None
    router_mac: str = DEFAULTS["router_mac"]
    public_mtu: int = 1500
    private_mtu: int = 1500
    api: ApiConfig = ApiConfig()
    state_file: str = ""
    audit_interval_s: int = 600

    @property
    def public_ip(self) -> IPv4Address:
        return self.public.ip

    @property
    def private_ip(self) -> IPv4Address:
        return self.private.ip

    def as_dict(self) -> dict[str, object]:
        """The effective configuration, with the option names of ``[nat]``."""
        return {
            "public_ipv4": str(self.public),
            "public_ipv4_gateway": str(self.public_gateway),
            "private_ipv4": str(self.private),
            "public_port": self.public_port,
            "redirects": [str(rule) for rule in self.redirects],
            "port_range": str(self.port_range),
            "port_parity": self.port_parity,
            "filtering": self.filtering.value,
            "max_mappings_per_host": self.limits.per_host,
            "when_full": "evict" if self.limits.evict else "refuse",
            "tcp_table_size": self.table_sizes[Proto.TCP],
            "udp_table_size": self.table_sizes[Proto.UDP],
            "icmp_table_size": self.table_sizes[Proto.ICMP],
            "tcp_idle_timeout": int(self.timeouts.tcp_established_s),
            "tcp_transitory_timeout": int(self.timeouts.tcp_transitory_s),
            "udp_idle_timeout": int(self.timeouts.udp_s),
            "icmp_idle_timeout": int(self.timeouts.icmp_s),
            "dpid": self.dpid,
            "router_mac": self.router_mac,
            "public_mtu": self.public_mtu,
            "private_mtu": self.private_mtu,
            "api_token_file": self.api.token_file,
            "api_hosts": list(self.api.hosts),
            "api_cors_origins": list(self.api.cors_origins),
            "api_insecure": self.api.insecure,
            "state_file": self.state_file,
            "audit_interval": self.audit_interval_s,
        }


def parse_config(raw: MappingOf[str, object]) -> NatConfig:
    """Validate raw option strings (missing ones take their defaults) into a NatConfig.

    Raises ConfigError naming the first wrong option and its value, or the
    first name that is no option (and the option it most resembles).
    """
    check_names(raw)
    values = {name: _text(DEFAULTS.get(name) if raw.get(name) is None else raw.get(name)) for name in OPTIONS}
    public = _interface("public_ipv4", values["public_ipv4"])
    private = _interface("private_ipv4", values["private_ipv4"])
    if public.network.overlaps(private.network):
        raise ConfigError(f"[nat] private_ipv4 = {values['private_ipv4']!r} overlaps public_ipv4 = "
                          f"{values['public_ipv4']!r}: the two networks must be disjoint")
    gateway = _address("public_ipv4_gateway", values["public_ipv4_gateway"])
    if not Subnet.of(public).is_other_host(int(gateway)):
        raise ConfigError(f"[nat] public_ipv4_gateway = {values['public_ipv4_gateway']!r} must be another "
                          f"host address in the public subnet {public.network}")
    port_range = _port_range(values["port_range"])
    return NatConfig(
        public=public,
        public_gateway=gateway,
        private=private,
        public_port=_int("public_port", values["public_port"], 1, OFPP_MAX),
        redirects=parse_redirects(values["redirects"], private),
        port_range=port_range,
        port_parity=_bool("port_parity", values["port_parity"]),
        filtering=_choice("filtering", values["filtering"], {mode.value: mode for mode in Filtering}),
        limits=Limits(per_host=_int("max_mappings_per_host", values["max_mappings_per_host"], 1, 10_000_000),
                      evict=_choice("when_full", values["when_full"], {"evict": True, "refuse": False})),
        table_sizes={proto: _int(f"{proto.label}_table_size", values[f"{proto.label}_table_size"], 1, 10_000_000)
                     for proto in Proto},
        timeouts=Timeouts(
            tcp_established_s=_timeout("tcp_idle_timeout", values["tcp_idle_timeout"]),
            tcp_transitory_s=_timeout("tcp_transitory_timeout", values["tcp_transitory_timeout"]),
            udp_s=_timeout("udp_idle_timeout", values["udp_idle_timeout"]),
            icmp_s=_timeout("icmp_idle_timeout", values["icmp_idle_timeout"]),
        ),
        dpid=_dpid(values["dpid"]),
        router_mac=_mac("router_mac", values["router_mac"]),
        public_mtu=_int("public_mtu", values["public_mtu"], MIN_MTU, MAX_MTU),
        private_mtu=_int("private_mtu", values["private_mtu"], MIN_MTU, MAX_MTU),
        api=ApiConfig(token_file=values["api_token_file"], hosts=_api_hosts(values["api_hosts"]),
                      cors_origins=_origins(values["api_cors_origins"]),
                      insecure=_bool("api_insecure", values["api_insecure"])),
        state_file=values["state_file"],
        audit_interval_s=_int("audit_interval", values["audit_interval"], 0, 7 * 86400),
    )


def check_api_exposure(listen_host: str, api: ApiConfig) -> None:
    """ConfigError if the API would listen beyond loopback with no token, and ``api_insecure`` is not set."""
    if api.token_file or api.insecure or _is_loopback(listen_host):
        return
    raise ConfigError(f"the REST API would listen on {listen_host} (--wsapi-host) with no token: anyone who "
                      "reaches it could reset the NAT; set [nat] api_token_file, or api_insecure = true")


def rfc_warnings(config: NatConfig) -> list[str]:
    """One line for each timeout below the minimum its RFC sets (the NAT still starts)."""
    effective = config.as_dict()
    return [f"[nat] {name} = {seconds} is below the {minimum} s that {rfc} requires; fine for a lab, "
            f"but hosts behind the NAT lose idle connections sooner than they expect"
            for name, (minimum, rfc) in RFC_MINIMUM_S.items()
            if isinstance(seconds := effective[name], int) and seconds < minimum]


def check_names(names: Iterable[str], where: str = "") -> None:
    """ConfigError for the first name that is not a ``[nat]`` option, naming the closest one.

    The known names are those of :data:`OPTIONS`, so a new option is known as soon as it is declared.
    """
    for name in names:
        if name not in OPTIONS:
            close = difflib.get_close_matches(name, OPTIONS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"the options are {', '.join(OPTIONS)}"
            raise ConfigError(f"{where}[nat] {name} is not an option: {hint}")


def parse_redirect(text: str, private: IPv4Interface) -> RedirectRule:
    """'tcp:8080=10.0.0.2:80' -> RedirectRule(Proto.TCP, 8080, Endpoint(10.0.0.2, 80))."""
    bad = f"[nat] redirects: bad rule {text.strip()!r}"
    try:
        proto_text, rest = text.strip().split(":", 1)
        public_text, private_text = rest.split("=", 1)
        ip_text, port_text = private_text.rsplit(":", 1)
        proto = Proto.from_label(proto_text)
        ip = IPv4Address(ip_text.strip())
    except ValueError as exc:
        raise ConfigError(f"{bad} (want proto:port=ip:port, e.g. tcp:8080=10.0.0.2:80)") from exc
    if proto is Proto.ICMP:
        raise ConfigError(f"{bad}: only tcp and udp can be redirected")
    if not Subnet.of(private).is_other_host(int(ip)):
        raise ConfigError(f"{bad}: {ip} is not a host of the private network {private.network}")
    return RedirectRule(proto, _port(bad, public_text), Endpoint(ip, _port(bad, port_text)))


def parse_redirects(text: str, private: IPv4Interface) -> tuple[RedirectRule, ...]:
    """A comma-separated list of redirects; a public port may be forwarded only once."""
    rules: list[RedirectRule] = []
    for item in (part for part in text.split(",") if part.strip()):
        rule = parse_redirect(item, private)
        if any((r.proto, r.public_port) == (rule.proto, rule.public_port) for r in rules):
            raise ConfigError(f"[nat] redirects: {rule.proto.label} port {rule.public_port} is forwarded twice")
        rules.append(rule)
    return tuple(rules)


def _text(value: object) -> str:
    """The option's text without inline comments (``30  # seconds`` is 30)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return _INLINE_COMMENT.sub("", str(value)).strip()


def _interface(name: str, text: str) -> IPv4Interface:
    if not text:
        raise ConfigError(f"[nat] {name} is required (an address with its prefix, e.g. 10.0.0.1/24)")
    try:
        iface = IPv4Interface(text)
    except ValueError:
        raise ConfigError(f"[nat] {name} = {text!r} is not an IPv4 address with a prefix (e.g. 10.0.0.1/24)") from None
    if "/" not in text or iface.network.prefixlen > 30:
        raise ConfigError(f"[nat] {name} = {text!r} needs a prefix of /30 or shorter (e.g. /24)")
    if not Subnet.of(iface).is_host(int(iface.ip)) or not is_nattable(int(iface.ip)):
        raise ConfigError(f"[nat] {name} = {text!r} is not a usable host address")
    return iface


def _address(name: str, text: str) -> IPv4Address:
    if not text:
        raise ConfigError(f"[nat] {name} is required (an IPv4 address)")
    try:
        return IPv4Address(text)
    except ValueError:
        raise ConfigError(f"[nat] {name} = {text!r} is not an IPv4 address") from None


def _int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise ConfigError(f"[nat] {name} = {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"[nat] {name} = {text!r} is out of range ({low}..{high})")
    return value


def _timeout(name: str, text: str) -> float:
    return float(_int(name, text, 1, OPENFLOW_MAX_TIMEOUT_S))


def _port(context: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{context}: {text.strip()!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise ConfigError(f"{context}: port {value} is out of range (1..65535)")
    return value


def _port_range(text: str) -> PortRange:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"[nat] port_range = {text!r} is not a range like 1024-65535")
    try:
        return PortRange(int(match.group(1)), int(match.group(2)))
    except ValueError:
        raise ConfigError(f"[nat] port_range = {text!r} is out of range (1 <= first <= last <= 65535)") from None


def _dpid(text: str) -> int | None:
    if not text:
        return None
    return _int("dpid", text, 0, 2**64 - 1)


def _is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _api_hosts(text: str) -> tuple[str, ...]:
    names = []
    for item in (part.strip().lower().rstrip(".") for part in text.split(",") if part.strip()):
        try:
            names.append(str(ipaddress.ip_address(item.strip("[]"))))
        except ValueError:
            if not _HOST_NAME.match(item):
                raise ConfigError(f"[nat] api_hosts: {item!r} is not a host name or address (no port, no "
                                  "scheme: e.g. nat.example.net)") from None
            names.append(item)
    return tuple(names)


def _origins(text: str) -> tuple[str, ...]:
    origins = []
    for item in (part.strip().lower().rstrip("/") for part in text.split(",") if part.strip()):
        if not _ORIGIN.match(item):
            raise ConfigError(f"[nat] api_cors_origins: {item!r} is not an origin like http://host:port")
        origins.append(item)
    return tuple(origins)


def _choice(name: str, text: str, choices: MappingOf[str, _T]) -> _T:
    """What the word ``text`` (any case) stands for among ``choices``."""
    if text.lower() not in choices:
        raise ConfigError(f"[nat] {name} = {text!r} is not one of: {', '.join(choices)}")
    return choices[text.lower()]


def _bool(name: str, text: str) -> bool:
    value = text.lower()
    if value not in _TRUE + _FALSE:
        raise ConfigError(f"[nat] {name} = {text!r} is not true or false")
    return value in _TRUE


def _mac(name: str, text: str) -> str:
    mac = text.lower()
    if not _MAC.match(mac) or int(mac[:2], 16) & 1:
        raise ConfigError(f"[nat] {name} = {text!r} is not a unicast Ethernet address (e.g. 02:00:00:00:00:01)")
    return mac
