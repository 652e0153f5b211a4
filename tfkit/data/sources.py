"""Where examples come from: arrays, tables, generators, TFRecords, image folders, tfds.

The `from_*` functions are the Python API: each returns an unbatched `tf.data.Dataset` of
`(x, y)` / `(x, y, sample_weight)` elements (or batched, for `from_tfrecords`, which parses
after batching). `resolve` turns a source section of the config into a `Source`: the
examples plus what the pipeline needs to split, shard and describe them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfkit.data import checks
from tfkit.data import tfrecord as tfr
from tfkit.data.datasets import EMBEDDED, Arrays, generate
from tfkit.errors import MissingPathError, UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass
class Source:
    """A resolved data source.

    Exactly one of `arrays` (in-memory examples; for image folders `x` holds file paths
    and `element_fn` decodes them), `files` (TFRecord shards parsed by batch) or `stream`
    (a function returning an unbatched dataset, e.g. tfds) is set.

    Attributes:
        where: the config key or path, for messages.
        count: number of examples.
        input_names: model input names, in order.
        input_shapes: per-example shapes, as stored (before normalization).
        input_dtypes: dtypes as stored (uint8 images become float32 in [0, 1]).
        label_dtype / label_shape: the stored label, or None for unlabelled data.
        has_sample_weight: elements carry a third component.
        task, num_classes, class_names, value_range: what the labels and features mean.
        skipped: bad records or images skipped under `ignore_errors`, per file.
        input_features: for TFRecords, the feature each input reads (`image/encoded` for
            the input `image_encoded`): input names are valid Keras names.
    """

    where: str
    count: int
    input_names: list[str]
    input_shapes: list[tuple]
    input_dtypes: list[str]
    label_dtype: str | None
    label_shape: tuple = ()
    has_sample_weight: bool = False
    task: str | None = None
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None
    value_range: tuple[float, float] | None = None
    arrays: Arrays | None = None
    element_fn: Callable | None = None
    files: list[str] | None = None
    file_counts: list[int] | None = None
    compression: str = ""
    features: list[tfr.FeatureSpec] | None = None
    label_name: str | None = None
    weight_name: str | None = None
    stream: Callable[[], tf.data.Dataset] | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    input_features: list[str] | None = None  # the stored feature of each input, if renamed

    @property
    def multi_input(self) -> bool:
        """Whether x is a dict of several inputs."""
        return len(self.input_names) > 1


# --------------------------------------------------------------------------------------
# Python API
# --------------------------------------------------------------------------------------


def _element(x, y, w):
    if y is None:
        return x
    return (x, y) if w is None else (x, y, w)


def from_numpy(
    x: np.ndarray | dict[str, np.ndarray],
    y: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Unbatched dataset of `(x, y[, sample_weight])` from arrays (x may be a dict of inputs).

    Raises:
        UserError: arrays of different lengths.
    """
    lengths = {k: len(v) for k, v in (x.items() if isinstance(x, dict) else [("x", x)])}
    if y is not None:
        lengths["y"] = len(y)
    if sample_weight is not None:
        lengths["sample_weight"] = len(sample_weight)
    if len(set(lengths.values())) > 1:
        raise UserError(
            f"Arrays must have the same number of examples. Received lengths: {lengths}"
        )
    return tf.data.Dataset.from_tensor_slices(_element(x, y, sample_weight))


def from_dataframe(
    df,
    features: list[str] | dict[str, list[str]] | None = None,
    label: str | None = None,
    sample_weight: str | None = None,
    where: str = "DataFrame",
) -> tf.data.Dataset:
    """Unbatched dataset from a pandas DataFrame: feature columns (or named groups), label.

    Raises:
        UserError: a named column is missing (naming it and listing the columns).
    """
    arrays = table_arrays(df, features, label, sample_weight, where)
    return from_numpy(arrays.x, arrays.y, arrays.sample_weight)


def from_generator(generator: Callable[[], Any], output_signature: Any) -> tf.data.Dataset:
    """Unbatched dataset from a Python generator function yielding `(x, y)` elements."""
    if not callable(generator):
        raise UserError(
            f"`generator` must be a callable returning an iterator. Received: {generator!r}"
        )
    return tf.data.Dataset.from_generator(generator, output_signature=output_signature)


