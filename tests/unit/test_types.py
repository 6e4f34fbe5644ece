"""The core, the plan with its encoder, and the gateway type-check under ``mypy --strict`` (STYLE.md section 4)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
STRICT = ["ryu_nat/core", "ryu_nat/openflow", "ryu_nat/gateway"]


def test_core_plan_encoder_and_gateway_pass_mypy_strict():
    # Ryu ships no type information: its imports are Any.
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports",
                             "--no-error-summary", *STRICT], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
