"""Fit benchmark: examples/s of `tfkit train`'s fit path vs a hand-written `keras.Model.fit`.

All arms train the same MLP (64 -> 256 -> 256 -> 10, Adam) on the same in-memory arrays with
the same batch size, epochs and a validation pass each epoch, in one process, alternating runs.
(a) tfkit: `tfkit.training.session.fit` on an `npz` config with every default on (progress bar
    off): the tf.data pipeline of `tfkit.data`, Throughput, TensorBoard, best and last
    `.keras` checkpoints, the step-level backup and the metrics logger each epoch, and
    `runtime.steps_per_execution: auto`;
(b) keras default: `tf.data.Dataset.from_tensor_slices(...).shuffle().batch().prefetch()` and
    a bare `model.fit` with no callbacks and Keras' default compile arguments
    (steps_per_execution 1);
(c) keras same settings: (b) compiled with the steps_per_execution tfkit's `auto` resolves to
    for this epoch length (`tfkit.training.fit.steps_per_execution`).
Examples/s = train examples x epochs / wall time of the `model.fit` call (tracing included in
all). The arms' order rotates from run to run. Two ratios, each the median over runs of the
ratio within one run (adjacent runs share the machine's load):
- tfkit_fit_vs_keras_fit_same_spe = a / c: tfkit's overhead at equal settings (what its
  pipeline, callbacks, checkpoints and backup cost);
- tfkit_fit_vs_keras_default_fit = a / b: what a user gains or loses by running tfkit's
  defaults instead of Keras' defaults (mostly the steps_per_execution setting).

The main job's model the same way, with the same two ratios: tfkit_demo_vs_keras_fit_same_spe
and tfkit_demo_vs_keras_default_fit = a default `tfkit train configs/digits_cnn.yaml` (every
default on: checkpoints, backup, TensorBoard, throughput and metrics logging; progress bar
off) / a bare `model.fit` of the same model (same builder, optimizer and seed) on the same
arrays, compiled with tfkit's steps_per_execution or with Keras' default. Start-up
figures, from pairs of runs alternating in the same benchmark: the seconds from process
start to the first training step of `tfkit train configs/digits_cnn.yaml` (the first
epoch's begin, from its metrics.jsonl; `demo_start_to_first_step_s`) and that process's peak
RSS; the seconds from process start to the end of `import tensorflow, keras` in a bare
`python -c` (`bare_import_s`); and tfkit's own start-up, the median of the per-pair
differences (`own_start_s`: everything tfkit does after importing TensorFlow and Keras, up to
the first step). tfkit's modules are compiled to bytecode first, as an installed package is. The JSON's `runs` lists every run's value behind each reported median.

    python benchmarks/bench_fit.py [--quick] --json out.json
    python benchmarks/bench_fit.py --only-startup [--pairs 5] --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 256
FEATURES = 64
CLASSES = 10
ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "configs" / "digits_cnn.yaml"


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _arrays(dataset):
    """A batched (x, y) dataset as two NumPy arrays."""
    import numpy as np

    xs, ys = zip(*dataset.as_numpy_iterator(), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def _tfkit_steps_per_execution(train_examples: int, batch_size: int) -> int:
    """The steps_per_execution tfkit's default (`auto`) resolves to on one replica for an
    epoch of `train_examples` in batches of `batch_size` (last batch kept)."""
    from tfkit.config import RuntimeConfig
    from tfkit.training.fit import steps_per_execution

    return steps_per_execution(RuntimeConfig(), -(-train_examples // batch_size))


def _demo_keras(epochs: int, spe: int = 1) -> float:
    """Examples/s of a bare `model.fit` of the digits CNN on the arrays tfkit trains on,
    compiled with `steps_per_execution=spe` (1: Keras' default)."""
    import keras

    import tfkit.data
    import tfkit.models
    from tfkit.config import load_config
    from tfkit.training.optimizers import build_optimizer

    config = load_config(str(DEMO), [f"train.epochs={epochs}"])
    splits = tfkit.data.build(config.data, seed=config.runtime.seed)
    (x, y), val = _arrays(splits.train), _arrays(splits.val)
    keras.utils.set_random_seed(config.runtime.seed)
    model = tfkit.models.build(config.model, splits.spec)
    model.compile(
        optimizer=build_optimizer(config.train.optimizer),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=spe,
    )  # otherwise Keras' defaults (no XLA on CPU)
    start = time.perf_counter()
    model.fit(
        x, y, batch_size=config.data.batch_size, epochs=epochs, validation_data=val, verbose=0
    )
    return len(x) * epochs / (time.perf_counter() - start)


def _demo_train_count(config) -> int:
    """The number of training examples of the demo config's split."""
    import tfkit.data

    splits = tfkit.data.build(config.data, seed=config.runtime.seed)
    return sum(len(x) for x, _ in splits.train.as_numpy_iterator())


def _demo_tfkit(root: Path, epochs: int) -> float:
    """Examples/s of `tfkit train configs/digits_cnn.yaml` (its `model.fit` call)."""
    from tfkit.config import load_config
    from tfkit.runs import create_run_dir
    from tfkit.training.session import fit

    config = load_config(str(DEMO), [f"train.epochs={epochs}", "train.verbose=0"])
    result = fit(config, create_run_dir(config, root=root))
    with open(Path(root) / config.name / "00000" / "spec.json") as f:
        count = json.load(f)["counts"]["train"]
    return count * epochs / result["train_seconds"]


def _env(code: Path) -> dict[str, str]:
    """The environment of a timed subprocess: `code` (a tfkit checkout) first on the path."""
    path = os.pathsep.join(filter(None, [str(code), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _start_up(root: Path, code: Path = ROOT) -> tuple[float, float]:
    """(seconds from process start to the first training step, peak RSS in MB) of
    `tfkit train configs/digits_cnn.yaml` (one epoch) run from the tfkit checkout `code`."""
    run_dir = root / "startup"
    command = [sys.executable, "-m", "tfkit.cli", "train", str(DEMO), "--set", "train.epochs=1"]
    start = time.time()
    proc = subprocess.Popen(
        [*command, "--set", "train.verbose=0", "--run-dir", str(run_dir)],
        env=_env(code),
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed with status {status}")
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return first["time"] - first["epoch_seconds"] - start, usage.ru_maxrss / 1024


def _precompile(code: Path = ROOT) -> None:
    """Compile tfkit's modules in the checkout `code` to bytecode, as installing a package
    does: TensorFlow and Keras are imported from their installed bytecode, so tfkit's
    start-up is timed the same way (not compiling its sources in every process, which is
    what happens where PYTHONDONTWRITEBYTECODE is set)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(code / "tfkit")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _bare_import() -> float:
    """Seconds from process start to the end of `import tensorflow, keras` in a fresh
    `python -c` (the clock the start-up's first step is read on; interpreter exit excluded):
    the floor under every tfkit command."""
    code = "import time, tensorflow, keras; print(time.time())"
    start = time.time()
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(ROOT), capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1]) - start


def _start_up_pairs(root: Path, pairs: int) -> tuple[dict, dict]:
    """`pairs` bare imports and `tfkit train` start-ups, alternating (which goes first
    alternates too): (runs, figures) of `bare_import_s`, `demo_start_to_first_step_s` and
    `own_start_s`, tfkit's own start-up (imports of its own, data, model, callbacks up to
    the first step): the median of the per-pair differences."""
    _precompile()
    bare: list[float] = []
    starts: list[tuple[float, float]] = []
    for pair in range(pairs):
        for which in ("bare", "tfkit") if pair % 2 == 0 else ("tfkit", "bare"):
            if which == "bare":
                bare.append(_bare_import())
            else:
                starts.append(_start_up(root / f"start{pair}"))
        print(
            f"start-up pair {pair}: bare import {bare[-1]:.2f} s, tfkit train to its first "
            f"step {starts[-1][0]:.2f} s",
            flush=True,
        )
    own = [s - b for (s, _), b in zip(starts, bare, strict=True)]
    runs = {
        "bare_import_s": [round(b, 2) for b in bare],
        "demo_start_to_first_step_s": [round(s, 2) for s, _ in starts],
        "own_start_s": [round(o, 2) for o in own],
    }
    figures = {
        "bare_import_s": round(_median(bare), 2),
        "demo_start_to_first_step_s": round(_median([s for s, _ in starts]), 2),
        "own_start_s": round(_median(own), 2),
        "demo_peak_rss_mb": round(max(r for _, r in starts), 1),
    }
    return runs, figures


def _keras_fit(x, y, xv, yv, epochs: int, seed: int, spe: int = 1) -> float:
    """Examples/s of a hand-written model.fit on the same arrays, compiled with
    `steps_per_execution=spe` (1: Keras' default)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(256, activation="relu"),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=spe,
    )
    train = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(10_000, seed=seed).batch(BATCH)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(BATCH)
    train, val = train.prefetch(tf.data.AUTOTUNE), val.prefetch(tf.data.AUTOTUNE)
    start = time.perf_counter()
    model.fit(train, validation_data=val, epochs=epochs, verbose=0)
    return len(x) * epochs / (time.perf_counter() - start)


def _tfkit_fit(npz: Path, root: Path, epochs: int, seed: int, train_count: int) -> float:
    """Examples/s of tfkit's fit path (the `model.fit` call it makes, callbacks included)."""
    from tfkit.config import load_config
    from tfkit.runs import create_run_dir
    from tfkit.training.session import fit

    config = load_config(
        None,
        [
            "name=bench_fit",
            f"data.source={{kind: npz, path: {npz}}}",
            "data.split={train: 0.8, val: 0.1, test: 0.1, seed: 0}",
            f"data.batch_size={BATCH}",
            "model={name: mlp, units: [256, 256]}",
            f"train.epochs={epochs}",
            "train.verbose=0",
            f"runtime.seed={seed}",
        ],
    )
    result = fit(config, create_run_dir(config, root=root))
    return train_count * epochs / result["train_seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="102,400 examples, 3 epochs, 3 runs each"
    )
    parser.add_argument("--json", required=True, help="write the results here")
    parser.add_argument(
        "--only-startup",
        action="store_true",
        help="only the start-up figures (bare import vs tfkit train to its first step)",
    )
    parser.add_argument(
        "--pairs", type=int, help="start-up pairs (default: 5 with --quick, else 7)"
    )
    args = parser.parse_args(argv)
    pairs = args.pairs or (5 if args.quick else 7)
    if args.only_startup:
        with tempfile.TemporaryDirectory() as tmp:
            runs, figures = _start_up_pairs(Path(tmp), pairs)
        write_result(args.json, ratios={}, figures=figures, runs=runs)
        return 0

    import numpy as np

    # 80 % of the examples train: 320 (640) batches of 256 an epoch, a multiple of 16, so
    # tfkit's `auto` steps_per_execution is its full 16 here (313 batches, a prime, gave 1)
    count, epochs, runs = (102_400, 3, 3) if args.quick else (204_800, 5, 5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, FEATURES)).astype(np.float32)
    y = (x[:, :CLASSES].argmax(1)).astype(np.int32)
    train_count = int(round(count * 0.8))
    val_count = int(round(count * 0.1))
    spe = _tfkit_steps_per_execution(train_count, BATCH)
    arms = ("keras", "keras_same", "tfkit")
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "data.npz"
        np.savez(npz, x=x, y=y)
        for run in range(runs):
            # rotate which goes first, so drifting load on a shared machine hits every arm
            for which in arms[run % 3 :] + arms[: run % 3]:
                if which == "tfkit":
                    rate = _tfkit_fit(npz, Path(tmp) / "runs", epochs, run, train_count)
                else:
                    xs, ys = x[:train_count], y[:train_count]
                    xv, yv = x[-val_count:], y[-val_count:]
                    arm_spe = spe if which == "keras_same" else 1
                    rate = _keras_fit(xs, ys, xv, yv, epochs, run, arm_spe)
                rates[which].append(rate)
            print(
                f"run {run}: keras {rates['keras'][-1]:.0f} ex/s, keras at tfkit's "
                f"steps_per_execution {rates['keras_same'][-1]:.0f} ex/s, "
                f"tfkit {rates['tfkit'][-1]:.0f} ex/s",
                flush=True,
            )
    same = [t / k for t, k in zip(rates["tfkit"], rates["keras_same"], strict=True)]
    default = [t / k for t, k in zip(rates["tfkit"], rates["keras"], strict=True)]
    out = {
        "ratios": {
            "tfkit_fit_vs_keras_fit_same_spe": round(_median(same), 3),
            "tfkit_fit_vs_keras_default_fit": round(_median(default), 3),
        },
        "runs": {
            "tfkit_fit_vs_keras_fit_same_spe": [round(r, 3) for r in same],
            "tfkit_fit_vs_keras_default_fit": [round(r, 3) for r in default],
        },
        "figures": {
            "examples": train_count,
            "epochs": epochs,
            "runs": runs,
            "batch_size": BATCH,
            "tfkit_steps_per_execution": spe,
            "tfkit_examples_per_sec": round(max(rates["tfkit"]), 1),
            "keras_examples_per_sec": round(max(rates["keras"]), 1),
            "keras_same_spe_examples_per_sec": round(max(rates["keras_same"]), 1),
            "tfkit_runs": [round(r, 1) for r in rates["tfkit"]],
            "keras_runs": [round(r, 1) for r in rates["keras"]],
            "keras_same_spe_runs": [round(r, 1) for r in rates["keras_same"]],
        },
    }
    from tfkit.config import load_config

    demo_epochs = 25  # the config's own
    demo_config = load_config(str(DEMO))
    demo_count = _demo_train_count(demo_config)
    demo_spe = _tfkit_steps_per_execution(demo_count, demo_config.data.batch_size)
    demo: dict[str, list[float]] = {arm: [] for arm in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            for which in arms[run % 3 :] + arms[: run % 3]:
                if which == "tfkit":
                    rate = _demo_tfkit(Path(tmp) / f"tfkit{run}", demo_epochs)
                else:
                    rate = _demo_keras(demo_epochs, demo_spe if which == "keras_same" else 1)
                demo[which].append(rate)
            print(
                f"digits run {run}: keras {demo['keras'][-1]:.0f} ex/s, keras at tfkit's "
                f"steps_per_execution {demo['keras_same'][-1]:.0f} ex/s, "
                f"tfkit {demo['tfkit'][-1]:.0f} ex/s",
                flush=True,
            )
        start_runs, start_figures = _start_up_pairs(Path(tmp), pairs)
    demo_same = [t / k for t, k in zip(demo["tfkit"], demo["keras_same"], strict=True)]
    demo_default = [t / k for t, k in zip(demo["tfkit"], demo["keras"], strict=True)]
    out["ratios"]["tfkit_demo_vs_keras_fit_same_spe"] = round(_median(demo_same), 3)
    out["ratios"]["tfkit_demo_vs_keras_default_fit"] = round(_median(demo_default), 3)
    out["runs"]["tfkit_demo_vs_keras_fit_same_spe"] = [round(r, 3) for r in demo_same]
    out["runs"]["tfkit_demo_vs_keras_default_fit"] = [round(r, 3) for r in demo_default]
    out["runs"].update(start_runs)
    out["figures"].update(
        {
            "demo_epochs": demo_epochs,
            "demo_tfkit_steps_per_execution": demo_spe,
            "demo_tfkit_runs": [round(r, 1) for r in demo["tfkit"]],
            "demo_keras_runs": [round(r, 1) for r in demo["keras"]],
            "demo_keras_same_spe_runs": [round(r, 1) for r in demo["keras_same"]],
            **start_figures,
        }
    )
    write_result(args.json, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
