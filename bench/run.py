"""``make bench``: run the selected benchmarks and write bench/results.md and bench/results.json.

    bench/run.py                       every benchmark (needs root, Open vSwitch, Mininet)
    bench/run.py --only table,memory   some of them; other sections keep their last results
    bench/run.py --smoke               tiny sizes, no Mininet, seconds: keeps the code from rotting
    bench/run.py --only ofload --before main   set-ups against ryu_nat at git revision main too, side by side

Sections: table, memory, parsing, ofload, hostile, fulltable, restore (pure Python or a local ryu-manager), and
dataplane, connections, scale (Mininet and Open vSwitch; they wait while
end-to-end tests use Open vSwitch, since Mininet's clean-up removes every
bridge). Each section's rows replace that section's earlier rows in
results.json, and results.md is written from all of them. A smoke run writes
to a temporary directory unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from common import BENCH, Row, Summary, Target, dump_json, machine_facts

SECTIONS = ("table", "memory", "parsing", "ofload", "hostile", "fulltable", "restore", "dataplane", "connections",
            "scale")
NEEDS_MININET = frozenset({"dataplane", "connections", "scale"})


def _runner(section: str, befores: Sequence[str] = ()) -> Callable[[bool, int], tuple[list[Row], object]]:
    """Import a section's module only when it runs (the Mininet ones need root and Mininet)."""
    if section == "table":
        import table_ops

        return lambda smoke, reps: (table_ops.run(smoke, reps), None)
    if section == "memory":
        import memory

        return lambda smoke, reps: (memory.run(smoke, reps), None)
    if section == "parsing":
        import parsing

        return lambda smoke, reps: (parsing.run(smoke, reps), None)
    if section == "ofload":
        import ofload

        return lambda smoke, reps: ofload.run(smoke, reps, befores)
    if section == "hostile":
        import hostile_mix

        return lambda smoke, reps: (hostile_mix.run(smoke, reps), None)
    if section == "fulltable":
        import fulltable

        return fulltable.run
    if section == "restore":
        import restore

        return restore.run
    import netbench

    return lambda smoke, reps: (netbench.run(section, reps), None)


def run_section(section: str, smoke: bool, reps: int, befores: Sequence[str] = ()) -> dict[str, object]:
    started = time.monotonic()
    print(f"== {section}", file=sys.stderr, flush=True)
    try:
        rows, detail = _runner(section, befores)(smoke, reps)
        error = None
    except Exception as exc:  # one broken section must not lose the others' results
        traceback.print_exc()
        rows, detail, error = [], None, f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - started
    print(f"== {section}: {seconds:.0f} s{', FAILED: ' + error if error else ''}", file=sys.stderr, flush=True)
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "seconds": round(seconds, 1),
            "smoke": smoke, "reps": reps, "error": error, "machine": machine_facts(),
            "rows": [row.as_json() for row in rows], "detail": _detail(detail)}


def _detail(detail: object) -> object:
    """Per-run figures of the flow-setup benchmark, for results.json."""
    if not isinstance(detail, dict):
        return None
    return {contender: {phase: [{"setups_per_s": r.setups_per_s, "ops_per_s": r.ops_per_s,
                                 "flow_mods_per_setup": r.flow_mods_per_setup,
                                 "p50_ms": r.percentile_ms(0.5), "p90_ms": r.percentile_ms(0.9),
                                 "p99_ms": r.percentile_ms(0.99), "controller_cpu_percent": r.controller_cpu_percent,
                                 "generator_cpu_percent": r.generator_cpu_percent, "lost": r.tally.lost,
                                 "unmatched_flow_mods": r.tally.unmatched_flow_mods}
                                for r in runs] for phase, runs in phases.items()}
            for contender, phases in detail.items()}


def _row(data: dict[str, object]) -> Row:
    def summary(value: object) -> Summary | None:
        return Summary(**value) if isinstance(value, dict) else None

    target = data.get("target")
    return Row(str(data["section"]), str(data["benchmark"]), str(data["unit"]), summary(data["ours"]),
               summary(data["baseline"]), str(data["baseline_name"]), summary(data["ratio"]),
               Target(**target) if isinstance(target, dict) else None, str(data["note"]))


def markdown(results: dict[str, object]) -> str:
    machine = results["machine"]
    assert isinstance(machine, dict)
    lines = ["# Benchmark results", "",
             "Written by `bench/run.py` (`make bench`); see bench/README.md for what each figure means.",
             "Figures: median (min–max) over the repetitions; ratios are medians of ratios of runs made "
             "side by side.", "",
             "Machine: " + ", ".join(f"{key} {value}" for key, value in machine.items()), ""]
    sections = results["sections"]
    assert isinstance(sections, dict)
    short: list[str] = []
    for name in SECTIONS:
        section = sections.get(name)
        if not section:
            continue
        lines += [f"## {name}", "",
                  f"Run {section['date']}, {section['seconds']} s, {section['reps']} repetition(s)"
                  f"{' (smoke)' if section['smoke'] else ''}.", ""]
        if section.get("machine", machine) != machine:  # sections keep the machine they ran on
            lines += ["Machine: " + ", ".join(f"{key} {value}" for key, value in section["machine"].items()), ""]
        if section["error"]:
            lines += [f"**Failed:** {section['error']}", ""]
        lines += ["| benchmark | ours | baseline | ratio | target | met | note |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for data in section["rows"]:
            row = _row(data)
            met = row.met
            verdict = "" if met is None else ("met" if met else "**short**")
            if met is False:
                short.append(f"{name}: {row.benchmark}")
            ours = row.ours.text(row.unit) if row.ours else "not measured"
            base = f"{row.baseline_name}: {row.baseline.text(row.unit)}" if row.baseline else row.baseline_name
            ratio = row.ratio.text("x") if row.ratio else ""
            target = row.target.text(row.unit) if row.target else ""
            lines.append(f"| {row.benchmark} | {ours} | {base} | {ratio} | {target} | {verdict} | {row.note} |")
        lines.append("")
    lines += ["## Targets not met", ""] + ([f"- {item}" for item in short] or ["None."]) + [""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no Mininet, seconds")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated, of: {', '.join(SECTIONS)}")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 in smoke mode)")
    parser.add_argument("--out", type=Path, help="directory for results.md and results.json")
    parser.add_argument("--before", action="append", default=[], metavar="REV",
                        help="ofload: also measure ryu_nat as at git revision REV, side by side (repeatable)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.smoke:
        chosen = [name for name in chosen if name not in NEEDS_MININET]
    reps = args.reps or (1 if args.smoke else 3)
    out = args.out or (Path(tempfile.mkdtemp(prefix="bench-smoke-")) if args.smoke else BENCH)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    previous = json.loads(json_path.read_text()) if json_path.exists() else {}
    results = {"machine": machine_facts(), "sections": dict(previous.get("sections", {}))}
    started = time.monotonic()
    for name in chosen:
        results["sections"][name] = run_section(name, args.smoke, reps, args.before)
        dump_json(json_path, results)
        (out / "results.md").write_text(markdown(results))
    print(f"wrote {out / 'results.md'} and {json_path} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    failed = [name for name in chosen if results["sections"][name]["error"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
