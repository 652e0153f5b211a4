"""The `tfkit train`, `tfkit evaluate` and `tfkit predict` commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from tfkit.cluster import announce
from tfkit.config import (
    ExperimentConfig,
    apply_overrides,
    dump_yaml,
    load_config,
    read_yaml,
    save_config,
    validate,
)
from tfkit.errors import UserError
from tfkit.runs import CONFIG_FILE, check_resume_compatible, is_run_dir

# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------


def _resume_config(args: argparse.Namespace) -> ExperimentConfig:
    """The config to resume with: the run's saved config (or CONFIG) plus --set overrides."""
    run_dir = Path(args.resume)
    if not run_dir.exists():
        raise UserError(f"--resume {run_dir}: directory not found")
    if not is_run_dir(run_dir):
        raise UserError(
            f"--resume {run_dir}: not a tfkit run directory (no {CONFIG_FILE} in it). "
            "Pass the directory `tfkit train` printed, e.g. runs/<name>/00000"
        )
    if getattr(args, "config", None):
        config = load_config(args.config, args.overrides)
    else:
        raw = apply_overrides(read_yaml(run_dir / CONFIG_FILE), args.overrides)
        config = validate(raw, f"{run_dir / CONFIG_FILE} (with --set overrides)")
    check_resume_compatible(run_dir, config, sections=("model",))
    return config


def run_training(
    config: ExperimentConfig, run_dir: str | Path, *, resume: bool = False
) -> dict[str, Any]:
    """Train `config` in `run_dir` with the loop it names (`fit` or `custom`)."""
    from tfkit.distribute import wants_multi_worker

    multi_worker = wants_multi_worker(config.runtime)
    if config.train.loop == "custom" or multi_worker:
        from tfkit.training.loop import run_loop

        if config.train.loop != "custom":
            print(
                "tfkit train: multi-worker strategy: using the custom training loop "
                "(Keras fit does not support MultiWorkerMirroredStrategy)",
                flush=True,
            )

        return run_loop(config, run_dir, resume=resume)
    from tfkit.training.fit import fit

    return fit(config, run_dir, resume=resume)


def train_command(args: argparse.Namespace) -> int:
    """`tfkit train CONFIG [--set k=v]... [--run-dir DIR] [--resume RUN_DIR] [--dry-run]`."""
    if args.resume:
        if getattr(args, "run_dir", None):
            raise UserError("--resume and --run-dir cannot be combined: --resume names the run dir")
        config = _resume_config(args)
        run_dir = Path(args.resume)
        if args.dry_run:
            print(dump_yaml(config), end="")
            return 0
        if (run_dir / "metrics.json").exists() and not (run_dir / "backup").exists():
            raise UserError(
                f"--resume {run_dir}: this run already finished (see {run_dir / 'metrics.json'})"
            )
        if announce(config.runtime).is_chief:  # the other workers read the chief's files
            save_config(config, run_dir / CONFIG_FILE)
        _train_or_stop(config, run_dir, resume=True)
        return 0
    if not getattr(args, "config", None):
        raise UserError("tfkit train needs a CONFIG file (or --resume RUN_DIR)")
    config = load_config(args.config, args.overrides)
    if args.dry_run:
        print(dump_yaml(config), end="")
        return 0
    announce(config.runtime)  # first line: where this process runs (tfkit.cluster)
    from tfkit.distribute import worker_run_dir  # the chief creates it on multi-worker runs

    run_dir = worker_run_dir(config, args.run_dir, root=args.runs_root)
    _train_or_stop(config, run_dir, resume=False)
    return 0


def _train_or_stop(config: ExperimentConfig, run_dir: Path, *, resume: bool) -> None:
    """`run_training`; a stop by a signal says how to continue."""
    from tfkit.errors import Stopped

    try:
        run_training(config, run_dir, resume=resume)
    except Stopped as err:
        err.resume_hint = f"tfkit train --resume {run_dir}"
        raise


# --------------------------------------------------------------------------------------
# evaluate / predict
# --------------------------------------------------------------------------------------


def load_run_model(run_dir: str | Path):
    """The trained model of a run (`model.keras`, else `checkpoints/last.keras`), safe mode on."""
    import keras

    import tfkit.models  # noqa: F401 - registers tfkit's layers for loading
    import tfkit.training.losses  # noqa: F401 - registers tfkit's losses
    import tfkit.training.optimizers  # noqa: F401 - registers tfkit's schedules

    run_dir = Path(run_dir)
    for path in (run_dir / "model.keras", run_dir / "checkpoints" / "last.keras"):
        if path.exists():
            return keras.saving.load_model(path, safe_mode=True)
    raise UserError(f"{run_dir} holds no trained model (no model.keras or checkpoints/last.keras)")


