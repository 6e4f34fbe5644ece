"""mininet/LAB.md, done as a student does it: every command in order, every "Observe" statement checked.

LAB.md's command boxes give each line a prompt: ``A$`` (terminal A, the
controller's shell), ``B$`` (terminal B's shell), ``mininet>`` (the Mininet
prompt in terminal B), or the line ``A: Ctrl-C``. Lines without a prompt
continue the command above (a here-document). Each statement ends with
``<!-- check: NAME -->``; the check registered here under NAME runs when the
lab reaches it, on what the commands printed so far. A statement without a
check, or a check without a statement, fails the test too.

What the test does that a student does by looking or waiting:

- after starting the controller it waits until it listens (terminal A prints its start lines);
- after starting Mininet, and after a reconnect (``set-controller``), it waits until terminal A
  says ``NAT switch connected``, as the lab tells the student to;
- after a command that starts something in the background (``&``), it gives it a second.

Mininet runs on a pseudo-terminal, as in a student's terminal (``ovs-ofctl``
prints port names there, numbers into a pipe); the shells run each command
with ``bash -c``, keeping the environment between commands (``source
.venv/bin/activate``). Ctrl-C stops the controller as the other end-to-end
fixtures stop it (SIGTERM, see ``topologies/lab.py``). The lab uses the
standard ports (6653, 8080) and ``/tmp/nat-lab``, as written.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from topologies import lab
from topologies.two_networks import leftovers, sweep

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LAB_MD = REPO / "mininet" / "LAB.md"
LOG_DIR = REPO / "logs" / "e2e" / "test_e2e_lab"
LAB_DIR = Path("/tmp/nat-lab")
CONTROLLER_LOG = LAB_DIR / "controller.log"
OPENFLOW_PORT, API_PORT = 6653, 8080

_PROMPT = re.compile(r"^(A\$|B\$|mininet>) (.*)$")
_CTRL_C = "A: Ctrl-C"
_CHECK = re.compile(r"<!-- check: ([\w-]+) -->")
_CONTROLLER = re.compile(r"^(ryu-nat|ryu-manager)\b")
_MININET = re.compile(r"^mn\b")
CONNECTED = "NAT switch connected"
FULL_DUMP = "sh ovs-ofctl -O OpenFlow13 --no-names dump-flows nat"


# --- LAB.md -------------------------------------------------------------------------------------


@dataclass
class Step:
    """One thing LAB.md asks for: a command in a terminal, Ctrl-C, or a statement to check."""

    kind: str  # "A$", "B$", "mininet>", "ctrl-c" or "check"
    text: str
    line: int


def lab_steps(text: str) -> list[Step]:
    """LAB.md's commands and checks in document order."""
    steps: list[Step] = []
    in_box, command = False, None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            in_box, command = not in_box, None
        elif in_box:
            prompt = _PROMPT.match(line.strip())
            if prompt:
                command = Step(prompt[1], prompt[2], number)
                steps.append(command)
            elif line.strip() == _CTRL_C:
                steps.append(Step("ctrl-c", "", number))
                command = None
            elif command is not None:
                command.text += "\n" + line
        else:
            steps += [Step("check", name, number) for name in _CHECK.findall(line)]
    return steps


# --- the two terminals ------------------------------------------------------------------------------


class CommandFailed(AssertionError):
    """A command of the lab failed to run; the rest of the lab depends on it."""


