"""``make lab``: the lab's two terminals come up in tmux, on the ports the README's tools expect.

The session starts detached (no terminal here); the test waits for the
controller in the upper pane and Mininet in the lower one, asks the controller
through ``ryu-nat-ctl`` with its default URL, then ends Mininet with ``exit``
and the session with ``tmux kill-session``, and checks that nothing is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from topologies import lab
from topologies.two_networks import leftovers, sweep

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SESSION = "nat-lab"
CTL = REPO / ".venv" / "bin" / "ryu-nat-ctl"


def tmux(*args: str) -> str:
    return lab.run("tmux", *args, check=False)


def pane(index: int) -> str:
    """What pane ``index`` of the lab window shows, scroll-back included."""
    return tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", f"{SESSION}:lab.{index}")


def pane_processes() -> list[int]:
    """The process ids of the panes' shells and of everything they started."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2:].split()[1])
    found = [int(pid) for pid in tmux("list-panes", "-s", "-t", SESSION, "-F", "#{pane_pid}").split()]
    for pid in found:  # grows while it runs: breadth-first over the process tree
        found += [child for child, parent in parents.items() if parent == pid]
    return found


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_make_lab_opens_both_terminals_on_the_standard_ports() -> None:
    assert subprocess.run(["tmux", "has-session", "-t", SESSION], capture_output=True).returncode != 0, \
        "a nat-lab tmux session is running already: end it first (tmux kill-session -t nat-lab)"
    for port in (6653, 8080):
        assert not lab.listening(port), f"port {port} is taken before make lab"
    processes: list[int] = []
    try:
        done = subprocess.run(["make", "--no-print-directory", "lab"], cwd=REPO, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "tmux attach -t nat-lab" in done.stdout
        lab.wait_until(lambda: "NAT switch connected" in pane(0), 60, what="the controller in the upper pane")
        lab.wait_until(lambda: pane(1).rstrip().endswith("mininet>"), 60, what="Mininet's prompt in the lower pane")
        processes = pane_processes()
        assert lab.listening(6653) and lab.listening(8080)
        stats = lab.run(str(CTL), "stats")  # no --url: the README's default, 127.0.0.1:8080
        assert "connected, dpid 0000000000000001" in stats, stats
        assert "ryu-nat --config-file mininet/nat-lab.conf" in pane(0)
        assert "mn --custom topologies/two_networks.py" in pane(1)
        tmux("send-keys", "-t", f"{SESSION}:lab.1", "exit", "Enter")
        lab.wait_until(lambda: "*** Done" in pane(1), 60, what="Mininet to stop")
    finally:
        tmux("kill-session", "-t", SESSION)
        try:
            lab.wait_until(lambda: not alive(processes), 15, what="the lab's processes to end with the session")
        except TimeoutError:
            pass
        survivors = alive(processes)
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        left = leftovers()
        sweep()
    assert survivors == [], "processes outlived the tmux session"
    assert left == []
    assert not lab.listening(6653) and not lab.listening(8080)
