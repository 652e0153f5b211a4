"""Run every benchmark in benchmarks/ and print one table of ratios.

Each `bench_*.py` accepts `--quick` and `--json PATH` and writes
`{"ratios": {...}, "figures": {...}, "machine": {...}}`; every ratio compares tfkit with a
baseline measured in the same run. This script runs them one after the other (never in
parallel: they would measure each other), prints the table and writes the merged JSON.

    python benchmarks/run_all.py --quick --json bench.json [--only data,fit]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute each)")
    parser.add_argument("--json", required=True, help="write the merged results here")
    parser.add_argument("--only", default="", help="comma-separated names, e.g. data,fit")
    args = parser.parse_args(argv)

    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    scripts = sorted(HERE.glob("bench_*.py"))
    if wanted:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    results: dict[str, dict] = {}
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for script in scripts:
            name = script.stem.removeprefix("bench_")
            out = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(script), "--json", str(out)] + (
                ["--quick"] if args.quick else []
            )
            print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
            start = time.perf_counter()
            proc = subprocess.run(cmd)
            if proc.returncode != 0 or not out.exists():
                failed.append(name)
                print(f"!! {name} failed (exit {proc.returncode})", flush=True)
                continue
            results[name] = json.loads(out.read_text())
            results[name]["seconds"] = round(time.perf_counter() - start, 1)

    print("\n| benchmark | ratio | value |\n|---|---|---|")
    for name, res in results.items():
        for key, value in res.get("ratios", {}).items():
            shown = f"{value:.3f}" if isinstance(value, (int, float)) else str(value)
            print(f"| {name} | {key} | {shown} |")
    machine = next((r.get("machine") for r in results.values() if r.get("machine")), {})
    if machine:
        print(f"\nmachine: {json.dumps(machine)}")
    Path(args.json).write_text(json.dumps({"benchmarks": results, "failed": failed}, indent=2))
    print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
