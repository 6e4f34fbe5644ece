"""Which framework ryu_nat.backend takes: the one already imported, else RYU_NAT_BACKEND, else what is installed."""

from __future__ import annotations

import os
import subprocess
import sys

from ryu_nat import backend

OTHER = backend.OS_KEN if backend.NAME == backend.RYU else backend.RYU


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != backend.ENV_VAR}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**clean, **env})


def test_the_framework_already_imported_wins_over_the_variable():
    done = run(f"import {backend.NAME}\nfrom ryu_nat import backend\nprint(backend.NAME)", RYU_NAT_BACKEND=OTHER)
    assert done.stdout.strip() == backend.NAME, done.stderr


def test_the_variable_names_the_framework():
    done = run("from ryu_nat import backend\nprint(backend.NAME)", RYU_NAT_BACKEND=backend.NAME)
    assert done.stdout.strip() == backend.NAME, done.stderr


def test_a_framework_that_is_not_installed_is_one_line_from_ryu_nat():
    # This environment holds one of the two (the Makefile builds one per framework).
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ryu-nat")], capture_output=True, text=True,
                          timeout=60, env={**os.environ, backend.ENV_VAR: OTHER})
    assert (done.returncode, done.stderr) == (2, f"ryu-nat: {backend.ENV_VAR}={OTHER}, but {OTHER} is not installed\n")


def test_an_unknown_name_is_refused():
    done = run("import ryu_nat.backend", RYU_NAT_BACKEND="pox")
    assert done.returncode != 0 and "RYU_NAT_BACKEND='pox': want one of ryu, os_ken" in done.stderr


def test_the_packet_library_loads_without_the_controller():
    done = run("import sys\nfrom ryu_nat.backend import ipv4, tcp\n"
               "print(sorted(m for m in sys.modules if '.controller' in m or m.startswith('eventlet')))")
    assert done.stdout.strip() == "[]", done.stderr
