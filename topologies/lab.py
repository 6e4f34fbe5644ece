"""Running the NAT lab: Open vSwitch, the controller subprocess, host processes, flow tables.

Shared by the end-to-end tests (``tests/e2e``) and the demo (``mininet/demo.py``).
Every process started here is wrapped in ``setpriv --pdeathsig KILL``, so it
dies with the Python process that started it, even one killed by SIGKILL: a
crashed run leaves no controller or host server behind for the next one. For
the same reason, spawn only from the main thread (the signal follows the
thread that forked).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ryu_nat import backend
from topologies import two_networks as topo
from topologies.controller import ControllerDied, free_port, http_json, listening, start_listening

REPO = Path(__file__).resolve().parent.parent
# The environment that runs us holds the controller too: .venv (Ryu), .venv-osken (os-ken).
VENV_BIN = Path(sys.executable).parent
NETPROBE = REPO / "topologies" / "netprobe.py"
HOST_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"
NAT_APP = "ryu_nat.app"
DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--")

# A controller log with any of these fails the run (see STYLE.md, "End to end").
TRACEBACK = "Traceback (most recent call last)"
LOG_ERROR_MARKERS = (TRACEBACK, "OFPErrorMsg", "OpenFlow error")

# [nat] options matching topologies/two_networks.py.
DEFAULT_NAT_CONFIG: dict[str, str] = {
    "public_ipv4": f"{topo.PUBLIC_IP}/24",
    "public_ipv4_gateway": topo.PUBLIC_GATEWAY,
    "private_ipv4": f"{topo.PRIVATE_GATEWAY}/{topo.PRIVATE_PREFIX}",
    "public_port": str(topo.UPLINK_PORT),
    "dpid": str(topo.NAT_DPID),
    "redirects": f"tcp:8080={topo.private_ip(1)}:80",
}

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.1,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises TimeoutError naming ``what`` after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def run(*command: str, check: bool = True, timeout_s: float = 30) -> str:
    """Run a command on the machine (root namespace) and return its stdout."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def require_root() -> None:
    """Mininet and Open vSwitch need root; raises PermissionError otherwise."""
    if os.geteuid() != 0:
        raise PermissionError("the NAT lab needs root (Mininet, Open vSwitch, namespaces)")


def ovs_running() -> bool:
    return subprocess.run(["ovs-vsctl", "--timeout=2", "show"], capture_output=True,
                          check=False).returncode == 0


def ensure_ovs() -> None:
    """Start the Open vSwitch daemons unless they answer (CI starts with none running)."""
    if not ovs_running():
        run(OVS_CTL, "start", "--system-id=random", timeout_s=120)
        wait_until(ovs_running, 30, what="ovsdb-server and ovs-vswitchd")


def prepare_machine() -> None:
    """Root, Open vSwitch up, and no bridges or links left by an earlier crashed run."""
    require_root()
    ensure_ovs()
    topo.sweep()


def child_processes() -> list[str]:
    """Processes whose parent is this one (``pid command``): none should outlive a network."""
    me, found = str(os.getpid()), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        comm = text[text.index("(") + 1:text.rindex(")")]
        if text[text.rindex(")") + 2:].split()[1] == me:
            found.append(f"{stat.parent.name} {comm}")
    return found


def write_config(path: Path, **overrides: object) -> Path:
    """Write a ``[nat]`` config: :data:`DEFAULT_NAT_CONFIG` updated by ``overrides``.

    ``None`` removes an option (the app's default applies).
    """
    options = dict(DEFAULT_NAT_CONFIG)
    for name, value in overrides.items():
        if value is None:
            options.pop(name, None)
        else:
            options[name] = str(value)
    parser = configparser.ConfigParser()
    parser["nat"] = options
    with path.open("w") as out:
        parser.write(out)
    return path


