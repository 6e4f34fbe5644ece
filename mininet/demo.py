"""``make demo``: the NAT at work on real packets, step by step, then the Mininet CLI.

Run as root: ``.venv/bin/python mininet/demo.py``. It starts Open vSwitch if
needed, removes what a crashed earlier run left, writes the configuration
below to a temporary file, starts ``ryu-manager`` with ``ryu_nat.app``,
builds ``topologies/two_networks.py`` (h1-h3 behind the NAT; srv, gw and inet
beyond it) and runs each step, printing PASS or FAIL. With a terminal it then
opens the Mininet CLI; without one (CI, pipes) it prints a summary and exits
0 only if every step passed. Ctrl-C, ``exit`` or a kill signal all end in the
same cleanup: controller stopped, bridges, links and host namespaces gone.
The controller log stays in ``logs/demo/controller.log``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

# This directory must never hold an __init__.py: it would shadow the real mininet package.
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mininet.cli import CLI
from mininet.log import setLogLevel

from topologies import lab
from topologies.two_networks import (
    INTERNET_SERVER_IP,
    NAT_SWITCH,
    PUBLIC_IP,
    SERVER_IP,
    NatNet,
    build_net,
)

# The NAT's configuration for topologies/two_networks.py (see README, "Configuration").
DEMO_CONFIG = """\
[nat]
# The NAT's public address and subnet: the uplink, switch port 1, on the 192.168.3.0/24 LAN.
public_ipv4 = 192.168.3.1/24
public_port = 1
# Next hop for destinations off that subnet: the router gw, which reaches 198.51.100.0/24.
public_ipv4_gateway = 192.168.3.254
# The private hosts' default gateway; every switch port but 1 is private.
private_ipv4 = 10.0.0.1/24
# Port forward: 192.168.3.1:8080 on the public side reaches h1 (10.0.0.2) port 80.
redirects = tcp:8080=10.0.0.2:80
dpid = 1
"""

LOG_PATH = REPO / "logs" / "demo" / "controller.log"
PAGE = b"hello from h1\n"
DOWNLOAD_SIZE = 1 << 20


class Demo:
    """The demo's state and steps; every step returns (passed, what was seen)."""

    def __init__(self, natnet: NatNet, controller: lab.Controller, workdir: Path) -> None:
        self.natnet = natnet
        self.controller = controller
        self.workdir = workdir
        self.results: list[tuple[str, bool]] = []
        self.download = workdir / "www" / "download.bin"
        self.download.parent.mkdir()
        self.download.write_bytes(os.urandom(DOWNLOAD_SIZE))
        self.h1_site = workdir / "h1"
        self.h1_site.mkdir()
        (self.h1_site / "index.html").write_bytes(PAGE)

    def step(self, title: str, action: Callable[[], tuple[bool, str]]) -> None:
        try:
            passed, seen = action()
        except Exception as exc:  # a step's failure is a FAIL line, not the end of the demo
            passed, seen = False, f"{type(exc).__name__}: {exc}"
        self.results.append((title, passed))
        print(f"[{'PASS' if passed else 'FAIL'}] {title}")
        if seen:
            print(textwrap.indent(seen.rstrip(), "       "))

    def ping(self, address: str) -> tuple[bool, str]:
        output = lab.ping(self.natnet.private[0], address)
        return output is not None, (output or "no reply").strip().splitlines()[-1]

    def http_download(self, server_name: str, address: str) -> tuple[bool, str]:
        server = self.natnet.net.get(server_name)
        saved = self.workdir / f"from-{server_name}.bin"
        with lab.http_server(server, 80, self.download.parent):
            curl = self.natnet.private[0].cmd(
                f"curl -sS --max-time 20 -o {saved} http://{address}/download.bin 2>&1; echo rc=$?")
        if not saved.exists():
            return False, curl.strip()
        same = saved.read_bytes() == self.download.read_bytes()
        return same, (f"h1 downloaded {saved.stat().st_size} bytes from {address}: "
                      + ("identical to the original" if same else "NOT identical to the original"))

    def udp_exchange(self) -> tuple[bool, str]:
        with lab.server(self.natnet.srv, "udp", 9999):
            output = lab.probe(self.natnet.private[1], "udp-client", "--to", f"{SERVER_IP}:9999")
        [result], local = output["results"], ":".join(map(str, output["local"]))
        if "error" in result:
            return False, f"h2 {local} -> {SERVER_IP}:9999: {result['error']}"
        peer = ":".join(map(str, result["reply"]["peer"]))
        return (bool(result["echo_ok"]) and result["reply"]["peer"][0] == PUBLIC_IP,
                f"h2 sent from {local}; srv saw the datagram come from {peer} and echoed it back")

    def port_forward(self) -> tuple[bool, str]:
        with lab.http_server(self.natnet.private[0], 80, self.h1_site) as web:
            body = self.natnet.srv.cmd(f"curl -sS --max-time 10 http://{PUBLIC_IP}:8080/index.html")
            access = lab.wait_until(lambda: [line for line in web.lines if "GET /index.html" in line],
                                    5, what="h1's access log")
        return (body.encode().strip() == PAGE.strip() and access[0].startswith(SERVER_IP + " "),
                f"srv -> {PUBLIC_IP}:8080 got {body.strip()!r}\nh1's web server log: {access[0]}")

    def unsolicited(self) -> tuple[bool, str]:
        with lab.http_server(self.natnet.private[1], 80, self.h1_site) as web:
            output = self.natnet.srv.cmd(f"curl -sS --max-time 3 http://{PUBLIC_IP}:80/ 2>&1; echo rc=$?")
        reached = [line for line in web.lines if "GET" in line]
        return (not reached and "rc=0" not in output,
                f"srv -> {PUBLIC_IP}:80 (no mapping, no redirect): {output.strip().splitlines()[0]}")

    def nat_table(self) -> tuple[bool, str]:
        """Each mapping from the REST API with the switch flows that carry it, then any other flows."""
        status, body = self.controller.rest("/nat/mappings")
        rewrites = lab.rewrite_flows(NAT_SWITCH)
        lines = [f"GET /nat/mappings (port {self.controller.wsapi_port}) beside "
                 f"ovs-ofctl -O OpenFlow13 dump-flows {NAT_SWITCH}:"]
        shown: set[tuple[str, str]] = set()  # (match, actions): counters move between dumps
        if status == 200 and isinstance(body, dict) and isinstance(body.get("mappings"), list):
            for mapping in body["mappings"]:
                line, flows = _mapping_with_flows(mapping)
                lines.append(line)
                lines += [f"    flow {f.match}\n      -> {f.actions}" for f in flows]
                shown.update((f.match, f.actions) for f in flows)
        elif status:
            lines.append(f"(REST API answered {status})")
        else:
            lines.append(f"(REST API not reachable: {body})")
        others = [f for f in rewrites if (f.match, f.actions) not in shown]
        if others:
            lines.append("Rewrite flows of no listed mapping:")
            lines += [f"    flow {f.match}\n      -> {f.actions}" for f in others]
        return bool(rewrites), "\n".join(lines)

    def run(self) -> None:
        self.step(f"ping h1 -> srv {SERVER_IP}", lambda: self.ping(SERVER_IP))
        self.step(f"ping h1 -> inet {INTERNET_SERVER_IP} (through the router gw)",
                  lambda: self.ping(INTERNET_SERVER_IP))
        self.step("HTTP download h1 <- srv", lambda: self.http_download("srv", SERVER_IP))
        self.step("HTTP download h1 <- inet", lambda: self.http_download("inet", INTERNET_SERVER_IP))
        self.step("UDP exchange h2 <-> srv, seen from the public address", self.udp_exchange)
        self.step(f"port forward srv -> {PUBLIC_IP}:8080 -> h1:80", self.port_forward)
        self.step("unsolicited inbound connection refused", self.unsolicited)
        self.step("NAT table beside the switch's rewrite flows", self.nat_table)

    def summary(self) -> bool:
        passed = sum(ok for _, ok in self.results)
        print(f"\n{passed}/{len(self.results)} steps passed"
              + "".join(f"\n  FAIL: {title}" for title, ok in self.results if not ok))
        return passed == len(self.results)