def fresh_environment() -> dict[str, str]:
    """The environment of a new terminal: this one's, without the project's virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    venv = str(REPO / ".venv")
    env["PATH"] = ":".join(p for p in env.get("PATH", "").split(":") if p and not p.startswith(venv))
    env["TERM"] = "dumb"
    return env


class Shell:
    """A terminal's shell: each command runs in ``bash -c``; exported variables carry over."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.env = fresh_environment()
        self._env_file = workdir / f"{name}.env"

    def run(self, command: str, timeout_s: float = 120) -> str:
        script = f"{command}\n__status=$?\nenv -0 > '{self._env_file}'\nexit $__status\n"
        done = subprocess.run(["bash", "-c", script], cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0:
            raise CommandFailed(f"{command!r} exited {done.returncode}: {done.stdout}{done.stderr}")
        self.env = dict(item.split("=", 1) for item in self._env_file.read_text().split("\0") if "=" in item)
        return done.stdout + done.stderr

    def spawn(self, command: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        """A long-running command (the controller, Mininet), dying with this test if it dies."""
        return subprocess.Popen([*lab.DIE_WITH_PARENT, "bash", "-c", f"exec {command}"], cwd=REPO, env=self.env,
                                start_new_session=True, **kwargs)


class Controller:
    """The controller running in terminal A; what it prints is terminal A's screen."""

    def __init__(self, shell: Shell, command: str, screen: Path) -> None:
        self.screen_path = screen
        self._start = screen.stat().st_size if screen.exists() else 0
        with screen.open("ab") as out:
            self.process = shell.spawn(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def screen(self) -> str:
        """What this run printed so far."""
        with self.screen_path.open("rb") as screen:
            screen.seek(self._start)
            return screen.read().decode(errors="replace")

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
        def check() -> bool:
            if self.process.poll() is not None:
                raise CommandFailed(f"the controller exited {self.process.returncode}:\n{self.screen()}")
            return predicate()
        lab.wait_until(check, timeout_s, what=what)

    def stop(self) -> None:
        """Ctrl-C, as the end-to-end fixtures do it (SIGTERM; killed after 5 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Mininet:
    """``mn`` on a pseudo-terminal: a line in, its output up to the next ``mininet>`` prompt out."""

    PROMPT = b"mininet> "

    def __init__(self, shell: Shell, command: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 250, 0, 0))
        self.process = shell.spawn(command, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        self._terminal = master
        self.startup = self._until_prompt(120)

    def run(self, line: str, timeout_s: float) -> str:
        os.write(self._terminal, line.encode() + b"\n")
        if line == "exit":
            return self._until_exit(timeout_s)
        output = self._until_prompt(timeout_s)
        echo, _, rest = output.partition("\n")  # the terminal echoes what was typed
        return rest if echo.strip() == line.strip() else output

    def _read(self, deadline: float) -> bytes | None:
        """Whatever the terminal has within a second; None once Mininet is gone."""
        ready, _, _ = select.select([self._terminal], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
        if not ready:
            return b""
        try:
            return os.read(self._terminal, 65536) or None
        except OSError:  # EIO: every process on the terminal closed it
            return None

    def _until_prompt(self, timeout_s: float) -> str:
        buffer, deadline = b"", time.monotonic() + timeout_s
        while not buffer.endswith(self.PROMPT):
            if time.monotonic() > deadline:
                raise CommandFailed(f"no mininet> prompt after {timeout_s:g} s; so far: {_text(buffer)}")
            chunk = self._read(deadline)
            if chunk is None:
                raise CommandFailed(f"Mininet exited {self.process.poll()}: {_text(buffer)}")
            buffer += chunk
        return _text(buffer[:-len(self.PROMPT)])

    def _until_exit(self, timeout_s: float) -> str:
        buffer, deadline = b"", time.monotonic() + timeout_s
        while (chunk := self._read(deadline)) is not None and time.monotonic() < deadline:
            buffer += chunk
        try:
            self.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise CommandFailed(f"Mininet still running {timeout_s:g} s after exit: {_text(buffer)}") from None
        return _text(buffer)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        os.close(self._terminal)


def _text(raw: bytes) -> str:
    return raw.decode(errors="replace").replace("\r\n", "\n").replace("\r", "")


# --- running the lab ----------------------------------------------------------------------------------


@dataclass
class Entry:
    terminal: str
    command: str
    output: str


@dataclass
class LabRun:
    """The lab so far: what each command printed, terminal A's screen, the network's state."""

    workdir: Path
    transcript: list[Entry] = field(default_factory=list)
    controller: Controller | None = None
    controller_runs: int = 0
    mininet: Mininet | None = None
    false_statements: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shells = {"A$": Shell("A", self.workdir), "B$": Shell("B", self.workdir)}
        self.screen_path = LOG_DIR / "terminal-A.txt"
        self.log_start = CONTROLLER_LOG.stat().st_size if CONTROLLER_LOG.exists() else 0

    # what checks read

    def outputs(self, command: str) -> list[str]:
        """The outputs of every command so far that is ``command`` (or else contains it), oldest first."""
        found = ([entry.output for entry in self.transcript if entry.command == command]
                 or [entry.output for entry in self.transcript if command in entry.command])
        assert found, f"no command {command!r} ran before this statement"
        return found

    def output(self, command: str) -> str:
        """The output of the latest command that is ``command`` (or else contains it)."""
        return self.outputs(command)[-1]

    def screen(self) -> str:
        """Terminal A's screen since the controller last started."""
        assert self.controller is not None, "the controller never started"
        return self.controller.screen()

    # doing the steps

    def do(self, step: Step) -> None:
        if step.kind == "check":
            self._check(step)
        elif step.kind == "ctrl-c":
            assert self.controller is not None, f"line {step.line}: Ctrl-C, but no controller runs"
            self.controller.stop()
        elif step.kind == "mininet>":
            self._mininet(step.text)
        elif step.kind == "A$" and _CONTROLLER.match(step.text):
            self._start_controller(step.text)
        elif step.kind == "B$" and _MININET.match(step.text):
            self.mininet = Mininet(self.shells["B$"], step.text)
            self.transcript.append(Entry("B", step.text, self.mininet.startup))
            self._wait_connected()
        else:
            self.transcript.append(Entry(step.kind[0], step.text, self.shells[step.kind].run(step.text)))

    def _check(self, step: Step) -> None:
        try:
            CHECKS[step.text](self)
        except AssertionError as exc:
            self.false_statements.append(f"LAB.md line {step.line}, {step.text}: {exc}")

    def _start_controller(self, command: str) -> None:
        assert self.controller is None or self.controller.process.poll() is not None, \
            "a controller is still running in terminal A"
        self.controller = Controller(self.shells["A$"], command, self.screen_path)
        self.controller_runs += 1
        self.controller.wait_for(lambda: lab.listening(OPENFLOW_PORT) and lab.listening(API_PORT),
                                 f"the controller to listen on {OPENFLOW_PORT} and {API_PORT}")

    def _mininet(self, line: str) -> None:
        assert self.mininet is not None, "a mininet> command before Mininet started"
        connections = self._connections()
        output = self.mininet.run(line, timeout_s=90)
        self.transcript.append(Entry("mininet", line, output))
        if line.endswith("&"):
            time.sleep(1)
        if "set-controller" in line:
            self._wait_connected(connections)

    def _connections(self) -> int:
        """How often terminal A has said the switch connected, in this run of the controller."""
        alive = self.controller is not None and self.controller.process.poll() is None
        return self.screen().count(CONNECTED) if alive else 0

    def _wait_connected(self, before: int = 0) -> None:
        """Until terminal A says the switch connected (once more than ``before`` times)."""
        assert self.controller is not None
        self.controller.wait_for(lambda: self._connections() > before, f"a new '{CONNECTED}' in terminal A",
                                 timeout_s=20)

    def close(self) -> None:
        try:
            if self.mininet is not None:
                self.mininet.close()
        finally:
            if self.controller is not None:
                self.controller.stop()


def test_every_statement_has_a_check_and_every_check_a_statement() -> None:
    names = [step.text for step in lab_steps(LAB_MD.read_text()) if step.kind == "check"]
    assert sorted(set(names)) == sorted(names), "a check name appears twice in LAB.md"
    assert set(names) == set(CHECKS)
    commands = [step for step in lab_steps(LAB_MD.read_text()) if step.kind not in ("check",)]
    assert len(commands) > 50


def test_the_lab_as_written() -> None:
    for port in (OPENFLOW_PORT, API_PORT):
        assert not lab.listening(port), f"port {port} is taken: is a lab still running (tmux attach -t nat-lab)?"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.iterdir():
        old.unlink()
    run = LabRun(LOG_DIR)
    try:
        for step in lab_steps(LAB_MD.read_text()):
            run.do(step)
    finally:
        run.close()
        (LOG_DIR / "transcript.txt").write_text("".join(
            f"{entry.terminal}> {entry.command}\n{entry.output}\n" for entry in run.transcript))
        sweep()  # after a failure part-way; the lab's own end leaves nothing (checked as nothing-left)
    problems = list(run.false_statements)
    problems += [f"controller log: {excerpt}" for excerpt in _log_errors()]
    problems += [f"process left: {process}" for process in lab.child_processes()]
    assert not problems, (f"{len(problems)} problem(s); transcript and terminal A in {LOG_DIR}:\n"
                          + "\n".join(problems))


def _log_errors() -> list[str]:
    """Tracebacks and OpenFlow errors in what terminal A printed (as the fixtures check their logs)."""
    return lab.log_errors((LOG_DIR / "terminal-A.txt").read_text(errors="replace"))


# --- the checks, one per statement of LAB.md ---------------------------------------------------------------

CHECKS: dict[str, Callable[[LabRun], None]] = {}


def check(name: str) -> Callable[[Callable[[LabRun], None]], Callable[[LabRun], None]]:
    def register(function: Callable[[LabRun], None]) -> Callable[[LabRun], None]:
        CHECKS[name] = function
        return function
    return register


def probe_result(output: str) -> dict[str, Any]:
    """The one result of a netprobe client's JSON line."""
    [line] = [text for text in output.splitlines() if text.startswith("{")]
    [result] = json.loads(line)["results"]
    return result


def counters(output: str) -> dict[str, int]:
    """``name value, name value`` pairs of the ``ryu-nat-ctl stats`` lines in ``output``."""
    return {name: int(value) for name, value in re.findall(r"(\w+) +(\d+)(?:,|$)", output, re.MULTILINE)}


def mapping_rows(output: str) -> list[list[str]]:
    """The rows of a ``ryu-nat-ctl mappings`` table."""
    return [line.split() for line in output.splitlines() if line.split()[:1] in (["udp"], ["tcp"], ["icmp"])]


def hops(output: str) -> list[set[str]]:
    """The addresses that answered at each hop of a ``traceroute -n``."""
    return [set(re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", line)) for line in output.splitlines()
            if re.match(r"^\s*\d+\s", line)]


def mapping_flows(output: str) -> tuple[lab.Flow, lab.Flow]:
    """The outbound (from port 2) and inbound (from port 1) flow of the one mapping in ``output``."""
    flows = [f for f in lab.parse_flows(output) if f.priority == 200]
    [outbound] = [f for f in flows if "in_port=2," in f.match]
    [inbound] = [f for f in flows if "in_port=1," in f.match]
    return outbound, inbound


@check("controller-started")
def _controller_started(run: LabRun) -> None:
    assert ("ryu_nat: public 192.168.3.1/24 (gateway 192.168.3.254, uplink port 1), private 10.0.0.1/24, "
            "redirects: tcp:8080=10.0.0.2:80") in run.screen()


@check("switch-connected")
def _switch_connected(run: LabRun) -> None:
    assert "dpid=0000000000000001: NAT switch connected, ports [1, 2, 4294967294]" in run.screen()


@check("base-rules")
def _base_rules(run: LabRun) -> None:
    flows = lab.parse_flows(run.output("sh ovs-ofctl -O OpenFlow13 dump-flows nat"))
    assert {(f.table, f.priority, f.match, f.actions) for f in flows if f.table == 0} == {
        (0, 2, 'ip,in_port="nat-eth1"', "check_pkt_larger(1514)->NXM_NX_REG0[0],goto_table:1"),
        (0, 1, "ip,dl_dst=02:4e:41:54:00:01", "check_pkt_larger(1514)->NXM_NX_REG0[0],goto_table:1"),
        (0, 0, "", "goto_table:1"),
    }
    assert {(f.table, f.priority, f.match) for f in flows if f.table != 0} == {
        (1, 400, "reg0=0x1/0x1"),
        (1, 301, "tcp,dl_dst=02:4e:41:54:00:01,tcp_flags=+rst"),
        (1, 300, "tcp,dl_dst=02:4e:41:54:00:01,tcp_flags=+fin"),
        (1, 299, "tcp,dl_dst=02:4e:41:54:00:01,tcp_flags=+syn-ack"),
        (1, 100, "arp"),
        (1, 51, 'in_port="nat-eth1"'),
        (1, 0, ""),
    }
    assert {f.actions for f in flows if f.table == 1} == {"CONTROLLER:65535"}
    assert {f.cookie for f in flows} == {0x4E41010000000000}


@check("port-names")
def _port_names(run: LabRun) -> None:
    assert 'in_port="nat-eth1"' in run.output("sh ovs-ofctl -O OpenFlow13 dump-flows nat")


@check("udp-peer-is-public")
def _udp_peer_is_public(run: LabRun) -> None:
    result = probe_result(run.output("--from-port 5001"))
    assert result["echo_ok"] and result["reply"]["peer"][0] == "192.168.3.1", result


@check("udp-flows")
def _udp_flows(run: LabRun) -> None:
    public_port = probe_result(run.output("--from-port 5001"))["reply"]["peer"][1]
    dump = run.output(FULL_DUMP)
    outbound, inbound = mapping_flows(dump)
    assert outbound.match == "udp,in_port=2,nw_src=10.0.0.2,nw_dst=192.168.3.10,tp_src=5001,tp_dst=9999"
    assert outbound.actions.startswith(f"dec_ttl,set_field:192.168.3.1->ip_src,set_field:{public_port}->udp_src,")
    assert "set_field:02:4e:41:54:00:01->eth_src,set_field:" in outbound.actions
    assert outbound.actions.endswith("->eth_dst,output:1")
    assert inbound.match == f"udp,in_port=1,nw_src=192.168.3.10,nw_dst=192.168.3.1,tp_src=9999,tp_dst={public_port}"
    assert inbound.actions.startswith("dec_ttl,set_field:10.0.0.2->ip_dst,set_field:5001->udp_dst,")
    assert inbound.actions.endswith("output:2")
    assert outbound.idle_timeout == inbound.idle_timeout == 300
    assert len(re.findall(r"send_flow_rem priority=200,", dump)) == 2
    assert f"{outbound.cookie:016x}"[:6] == "4e4102" and f"{inbound.cookie:016x}"[:6] == "4e4103"
    assert outbound.cookie & 0xFFFFFFFF == inbound.cookie & 0xFFFFFFFF


@check("first-packet-by-controller")
def _first_packet_by_controller(run: LabRun) -> None:
    outbound, inbound = mapping_flows(run.output(FULL_DUMP))
    assert (outbound.n_packets, inbound.n_packets) == (0, 1)


@check("second-run-stays-in-switch")
def _second_run_stays_in_switch(run: LabRun) -> None:
    first, second = (probe_result(out)["reply"]["peer"] for out in run.outputs("--from-port 5001")[-2:])
    assert first == second
    before = mapping_flows(run.output(FULL_DUMP))
    after = mapping_flows(run.output("--no-names dump-flows nat | grep udp"))
    assert [f.n_packets for f in after] == [f.n_packets + 1 for f in before]
    old, new = (counters(out) for out in run.outputs("ryu-nat-ctl stats | grep -E 'packet-ins|flow setups'")[-2:])
    assert (new["setups"], new["private"]) == (old["setups"], old["private"]), (old, new)


@check("icmp-through-controller")
def _icmp_through_controller(run: LabRun) -> None:
    assert "3 packets transmitted, 3 received" in run.output("h1 ping -c 3 srv")
    assert run.output("dump-flows nat | grep -c icmp").strip() == "0"
    old, new = (counters(out) for out in run.outputs("ryu-nat-ctl stats | grep -E 'packet-ins|flow setups'")[-2:])
    assert new["private"] == old["private"] + 3, (old, new)


@check("mappings-counters")
def _mappings_counters(run: LabRun) -> None:
    first = mapping_rows(run.output("sh ryu-nat-ctl mappings"))
    later = mapping_rows(run.output("sh sleep 3; ryu-nat-ctl mappings"))
    assert [row[0] for row in first] == [row[0] for row in later] == ["udp", "icmp"], (first, later)
    assert [row[7:] for row in first] == [["-", "-"], ["-", "-"]]
    outbound, inbound = mapping_flows(run.output("--no-names dump-flows nat | grep udp"))
    assert later[0][7] == str(outbound.n_packets + inbound.n_packets) and later[1][7:] == ["-", "-"], later
    icmp = later[1]
    assert icmp[2].split(":")[0] == "10.0.0.2" and icmp[2].split(":")[1] == icmp[4].split(":")[1], icmp


@check("rfc-warnings")
def _rfc_warnings(run: LabRun) -> None:
    warnings = [line for line in run.screen().splitlines() if "RFC" in line]
    assert len(warnings) == 2, warnings
    assert any("[nat] udp_idle_timeout = 10 is below the 120 s that RFC 4787 REQ-5 requires" in w for w in warnings)
    assert any("[nat] tcp_transitory_timeout = 10 is below the 240 s that RFC 5382 REQ-5 requires" in w
               for w in warnings)


@check("restart-starts-empty")
def _restart_starts_empty(run: LabRun) -> None:
    assert run.output("grep -c priority=200").strip() == "0"


@check("udp-idle-timeout")
def _udp_idle_timeout(run: LabRun) -> None:
    dump = run.output("dump-flows nat | grep udp")
    assert [f.idle_timeout for f in mapping_flows(dump)] == [10, 10]
    assert "duration=" in dump and "idle_age" not in dump


@check("udp-mapping-expired")
def _udp_mapping_expired(run: LabRun) -> None:
    assert run.output("sh sleep 15; ovs-ofctl -O OpenFlow13 dump-flows nat | grep -c udp").strip() == "0"
    assert run.output("ryu-nat-ctl mappings").strip() == "no mappings"


@check("http-200")
def _http_200(run: LabRun) -> None:
    assert run.output("h1 curl -s -o /dev/null").strip() == "200"


@check("tcp-fin-shortens")
def _tcp_fin_shortens(run: LabRun) -> None:
    dump = run.output("--no-names dump-flows nat | grep tcp")
    outbound, inbound = mapping_flows(dump)
    assert (outbound.idle_timeout, inbound.idle_timeout) == (10, 10)
    [fin] = [f for f in lab.parse_flows(dump) if f.priority == 300]
    assert fin.n_packets == 2


@check("tcp-mapping-expired")
def _tcp_mapping_expired(run: LabRun) -> None:
    assert run.output("sh sleep 15; ovs-ofctl -O OpenFlow13 dump-flows nat | grep -c priority=200").strip() == "0"


@check("three-clients-answered")
def _three_clients_answered(run: LabRun) -> None:
    assert all(probe_result(run.output(f"--from-port {port}"))["echo_ok"] for port in (6001, 6002, 6003))


@check("lru-eviction")
def _lru_eviction(run: LabRun) -> None:
    before, after = (mapping_rows(out) for out in run.outputs("sh ryu-nat-ctl mappings")[-2:])
    assert [row[2] for row in before] == ["10.0.0.2:6001", "10.0.0.2:6002"], before
    assert [row[2] for row in after] == ["10.0.0.2:6002", "10.0.0.2:6003"], after


@check("evicted-flows-gone")
def _evicted_flows_gone(run: LabRun) -> None:
    assert run.output("dump-flows nat | grep -c udp").strip() == "4"


@check("eviction-counted")
def _eviction_counted(run: LabRun) -> None:
    stats = run.output("ryu-nat-ctl stats | grep -E 'mappings|table use'")
    assert counters(stats)["evicted"] == 1 and re.search(r"\budp 2/2\b", stats), stats


@check("two-ports-taken")
def _two_ports_taken(run: LabRun) -> None:
    ports = {probe_result(run.output(f"--from-port {port}"))["reply"]["peer"][1] for port in (6001, 6002)}
    assert ports == {40000, 40001}


@check("third-client-is-refused")
def _third_client_is_refused(run: LabRun) -> None:
    assert probe_result(run.output("--from-port 6003")).get("error") == "unreachable"


@check("ports-exhausted-reported")
def _ports_exhausted_reported(run: LabRun) -> None:
    assert re.search(r"refused .*: ports_exhausted$", run.screen(), re.MULTILINE), run.screen()
    stats = run.output("ryu-nat-ctl stats | grep -E 'public ports|drops'")
    assert counters(stats)["ports_exhausted"] == 1 and re.search(r"\budp 2/2\b", stats), stats


@check("h1-traceroute")
def _h1_traceroute(run: LabRun) -> None:
    assert hops(run.output("h1 traceroute -n inet")) == [{"10.0.0.1"}, {"192.168.3.254"}, {"198.51.100.10"}]


@check("quoted-probe-translated")
def _quoted_probe_translated(run: LabRun) -> None:
    hop_2 = [line for line in run.output("h1 traceroute -n inet").splitlines() if re.match(r"^\s*2\s", line)]
    assert hop_2 and "192.168.3.254" in hop_2[0] and "*" not in hop_2[0], hop_2


@check("srv-traceroute")
def _srv_traceroute(run: LabRun) -> None:
    assert hops(run.output("srv traceroute -n inet")) == [{"192.168.3.254"}, {"198.51.100.10"}]


@check("reply-ttls")
def _reply_ttls(run: LabRun) -> None:
    assert "ttl=62" in run.output("h1 ping -c 1 inet") and "ttl=63" in run.output("srv ping -c 1 inet")


@check("pingall-only-outbound")
def _pingall_only_outbound(run: LabRun) -> None:
    output = run.output("pingall")
    assert "*** Results: 30% dropped (21/30 received)" in output
    rows = dict(line.split(" -> ") for line in output.splitlines() if " -> " in line)
    assert {host: row.split() for host, row in rows.items()} == {
        "gw": ["X", "X", "X", "inet", "srv"], "h1": ["gw", "h2", "h3", "inet", "srv"],
        "h2": ["gw", "h1", "h3", "inet", "srv"], "h3": ["gw", "h1", "h2", "inet", "srv"],
        "inet": ["gw", "X", "X", "X", "srv"], "srv": ["gw", "X", "X", "X", "inet"]}


def access_log(run: LabRun) -> list[str]:
    return [line for line in run.output("sh cat /tmp/nat-lab/h1-http.log").splitlines() if "GET /LAB.md" in line]


@check("redirect-reaches-h1")
def _redirect_reaches_h1(run: LabRun) -> None:
    assert run.output("srv curl -s http://192.168.3.1:8080/LAB.md").strip() == "# Lab: a NAT on an OpenFlow switch"


@check("server-sees-real-client")
def _server_sees_real_client(run: LabRun) -> None:
    assert access_log(run)[0].startswith("192.168.3.10 "), access_log(run)


@check("hairpin")
def _hairpin(run: LabRun) -> None:
    assert run.output("h2 curl -s http://192.168.3.1:8080/LAB.md").strip() == "# Lab: a NAT on an OpenFlow switch"
    assert access_log(run)[1].startswith("192.168.3.1 "), access_log(run)
    [hairpin] = [f for f in lab.parse_flows(run.output("grep tp_dst=8080")) if "nw_src=10.0.0.3," in f.match]
    assert hairpin.match.startswith("tcp,in_port=2,nw_src=10.0.0.3,nw_dst=192.168.3.1,"), hairpin
    assert "set_field:192.168.3.1->ip_src" in hairpin.actions and "set_field:10.0.0.2->ip_dst" in hairpin.actions
    assert hairpin.actions.endswith("IN_PORT"), hairpin


@check("no-redirect-no-entry")
def _no_redirect_no_entry(run: LabRun) -> None:
    assert run.output("http://192.168.3.1:80/").strip() == "curl exit status 28"


@check("udp-redirect-reaches-h2")
def _udp_redirect_reaches_h2(run: LabRun) -> None:
    result = probe_result(run.output("udp-client --to 192.168.3.1:5353"))
    assert result["echo_ok"] and result["reply"]["server"] == "h2-dns", result
    assert result["reply"]["peer"][0] == "192.168.3.10", result


@check("redirects-listed")
def _redirects_listed(run: LabRun) -> None:
    rows = [line.split() for line in run.output("ryu-nat-ctl redirect list").splitlines()[1:]]
    assert rows == [["tcp", "8080", "10.0.0.2:80"], ["udp", "5353", "10.0.0.3:53"]], rows


def _session_port(listing: str) -> str:
    """The public ip:port of h1's TCP session to srv:8001 in a ``ryu-nat-ctl mappings`` table."""
    rows = [line.split() for line in listing.splitlines()[1:]]
    [public] = [row[3] for row in rows if len(row) > 4 and row[2].startswith("10.0.0.2:")
                and row[4] == "192.168.3.10:8001"]
    return public


@check("restart-reads-back")
def _restart_reads_back(run: LabRun) -> None:
    assert "reading the mappings back from the switch's rules" in run.screen()
    before = _session_port(run.output("sh ryu-nat-ctl mappings --proto tcp"))
    after = _session_port(run.output("sh sleep 10; ryu-nat-ctl mappings --proto tcp"))
    assert before == after, (before, after)


@check("restart-keeps-connection")
def _restart_keeps_connection(run: LabRun) -> None:
    lines = [json.loads(line) for line in run.output("cat /tmp/nat-lab/session.log").splitlines()
             if line.startswith("{")]
    [result] = [line for line in lines if "rounds" in line]
    ip, port = _session_port(run.output("sh ryu-nat-ctl mappings --proto tcp")).split(":")
    assert "error" not in result, result
    assert [r["peer"] for r in result["rounds"]] == [[ip, int(port)]] * 2, result
    assert all(r["ok"] for r in result["rounds"]) and result["closed_by_server"], result


@check("nothing-left")
def _nothing_left(run: LabRun) -> None:
    assert run.mininet is not None and run.mininet.process.poll() == 0
    assert run.controller is not None and run.controller.process.poll() is not None
    assert leftovers() == []


@check("log-kept")
def _log_kept(run: LabRun) -> None:
    with CONTROLLER_LOG.open("rb") as log_file:
        log_file.seek(run.log_start)  # an earlier lab's runs come before
        log = log_file.read().decode(errors="replace")
    assert log.count("ryu_nat: public 192.168.3.1/24") == run.controller_runs == 7
    assert "ports_exhausted" in log
