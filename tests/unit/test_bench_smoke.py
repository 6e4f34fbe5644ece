"""The benchmark code cannot rot: its smoke mode (tiny sizes, no Mininet) runs with the tests."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_bench_smoke_runs_every_section(tmp_path):
    result = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--out", str(tmp_path)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    sections = json.loads((tmp_path / "results.json").read_text())["sections"]
    assert {"table", "memory", "parsing", "ofload", "hostile", "fulltable", "restore"} <= set(sections)
    for name, section in sections.items():
        assert not section["error"], f"{name}: {section['error']}"
        assert section["rows"], f"{name}: no rows"
    # What smoke mode measures of ryu_nat's set-ups: two flow-mods each, every one matched, none lost.
    runs = sections["ofload"]["detail"]["ryu_nat"]
    assert set(runs) == {"light", "heavy", "churn"}
    for phase, results in runs.items():
        for result in results:
            assert (phase, result["flow_mods_per_setup"], result["unmatched_flow_mods"], result["lost"]) == (
                phase, 2.0, 0, 0)
