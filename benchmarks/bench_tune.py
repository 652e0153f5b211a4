"""Tune benchmark: the digits random search of configs/tune_digits.yaml.

Figures: search wall time, best val_accuracy, resident memory after each trial (bounded
across trials: the Keras session is cleared between trials). Ratios: the mean trial time
against `tfkit train` of the default trial measured in this run (the tuning overhead),
and RSS after the last trial against RSS after the first.

    python benchmarks/bench_tune.py [--quick] --json out.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 trials of 3 epochs")
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)

    import psutil

    from tfkit.config import apply_overrides, read_yaml, validate
    from tfkit.tuning import search as search_lib

    overrides = ["tune.max_trials=4", "train.epochs=3"] if args.quick else []
    raw = apply_overrides(read_yaml("configs/tune_digits.yaml"), overrides)
    config = validate(raw)
    process = psutil.Process()
    rss: list[float] = []
    trial_seconds: list[float] = []
    original = search_lib._TfkitTuner.on_trial_end

    def on_trial_end(self, trial):
        original(self, trial)
        trial_seconds.append(time.perf_counter() - self._tfkit_start)
        rss.append(process.memory_info().rss / 2**20)

    search_lib._TfkitTuner.on_trial_end = on_trial_end
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = search_lib.run_search(config, raw, os.path.join(tmp, "run"))
        wall = time.perf_counter() - start

        # baseline: the default trial trained by `tfkit train` (same data, model, callbacks)
        from tfkit.training.session import fit

        base = validate({k: v for k, v in raw.items() if k != "tune"})
        t = time.perf_counter()
        fit(base, os.path.join(tmp, "train"))
        plain = time.perf_counter() - t

    mean_trial = sum(trial_seconds) / len(trial_seconds)
    out = {
        "ratios": {
            "tune_trial_vs_tfkit_train": mean_trial / plain,
            "rss_last_vs_first_trial": rss[-1] / rss[0],
        },
        "figures": {
            "trials": len(trial_seconds),
            "search_wall_s": round(wall, 1),
            "best_val_accuracy": result["best"]["objective"],
            "best_values": result["best"]["values"],
            "mean_trial_s": round(mean_trial, 2),
            "tfkit_train_s": round(plain, 2),
            "rss_mb_per_trial": [round(r) for r in rss],
            "peak_rss_mb": round(psutil.Process().memory_info().rss / 2**20),
            "max_rss_mb": round(__import__("resource").getrusage(0).ru_maxrss / 1024),
        },
    }
    write_result(args.json, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
