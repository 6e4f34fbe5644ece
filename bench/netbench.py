"""Data plane, new connections end to end, and scale: Mininet and Open vSwitch, with Linux NAT beside them.

Needs root, Open vSwitch and Mininet (``make bench`` installs them). Mininet's
clean-up removes every bridge, and the end-to-end tests use the same bridge and
host names, so each section first waits until no end-to-end test or Mininet
process runs (up to ``WAIT_S``), and fails if one never stops.

Sites, each with private clients, a public server and a public-side flooder:

* ``ryu_nat``: topologies/two_networks.py (private hosts h1..h4 behind ``sp``
  on NAT port 2, server ``srv`` 192.168.3.10 behind ``spub`` on the uplink),
  the NAT switch driven by ryu_nat; clients reach 192.168.3.10 through it.
* plain L2 on the same switch and wires: ``simple_switch_13`` (data plane) or
  ``bench/ceiling_app.py`` (new connections: every packet through the
  controller, what the switch's packet-in path itself sustains). Each private
  host gets a public-side address 192.168.3.5x, so it reaches the server
  without routing or NAT.
* ``linux``: namespaces (no Open vSwitch): four clients on a Linux bridge in a
  router namespace doing nftables masquerade, a server and a flooder on its
  public bridge; the same addresses as the Mininet site, in namespaces of our
  own.

Processes we start die with us (``setpriv --pdeathsig KILL``, as
topologies/lab.py does for the end-to-end tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (BENCH, Row, Summary, Target, cpu_seconds, higher, others_using_ovs,
                    paired)
from topologies import lab
from topologies import two_networks as topo

WAIT_S = 600.0
PRIVATE_HOSTS = 4
SERVER_IP = topo.SERVER_IP
PUBLIC_IP = topo.PUBLIC_IP
L2_BASE = 50  # h<i> gets 192.168.3.(50 + i) on the plain-L2 sites
IPERF_S = 10
IPERF_PORT = 5201
IPERF_SERVER = ("iperf3", "-s", "-p", str(IPERF_PORT), "--forceflush")
CONN_PORT = 7000
CONNECTIONS = 3000
IN_FLIGHT = 64
HALF_LOAD_CONNECTIONS = 1000
FLOOD_PPS = 1000
SCALE_TABLE = 2000
SCALE_PROBE = 600  # connections timed on an empty and on a full table
HOST_PYTHON = lab.HOST_PYTHON
CONN_PROBE = str(BENCH / "conn_probe.py")
NAT_APP, L2_APP, CEILING_APP = "ryu_nat.app", "ryu.app.simple_switch_13", str(BENCH / "ceiling_app.py")


class Busy(RuntimeError):
    """End-to-end tests kept Open vSwitch busy for longer than we wait."""


def wait_for_window(max_wait_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + max_wait_s
    while busy := others_using_ovs():
        if time.monotonic() > deadline:
            raise Busy(f"Open vSwitch still in use after {max_wait_s:g} s: {busy[:2]}")
        time.sleep(5)


# --- sites -------------------------------------------------------------------------------


class Namespace:
    """A network namespace we made, with the two methods HostProcess needs of a Mininet host."""

    def __init__(self, name: str) -> None:
        self.name = name

    def popen(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *command], **kwargs)

    def cmd(self, text: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.name, "sh", "-c", text], capture_output=True,
                              text=True, check=False).stdout


@dataclass
class Site:
    """Where a run happens: client hosts (each with a source address or None), server, flooder."""

    name: str
    clients: list[tuple[Any, str | None]]
    server: Any
    flooder: Any
    flood_target: str
    server_ip: str = SERVER_IP
    controller_pid: int | None = None
    processes: dict[str, int] = field(default_factory=dict)  # name -> pid, for CPU shares


def _ip(*args: str, netns: str | None = None) -> None:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    subprocess.run(command, check=True, capture_output=True)


@contextmanager
def linux_site() -> Iterator[Site]:
    """Clients 10.0.0.2..5 -> router (nftables masquerade, 192.168.3.1) -> server 192.168.3.10, flooder .254."""
    names = ["bnr", "bns", "bng", *(f"bnh{i}" for i in range(1, PRIVATE_HOSTS + 1))]
    for name in names:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    try:
        for name in names:
            _ip("netns", "add", name)
            _ip("link", "set", "lo", "up", netns=name)
        for bridge, address in (("brpriv", "10.0.0.1/24"), ("brpub", f"{PUBLIC_IP}/24")):
            _ip("link", "add", bridge, "type", "bridge", netns="bnr")
            _ip("addr", "add", address, "dev", bridge, netns="bnr")
            _ip("link", "set", bridge, "up", netns="bnr")
        ends = [(f"bnh{i}", topo.private_ip(i), "brpriv") for i in range(1, PRIVATE_HOSTS + 1)]
        ends += [("bns", SERVER_IP, "brpub"), ("bng", topo.PUBLIC_GATEWAY, "brpub")]
        for index, (ns, address, bridge) in enumerate(ends):
            outer, inner = f"bnv{index}", f"bnv{index}i"
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "netns", "bnr")
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "master", bridge, netns="bnr")
            _ip("link", "set", outer, "up", netns="bnr")
            _ip("addr", "add", f"{address}/24", "dev", inner, netns=ns)
            _ip("link", "set", inner, "up", netns=ns)
            if bridge == "brpriv":
                _ip("route", "add", "default", "via", "10.0.0.1", netns=ns)
        router = Namespace("bnr")
        router.cmd("sysctl -q -w net.ipv4.ip_forward=1")
        nft = subprocess.run(["ip", "netns", "exec", "bnr", "nft", "-f", "-"], text=True, capture_output=True,
                             input="table ip nat {\n chain post {\n  type nat hook postrouting priority 100;\n"
                                   '  oifname "brpub" masquerade\n }\n}\n', check=False)
        if nft.returncode != 0:
            raise RuntimeError(f"nft: {nft.stderr.strip()}")
        yield Site("linux", [(Namespace(f"bnh{i}"), None) for i in range(1, PRIVATE_HOSTS + 1)],
                   Namespace("bns"), Namespace("bng"), PUBLIC_IP)
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


class NatLab:
    """The two-network Mininet; its NAT switch driven by one controller app at a time."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.net: topo.NatNet | None = None
        self.controller: lab.Controller | None = None
        self._l2_addresses = False

    def __enter__(self) -> NatLab:
        wait_for_window()
        lab.prepare_machine()
        self.net = topo.build_net(lab.free_port(), private_hosts=PRIVATE_HOSTS)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_controller()
        if self.net is not None:
            self.net.stop()

    def stop_controller(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def site(self, app: str, **nat_options: object) -> Site:
        """Start ``app`` on the NAT switch, from an empty flow table, and return the site it makes."""
        net = self.net
        assert net is not None
        self.stop_controller()
        lab.run("ovs-ofctl", "-O", "OpenFlow13", "del-flows", net.nat.name)
        lab.reset_hosts(net.hosts)
        self._set_l2_addresses(app != NAT_APP)
        name = {NAT_APP: "ryu_nat", L2_APP: "simple_switch_13", CEILING_APP: "ceiling"}[app]
        config = lab.write_config(self.workdir / f"{name}.conf", **nat_options)
        controller = lab.Controller(config, net.controller_port, self.workdir / f"{name}.log", apps=(app,))
        controller.start()
        self.controller = controller
        lab.attach_controller(net.nat.name, net.controller_port)
        lab.wait_until(lambda: lab.flows(net.nat.name), 30, what=f"{name} to set up the NAT switch")
        pid = controller.pid
        if app == NAT_APP:
            clients = [(host, None) for host in net.private]
            target = PUBLIC_IP
        else:
            clients = [(host, f"192.168.3.{L2_BASE + i}") for i, host in enumerate(net.private, 1)]
            target = f"192.168.3.{L2_BASE + 1}"
        return Site(name, clients, net.srv, net.gw, target, controller_pid=pid)

    def _set_l2_addresses(self, wanted: bool) -> None:
        """Public-side addresses on the private hosts, for the plain-L2 sites only."""
        if wanted == self._l2_addresses or self.net is None:
            return
        for i, host in enumerate(self.net.private, 1):
            verb = "add" if wanted else "del"
            host.cmd(f"ip addr {verb} 192.168.3.{L2_BASE + i}/24 dev {host.defaultIntf().name}")
        self._l2_addresses = wanted

    def controller_problems(self) -> list[str]:
        return self.controller.log_errors() if self.controller else []


def _vswitchd_pid() -> int | None:
    try:
        return int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _packet_ins(bridge: str) -> int:
    """Packets the switch sent to the controller so far: n_packets of rules that output to it."""
    return sum(flow.n_packets for flow in lab.flows(bridge) if "CONTROLLER" in flow.actions)


@contextmanager
def running(host: Any, command: Sequence[str], ready: str | None = None) -> Iterator[lab.HostProcess]:
    process = lab.HostProcess(host, command)
    try:
        if ready:
            process.wait_for_line(ready, timeout_s=10)
        yield process
    finally:
        process.stop()


def _cpu(pids: dict[str, int | None]) -> dict[str, float]:
    found = {}
    for name, pid in pids.items():
        if pid:
            try:
                found[name] = cpu_seconds(pid)
            except OSError:
                pass
    return found


# --- 4. data plane -------------------------------------------------------------------------------------


def iperf(site: Site, streams: int, seconds: int = IPERF_S, bridge: str | None = None) -> dict[str, float]:
    """Throughput (bits/s, as received) of one iperf3 run from the first client to the server."""
    host, bind = site.clients[0]
    pids = {"controller": site.controller_pid, "ovs-vswitchd": _vswitchd_pid() if bridge else None}
    packet_ins = _packet_ins(bridge) if bridge else 0
    cpu0, t0 = _cpu(pids), time.monotonic()
    command = ["iperf3", "-c", site.server_ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-P", str(streams), "-J"]
    process = lab.HostProcess(host, [*command, *(["-B", bind] if bind else [])])
    process.wait(seconds + 30)
    wall = time.monotonic() - t0
    cpu1 = _cpu(pids)
    result = json.loads(process.output()[process.output().index("{"):])
    if "error" in result:
        raise RuntimeError(f"iperf3 on {site.name}: {result['error']}")
    figures = {"bits_per_s": float(result["end"]["sum_received"]["bits_per_second"]),
               "packet_ins": float(_packet_ins(bridge) - packet_ins) if bridge else 0.0}
    for name in cpu1:
        figures[f"cpu_{name}_percent"] = 100 * (cpu1[name] - cpu0[name]) / wall
    return figures


def dataplane(reps: int, workdir: Path) -> list[Row]:
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with linux_site() as linux, NatLab(workdir) as nat_lab:
        assert nat_lab.net is not None
        bridge = nat_lab.net.nat.name
        with running(nat_lab.net.srv, IPERF_SERVER, r"Server listening"), \
                running(linux.server, IPERF_SERVER, r"Server listening"):
            for rep in range(reps):
                order = [NAT_APP, L2_APP, "linux"]
                for contender in order[rep % 3:] + order[:rep % 3]:
                    site = linux if contender == "linux" else nat_lab.site(contender)
                    for streams in (1, 4):
                        runs.setdefault((site.name, streams), []).append(
                            iperf(site, streams, bridge=None if contender == "linux" else bridge))
                    print(f"  dataplane: rep {rep + 1}/{reps} {site.name} done", file=sys.stderr)
            problems = nat_lab.controller_problems()
    if problems:
        raise RuntimeError(f"controller log: {problems[:2]}")
    rows = []
    for streams in (1, 4):
        ours = [r["bits_per_s"] / 1e6 for r in runs[("ryu_nat", streams)]]
        nat_runs = runs[("ryu_nat", streams)]
        note = (f"packet-ins during transfer {Summary.of([r['packet_ins'] for r in nat_runs]).text('')}, "
                f"controller CPU {Summary.of([r.get('cpu_controller_percent', 0) for r in nat_runs]).text('%')}, "
                f"ovs-vswitchd CPU {Summary.of([r.get('cpu_ovs-vswitchd_percent', 0) for r in nat_runs]).text('%')}")
        for baseline, target in (("simple_switch_13", Target(">=", 0.9)), ("linux", None)):
            base = [r["bits_per_s"] / 1e6 for r in runs[(baseline, streams)]]
            label = "plain L2 OVS (simple_switch_13)" if baseline != "linux" else "Linux nftables masquerade"
            rows.append(Row("dataplane", f"iperf3 {IPERF_S} s, {streams} stream{'s' if streams > 1 else ''}", "Mbit/s",
                            Summary.of(ours), Summary.of(base), label, paired(ours, base, higher), target,
                            note=note if baseline != "linux" else "the userspace datapath is the limit here"))
    return rows


# --- 5. new connections --------------------------------------------------------------------------------


def connections(site: Site, total: int = CONNECTIONS, rate: float | None = None, flood: bool = False,
                bridge: str | None = None) -> dict[str, Any]:
    """``total`` short connections from every client at once, ``IN_FLIGHT`` in flight in all."""
    hosts = len(site.clients)
    per_host, in_flight = total // hosts, max(1, IN_FLIGHT // hosts)
    pids: dict[str, int | None] = {"controller": site.controller_pid,
                                   "ovs-vswitchd": _vswitchd_pid() if bridge else None, **site.processes}
    flooder = None
    if flood:
        flooder = lab.HostProcess(site.flooder, [HOST_PYTHON, CONN_PROBE, "flood", "--to", site.flood_target,
                                                 "--pps", str(FLOOD_PPS), "--seconds", "120"])
        time.sleep(1)
    cpu0, t0 = _cpu(pids), time.monotonic()
    clients = []
    for host, bind in site.clients:
        command = [HOST_PYTHON, CONN_PROBE, "client", "--to", f"{site.server_ip}:{CONN_PORT}", "--count",
                   str(per_host), "--in-flight", str(in_flight), "--latencies"]
        if rate:
            command += ["--rate", f"{rate / hosts:.3f}"]
        if bind:
            command += ["--bind", bind]
        clients.append(lab.HostProcess(host, command))
    try:
        results = []
        for client in clients:
            client.wait(180)
            results.append(json.loads(client.output().strip().splitlines()[-1]))
    finally:
        if flooder is not None:
            flooder.stop()
    wall = max(r["wall_s"] for r in results)
    cpu1 = _cpu(pids)
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    out: dict[str, Any] = {
        "completed": sum(r["completed"] for r in results), "failed": sum(r["failed"] for r in results),
        "per_s": sum(r["completed"] for r in results) / wall if wall else 0.0,
        "p50_ms": latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "cpu_percent": {name: round(100 * (cpu1[name] - cpu0[name]) / (time.monotonic() - t0), 1)
                        for name in cpu1},
    }
    out["cpu_percent"]["clients"] = round(100 * sum(r["cpu_s"] for r in results) / wall, 1)
    return out


def warm_up(site: Site, bridge: str | None) -> None:
    """A few connections per client first: next hops resolved and learned, as in a running network.

    A cold NAT queues only 16 packets per unresolved next hop, so a first burst of
    64 SYNs loses some to the ARP queue and their 1 s retransmissions dominate p99.
    """
    connections(site, 4 * len(site.clients), bridge=bridge)


def new_connections(reps: int, workdir: Path) -> list[Row]:
    runs: dict[str, list[dict[str, Any]]] = {}
    with linux_site() as linux, NatLab(workdir) as nat_lab:
        assert nat_lab.net is not None
        bridge = nat_lab.net.nat.name
        server_command = [HOST_PYTHON, CONN_PROBE, "server", "--port", str(CONN_PORT)]
        with running(nat_lab.net.srv, server_command, r"^READY") as server, \
                running(linux.server, server_command, r"^READY") as linux_server:
            linux.processes["server"] = linux_server.pid
            for rep in range(reps):
                order = [NAT_APP, CEILING_APP, "linux"]
                for contender in order[rep % 3:] + order[:rep % 3]:
                    site = linux if contender == "linux" else nat_lab.site(contender)
                    site.processes["server"] = site.processes.get("server") or server.pid
                    on = None if contender == "linux" else bridge
                    warm_up(site, on)
                    peak = connections(site, bridge=on)
                    runs.setdefault(f"{site.name} peak", []).append(peak)
                    if contender == NAT_APP:
                        runs.setdefault("ryu_nat half", []).append(
                            connections(site, HALF_LOAD_CONNECTIONS, rate=peak["per_s"] / 2, bridge=on))
                    # Last: a flood leaves a backlog of packet-ins and drop rules behind it.
                    runs.setdefault(f"{site.name} flood", []).append(connections(site, flood=True, bridge=on))
                    print(f"  connections: rep {rep + 1}/{reps} {site.name} done", file=sys.stderr)
            problems = nat_lab.controller_problems()
    if problems:
        raise RuntimeError(f"controller log: {problems[:2]}")
    return _connection_rows(runs)


def _connection_rows(runs: dict[str, list[dict[str, Any]]]) -> list[Row]:
    def values(key: str, figure: str) -> list[float]:
        return [float(r[figure]) for r in runs.get(key, [])]

    def cpu_note(key: str) -> str:
        names = sorted({name for r in runs[key] for name in r["cpu_percent"]})
        return "CPU " + ", ".join(
            f"{name} {Summary.of([r['cpu_percent'].get(name, 0.0) for r in runs[key]]).text('%')}" for name in names)

    ours = values("ryu_nat peak", "per_s")
    rows = [Row("connections", f"connections/s, {CONNECTIONS} in all, {IN_FLIGHT} in flight", "/s", Summary.of(ours),
                Summary.of(values("ceiling peak", "per_s")), "ceiling app (every packet via the controller)",
                paired(ours, values("ceiling peak", "per_s"), higher), Target(">=", 0.8), note=cpu_note("ryu_nat peak")),
            Row("connections", f"connections/s, {CONNECTIONS} in all, {IN_FLIGHT} in flight", "/s", Summary.of(ours),
                Summary.of(values("linux peak", "per_s")), "Linux nftables masquerade",
                paired(ours, values("linux peak", "per_s"), higher), note=cpu_note("linux peak"))]
    for kind in ("peak", "half", "flood"):
        failed = values(f"ryu_nat {kind}", "failed")
        base = values(f"linux {kind}", "failed")
        rows.append(Row("connections", f"failed connections, {kind} (total over the runs)", "",
                        Summary.of([sum(failed)]), Summary.of([sum(base)]) if base else None, "Linux" if base else "",
                        target=Target("<=", 0, on="ours")))
    for q in ("p50_ms", "p99_ms"):
        rows.append(Row("connections", f"connect {q[:3]} at peak", "ms", Summary.of(values("ryu_nat peak", q)),
                        Summary.of(values("ceiling peak", q)), "ceiling app"))
    rows.append(Row("connections", "connect p99 at half of peak load", "ms", Summary.of(values("ryu_nat half", "p99_ms")),
                    target=Target("<=", 20.0, on="ours"), note=f"p50 {Summary.of(values('ryu_nat half', 'p50_ms')).text('ms')}"))
    flood = values("ryu_nat flood", "per_s")
    rows.append(Row("connections", f"connections/s under a {FLOOD_PPS} pps SYN flood vs own peak", "/s",
                    Summary.of(flood), Summary.of(ours), "ryu_nat without flood", paired(flood, ours, higher),
                    Target(">=", 0.7), note=cpu_note("ryu_nat flood")))
    for other in ("ceiling", "linux"):
        if runs.get(f"{other} flood"):
            rows.append(Row("connections", f"{other}: connections/s under flood vs own peak", "/s",
                            Summary.of(values(f"{other} flood", "per_s")), Summary.of(values(f"{other} peak", "per_s")),
                            f"{other} without flood",
                            paired(values(f"{other} flood", "per_s"), values(f"{other} peak", "per_s"), higher)))
    return rows


# --- 6. scale --------------------------------------------------------------------------------------------


def _flow_check(controller: lab.Controller, bridge: str) -> dict[str, int]:
    """Live mappings (REST) against the switch's mapping rules: pairs, stale rules, mappings without rules."""
    live: set[int] = set()
    after = 0
    while True:  # a page at a time
        status, body = controller.rest(f"/nat/mappings?proto=tcp&after={after}")
        if status != 200 or not isinstance(body, dict):
            break
        live.update(m["id"] for m in body["mappings"])
        if body["next_after"] is None:
            break
        after = body["next_after"]
    by_id: dict[int, int] = {}
    for flow in lab.rewrite_flows(bridge, "tcp"):
        mapping_id = flow.cookie & ((1 << 40) - 1)
        by_id[mapping_id] = by_id.get(mapping_id, 0) + 1
    return {"live": len(live), "rules": sum(by_id.values()), "rule_mappings": len(by_id),
            "not_two": sum(1 for n in by_id.values() if n != 2),
            "stale_rules": sum(n for i, n in by_id.items() if i not in live),
            "without_rules": len(live - set(by_id)), "rest": status}


def scale(reps: int, workdir: Path) -> list[Row]:
    empty_rates: list[float] = []
    full_rates: list[float] = []
    checks: list[dict[str, int]] = []
    with NatLab(workdir) as nat_lab:
        assert nat_lab.net is not None
        bridge = nat_lab.net.nat.name
        server_command = [HOST_PYTHON, CONN_PROBE, "server", "--port", str(CONN_PORT)]
        with running(nat_lab.net.srv, server_command, r"^READY"):
            for rep in range(reps):
                site = nat_lab.site(NAT_APP, tcp_table_size=SCALE_TABLE)
                controller = nat_lab.controller
                assert controller is not None
                warm_up(site, bridge)
                empty_rates.append(connections(site, SCALE_PROBE, bridge=bridge)["per_s"])
                connections(site, SCALE_TABLE, bridge=bridge)  # fills it, and evicts the oldest
                time.sleep(1)
                checks.append(_flow_check(controller, bridge))
                full_rates.append(connections(site, SCALE_PROBE, bridge=bridge)["per_s"])
                time.sleep(1)
                checks.append(_flow_check(controller, bridge))
                print(f"  scale: rep {rep + 1}/{reps} done", file=sys.stderr)
            problems = nat_lab.controller_problems()
    if problems:
        raise RuntimeError(f"controller log: {problems[:2]}")
    per_mapping = [c["rules"] / c["live"] for c in checks if c["live"]]
    return [
        Row("scale", f"live mappings at a full table (size {SCALE_TABLE})", "", Summary.of([c["live"] for c in checks]),
            target=Target("==", SCALE_TABLE, on="ours"), note=f"REST status {checks[-1]['rest']}"),
        Row("scale", "switch rules per live mapping", "", Summary.of(per_mapping) if per_mapping else None,
            target=Target("==", 2.0, on="ours"),
            note=f"mappings with other than 2 rules: {sum(c['not_two'] for c in checks)}"),
        Row("scale", "stale rules (of no live mapping) + live mappings without rules", "",
            Summary.of([c["stale_rules"] + c["without_rules"] for c in checks]), target=Target("<=", 0, on="ours")),
        Row("scale", f"set-up rate, full table vs empty ({SCALE_PROBE} connections)", "/s", Summary.of(full_rates),
            Summary.of(empty_rates), "empty table", paired(full_rates, empty_rates, higher), Target(">=", 0.8),
            note="connections/s; at a full table each new mapping evicts the oldest"),
    ]


SECTIONS: dict[str, Callable[[int, Path], list[Row]]] = {
    "dataplane": dataplane, "connections": new_connections, "scale": scale}


def run(section: str, reps: int = 3) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{section}-") as workdir:
        return SECTIONS[section](reps, Path(workdir))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("section", choices=sorted(SECTIONS))
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for row in run(args.section, args.reps):
        print(row.console())
