"""The core does no I/O: it imports no controller, eventlet or OpenFlow code."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import ryu_nat

# The packet library itself imports socket (for address conversion), so socket is
# checked in our own sources rather than in sys.modules. Ryu or os-ken: ryu_nat.backend.
FORBIDDEN_LOADED = ("eventlet", *(f"{framework}.{part}" for framework in ("ryu", "os_ken")
                                  for part in ("base", "controller", "app", "ofproto")))
FORBIDDEN_IMPORTED = ("socket", "time", "threading", "select", "asyncio", *FORBIDDEN_LOADED)
PURE_PACKAGES = ("core",)


def test_core_loads_no_controller_or_eventlet():
    code = (
        "import sys\n"
        "import ryu_nat.core.nat, ryu_nat.core.lru_table, ryu_nat.core.fragments, ryu_nat.core.icmp\n"
        f"print(','.join(m for m in sys.modules if m.startswith({FORBIDDEN_LOADED!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_gateway_part_imports_another():
    """Each part owns its state; only the dispatcher composes them, for the packet path, and the review, for
    the switch's rules read back and packets explained (drops and stats are shared vocabulary)."""
    gateway = pathlib.Path(ryu_nat.__file__).parent / "gateway"
    shared = {"ryu_nat.gateway.drops", "ryu_nat.gateway.stats"}
    crossings = []
    for path in gateway.glob("*.py"):
        if path.name in ("dispatcher.py", "review.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ryu_nat.gateway"):
                if node.module not in shared:
                    crossings.append(f"{path.name} imports {node.module}")
    assert crossings == []


def test_core_sources_import_no_io_or_clock():
    root = pathlib.Path(ryu_nat.__file__).parent
    offenders = []
    for package in PURE_PACKAGES:
        for path in (root / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                offenders += [f"{path.name}: {n}" for n in names
                              if any(n == bad or n.startswith(bad + ".") for bad in FORBIDDEN_IMPORTED)]
    assert offenders == []
