"""Custom-loop benchmark: examples/s of tfkit's GradientTape loop vs its `fit` path.

Both run the same config (model, data pipeline, callbacks, seed) in one process, alternating
runs: `tfkit.training.session.run_loop` (train.loop=custom, its default steps_per_loop: auto)
and `tfkit.training.session.fit` (its default steps_per_execution: auto). Two workloads: the
digits CNN (configs/digits_cnn.yaml without its dropout) and the digits MLP. Examples/s = train examples x epochs / training wall time
(tracing included in both). Ratio: loop_vs_fit = loop / fit on the CNN and MLP (best run of
each), and `loop_vs_fit` is their geometric mean (target >= 1.0).

    python benchmarks/bench_loop.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from common import write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

WORKLOADS = {
    "cnn": [
        "model={name: cnn, filters: [32, 64], convs_per_block: 2, dense_units: [128]}",
        "data.source={kind: digits, layout: image}",
    ],
    "mlp": [
        "model={name: mlp, units: [256, 128]}",
        "data.source={kind: digits, layout: flat}",
    ],
}


def _run(kind: str, workload: str, epochs: int, seed: int, root: Path) -> float:
    from tfkit.config import load_config
    from tfkit.runs import create_run_dir

    overrides = [
        f"name=bench_loop_{workload}_{kind}",
        *WORKLOADS[workload],
        "data.split={train: 0.8, val: 0.1, test: 0.1, seed: 0}",
        "data.batch_size=32",
        f"train.epochs={epochs}",
        "train.verbose=0",
        f"runtime.seed={seed}",
    ]
    if kind == "loop":
        overrides += ["train.loop=custom"]
    config = load_config(None, overrides)
    run_dir = create_run_dir(config, root=root)
    if kind == "loop":
        from tfkit.training.session import run_loop

        result = run_loop(config, run_dir, resume=False)
    else:
        from tfkit.training.session import fit

        result = fit(config, run_dir)
    import json as _json

    train_count = _json.loads((run_dir / "metrics.json").read_text()).get("train_count")
    train_count = train_count or int(round(1797 * 0.8))
    return train_count * epochs / result["train_seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 epochs, 2 runs each")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    epochs, runs = (4, 2) if args.quick else (12, 3)

    rates: dict[str, dict[str, list[float]]] = {w: {"fit": [], "loop": []} for w in WORKLOADS}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            for workload in WORKLOADS:
                for kind in ("fit", "loop") if run % 2 == 0 else ("loop", "fit"):
                    rate = _run(kind, workload, epochs, run, Path(tmp))
                    rates[workload][kind].append(rate)
                    print(f"run {run} {workload} {kind}: {rate:.0f} ex/s", flush=True)
    ratios = {f"loop_vs_fit_{w}": max(r["loop"]) / max(r["fit"]) for w, r in rates.items()}
    ratios["loop_vs_fit"] = math.exp(sum(math.log(v) for v in ratios.values()) / len(ratios))
    out = {
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "figures": {
            "epochs": epochs,
            "runs": runs,
            "batch_size": 32,
            **{
                f"{w}_{k}_examples_per_sec": round(max(v), 1)
                for w, r in rates.items()
                for k, v in r.items()
            },
        },
    }
    write_result(args.json, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