def attach_controller(bridge: str, port: int, keep_flows: bool = False) -> None:
    """Point ``bridge`` at ``tcp:127.0.0.1:port`` now.

    A fresh controller record connects at once; the old one may be sitting out
    a reconnect backoff, which this Open vSwitch grows to 8 s whatever
    ``max_backoff`` says. But a bridge that loses its last controller, or gets
    its first, flushes its flow table: ``keep_flows`` (a controller restart,
    which must find the rules of the run before) leaves a bridge that already
    points there to reconnect by itself, at the cost of that backoff.
    """
    target = f"tcp:127.0.0.1:{port}"
    if keep_flows and run("ovs-vsctl", "--timeout=10", "get-controller", bridge).split() == [target]:
        return
    if not keep_flows:
        run("ovs-vsctl", "--timeout=10", "del-controller", bridge)
    run("ovs-vsctl", "--timeout=10", "set-controller", bridge, target)


class Controller:
    """``ryu-manager`` with the NAT app (or other apps) as a subprocess, logging to a file.

    Restarts append to the same log. Stopping never raises; :meth:`log_errors`
    and :attr:`died` tell the caller what went wrong.
    """

    def __init__(self, config: Path, of_port: int, log_path: Path,
                 apps: Sequence[str] = (NAT_APP,), wsapi_port: int | None = None) -> None:
        self.config = config
        self.of_port = of_port
        self.wsapi_port = wsapi_port or free_port()
        self.log_path = log_path
        self.apps = tuple(apps)
        self.died: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The controller's process id while it runs (benchmarks read its CPU time)."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    @property
    def command(self) -> list[str]:
        if backend.NAME == backend.RYU:
            launcher = [str(VENV_BIN / "ryu-manager"), *self.apps]
        else:  # os-ken has no manager command
            launcher = [str(VENV_BIN / "ryu-nat"), *(app for app in self.apps if app != NAT_APP)]
        return [*launcher, "--config-file", str(self.config),
                "--ofp-tcp-listen-port", str(self.of_port),
                "--wsapi-host", "127.0.0.1", "--wsapi-port", str(self.wsapi_port)]

    def start(self) -> None:
        """Start ryu-manager and return once it listens for switches.

        Raises ControllerDied (with the log's tail) if it exits first, TimeoutError
        if it does not listen in time.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(self.command)}\n".encode())
            log.flush()
            try:
                # Own session: a Ctrl-C meant for the demo must not kill it before cleanup.
                self._process = start_listening([*DIE_WITH_PARENT, *self.command], self.of_port, cwd=REPO,
                                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
            except ControllerDied as exc:
                self.died = str(exc)
                raise ControllerDied(f"{exc}; log tail:\n{self.log_tail()}") from None

    def wait_connected(self, bridge: str, timeout_s: float = 20, keep_flows: bool = False) -> None:
        """Connect ``bridge`` to this controller and wait until the app has written a flow.

        A flow younger than the connection shows that the app saw the switch
        (true after a restart too, when older flows are still there: with
        ``keep_flows`` the switch keeps them, see :func:`attach_controller`). Raises
        ControllerDied (with the log's tail) if the process exits first,
        TimeoutError if the switch is not set up in time.
        """
        def alive_and(predicate: Callable[[], bool]) -> Callable[[], bool]:
            def check() -> bool:
                self.check_alive()
                return predicate()
            return check

        deadline = time.monotonic() + timeout_s
        wait_until(alive_and(lambda: listening(self.of_port)), timeout_s,
                   what=f"ryu-manager to listen on port {self.of_port}")
        attached = time.monotonic()
        attach_controller(bridge, self.of_port, keep_flows)

        def fresh_flow() -> bool:
            age_s = time.monotonic() - attached
            return any(flow.duration_s <= age_s for flow in flows(bridge))

        wait_until(alive_and(fresh_flow), max(1.0, deadline - time.monotonic()),
                   what=f"{' '.join(self.apps)} to set up {bridge}")

    def check_alive(self) -> None:
        """Raise ControllerDied if the process ended without :meth:`stop`."""
        if self._process is not None and self._process.poll() is not None:
            self.died = f"ryu-manager exited with {self._process.returncode}"
            self._process = None
        if self.died:
            raise ControllerDied(f"{self.died}; log tail:\n{self.log_tail()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is not None:
            self.died = self.died or f"ryu-manager exited with {process.returncode}"
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, bridge: str) -> None:
        """Stop, start, and let the switch reconnect with its flows (as a restart in the field does)."""
        self.stop()
        self.start()
        self.wait_connected(bridge, keep_flows=True)

    def kill(self) -> None:
        """SIGKILL, as a crash: no handler runs, the switch keeps every rule."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_errors(self) -> list[str]:
        """Excerpts of the log that show a bug (see :func:`log_errors`)."""
        return log_errors(self.log_text())

    def rest(self, path: str, method: str = "GET", body: object = None, timeout_s: float = 10) -> tuple[int, Any]:
        """One request to the app's REST API: (status, decoded JSON or text); status 0 if unreachable."""
        return http_json(method, f"http://127.0.0.1:{self.wsapi_port}{path}", body, timeout_s)


def log_errors(log: str) -> list[str]:
    """Excerpts of a controller log that show a bug: each traceback down to its exception line,
    each OpenFlow error."""
    lines = log.splitlines()
    excerpts, index = [], 0
    while index < len(lines):
        line = lines[index]
        end = index + 1
        if TRACEBACK in line:
            while end < len(lines) and lines[end][:1].isspace():
                end += 1
            end = min(end + 1, len(lines))  # the exception line itself
        if any(marker in line for marker in LOG_ERROR_MARKERS):
            excerpts.append("\n".join(lines[index:end]))
        index = end
    return excerpts


# Flow tables ---------------------------------------------------------------------------------

_FLOW = re.compile(r"^\s*(?P<head>cookie=.*?)\bpriority=(?P<priority>\d+),?(?P<match>\S*) "
                   r"actions=(?P<actions>\S+)")
_PORT_FIELDS = r"(?:tp|udp|tcp|sctp)_(?:src|dst)"


@dataclass(frozen=True)
class Flow:
    """One line of ``ovs-ofctl dump-flows``."""

    cookie: int
    duration_s: float
    table: int
    priority: int
    n_packets: int
    idle_timeout: int | None
    match: str
    actions: str

    @property
    def rewrites_addresses(self) -> bool:
        """Does it rewrite an IPv4 address (a NAT mapping's flow)?"""
        return bool(re.search(r"set_field:[\d.]+->(?:ip|ipv4|nw)_(?:src|dst)|mod_nw_(?:src|dst)",
                              self.actions))

    @property
    def l4_ports(self) -> set[int]:
        """Transport ports it matches on or writes."""
        found = re.findall(rf"{_PORT_FIELDS}=(\d+)", self.match)
        found += re.findall(rf"set_field:(\d+)->{_PORT_FIELDS}", self.actions)
        found += re.findall(r"mod_tp_(?:src|dst):(\d+)", self.actions)
        return {int(port) for port in found}

    @property
    def protocol(self) -> str | None:
        head = self.match.split(",", 1)[0]
        return head if head in ("tcp", "udp", "icmp", "arp", "ip") else None


_OFCTL_FIELDS = {"eth_type": "dl_type", "ip_proto": "nw_proto", "ipv4_src": "nw_src", "ipv4_dst": "nw_dst",
                 "eth_src": "dl_src", "eth_dst": "dl_dst"}
_OFCTL_SET = {"ipv4_src": "ip_src", "ipv4_dst": "ip_dst"}


def ofctl_flow(rule: Any) -> str:
    """A plan FlowRule (``ryu_nat.openflow.plan``) in ``ovs-ofctl add-flows`` syntax: what the app would install."""
    from ryu_nat.openflow.plan import OFPP_IN_PORT, DecTtl, Output, SetField

    head = [f"cookie={rule.cookie:#x}", f"table={rule.table_id}", f"priority={rule.priority}"]
    if rule.idle_timeout_s:
        head.append(f"idle_timeout={rule.idle_timeout_s}")
    if rule.notify_removed:
        head.append("send_flow_rem")
    match = [f"{_OFCTL_FIELDS.get(name, name)}={value:#06x}" if name == "eth_type" else
             f"{_OFCTL_FIELDS.get(name, name)}={value}" for name, value in rule.match.fields]
    actions = []
    for action in rule.actions:
        if isinstance(action, DecTtl):
            actions.append("dec_ttl")
        elif isinstance(action, SetField):
            actions.append(f"set_field:{action.value}->{_OFCTL_SET.get(action.field, action.field)}")
        elif isinstance(action, Output):
            actions.append("in_port" if action.port == OFPP_IN_PORT else f"output:{action.port}")
    return ",".join(head + match) + ",actions=" + (",".join(actions) or "drop")


def add_flows(bridge: str, rules: Sequence[Any], path: Path) -> None:
    """Install plan FlowRules on ``bridge`` from a file, as ``ovs-ofctl add-flows`` does (fast, for many)."""
    path.write_text("".join(ofctl_flow(rule) + "\n" for rule in rules))
    run("ovs-ofctl", "-O", "OpenFlow13", "add-flows", bridge, str(path), timeout_s=300)


def dump_flows(bridge: str) -> str:
    return run("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge, check=False)


def flows(bridge: str) -> list[Flow]:
    """The flow table of ``bridge`` (empty when the bridge is gone)."""
    return parse_flows(dump_flows(bridge))


def parse_flows(text: str) -> list[Flow]:
    """The flows in ``ovs-ofctl dump-flows`` output (port names or numbers, any other lines skipped)."""
    parsed = []
    for line in text.splitlines():
        found = _FLOW.search(line)
        if not found:
            continue
        head = found["head"]
        idle = re.search(r"idle_timeout=(\d+)", head)
        parsed.append(Flow(cookie=int(re.search(r"cookie=(0x[0-9a-f]+)", head)[1], 16),
                           duration_s=float(re.search(r"duration=([\d.]+)s", head)[1]),
                           table=int(re.search(r"table=(\d+)", head)[1]),
                           priority=int(found["priority"]),
                           n_packets=int(re.search(r"n_packets=(\d+)", head)[1]),
                           idle_timeout=int(idle[1]) if idle else None,
                           match=found["match"], actions=found["actions"]))
    return parsed


def rewrite_flows(bridge: str, protocol: str | None = None) -> list[Flow]:
    """The NAT's mapping flows (they rewrite addresses), optionally of one protocol."""
    return [f for f in flows(bridge)
            if f.rewrites_addresses and (protocol is None or f.protocol == protocol)]


def mapping_flows(bridge: str, protocol: str, *ports: int) -> list[Flow]:
    """Mapping flows that mention every one of ``ports`` (say, a private and a public port)."""
    return [f for f in rewrite_flows(bridge, protocol) if set(ports) <= f.l4_ports]


# Processes inside hosts --------------------------------------------------------------------------


class HostProcess:
    """A process in a Mininet host whose output lines are collected as they come."""

    def __init__(self, host: Any, command: Sequence[str]) -> None:
        self.host = host
        self.command = list(command)
        self.lines: list[str] = []
        self._popen = host.popen([*DIE_WITH_PARENT, *self.command], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The process id (benchmarks read its CPU time)."""
        return int(self._popen.pid)

    def _read(self) -> None:
        assert self._popen.stdout is not None
        for raw in self._popen.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout_s: float = 10) -> str:
        """The first output line matching ``pattern``; raises TimeoutError with the output so far."""
        regex = re.compile(pattern)

        def found() -> str | None:
            hit = next((line for line in self.lines if regex.search(line)), None)
            if hit is None and self._popen.poll() is not None:
                self._reader.join(1)
                hit = next((line for line in self.lines if regex.search(line)), None)
                if hit is None:
                    raise RuntimeError(f"{self.host.name}: {self.command} exited "
                                       f"{self._popen.returncode}: {self.output()}")
            return hit

        try:
            return wait_until(found, timeout_s, interval_s=0.05,
                              what=f"{pattern!r} from {self.host.name}: {self.command}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; output so far: {self.output()}") from None

    def json_lines(self) -> list[dict[str, Any]]:
        parsed = []
        for line in list(self.lines):
            if line.startswith("{"):
                parsed.append(json.loads(line))
        return parsed

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait(self, timeout_s: float) -> int:
        """Wait for exit; on timeout kill it and raise TimeoutError."""
        try:
            code = self._popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise TimeoutError(f"{self.host.name}: {self.command} still running after "
                               f"{timeout_s:g} s; output: {self.output()}") from None
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._reader.join(5)


def netprobe_command(*args: object) -> list[str]:
    return [HOST_PYTHON, str(NETPROBE), *(str(a) for a in args)]


@contextmanager
def server(host: Any, kind: str, port: int, name: str | None = None, *extra: object) -> Iterator[HostProcess]:
    """A netprobe ``udp``/``tcp`` server on ``host`` (``extra``: more of its options, as ``--silent``),
    listening when this yields."""
    process = HostProcess(host, netprobe_command(f"{kind}-server", "--port", port,
                                                 "--name", name or host.name, *extra))
    try:
        process.wait_for_line(r"^READY")
        yield process
    finally:
        process.stop()


def start_probe(host: Any, command: str, *args: object) -> HostProcess:
    """Start a netprobe client; :func:`probe_result` collects it (so several can run at once)."""
    return HostProcess(host, netprobe_command(command, *args))


def probe_result(process: HostProcess, timeout_s: float = 30) -> dict[str, Any]:
    """The JSON a netprobe client printed; raises RuntimeError if it failed to run."""
    code = process.wait(timeout_s)
    results = process.json_lines()
    if code != 0 or not results:
        raise RuntimeError(f"{process.host.name}: {process.command} exited {code}: {process.output()}")
    return results[-1]


def probe(host: Any, command: str, *args: object, timeout_s: float = 30) -> dict[str, Any]:
    """Run a netprobe client on ``host`` and return its JSON result."""
    return probe_result(start_probe(host, command, *args), timeout_s)


def probe_all(hosts: Sequence[Any], command: str, *args: object,
              timeout_s: float = 30) -> list[dict[str, Any]]:
    """The same netprobe client on every host at once (each tagged with its host's name)."""
    running = [start_probe(host, command, *args, "--tag", host.name) for host in hosts]
    return [probe_result(process, timeout_s) for process in running]


@contextmanager
def http_server(host: Any, port: int, directory: Path) -> Iterator[HostProcess]:
    """``python3 -m http.server`` on ``host``; its access log (client addresses) in ``lines``."""
    process = HostProcess(host, [HOST_PYTHON, "-u", "-m", "http.server", str(port),
                                 "--bind", "0.0.0.0", "--directory", str(directory)])
    try:
        process.wait_for_line(r"^Serving HTTP")
        yield process
    finally:
        process.stop()


@contextmanager
def capture(host: Any, bpf_filter: str, intf: str | None = None) -> Iterator[HostProcess]:
    """tcpdump on ``host`` (its first interface by default), capturing when this yields."""
    command = ["tcpdump", "-l", "-n", "-v", "--immediate-mode", "-i",
               intf or host.defaultIntf().name, bpf_filter]
    process = HostProcess(host, command)
    try:
        process.wait_for_line(r"listening on")
        yield process
    finally:
        process.stop()


def packets(capture_process: HostProcess) -> list[str]:
    """The address lines (``a.b.c.d.port > e.f.g.h.port: ...``) a :func:`capture` printed."""
    return [line.strip() for line in capture_process.lines if re.search(r"[\d.]+ > [\d.]+", line)]


def ping(host: Any, address: str, count: int = 3, timeout_s: int = 2) -> str | None:
    """Ping from ``host`` (0.2 s apart); the output if any reply came, else None."""
    output = host.cmd(f"ping -n -c {count} -i 0.2 -W {timeout_s} {address}")
    return output if re.search(r" [1-9]\d* received", output) else None


def traceroute(host: Any, address: str, max_hops: int = 6) -> list[str | None]:
    """Hop addresses on the way from ``host`` to ``address`` (None where no hop answered)."""
    output = host.cmd(f"traceroute -n -q 1 -w 2 -m {max_hops} {address}")
    hops: list[str | None] = []
    for line in output.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0].isdigit():
            hops.append(fields[1] if re.fullmatch(r"[\d.]+", fields[1]) else None)
    return hops


def reset_hosts(hosts: Sequence[Any]) -> None:
    """Forget neighbours, so a new controller instance starts from a clean ARP state."""
    for host in hosts:
        host.cmd("ip neigh flush all")