def _mapping_with_flows(mapping: dict[str, Any]) -> tuple[str, list[lab.Flow]]:
    """One line for a mapping of the REST API, and its rewrite flows on the switch."""
    try:
        proto = mapping["protocol"]
        private, public, remote = (mapping[k] for k in ("private", "public", "remote"))
        line = (f"{proto:<4} {private['ip']}:{private['port']} = {public['ip']}:{public['port']}"
                f" <-> {remote['ip']}:{remote['port']}  ({mapping.get('kind', '?')})")
    except (KeyError, TypeError):
        return json.dumps(mapping, sort_keys=True), []
    if proto not in ("tcp", "udp"):
        return f"{line}: no flows, the controller translates every packet", []
    return line, lab.mapping_flows(NAT_SWITCH, proto, private["port"], public["port"])


def _exit_on_signal(signum: int, _frame: object) -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the cleanup in main() runs."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        lab.prepare_machine()
    except PermissionError as exc:
        print(f"demo: {exc}; try: sudo make demo", file=sys.stderr)
        return 2
    setLogLevel("output")
    # A fixed place, so a run killed with SIGKILL leaves nothing that the next run does not remove.
    workdir = Path(tempfile.gettempdir()) / "ryu_nat_demo"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    config = workdir / "nat.conf"
    config.write_text(DEMO_CONFIG)
    if LOG_PATH.exists():
        LOG_PATH.unlink()
    natnet: NatNet | None = None
    controller: lab.Controller | None = None
    try:
        of_port = lab.free_port()
        print(f"*** Config {config}:\n{textwrap.indent(DEMO_CONFIG, '    ')}")
        natnet = build_net(of_port)
        controller = lab.Controller(config, of_port, LOG_PATH)
        print(f"*** Starting {' '.join(controller.command)}\n*** Controller log: {LOG_PATH}")
        try:
            controller.start()
            controller.wait_connected(NAT_SWITCH)
        except (lab.ControllerDied, TimeoutError) as exc:
            print(f"[FAIL] controller sets up the NAT switch\n{textwrap.indent(str(exc), '       ')}")
            return 1
        print("[PASS] controller sets up the NAT switch\n")
        demo = Demo(natnet, controller, workdir)
        demo.run()
        all_passed = demo.summary()
        print("\nNext, once this demo has ended: the hands-on lab on the same network, mininet/LAB.md "
              "(`make lab` opens its two terminals).")
        if sys.stdin.isatty():
            print("\n*** Mininet CLI. Try: h1 ping inet | h1 traceroute -n inet | "
                  f"sh ovs-ofctl -O OpenFlow13 dump-flows {NAT_SWITCH} | exit")
            CLI(natnet.net)
        return 0 if all_passed else 1
    finally:
        # A second Ctrl-C or kill must not cut the cleanup short.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        print("*** Cleaning up")
        try:
            if controller is not None:
                controller.stop()
            if natnet is not None:
                natnet.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # cleaned up already, in main()
        sys.exit(130)
