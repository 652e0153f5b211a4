"""Inputs and outputs of prediction: read `--input` files for a model, write `--output`.

Used by `tfkit predict` on a run and on an exported SavedModel (`tfkit.export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfkit.arguments import PREDICT_RESIZE_HINT
from tfkit.config import ExperimentConfig
from tfkit.data.checks import nonfinite_rows, numpy_file_problem
from tfkit.errors import UserError
from tfkit.runs import SPEC_FILE, Run


def _model_inputs(model, run_dir: str | Path | None = None) -> list[tuple[str, tuple]]:
    """(name, shape with batch axis) of each model input: from the run's data spec
    (subclassed models have no symbolic inputs), else `model.inputs`."""
    inputs = Run(run_dir).spec_inputs() if run_dir is not None else None
    if inputs is not None:
        return [(name, shape) for name, shape, _ in inputs]
    return [(t.name.split(":")[0], tuple(t.shape)) for t in model.inputs]


def _read_images(path: Path, shape: tuple, resize: bool = False) -> np.ndarray:
    from PIL import Image

    from tfkit.data.imageio import check_image_sizes, image_files, to_mode

    files = image_files(path)
    if len(shape) != 4:
        raise UserError(
            f"--input {path} is an image directory, but the model expects inputs of shape {shape}"
        )
    height, width, channels = shape[1:]
    if not resize:
        check_image_sizes(files, height, width, hint=PREDICT_RESIZE_HINT)
    mode = "L" if channels == 1 else "RGB"
    images = []
    for f in files:
        try:
            with Image.open(f) as img:
                img = to_mode(img, mode)
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
                pixels = np.asarray(img, np.float32)
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for bad files
            raise UserError(f"--input {path}: cannot decode image {f}: {err}") from None
        images.append(pixels.reshape(height, width, channels))
    # as the `images` source does: pixels become [0, 1] (`data.normalize` comes after)
    return (np.stack(images) / 255.0).astype(np.float32)


def run_normalization(run_dir: str | Path | None) -> dict[str, dict] | None:
    """The `normalization` a run's data spec records (None for runs that predate it)."""
    return None if run_dir is None else Run(run_dir).normalization()


def _legacy_normalize(x: Any, path: Path, config: ExperimentConfig) -> Any:
    # runs without a recorded normalization: images as the source reads them; arrays only
    # when the run did not normalize (else the statistics are unknown here)
    normalize = config.data.normalize
    if not path.is_dir():
        if normalize != "none":
            raise UserError(
                f"--input {path}: the run normalizes its inputs (data.normalize: {normalize}) "
                f"but does not record how (trained before tfkit saved it in {SPEC_FILE}); pass "
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
    resize: bool = False,
) -> Any:
    """Read `--input` (.npy, .npz, .csv, .parquet or an image directory) for `model`.

    Inputs are raw, as the run's data source holds them: `data.normalize` is applied with
    the statistics of the run's training data (`normalization`, from its `spec.json`; 8-bit
    arrays become [0, 1] first). With `normalized` they are taken as the model sees them.
    Images of another size than the model's input are refused unless `resize`.

    Raises:
        UserError: unknown file type, or arrays whose per-example shape differs from the
            model's input shape (naming both).
    """
    from tfkit.data.input_pipeline import apply_normalization

    path = Path(path)
    inputs = _model_inputs(model, run_dir)
    if normalization is None and run_dir is not None:
        normalization = run_normalization(run_dir)
    x = _read_raw(path, inputs, config, resize)
    if normalized:
        return x
    if normalization is None:
        return _legacy_normalize(x, path, config)
    return apply_normalization(x, normalization, [n for n, _ in inputs])


def _read_raw(
    path: Path, inputs: list[tuple[str, tuple]], config: ExperimentConfig, resize: bool = False
) -> Any:
    if not path.exists():
        raise UserError(f"--input {path}: file not found")
    if path.is_dir():
        x: Any = _read_images(path, inputs[0][1], resize)
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
        from tfkit.data.sources import read_table

        frame = read_table(path, path.suffix[1:], "--input")
        source = config.data.source
        label = getattr(source, "label", None)
        features = getattr(source, "features", None)
        if isinstance(features, dict):
            x = {name: _columns(frame, cols, path) for name, cols in features.items()}
        else:
            cols = features or [c for c in map(str, frame.columns) if c != label]
            x = _columns(frame, cols, path)
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
        bad = nonfinite_rows({name: array})
        if bad:
            values = int(np.count_nonzero(~np.isfinite(array)))
            raise UserError(
                f"--input {path}: input `{name}` holds {values} NaN or infinite value(s) in "
                f"{int(bad[name].sum())} of {len(array)} example(s); their predictions would "
                "be meaningless. Fix or remove those examples"
            )
    return x


def _columns(frame, columns: list[str], path: Path) -> np.ndarray:
    """The named columns of a CSV/Parquet frame as float32; text or missing ones refused."""
    names = [str(c) for c in frame.columns]
    missing = [c for c in columns if c not in names]
    if missing:
        raise UserError(
            f"--input {path}: column(s) {', '.join(missing)} missing; the model reads the "
            f"columns {', '.join(columns)} (as in training). Columns found: {', '.join(names)}"
        )
    for c in columns:
        if frame[c].dtype.kind not in "biuf":
            sample = next((v for v in frame[c] if isinstance(v, str)), frame[c].iloc[0])
            raise UserError(
                f"--input {path}: column `{c}` is not numeric (e.g. {str(sample)[:20]!r}); "
                "the model was trained on numbers in that column. Give the numeric values "
                "the training data held"
            )
    return frame[columns].to_numpy(np.float32)


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
        problem = numpy_file_problem(path, err)
        raise UserError(f"--input {path}: cannot read as {path.suffix}: {problem}") from None


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
