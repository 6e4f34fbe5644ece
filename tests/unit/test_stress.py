"""No races: set-ups under churn while threads write through the REST API, on this environment's backend.

On os-ken's plain threads a REST handler once ran beside a switch event and
broke the gateway's dictionaries (issue 14); every request now runs on the
app's event thread. The load is bench/ofload.py's OpenFlow generator against a
real controller process.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
STRESS_S = 4


def test_set_ups_under_concurrent_rest_writes_make_no_errors():
    done = subprocess.run([sys.executable, "bench/ofload.py", "--stress", str(STRESS_S)], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["setups"] > 100 and result["rest_requests"] > 50, result
    assert (result["rest_errors"], result["handler_errors"], result["log_problems"]) == (0, 0, 0), result
