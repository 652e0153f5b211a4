"""Run every benchmark in benchmarks/ and print one table of ratios.

Each `bench_*.py` accepts `--quick` and `--json PATH` and writes
`{"ratios": {...}, "figures": {...}, "machine": {...}}`; every ratio compares tfkit with a
baseline measured in the same run. This script runs them one after the other (never in
parallel: they would measure each other), prints the table, writes the merged JSON and,
with `--results`, the Markdown page the documentation includes (`benchmarks/RESULTS.md`):
the date, the commit measured, the machine, and each figure with its runs, their median and
its target.

A benchmark may list the runs behind a figure under `"runs": {figure: [values]}` in its
JSON (or as a figure named `<figure>_runs`); the median is then taken over them.

    python benchmarks/run_all.py --quick --json bench.json [--results RESULTS.md] [--only data,fit]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# figure -> (comparison, bound, what the bound means); figures without one are informative
TARGETS: dict[str, tuple[str, float, str]] = {
    "data_vs_memory": (">=", 0.8, "the cached TFRecord pipeline at 80 % of memory's speed"),
    "nocache_vs_memory": (">=", 0.5, "reading and parsing every epoch at half memory's speed"),
    "data_vs_textbook": (">=", 5.0, "5x the per-example textbook pipeline"),
    "tfkit_fit_vs_keras_fit_same_spe": (">=", 0.9, "tfkit's callbacks cost at most 10 %"),
    "tfkit_fit_vs_keras_default_fit": (">=", 0.97, "tfkit's defaults no slower than Keras'"),
    "tfkit_demo_vs_keras_fit_same_spe": (">=", 0.9, "tfkit's callbacks cost at most 10 %"),
    "tfkit_demo_vs_keras_default_fit": (">=", 1.4, "the demo 40 % faster than Keras' defaults"),
    "demo_start_to_first_step_s": ("<=", 5.0, "seconds from start to the first step"),
    "own_start_s": ("<=", 1.0, "tfkit's start-up after importing TensorFlow and Keras"),
    "loop_vs_fit": (">=", 1.0, "the custom loop as fast as fit"),
    "ada_cost_ratio": ("<=", 1.15, "ADA costs at most 15 %"),
    "narrow_b16_train_img_per_s": (">=", 18.86, "2x stylegan2-ada-pytorch's 9.43 img/s"),
    "winograd_vs_direct_conv": (">", 1.0, "Winograd faster than conv2d"),
}
_COMPARE = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


def git_commit(directory: Path) -> str:
    """The commit checked out at `directory`, with `+changes` when the tree is dirty;
    `unknown` outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(directory), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        # the results page itself changes with every run: it does not make the code dirty
        dirty = [line for line in status if not line.endswith("RESULTS.md")]
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" +changes" if dirty else "")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def result_rows(results: dict[str, dict]) -> list[dict]:
    """One row per ratio of every benchmark and per figure that has a target: its runs, the
    median over them (the reported value when there is a single run) and the target."""
    rows = []
    for bench, res in results.items():
        figures = res.get("figures", {})
        listed = res.get("runs", {})
        names = list(res.get("ratios", {})) + [
            f for f in figures if f in TARGETS and f not in res.get("ratios", {})
        ]
        for name in names:
            value = res.get("ratios", {}).get(name, figures.get(name))
            runs = listed.get(name) or figures.get(f"{name}_runs")
            runs = [r for r in runs if _number(r)] if isinstance(runs, list) else []
            if not runs and _number(value):
                runs = [value]
            median = statistics.median(runs) if runs else None
            target = TARGETS.get(name)
            met = None
            if target and median is not None:
                met = _COMPARE[target[0]](median, target[1])
            rows.append(
                {"benchmark": bench, "figure": name, "runs": runs, "median": median,
                 "target": target, "met": met}
            )  # fmt: skip
    return rows


def results_markdown(
    results: dict[str, dict], failed: list[str], *, quick: bool, commit: str, date: str
) -> str:
    """The page `make bench` writes to benchmarks/RESULTS.md."""
    machine = next((r.get("machine") for r in results.values() if r.get("machine")), {})
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/run_all.py`); do not edit by hand: run it "
        "again to update.",
        "",
        f"- date: {date}",
        f"- commit: `{commit}`",
        f"- mode: {'quick (`--quick`)' if quick else 'full'}",
    ]
    for key, value in machine.items():
        lines.append(f"- {key.replace('_', ' ')}: {value}")
    lines += [
        "",
        "| benchmark | figure | runs | median | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in result_rows(results):
        target = row["target"]
        shown = f"{target[0]} {target[1]:g} ({target[2]})" if target else "informative"
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        runs = ", ".join(_fmt(r) for r in row["runs"]) or "n/a"
        lines.append(
            f"| {row['benchmark']} | `{row['figure']}` | {runs} | {_fmt(row['median'])} "
            f"| {shown} | {met} |"
        )
    if failed:
        lines += ["", "Failed (no figures): " + ", ".join(f"`{name}`" for name in failed)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute each)")
    parser.add_argument("--json", required=True, help="write the merged results here")
    parser.add_argument("--only", default="", help="comma-separated names, e.g. data,fit")
    parser.add_argument("--results", help="also write the Markdown results page here")
    args = parser.parse_args(argv)

    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    scripts = sorted(HERE.glob("bench_*.py"))
    if wanted:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    commit = git_commit(HERE)  # the code measured: read before the benchmarks run
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
    if args.results:
        page = results_markdown(
            results,
            failed,
            quick=args.quick,
            commit=commit,
            date=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
        )
        Path(args.results).write_text(page, encoding="utf-8")
        print(f"wrote {args.results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