def from_tfrecords(
    path: str | list[str],
    *,
    batch_size: int = 32,
    features: list[Any] | None = None,
    label: str | None = "label",
    inputs: list[str] | None = None,
    compression: str = "auto",
    ignore_errors: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batched, parsed dataset from TFRecords (a tfkit directory, a file or a glob).

    Records are read from all shards in parallel, batched, then parsed with
    `tf.io.parse_example`. uint8 features stay uint8 here (`pipeline` scales them).

    Args:
        path: directory written by `tfkit data convert`, a file, a glob, or a list of those.
        batch_size: examples per batch.
        features: `TFRecordFeature`s (or dicts) for files without `schema.json`.
        label: the label feature (None for unlabelled).
        inputs: the feature names fed to the model (default: all but label).
        compression: `auto`, `""`, `GZIP` or `ZLIB`.
        ignore_errors: skip corrupt records instead of failing.
        drop_remainder: drop the last partial batch.
    """
    from tfkit.config import TFRecordSource

    if batch_size < 1:
        raise UserError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    cfg = TFRecordSource(
        kind="tfrecord", path=path if isinstance(path, (list, tuple)) else str(path),
        compression=compression, features=features,
        label=label, inputs=inputs,
    )  # fmt: skip
    src = resolve_tfrecord(cfg, "from_tfrecords", ignore_errors)
    ds = record_dataset(src, ignore_errors=ignore_errors)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(parse_fn(src), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def from_image_folder(
    path: str,
    image_size: tuple[int, int] = (64, 64),
    color_mode: str = "rgb",
    labels: str = "inferred",
    ignore_errors: bool = False,
) -> tf.data.Dataset:
    """Unbatched dataset of `(uint8 image, int label)` from one subfolder per class.

    Raises:
        UserError: missing or empty directory, or an image that cannot be decoded (naming
            the file) unless `ignore_errors`.
    """
    from tfkit.config import ImagesSource

    cfg = ImagesSource(
        kind="images", path=path, image_size=image_size, color_mode=color_mode, labels=labels
    )
    src = resolve_images(cfg, "from_image_folder", ignore_errors)
    ds = tf.data.Dataset.from_tensor_slices(_element(src.arrays.x, src.arrays.y, None))
    return ds.map(src.element_fn, num_parallel_calls=tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------
# resolving config sources
# --------------------------------------------------------------------------------------


def infer_task(y: np.ndarray | None) -> tuple[str | None, int | None]:
    """(task, num_classes) from label values: floats -> regression, {0,1} -> binary."""
    if y is None:
        return None, None
    y = np.asarray(y)
    if y.dtype.kind == "f" and not np.all(np.mod(y, 1) == 0):
        return "regression", None
    if y.ndim > 1 and y.shape[-1] > 1:
        return "regression", None
    values = np.unique(y)
    if len(values) <= 2 and set(values.tolist()) <= {0, 1}:
        return "binary", 2
    if values.min() < 0:
        return "regression", None
    return "multiclass", int(values.max()) + 1


def _label_dtype(task: str | None) -> str:
    return "int32" if task == "multiclass" else "float32"


def from_arrays(
    arrays: Arrays,
    where: str,
    task: str = "auto",
    num_classes: int | None = None,
    *,
    nan_policy: str = "error",
    feature_names: list[str] | None = None,
    path: str | None = None,
) -> Source:
    """A `Source` over in-memory `Arrays` (features cast to float32 except uint8 images).

    The examples are checked first (`tfkit.data.checks`): equal lengths, numeric dtypes,
    NaN/Inf cells (refused, or dropped with `nan_policy: drop`), labels that fit the task.
    """
    named = f"`{where}` ({path})" if path else f"`{where}`"
    _check_arrays(arrays, named, nan_policy, feature_names)
    x = arrays.x
    if isinstance(x, dict):
        names = list(x)
        cols = [np.asarray(x[n]) for n in names]
    else:
        names, cols = ["x"], [np.asarray(x)]
    cols = [
        c if c.dtype == np.uint8 or c.dtype.kind in "SUO" else c.astype(np.float32) for c in cols
    ]
    arrays.x = (
        dict(zip(names, cols, strict=True)) if len(names) > 1 or isinstance(x, dict) else cols[0]
    )
    if len(arrays) == 0:
        raise UserError(f"`{where}` holds 0 examples")
    t, k = (arrays.task, arrays.num_classes) if arrays.task else infer_task(arrays.y)
    if task != "auto":
        t = task
        k = num_classes or (k if task != "regression" else None)
        if t == "multiclass" and k is None:
            k = int(np.max(arrays.y)) + 1
    elif num_classes:
        k = num_classes
    checks.check_labels(arrays.y, named, t, k)
    if arrays.y is not None:
        arrays.y = np.asarray(arrays.y).astype(_label_dtype(t))
    if arrays.sample_weight is not None:
        arrays.sample_weight = np.asarray(arrays.sample_weight, np.float32)
    return Source(
        where=where,
        count=len(arrays),
        input_names=names,
        input_shapes=[tuple(c.shape[1:]) for c in cols],
        input_dtypes=[c.dtype.name if c.dtype.kind not in "SUO" else "string" for c in cols],
        label_dtype=None if arrays.y is None else _label_dtype(t),
        label_shape=() if arrays.y is None else tuple(arrays.y.shape[1:]),
        has_sample_weight=arrays.sample_weight is not None,
        task=t,
        num_classes=k,
        class_names=arrays.class_names,
        value_range=arrays.value_range or ((0.0, 255.0) if cols[0].dtype == np.uint8 else None),
        arrays=arrays,
    )


def _check_arrays(arrays: Arrays, where: str, nan_policy: str, feature_names) -> None:
    checks.check_rows(arrays.x, arrays.y, where)
    columns = dict(arrays.x) if isinstance(arrays.x, dict) else {"x": arrays.x}
    lengths = {("x" if k == "x" else f"x.{k}"): len(np.asarray(v)) for k, v in columns.items()}
    if arrays.y is not None:
        lengths["y"] = len(np.asarray(arrays.y))
    if arrays.sample_weight is not None:
        lengths["sample_weight"] = len(np.asarray(arrays.sample_weight))
    checks.check_lengths(lengths, where)
    checks.check_dtypes(arrays.x, arrays.y, where)
    checks.apply_nan_policy(arrays, where, nan_policy, feature_names)


def _path_key(where: str) -> str:
    return where if where.startswith("--") else f"{where}.path"


def _check_path(path: str, where: str, want: str = "file") -> Path:
    p = Path(path)
    where = _path_key(where)
    if not p.exists():
        raise MissingPathError(where, f"`{where}`: no such {want}: {p}")
    if want == "file" and p.is_dir():
        raise UserError(f"`{where}`: expected a file, found a directory: {p}")
    if want == "directory" and not p.is_dir():
        raise UserError(f"`{where}`: expected a directory, found a file: {p}")
    return p


def load_npz(cfg, where: str) -> Arrays:
    """Arrays named by `cfg.x` / `cfg.y` in a `.npz` (or features only in a `.npy`)."""
    p = _check_path(cfg.path, where)
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - numpy raises several types
        problem = checks.numpy_file_problem(p, err)
        raise UserError(f"`{where}.path` {p}: cannot read as .npz/.npy: {problem}") from None
    if isinstance(data, np.ndarray):
        return Arrays(x=data, y=None)
    keys = list(data.keys())

    def get(name: str, key: str) -> np.ndarray:
        if name not in data:
            raise UserError(
                f"`{where}.{key}`: {p} has no array `{name}`. Arrays found: {', '.join(keys)}"
            )
        try:
            return data[name]
        except (ValueError, OSError, EOFError) as err:  # object arrays, truncated members
            # numpy's own text suggests `allow_pickle`, which tfkit never uses
            reason = "an object array" if "pickle" in str(err) else str(err)
            raise UserError(
                f"`{where}.{key}`: cannot read array `{name}` of {p}: {reason} (object or "
                "ragged arrays are not supported: store rectangular numeric arrays)"
            ) from None

    x = {n: get(n, "x") for n in cfg.x} if isinstance(cfg.x, list) else get(cfg.x, "x")
    y = get(cfg.y, "y") if cfg.y else None
    w = get(cfg.sample_weight, "sample_weight") if cfg.sample_weight else None
    return Arrays(x=x, y=y, sample_weight=w)


def read_table(path: str | Path, kind: str, where: str):
    """A CSV or Parquet file as a pandas DataFrame (read with pyarrow)."""
    p = _check_path(str(path), where)
    try:
        if kind == "csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(p)
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(p)
    except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid and OSError
        problem = _table_problem(p, kind, err, where)
        key = _path_key(where)
        key = key if key.startswith("--") else f"`{key}`"
        raise UserError(f"{key} {p}: cannot read as {kind}: {problem}") from None
    return table.to_pandas()


def _binary_at(head: bytes) -> int | None:
    """The offset of the first byte that is not UTF-8 text (control bytes included), or None."""
    for i, byte in enumerate(head):
        if (byte < 0x20 and byte not in b"\t\n\r\x0c") or byte == 0x7F:
            return i
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return None if err.start >= len(head) - 3 else err.start  # a cut multi-byte char
    return None


def _table_problem(p: Path, kind: str, err: Exception, where: str) -> str:
    """Why pyarrow could not read `p`, with what to do; never the raw bytes of the file."""
    with open(p, "rb") as f:
        head = f.read(1 << 16)
    binary = _binary_at(head)
    if kind == "parquet":
        if head[:4] == b"PAR1":
            detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            return f"the Parquet file is truncated or corrupt ({detail}); write it again"
        if binary is None:
            fix = (
                "use --from csv" if where.startswith("--from")
                else "name it .csv" if where.startswith("--")
                else f"set `{where}.kind: csv`"
            )  # fmt: skip
            return f"it is text, not Parquet (no PAR1 signature); if it is CSV, {fix}"
        return "not a Parquet file (no PAR1 signature at its start); give a Parquet file"
    if binary is not None:
        return (
            f"not CSV text (byte 0x{head[binary]:02x} at offset {binary} is not text); "
            "give a UTF-8 CSV file with a header row"
        )
    import csv

    with open(p, encoding="utf-8", errors="replace", newline="") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        for row in rows:
            if row and len(row) != len(header):
                return (
                    f"line {rows.line_num} has {len(row)} fields, the header has "
                    f"{len(header)}; fix that line (quote fields that hold commas)"
                )
    detail = " ".join(str(err).split())[:200]
    return f"{detail.encode('ascii', 'backslashreplace').decode()}; fix the file"


def table_arrays(df, features, label, sample_weight, where: str, prefix: str = "") -> Arrays:
    """Feature columns (or named groups), label and weight columns of a DataFrame as arrays.

    Raises:
        UserError: a named column is missing, or a feature column is not numeric.
    """
    columns = [str(c) for c in df.columns]
    if len(df) == 0:
        raise UserError(
            f"`{prefix}path`: {where} is empty: it has a header ({len(columns)} columns) "
            "but no rows"
        )

    def need(col: str, key: str) -> str:
        if col not in columns:
            raise UserError(
                f"`{prefix}{key}`: column `{col}` is not in {where}. Columns found: {', '.join(columns)}"
            )
        return col

    if label is not None:
        need(label, "label")
    if sample_weight is not None:
        need(sample_weight, "sample_weight")
    if features is None:
        features = [c for c in columns if c not in (label, sample_weight)]
    groups = features if isinstance(features, dict) else {"x": features}
    x = {}
    for name, cols in groups.items():
        for c in cols:
            need(c, f"features.{name}" if isinstance(features, dict) else "features")
            if df[c].dtype.kind not in "biuf":
                raise UserError(
                    f"`{prefix}features`: column `{c}` in {where} is not numeric (dtype {df[c].dtype}); "
                    "choose numeric feature columns"
                )
        x[name] = df[cols].to_numpy(dtype=np.float32)
    y = df[label].to_numpy() if label is not None else None
    w = df[sample_weight].to_numpy(dtype=np.float32) if sample_weight is not None else None
    return Arrays(x=x if isinstance(features, dict) else x["x"], y=y, sample_weight=w)


# images ---------------------------------------------------------------------------------


def list_images(path: str, labels: str, where: str) -> tuple[list[str], list[int], tuple[str, ...]]:
    """Image files and class indices of a folder (one subfolder per class, sorted)."""
    root = _check_path(path, where, "directory")
    if labels == "inferred":
        classes = sorted(
            d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        if not classes:
            raise UserError(
                f"`{_path_key(where)}`: {root} has no class subfolders (expected one subfolder per "
                "class; use labels: none for a flat folder)"
            )
        files, ys = [], []
        for i, c in enumerate(classes):
            found = sorted(
                str(f) for f in (root / c).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS
            )
            files += found
            ys += [i] * len(found)
    else:
        classes = ()
        files = sorted(str(f) for f in root.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS)
        ys = [0] * len(files)
    if not files:
        raise UserError(
            f"`{_path_key(where)}`: {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return files, ys, tuple(classes)


def check_image(file: str) -> str | None:
    """None when `file` decodes as an image, else the reason it does not."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            img.verify()
        with Image.open(file) as img:
            img.load()
    except Exception as err:  # noqa: BLE001 - PIL raises many types
        return f"{type(err).__name__}: {err}"
    return None


def resolve_images(cfg, where: str, ignore_errors: bool) -> Source:
    """A `Source` over an image folder; undecodable images fail (or are skipped)."""
    files, ys, classes = list_images(cfg.path, cfg.labels, where)
    good, good_y, skipped = [], [], {}
    for f, y in zip(files, ys, strict=True):
        reason = check_image(f)
        if reason is None:
            good.append(f)
            good_y.append(y)
        elif ignore_errors:
            skipped[f] = 1
        else:
            raise UserError(
                f"`{where}`: cannot decode image {f} ({reason}); fix or remove it, or set "
                "data.ignore_errors: true to skip it"
            )
    if not good:
        raise UserError(f"`{_path_key(where)}`: no image in {cfg.path} could be decoded")
    h, w = cfg.image_size
    channels = 3 if cfg.color_mode == "rgb" else 1

    def decode(path, *rest):
        img = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        img = tf.image.resize(img, [h, w])
        img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
        img.set_shape([h, w, channels])
        return (img, *rest) if rest else img

    labelled = cfg.labels == "inferred"
    arrays = Arrays(
        x=np.array(good),
        y=np.array(good_y, np.int32) if labelled else None,
        task="multiclass" if labelled else None,
        num_classes=len(classes) if labelled else None,
        class_names=classes or None,
    )
    return Source(
        where=where,
        count=len(good),
        input_names=["x"],
        input_shapes=[(h, w, channels)],
        input_dtypes=["uint8"],
        label_dtype="int32" if labelled else None,
        task=arrays.task,
        num_classes=arrays.num_classes,
        class_names=arrays.class_names,
        value_range=(0.0, 255.0),
        arrays=arrays,
        element_fn=decode,
        skipped=skipped,
    )


# TFRecords ------------------------------------------------------------------------------


def _tfrecord_specs(cfg, where: str, files: list[str], schema: dict | None) -> list:
    """The features of TFRecord shards: as the config declares them, else from the tfkit
    schema file.

    Raises:
        UserError: neither is there; the message proposes features read from the data.
    """
    if cfg.features is not None:
        return [tfr.spec_from_config(f) for f in cfg.features]
    if schema is not None:
        return [tfr.FeatureSpec.from_json(f) for f in schema["features"]]
    found = tfr.infer_features(tfr.first_records(files[0], 5, cfg.compression))
    raise UserError(
        f"`{where}`: {cfg.path} has no {tfr.SCHEMA_FILE}; declare the features in the "
        f"config, e.g.\n{tfr.features_yaml(found)}"
    )


def _count_tfrecords(
    files: list[str],
    specs: list,
    compression: str,
    shard_counts: dict[str, int],
    ignore_errors: bool,
    verify: bool,
) -> tuple[list[int | None], dict[str, int]]:
    """(records per file, bad records skipped per file): the first record of each file is
    checked against `specs`; how much of each file is read follows `resolve_tfrecord`.

    Raises:
        UserError: a corrupt or truncated file, or a count that differs from the schema's.
    """
    counts, skipped = [], {}
    for f in files:
        recs = tfr.first_records(f, 1, compression)
        if recs:
            tfr.check_example(recs[0], specs, f)
        expected = shard_counts.get(str(Path(f)))
        if ignore_errors:
            n = tfr.count_records(f, compression, ignore_errors=True)
            if expected is not None and n < expected:
                skipped[f] = expected - n
            elif compression == "":
                total, problem = tfr.scan_structure(f)
                if total + bool(problem) > n:
                    skipped[f] = total + bool(problem) - n
        elif verify or (expected is None and compression != ""):
            n = tfr.count_records(f, compression)  # reads all: a bad record fails here, named
            if expected is not None and n != expected:
                raise UserError(f"{f}: {n} records read, {tfr.SCHEMA_FILE} lists {expected}")
        elif compression == "":
            n, problem = tfr.scan_structure(f)
            if problem:
                raise UserError(
                    f"{f}: corrupt or truncated TFRecord file ({problem}); set "
                    "data.ignore_errors: true to skip bad records"
                )
        else:
            n = expected
        counts.append(n)
    if skipped:
        import logging

        logging.getLogger("tfkit.data").warning(
            "skipped %d bad records: %s", sum(skipped.values()),
            ", ".join(f"{os.path.basename(k)}: {v}" for k, v in skipped.items()),
        )  # fmt: skip
    return counts, skipped


def _tfrecord_task(
    meta: dict,
    label_spec,
    read_labels,
    task: str,
    num_classes: int | None,
    check_where: str,
) -> tuple[str | None, int | None]:
    """(task, number of classes) of a labelled TFRecord source: as configured, else from
    the schema file, else from the labels (read through `read_labels`, once, only when
    needed); class labels are checked against them when read or configured."""
    t, k = meta.get("task"), meta.get("num_classes")
    read: list[np.ndarray] = []

    def labels() -> np.ndarray:  # read once, only when needed
        if not read:
            read.append(read_labels())
        return read[0]

    if task != "auto":
        t, k = task, num_classes or k
    if t is None:
        if label_spec.dtype in ("float32", "float64", "float16"):
            t = "regression"
        else:
            t, k = infer_task(labels())
    if t == "multiclass" and k is None:
        k = int(labels().max()) + 1
    if num_classes:
        k = num_classes
    if t in ("binary", "multiclass") and (read or task != "auto" or num_classes):
        checks.check_labels(labels(), check_where, t, k)
    return t, k


def resolve_tfrecord(
    cfg,
    where: str,
    ignore_errors: bool,
    task: str = "auto",
    num_classes: int | None = None,
    verify: bool = True,
) -> Source:
    """A `Source` over TFRecord shards, checked before any training starts.

    The first record of every file is checked against the features (a missing feature or
    a wrong dtype names the feature and the file). With `verify` every file is read once,
    so a truncated or corrupt file fails here, named, before training starts; without it
    uncompressed files are only walked record header by header (catching truncation).
    With `ignore_errors` every file is read once to count the readable records, and the
    bad ones are reported in `Source.skipped`.
    """
    files, schema = tfr.resolve_files(cfg.path, f"{where}.path")
    specs = _tfrecord_specs(cfg, where, files, schema)
    names = [s.name for s in specs]
    meta = schema or {}
    label = meta.get("label", "label") if cfg.label == "label" and schema else cfg.label
    if label is not None and label not in names:
        raise UserError(
            f"`{where}.label`: feature `{label}` is not among the features of {cfg.path}: "
            f"{', '.join(names)}"
        )
    weight = meta.get("sample_weight") if meta.get("sample_weight") in names else None
    inputs = cfg.inputs or meta.get("inputs") or [n for n in names if n not in (label, weight)]
    for n in inputs:
        if n not in names:
            raise UserError(f"`{where}.inputs`: feature `{n}` is not among: {', '.join(names)}")
    compression = tfr.detect_compression(files[0], cfg.compression)
    schema_base = cfg.path if isinstance(cfg.path, str) else files[0]
    shard_counts = {
        str(Path(schema_dir_file(schema_base, s["file"]))): s["count"]
        for s in meta.get("shards", [])
    }

    counts, skipped = _count_tfrecords(
        files, specs, compression, shard_counts, ignore_errors, verify
    )
    by_name = {s.name: s for s in specs}
    t, k = None, None
    if label is not None:
        t, k = _tfrecord_task(
            meta,
            by_name[label],
            lambda: _read_labels(files, compression, by_name[label], ignore_errors),
            task,
            num_classes,
            f"`{where}` ({cfg.path}, feature `{label}`)",
        )
    image_like = [by_name[n] for n in inputs if by_name[n].dtype == "uint8"]
    return Source(
        where=where,
        count=int(sum(counts)),
        input_names=keras_input_names(inputs),
        input_features=list(inputs),
        input_shapes=[tuple(by_name[n].shape) for n in inputs],
        input_dtypes=[by_name[n].dtype for n in inputs],
        label_dtype=None if label is None else _label_dtype(t),
        label_shape=() if label is None else tuple(by_name[label].shape),
        has_sample_weight=weight is not None,
        task=t if label is not None else None,
        num_classes=k if label is not None else None,
        class_names=tuple(meta["class_names"]) if meta.get("class_names") else None,
        value_range=(0.0, 255.0) if image_like else None,
        files=files,
        file_counts=counts,
        compression=compression,
        features=specs,
        label_name=label,
        weight_name=weight,
        skipped=skipped,
    )


def keras_input_names(features: list[str]) -> list[str]:
    """Keras-valid, distinct input names for feature names (`image/encoded` -> `image_encoded`).

    Keras refuses `/` (and TensorFlow more) in layer names; TFRecords written elsewhere
    commonly use `image/encoded`, `image/class/label`.
    """
    import re

    out: list[str] = []
    for name in features:
        safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "input"
        if not safe[0].isalpha():
            safe = f"f_{safe}"
        candidate, n = safe, 1
        while candidate in out:
            n += 1
            candidate = f"{safe}_{n}"
        out.append(candidate)
    return out


def schema_dir_file(path: str, name: str) -> str:
    """The path of shard `name` listed in the schema of `path` (a directory or a file in it)."""
    p = Path(path)
    base = p if p.is_dir() else p.parent
    return str(base / name)


def _read_labels(files, compression, spec, ignore_errors) -> np.ndarray:
    ds = record_dataset_plain(files, compression, ignore_errors).batch(4096)
    fmap = tfr.parse_features([spec])
    ds = ds.map(lambda r: tf.io.parse_example(r, fmap)[spec.name])
    return np.concatenate([b.numpy().ravel() for b in ds])


def record_dataset_plain(
    files: list[str], compression: str, ignore_errors: bool
) -> tf.data.Dataset:
    """Serialized records of `files`, read in order."""
    ds = tf.data.TFRecordDataset(files, compression_type=compression)
    return ds.ignore_errors() if ignore_errors else ds


# records parsed per file in blocks of this many (`record_dataset(..., parsed=True)`)
PARSE_BLOCK = 128


def parses_early(src: Source) -> bool:
    """Whether examples of `src` can be parsed before the cache and shuffle: every feature
    has a fixed shape and decodes to about the bytes its record holds (no `varlen` lists,
    which are padded per batch, and no PNG/JPEG images, which grow when decoded)."""
    return all(not s.varlen and s.storage not in ("png", "jpeg") for s in src.features)


def record_dataset(
    src: Source,
    *,
    table: np.ndarray | None = None,
    split_id: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    ignore_errors: bool = False,
    deterministic: bool = True,
    parsed: bool = False,
) -> tf.data.Dataset:
    """Unbatched `(serialized record, file name)` pairs of one split of a TFRecord source;
    with `parsed`, unbatched examples (the elements of `parse_fn`, one at a time).

    Shards are read in parallel (interleaved); with an `input_context` of several
    pipelines, files are divided among them when there are enough files, else records
    are. `table[global index] == split_id` selects the split's records. `parsed` parses
    each file's records in blocks with `tf.io.parse_example` inside the parallel readers
    (the file name goes to the parser once per block, not along with every record); the
    examples come in the same order as the records would.
    """
    files = list(src.files)
    offsets = np.concatenate([[0], np.cumsum(src.file_counts)[:-1]]).astype(np.int64)
    ids = list(range(len(files)))
    n_pipes = input_context.num_input_pipelines if input_context else 1
    pipe = input_context.input_pipeline_id if input_context else 0
    file_sharded = n_pipes > 1 and len(files) >= n_pipes
    if file_sharded:
        ids = ids[pipe::n_pipes]
    fds = tf.data.Dataset.from_tensor_slices(
        (tf.constant([files[i] for i in ids]), tf.constant(offsets[ids], tf.int64))
    )
    lookup = tf.constant(table, tf.int8) if table is not None else None
    compression = src.compression
    parse = parse_fn(src) if parsed else None

    def read(f, offset):
        ds = tf.data.TFRecordDataset(f, compression_type=compression, buffer_size=1 << 20)
        if ignore_errors:
            ds = ds.ignore_errors()
        if lookup is not None:
            ds = ds.enumerate().filter(lambda j, r: tf.gather(lookup, offset + j) == split_id)
            ds = ds.map(lambda j, r: r)
        if parse is not None:
            block = ds.batch(PARSE_BLOCK).map(lambda r: parse(r, tf.fill(tf.shape(r), f)))
            return block.unbatch()
        return ds.map(lambda r: (r, f))

    ds = fds.interleave(
        read,
        cycle_length=max(1, min(len(ids), 8)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if n_pipes > 1 and not file_sharded:
        ds = ds.shard(n_pipes, pipe)
    return ds


def parse_fn(src: Source) -> Callable:
    """`(records, file names) -> element` parsing a whole batch with `tf.io.parse_example`."""
    fmap = tfr.parse_features(src.features)
    specs = src.features
    label_dtype = tf.dtypes.as_dtype(src.label_dtype) if src.label_dtype else None

    def parse(records, names):
        parsed = tfr.decode_batch(tf.io.parse_example(records, fmap, example_names=names), specs)
        features = src.input_features or src.input_names
        xs = {n: parsed[f] for n, f in zip(src.input_names, features, strict=True)}
        x = xs if src.multi_input else xs[src.input_names[0]]
        y = tf.cast(parsed[src.label_name], label_dtype) if src.label_name else None
        w = tf.cast(parsed[src.weight_name], tf.float32) if src.weight_name else None
        return _element(x, y, w)

    return parse


# tfds -----------------------------------------------------------------------------------


def resolve_tfds(cfg, where: str) -> Source:
    """A `Source` over a tensorflow-datasets dataset already in `data_dir` (no download)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise UserError(
            f"`{where}.kind: tfds` needs the tensorflow-datasets package, which is not "
            "installed (pip install tensorflow-datasets); or convert the data once with "
            "`tfkit data convert` and use a tfrecord source"
        ) from None
    try:
        builder = tfds.builder(cfg.name, data_dir=cfg.data_dir)
        if cfg.download:
            builder.download_and_prepare()
        info = builder.info
        count = int(info.splits[cfg.split].num_examples)
    except Exception as err:  # noqa: BLE001 - tfds raises many types
        raise UserError(
            f"`{where}`: tfds dataset `{cfg.name}` (split {cfg.split!r}) is not available in "
            f"data_dir={cfg.data_dir!r} and download is {cfg.download}: {err}"
        ) from None
    keys = info.supervised_keys or (None, None)
    feats = info.features
    image = feats[keys[0]] if keys[0] else None
    label = feats[keys[1]] if keys[1] else None
    num_classes = getattr(label, "num_classes", None)

    def stream():
        return builder.as_dataset(split=cfg.split, as_supervised=True, shuffle_files=False)

    shape = tuple(getattr(image, "shape", ()))
    dtype = (
        np.dtype(getattr(image, "np_dtype", np.float32)).name if image is not None else "float32"
    )
    return Source(
        where=where,
        count=count,
        input_names=["x"],
        input_shapes=[shape],
        input_dtypes=[dtype],
        label_dtype="int32" if num_classes else "float32",
        task="multiclass" if num_classes else "regression",
        num_classes=num_classes,
        class_names=tuple(label.names) if num_classes else None,
        value_range=(0.0, 255.0) if dtype == "uint8" else None,
        stream=stream,
    )


def resolve(source, data_cfg, where: str = "data.source") -> Source:
    """Resolve one source section of the config into a `Source`."""
    kind = source.kind
    ignore = data_cfg.ignore_errors
    task, k = data_cfg.task, data_cfg.num_classes
    if kind in EMBEDDED:
        return from_arrays(generate(source), where, task, k, nan_policy=data_cfg.nan_policy)
    nan = data_cfg.nan_policy
    if kind == "npz":
        return from_arrays(
            load_npz(source, where), where, task, k, nan_policy=nan, path=source.path
        )
    if kind in ("csv", "parquet"):
        df = read_table(source.path, kind, where)
        arrays = table_arrays(
            df, source.features, source.label, source.sample_weight, source.path, f"{where}."
        )
        names = None
        if not isinstance(source.features, dict):
            names = source.features or [
                str(c) for c in df.columns if str(c) not in (source.label, source.sample_weight)
            ]
        return from_arrays(
            arrays, where, task, k, nan_policy=nan, feature_names=names, path=source.path
        )
    if kind == "tfrecord":
        return resolve_tfrecord(source, where, ignore, task, k, data_cfg.verify)
    if kind == "images":
        src = resolve_images(source, where, ignore)
        return src
    if kind == "tfds":
        return resolve_tfds(source, where)
    raise UserError(f"`{where}.kind`: unknown source kind {kind!r}")