def evaluate_command(args: argparse.Namespace) -> int:
    """`tfkit evaluate RUN_DIR [--split test]`: evaluate the run's model on a split."""
    import tfkit.data
    from tfkit.runs import load_run_config
    from tfkit.training.fit import format_table

    config = load_run_config(args.run_dir)
    model = load_run_model(args.run_dir)
    splits = tfkit.data.build(config.data, seed=config.runtime.seed, input_context=None)
    dataset = getattr(splits, args.split, None)
    if dataset is None:
        raise UserError(f"--split {args.split}: the run's data has no {args.split} split")
    if not getattr(model, "compiled", False):  # the custom loop saves the model uncompiled
        from tfkit.training.fit import compile_model

        compile_model(model, config.train, splits.spec, config.runtime)
    logs = model.evaluate(dataset, verbose=0, return_dict=True)
    print(format_table({args.split: {k: float(v) for k, v in logs.items()}}))
    return 0


def _model_inputs(model, run_dir: str | Path | None = None) -> list[tuple[str, tuple]]:
    """(name, shape with batch axis) of each model input: from the run's `spec.json`
    (written by `fit`; subclassed models have no symbolic inputs), else `model.inputs`."""
    import json

    spec_file = Path(run_dir) / "spec.json" if run_dir is not None else None
    if spec_file is not None and spec_file.exists():
        spec = json.loads(spec_file.read_text())
        return [(i["name"], (None, *i["shape"])) for i in spec["inputs"]]
    return [(t.name.split(":")[0], tuple(t.shape)) for t in model.inputs]


def _read_images(path: Path, shape: tuple, config: ExperimentConfig) -> np.ndarray:
    from PIL import Image

    from tfkit.data.imageio import to_mode

    files = sorted(
        p for p in path.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif")
    )
    if not files:
        raise UserError(f"--input {path}: no images (.png/.jpg/.jpeg/.bmp/.gif) in this directory")
    if len(shape) != 4:
        raise UserError(
            f"--input {path} is an image directory, but the model expects inputs of shape {shape}"
        )
    height, width, channels = shape[1:]
    mode = "L" if channels == 1 else "RGB"
    images = []
    for f in files:
        try:
            with Image.open(f) as img:
                pixels = np.asarray(to_mode(img, mode).resize((width, height)), np.float32)
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for bad files
            raise UserError(f"--input {path}: cannot decode image {f}: {err}") from None
        images.append(pixels.reshape(height, width, channels))
    # as the `images` source does: pixels become [0, 1] (`data.normalize` comes after)
    return (np.stack(images) / 255.0).astype(np.float32)


def run_normalization(run_dir: str | Path | None) -> dict[str, dict] | None:
    """The `normalization` a run's `spec.json` records (None for runs that predate it)."""
    import json

    spec_file = Path(run_dir) / "spec.json" if run_dir is not None else None
    if spec_file is None or not spec_file.is_file():
        return None
    return json.loads(spec_file.read_text()).get("normalization")


def _legacy_normalize(x: Any, path: Path, config: ExperimentConfig) -> Any:
    # runs without a recorded normalization: images as the source reads them; arrays only
    # when the run did not normalize (else the statistics are unknown here)
    normalize = config.data.normalize
    if not path.is_dir():
        if normalize != "none":
            raise UserError(
                f"--input {path}: the run normalizes its inputs (data.normalize: {normalize}) "
                "but does not record how (trained before tfkit saved it in spec.json); pass "
                "inputs normalized as the model sees them and add --normalized"
            )
        return x
    if normalize == "minus_one_one":
        return x * 2.0 - 1.0
    if normalize == "standardize":
        raise UserError(
            f"--input {path}: the run standardizes its images with statistics of its training "
            "data, and this run does not record them (trained before tfkit saved them); "
            "predict on arrays normalized the same way with --normalized instead"
        )
    return x


def read_inputs(
    path: str | Path,
    model,
    config: ExperimentConfig,
    run_dir: str | Path | None = None,
    *,
    normalization: dict[str, dict] | None = None,
    normalized: bool = False,
) -> Any:
    """Read `--input` (.npy, .npz, .csv, .parquet or an image directory) for `model`.

    Inputs are raw, as the run's data source holds them: `data.normalize` is applied with
    the statistics of the run's training data (`normalization`, from its `spec.json`; 8-bit
    arrays become [0, 1] first). With `normalized` they are taken as the model sees them.

    Raises:
        UserError: unknown file type, or arrays whose per-example shape differs from the
            model's input shape (naming both).
    """
    from tfkit.data.pipeline import apply_normalization

    path = Path(path)
    inputs = _model_inputs(model, run_dir)
    if normalization is None and run_dir is not None:
        normalization = run_normalization(run_dir)
    x = _read_raw(path, inputs, config)
    if normalized:
        return x
    if normalization is None:
        return _legacy_normalize(x, path, config)
    return apply_normalization(x, normalization, [n for n, _ in inputs])


