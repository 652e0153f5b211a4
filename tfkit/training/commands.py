"""The `tfkit train`, `tfkit evaluate` and `tfkit predict` commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from tfkit.arguments import PREDICT_OUTPUTS
from tfkit.cluster import announce
from tfkit.config import ExperimentConfig, dump_yaml, load_config
from tfkit.errors import MissingPathError, UserError
from tfkit.runs import Run, check_config_kind

# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------


def _is_chief(config: ExperimentConfig) -> bool:
    """Whether this process writes the run (single-process runs, or the chief worker)."""
    from tfkit.cluster import for_runtime
    from tfkit.distribute import wants_multi_worker

    return not wants_multi_worker(config.runtime) or for_runtime(config.runtime).is_chief


def run_training(
    config: ExperimentConfig, run_dir: str | Path, *, resume: bool = False
) -> dict[str, Any]:
    """Train `config` in `run_dir` with the loop it names (`fit` or `custom`)."""
    from tfkit.distribute import wants_multi_worker

    multi_worker = wants_multi_worker(config.runtime)
    if config.train.loop == "custom" or multi_worker:
        from tfkit.training.session import run_loop

        if config.train.loop != "custom":
            print(
                "tfkit train: multi-worker strategy: using the custom training loop "
                "(Keras fit does not support MultiWorkerMirroredStrategy)",
                flush=True,
            )

        return run_loop(config, run_dir, resume=resume)
    from tfkit.training.session import fit

    return fit(config, run_dir, resume=resume)


def train_command(args: argparse.Namespace) -> int:
    """`tfkit train CONFIG [--set k=v]... [--run-dir DIR] [--resume RUN_DIR] [--dry-run]`.

    `--resume RUN_DIR` continues the run with its own saved config; `--set` (or a CONFIG
    given along) may change only the keys of `tfkit.runs.RESUMABLE_KEYS`.
    """
    if args.resume:
        if getattr(args, "run_dir", None):
            raise UserError("--resume and --run-dir cannot be combined: --resume names the run dir")
        run = Run.open(args.resume, "resume", flag="--resume", kind="fit")
        config, changes = run.plan_resume(args.overrides, getattr(args, "config", None))
        if args.dry_run:
            print(dump_yaml(config), end="")
            return 0
        run.refuse_finished()
        announce(config.runtime)
        chief = _is_chief(config)
        run.check_resume_state()
        with run.training(chief=chief):  # the chief holds the run's lock
            if chief and (line := run.record_resume(changes)):
                print(f"tfkit train: {line}", flush=True)
            _train_or_stop(config, run.path, resume=True)
        return 0
    if not getattr(args, "config", None):
        raise UserError("tfkit train needs a CONFIG file (or --resume RUN_DIR)")
    config = load_config(args.config, args.overrides)
    check_config_kind(config, "fit", args.config)
    if args.dry_run:
        print(dump_yaml(config), end="")
        return 0
    announce(config.runtime)  # first line: where this process runs (tfkit.cluster)
    chief = _is_chief(config)
    # multi-worker: the chief creates the run dir, the other workers wait for it
    run = Run.for_worker(config, args.run_dir, root=args.runs_root, chief=chief)
    with run.training(chief=chief):
        _train_or_stop(config, run.path, resume=False)
    return 0


def _train_or_stop(config: ExperimentConfig, run_dir: Path, *, resume: bool) -> None:
    """`run_training`; a stop by a signal says how to continue."""
    import tensorflow as tf

    from tfkit.distribute import lost_worker
    from tfkit.errors import Stopped

    try:
        run_training(config, run_dir, resume=resume)
    except Stopped as err:
        err.resume_hint = f"tfkit train --resume {run_dir}"
        raise
    except tf.errors.OpError as err:
        lost = lost_worker(err, config.runtime)
        if lost is None:
            raise
        lost.resume_hint = f"tfkit train --resume {run_dir}"
        raise lost from None


# --------------------------------------------------------------------------------------
# evaluate / predict
# --------------------------------------------------------------------------------------


def evaluate_command(args: argparse.Namespace) -> int:
    """`tfkit evaluate RUN_DIR [--split test]`: evaluate the run's model on a split."""
    import tfkit.data
    from tfkit.saving import registered_objects
    from tfkit.training.fit import format_table

    run = Run.open(args.run_dir, "evaluate", kind="fit")
    config = _with_data_overrides(run, getattr(args, "overrides", None))
    model = run.load_model(registered_objects())
    try:
        splits = tfkit.data.build(config.data, seed=config.runtime.seed, input_context=None)
    except MissingPathError as err:
        raise UserError(
            f"{err} (from the run's saved config {run.config_file}"
            f"{' with --set overrides' if getattr(args, 'overrides', None) else ''}); if the "
            "data moved, pass "
            f"--set {err.key}=NEW_PATH"
        ) from None
    dataset = getattr(splits, args.split, None)
    if dataset is None:
        raise UserError(f"--split {args.split}: the run's data has no {args.split} split")
    if not getattr(model, "compiled", False):  # the custom loop saves the model uncompiled
        from tfkit.training.fit import compile_model

        compile_model(model, config.train, splits.spec, config.runtime)
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    print(format_table({args.split: {k: float(v) for k, v in logs.items()}}))
    return 0


def _with_data_overrides(run: Run, overrides: list[str] | None) -> ExperimentConfig:
    """The run's saved config with `--set data.*` overrides (the data may have moved; the
    model, training and runtime sections are the run's own)."""
    config = run.load_config()
    if not overrides:
        return config
    from tfkit.config import apply_overrides, to_dict, validate

    for item in overrides:
        key = item.partition("=")[0].strip()
        if not key.startswith("data."):
            raise UserError(
                f"--set {key}: evaluate changes only `data.*` keys of the run's saved config "
                "(e.g. --set data.source.path=NEW_PATH); the model is the run's own"
            )
    tree = apply_overrides(to_dict(config), overrides)
    return validate(tree, f"{run.config_file} (with --set overrides)")


def predict_command(args: argparse.Namespace) -> int:
    """`tfkit predict RUN_DIR --input FILE --output FILE [--batch-size N] [--normalized]`.

    An export directory is predicted by `tfkit.export.predict_exported` (the CLI chooses).

    Inputs are raw (as the data source holds them); the run's `data.normalize` is applied
    with its training statistics unless `--normalized` says they are normalized already.
    """
    from tfkit.saving import registered_objects
    from tfkit.training.predict import read_inputs, write_predictions

    if Path(args.output).suffix not in PREDICT_OUTPUTS:
        raise UserError(f"--output {args.output}: unknown file type. Expected .npy, .npz or .csv")
    run = Run.open(args.run_dir, "predict", kind="fit")
    config = run.load_config()
    model = run.load_model(registered_objects())
    x = read_inputs(
        args.input,
        model,
        config,
        args.run_dir,
        normalized=getattr(args, "normalized", False),
        resize=getattr(args, "resize", False),
    )
    predictions = model.predict(x, batch_size=args.batch_size, verbose=0)
    out = write_predictions(args.output, predictions)
    print(
        f"wrote {len(predictions)} predictions of shape {tuple(np.shape(predictions)[1:])} to {out}"
    )
    return 0
