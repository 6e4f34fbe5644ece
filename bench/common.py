"""What every benchmark shares: summaries of repeated runs, result rows, machine facts.

Figures are ratios measured side by side in one run (contender and baseline
alternated), because these machines are shared and noisy. A :class:`Row` holds
both sides as :class:`Summary` values and the median of the paired ratios.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # for topologies.controller, which the benchmarks share with the tests
BENCH = REPO / "bench"
# The environment running the benchmark holds its controller: .venv (Ryu) for `make bench`.
VENV_BIN = Path(sys.executable).parent
RYU_MANAGER = VENV_BIN / "ryu-manager"
# os-ken's environment (make venvs), for ryu_nat on os-ken beside ryu_nat on Ryu.
OSKEN_RYU_NAT = REPO / ".venv-osken" / "bin" / "ryu-nat"
# Processes we start die with us, even if we are killed (as topologies/lab.py does).
DIE_WITH_PARENT = ("setpriv", "--pdeathsig", "KILL", "--")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Summary:
    """Median, min and max of repeated measurements of one figure."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no measurements")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def text(self, unit: str, digits: int = 3) -> str:
        words = [_num(self.median, digits)] + ([unit] if unit else [])
        if self.runs > 1:
            words.append(f"({_num(self.low, digits)}–{_num(self.high, digits)})")
        return " ".join(words)


def _num(value: float, digits: int) -> str:
    """Three significant digits, thousands grouped: 0.123, 12.3, 12,345."""
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:#.{digits}g}"


@dataclass(frozen=True)
class Target:
    """A bound on a ratio (or, where the issue says so, on an absolute figure)."""

    op: str  # ">=", "<=" or "==" (to the figure's shown precision)
    bound: float
    on: str = "ratio"  # "ratio" or "ours": which figure the bound applies to

    def met(self, ratio: float | None, ours: float | None) -> bool | None:
        value = ratio if self.on == "ratio" else ours
        if value is None:
            return None
        if self.op == "==":
            return abs(value - self.bound) < 0.005
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def text(self, unit: str = "") -> str:
        suffix = "x" if self.on == "ratio" else f" {unit}"
        symbol = {">=": "≥", "<=": "≤", "==": "="}[self.op]
        return f"{symbol} {self.bound:g}{suffix}".strip()


@dataclass
class Row:
    """One line of results.md: our figure, the baseline's, their ratio and the target."""

    section: str
    benchmark: str
    unit: str
    ours: Summary | None
    baseline: Summary | None = None
    baseline_name: str = ""
    ratio: Summary | None = None
    target: Target | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.target.met(self.ratio.median if self.ratio else None,
                               self.ours.median if self.ours else None)

    def console(self) -> str:
        """The row as one line for a section run alone from the command line."""
        base = f"  vs {self.baseline_name} {self.baseline.text(self.unit)}" if self.baseline else ""
        ratio = f"  ratio {self.ratio.text('x')}" if self.ratio else ""
        return f"{self.benchmark}: {self.ours.text(self.unit) if self.ours else '-'}{base}{ratio}  {self.note}"

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        data["met"] = self.met
        return data


def paired(contender: Sequence[float], baseline: Sequence[float],
           ratio: Callable[[float, float], float]) -> Summary | None:
    """Ratios of runs measured side by side (run i of each), summarized."""
    pairs = [ratio(c, b) for c, b in zip(contender, baseline) if b and c]
    return Summary.of(pairs) if pairs else None


def faster(contender: float, baseline: float) -> float:
    """Times (lower is better): how many times the baseline's speed we reach."""
    return baseline / contender


def higher(contender: float, baseline: float) -> float:
    """Rates (higher is better) and sizes: contender / baseline."""
    return contender / baseline


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of a process, from /proc/<pid>/statm."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE


def _first_line(command: Sequence[str]) -> str:
    if shutil.which(command[0]) is None:
        return "not installed"
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "?"


def machine_facts() -> dict[str, object]:
    """What results.json records about the machine, so figures can be compared fairly."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "ovs": _first_line(["ovs-vswitchd", "--version"]),
        "cpu_model": model.group(1).strip() if model else "?",
        "memory_gib": round(int(total.group(1)) / 2 ** 20, 1) if total else None,
        "ryu": _version("ryu"),
        "os-ken": _version("os-ken"),
    }


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def dump_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def others_using_ovs() -> list[str]:
    """Processes that build or tear down Mininet networks right now (end-to-end tests, demos).

    Mininet's clean-up removes every bridge, so benchmarks that need Open vSwitch
    wait until these are gone.
    """
    found = []
    for pattern in ("pytest.*tests/e2e", "mininet"):
        done = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True, check=False)
        found += [line for line in done.stdout.splitlines()
                  if line.split()[0] != str(os.getpid()) and "bench/" not in line]
    return found