def _read_raw(path: Path, inputs: list[tuple[str, tuple]], config: ExperimentConfig) -> Any:
    if not path.exists():
        raise UserError(f"--input {path}: file not found")
    if path.is_dir():
        x: Any = _read_images(path, inputs[0][1], config)
    elif path.suffix == ".npy":
        x = _load_numpy(path)
    elif path.suffix == ".npz":
        with _load_numpy(path) as data:
            names = list(data.keys())
            if len(inputs) > 1:
                # an input may also be named by the stored feature it reads (image/encoded)
                key = {n: n if n in names else _feature_of(n, config) for n, _ in inputs}
                missing = [n for n, k in key.items() if k not in names]
                if missing:
                    raise UserError(
                        f"--input {path} has arrays {names}, but the model needs inputs named "
                        f"{[n for n, _ in inputs]}"
                    )
                x = {n: data[key[n]] for n, _ in inputs}
            else:
                key = "x" if "x" in names else names[0]
                x = data[key]
    elif path.suffix in (".csv", ".parquet"):
        import pandas as pd

        try:
            frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - pandas/pyarrow raise many types
            raise UserError(f"--input {path}: cannot read as {path.suffix}: {err}") from None
        source = config.data.source
        label = getattr(source, "label", None)
        features = getattr(source, "features", None)
        if isinstance(features, dict):
            x = {name: frame[cols].to_numpy(np.float32) for name, cols in features.items()}
        else:
            cols = features or [c for c in frame.columns if c != label]
            x = frame[cols].to_numpy(np.float32)
    else:
        raise UserError(
            f"--input {path}: unknown file type {path.suffix!r}. Expected .npy, .npz, .csv, "
            ".parquet or an image directory"
        )
    arrays = x if isinstance(x, dict) else {inputs[0][0]: x}
    if len(arrays) != len(inputs):
        raise UserError(
            f"--input {path} gives {len(arrays)} input array(s), but the model takes "
            f"{len(inputs)}: {[f'{n} {s}' for n, s in inputs]}"
        )
    for (name, expected), array in zip(inputs, arrays.values(), strict=True):
        array = np.asarray(array)
        if array.ndim == 0 or len(array) == 0:
            raise UserError(
                f"--input {path}: input `{name}` holds no examples (shape {array.shape})"
            )
        if array.dtype.kind not in "biuf":
            raise UserError(
                f"--input {path}: input `{name}` has dtype {array.dtype}; expected numbers"
            )
        want = expected[1:]
        got = tuple(array.shape[1:])
        fits = len(want) == len(got) and all(
            w is None or w == g for w, g in zip(want, got, strict=True)
        )
        if not fits:
            raise UserError(
                f"--input {path}: input `{name}` has shape {tuple(array.shape)}, i.e. {got} per "
                f"example, but the model expects {tuple(want)} per example (shape {expected})"
            )
    return x


def _feature_of(input_name: str, config: ExperimentConfig) -> str:
    """The TFRecord feature an input reads (`image_encoded` reads `image/encoded`)."""
    source = config.data.source
    if source.kind != "tfrecord":
        return input_name
    from tfkit.data.sources import keras_input_names

    features = list(source.inputs or [f.name for f in source.features or []])
    return dict(zip(keras_input_names(features), features, strict=True)).get(input_name, input_name)


def _load_numpy(path: Path):
    """`np.load` of a `.npy`/`.npz`, with unreadable files as a UserError naming them."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"--input {path}: cannot read as {path.suffix}: {err}") from None


def write_predictions(path: str | Path, predictions: np.ndarray) -> Path:
    """Write predictions to `.npy`, `.npz` (`predictions`, and `classes` when a
    classifier) or `.csv` (one column per output, plus `class`)."""
    path = Path(path)
    predictions = np.asarray(predictions)
    classes = None
    if predictions.ndim == 2 and predictions.shape[1] > 1:
        classes = predictions.argmax(-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, predictions)
    elif path.suffix == ".npz":
        extra = {} if classes is None else {"classes": classes}
        np.savez(path, predictions=predictions, **extra)
    elif path.suffix == ".csv":
        import pandas as pd

        flat = predictions.reshape(len(predictions), -1)
        frame = pd.DataFrame(flat, columns=[f"output_{i}" for i in range(flat.shape[1])])
        if classes is not None:
            frame["class"] = classes
        frame.to_csv(path, index=False)
    else:
        raise UserError(
            f"--output {path}: unknown file type {path.suffix!r}. Expected .npy, .npz or .csv"
        )
    return path


def predict_command(args: argparse.Namespace) -> int:
    """`tfkit predict RUN_DIR --input FILE --output FILE [--batch-size N] [--normalized]`.

    Inputs are raw (as the data source holds them); the run's `data.normalize` is applied
    with its training statistics unless `--normalized` says they are normalized already.
    """
    from tfkit.runs import load_run_config

    if any((Path(args.run_dir) / f).is_file() for f in ("saved_model.pb", "export.json")):
        # a `tfkit export` directory
        from tfkit.export import predict_exported

        return predict_exported(args)
    if Path(args.output).suffix not in (".npy", ".npz", ".csv"):
        raise UserError(f"--output {args.output}: unknown file type. Expected .npy, .npz or .csv")
    config = load_run_config(args.run_dir)
    model = load_run_model(args.run_dir)
    x = read_inputs(
        args.input, model, config, args.run_dir, normalized=getattr(args, "normalized", False)
    )
    predictions = model.predict(x, batch_size=args.batch_size, verbose=0)
    out = write_predictions(args.output, predictions)
    print(
        f"wrote {len(predictions)} predictions of shape {tuple(np.shape(predictions)[1:])} to {out}"
    )
    return 0
