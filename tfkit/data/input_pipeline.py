"""From a `DataConfig` to batched train/val/test datasets and the `DataSpec` of their examples.

Order of a split's pipeline: select the split's examples (a seeded permutation, so splits
are disjoint and complete) -> shard for this input pipeline -> decode (images) -> cache ->
shuffle (train, seeded) -> batch -> parse (TFRecords, a whole batch at once) -> uint8 to
float in [0, 1] -> augmentation and x-flip (train) -> normalization -> one-hot labels ->
repeat (train) -> prefetch. Normalization and augmentation are Keras preprocessing layers;
their statistics come from the whole (unsharded) train split, so every worker agrees.

TFRecords with a cache are parsed before it instead (in blocks, by the parallel file
readers), unless a feature grows when decoded (PNG/JPEG) or is padded per batch (varlen):
later epochs then read parsed examples, as from memory. The examples and their order are
the same either way. Parsing and the per-batch conversions run as one map.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfkit.data import checks
from tfkit.data.sources import Source, parse_fn, parses_early, record_dataset, resolve
from tfkit.data.spec import DataSpec, InputSpec
from tfkit.errors import UserError

SPLITS = ("train", "val", "test")
AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class Splits:
    """The batched datasets of one experiment and what their examples look like.

    Attributes:
        train / val / test: batched `tf.data.Dataset`s of `(x, y)` or `(x, y, sample_weight)`
            elements, or None for an empty split.
        spec: the `DataSpec` model builders read.
        skipped: bad records or images skipped under `ignore_errors`, per file.
    """

    train: tf.data.Dataset | None
    val: tf.data.Dataset | None
    test: tf.data.Dataset | None
    spec: DataSpec
    skipped: dict[str, int] = field(default_factory=dict)


def split_table(count: int, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Assign each of `count` examples to a split: an int8 array of indices into `SPLITS`.

    A seeded permutation is cut at the cumulative fractions (rounded), so the splits are
    disjoint, complete, and the same for the same seed.
    """
    order = np.random.default_rng(seed).permutation(count)
    names = [s for s in SPLITS if s in fractions]
    total = sum(fractions[s] for s in names)
    bounds = np.round(np.cumsum([fractions[s] / total for s in names]) * count).astype(int)
    bounds[-1] = count
    table = np.empty(count, np.int8)
    start = 0
    for name, end in zip(names, bounds, strict=True):
        table[order[start:end]] = SPLITS.index(name)
        start = end
    return table


# --------------------------------------------------------------------------------------
# per-batch processing
# --------------------------------------------------------------------------------------


def _augmenter(cfg, seed: int) -> list[keras.layers.Layer]:
    a = cfg.augment
    layers: list[keras.layers.Layer] = []
    if a.flip != "none":
        layers.append(keras.layers.RandomFlip(a.flip, seed=seed))
    if a.rotation:
        layers.append(keras.layers.RandomRotation(a.rotation, seed=seed + 1))
    if a.zoom:
        layers.append(keras.layers.RandomZoom(a.zoom, seed=seed + 2))
    if a.translation:
        layers.append(keras.layers.RandomTranslation(a.translation, a.translation, seed=seed + 3))
    if a.contrast:
        layers.append(keras.layers.RandomContrast(a.contrast, value_range=(0, 1), seed=seed + 4))
    if cfg.xflip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 5))
    return layers


def _to_float(t: tf.Tensor) -> tf.Tensor:
    if t.dtype == tf.uint8:
        return tf.cast(t, tf.float32) / 255.0
    if t.dtype.is_integer or t.dtype in (tf.float16, tf.float64, tf.bool):
        return tf.cast(t, tf.float32)
    return t


def make_postprocess(
    input_names: list[str],
    *,
    normalizers: dict[str, keras.layers.Layer] | None = None,
    augment: list[keras.layers.Layer] | None = None,
    one_hot: int | None = None,
):
    """The per-batch map: uint8 -> [0, 1] floats, augmentation (rank-4 inputs), normalization,
    one-hot labels. Works on `x`, `(x, y)` and `(x, y, w)` elements, x a tensor or a dict."""
    normalizers = normalizers or {}
    augment = augment or []

    def one(name, t):
        if t.dtype == tf.string:
            return t
        t = _to_float(t)
        if augment and t.shape.rank == 4:
            for layer in augment:
                t = layer(t, training=True)
        if name in normalizers:
            t = normalizers[name](t)
        return t

    def post(*element):
        x = element[0]
        x = {k: one(k, v) for k, v in x.items()} if isinstance(x, dict) else one(input_names[0], x)
        rest = list(element[1:])
        if rest and one_hot:
            rest[0] = tf.one_hot(tf.cast(rest[0], tf.int32), one_hot)
        return (x, *rest) if rest else x

    post.converts_only = not (normalizers or augment or one_hot)  # see `_is_identity`
    return post


def _is_identity(post, element_spec) -> bool:
    """Whether `post` returns batches of `element_spec` unchanged: nothing to normalize,
    augment or one-hot and every input already float32 (or a string); the pipeline then
    skips that map stage, which costs a thread hand-off per batch."""
    if not getattr(post, "converts_only", False):
        return False
    x = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    return all(spec.dtype in (tf.float32, tf.string) for spec in tf.nest.flatten(x))


def _stats(batches, names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per-input mean, variance (over all but the last axis), min and max of float batches."""
    acc: dict[str, dict] = {}
    for x in batches:
        xs = x if isinstance(x, dict) else {names[0]: x}
        for k, v in xs.items():
            v = np.asarray(v)
            if v.dtype.kind in "SUO":
                continue
            v = v.astype(np.float64) / 255.0 if v.dtype == np.uint8 else v.astype(np.float64)
            flat = v.reshape(-1, v.shape[-1]) if v.ndim > 1 else v.reshape(-1, 1)
            a = acc.setdefault(k, {"n": 0, "s": 0.0, "s2": 0.0, "min": np.inf, "max": -np.inf})
            a["n"] += len(flat)
            a["s"] = a["s"] + flat.sum(0)
            a["s2"] = a["s2"] + (flat**2).sum(0)
            a["min"] = min(a["min"], float(flat.min()))
            a["max"] = max(a["max"], float(flat.max()))
    out = {}
    for k, a in acc.items():
        mean = a["s"] / max(a["n"], 1)
        var = np.maximum(a["s2"] / max(a["n"], 1) - mean**2, 0.0)
        out[k] = {"mean": mean, "variance": var, "min": a["min"], "max": a["max"]}
    return out


def make_normalizers(
    mode: str, stats: dict[str, dict], value_range: tuple[float, float] | None
) -> dict[str, keras.layers.Layer]:
    """Keras layers for `normalize`: `standardize` (Normalization), `rescale` to [0, 1] or
    `minus_one_one` (Rescaling). `value_range` (of the float features) overrides min/max."""
    if mode == "none":
        return {}
    out = {}
    for name, s in stats.items():
        if mode == "standardize":
            layer = keras.layers.Normalization(axis=-1, mean=s["mean"], variance=s["variance"])
            layer.build((None, len(s["mean"])))  # eagerly: the map function only reads it
            out[name] = layer
            continue
        lo, hi = value_range if value_range else (s["min"], s["max"])
        span = (hi - lo) or 1.0
        scale, offset = 1.0 / span, -lo / span
        if mode == "minus_one_one":
            scale, offset = 2 * scale, 2 * offset - 1
        out[name] = keras.layers.Rescaling(scale, offset)
    return out


def normalization_record(normalizers: dict[str, keras.layers.Layer]) -> dict[str, dict]:
    """The normalizers as plain affine maps `x * scale + offset` (JSON data for the spec)."""
    out = {}
    for name, layer in normalizers.items():
        if isinstance(layer, keras.layers.Normalization):
            mean = np.asarray(layer.mean, np.float64).reshape(-1)
            std = np.sqrt(np.asarray(layer.variance, np.float64).reshape(-1))
            scale = 1.0 / np.maximum(std, keras.backend.epsilon())  # as the layer divides
            offset = -mean * scale
        else:  # Rescaling
            scale = np.asarray([layer.scale], np.float64)
            offset = np.asarray([layer.offset], np.float64)
        out[name] = {"scale": scale.tolist(), "offset": offset.tolist()}
    return out


def apply_normalization(x: Any, record: dict[str, dict], input_names: list[str]) -> Any:
    """Apply a spec's `normalization` to raw NumPy inputs (a dict for several inputs), as the
    pipeline does: 8-bit arrays become [0, 1] first."""

    def one(name, v):
        v = np.asarray(v)
        if v.dtype.kind in "SUO":
            return v
        v = v.astype(np.float32) / 255.0 if v.dtype == np.uint8 else v.astype(np.float32)
        if name in record:
            v = v * np.asarray(record[name]["scale"], np.float32) + np.asarray(
                record[name]["offset"], np.float32
            )
        return v.astype(np.float32)

    if isinstance(x, dict):
        return {k: one(k, v) for k, v in x.items()}
    return one(input_names[0], x)


# --------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------


def _float_range(src: Source) -> tuple[float, float] | None:
    if src.value_range is None:
        return None
    if src.input_dtypes and src.input_dtypes[0] == "uint8":
        return (0.0, 1.0)  # uint8 becomes [0, 1] before normalization
    return src.value_range


def _examples(
    src: Source, table, split_id: int, input_context, cfg
) -> tuple[tf.data.Dataset, bool]:
    """Unbatched elements of one split (records for TFRecords, parsed examples when they are
    cached); and whether they still need batch parsing."""
    n_pipes = input_context.num_input_pipelines if input_context else 1
    pipe = input_context.input_pipeline_id if input_context else 0
    if src.files is not None:
        # with a cache, parse before it: each later epoch then skips the parser
        early = cfg.cache != "none" and parses_early(src)
        ds = record_dataset(
            src,
            table=table,
            split_id=split_id,
            input_context=input_context,
            ignore_errors=cfg.ignore_errors,
            deterministic=cfg.deterministic,
            parsed=early,
        )
        return ds, not early
    if src.stream is not None:
        ds = src.stream()
        if table is not None:
            lookup = tf.constant(table, tf.int8)
            ds = ds.enumerate().filter(lambda i, *e: tf.gather(lookup, i) == split_id)
            ds = ds.map(lambda i, *e: e if len(e) > 1 else e[0])
        if n_pipes > 1:
            ds = ds.shard(n_pipes, pipe)
        return ds, False
    a = src.arrays
    idx = np.arange(src.count) if table is None else np.flatnonzero(table == split_id)
    idx = idx[pipe::n_pipes]

    def take(v):
        return None if v is None else v[idx]

    x = {k: v[idx] for k, v in a.x.items()} if isinstance(a.x, dict) else a.x[idx]
    y, w = take(a.y), take(a.sample_weight)
    element = x if y is None else ((x, y) if w is None else (x, y, w))
    ds = tf.data.Dataset.from_tensor_slices(element)
    if src.element_fn is not None:
        ds = ds.map(src.element_fn, num_parallel_calls=AUTOTUNE, deterministic=cfg.deterministic)
        if cfg.ignore_errors:
            ds = ds.ignore_errors()
    return ds, False


def _stats_batches(src: Source, table, cfg):
    """Batches of the whole train split's x (unsharded, unshuffled) for normalization stats."""
    if src.arrays is not None and src.element_fn is None:
        idx = np.arange(src.count) if table is None else np.flatnonzero(table == 0)
        x = src.arrays.x
        return [{k: v[idx] for k, v in x.items()} if isinstance(x, dict) else x[idx]]
    ds, needs_parse = _examples(src, table, 0, None, cfg)
    ds = ds.batch(1024)
    if needs_parse:
        ds = ds.map(parse_fn(src))
    ds = ds.map(lambda *e: e[0])
    return (
        b if not isinstance(b, dict) else {k: v.numpy() for k, v in b.items()}
        for b in ds.as_numpy_iterator()
    )


def _cache(ds: tf.data.Dataset, cfg, name: str, pipe: int) -> tf.data.Dataset:
    if cfg.cache == "none":
        return ds
    if cfg.cache == "memory":
        return ds.cache()
    prefix = Path(f"{cfg.cache}_{name}_{pipe}")
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        probe = prefix.with_name(f".{prefix.name}.{os.getpid()}.probe")
        probe.write_bytes(b"")  # tf.data only fails at the first epoch's end
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"`data.cache: {cfg.cache}`: cannot write cache files in {prefix.parent} "
            f"({err.strerror or err}); set data.cache to a writable path prefix, `memory` or "
            "`none`"
        ) from None
    return ds.cache(str(prefix))


def _split_dataset(
    src, table, split_id, name, cfg, *, batch_size, seed, input_context, post, training, count
):
    if table is not None and np.all(table == split_id):
        table = None  # the split is the whole source: no per-record filter
    ds, needs_parse = _examples(src, table, split_id, input_context, cfg)
    pipe = input_context.input_pipeline_id if input_context else 0
    if src.files is not None or src.element_fn is not None or src.stream is not None:
        ds = _cache(ds, cfg, name, pipe)  # in-memory arrays need no cache
    if training and cfg.shuffle_buffer > 0:
        ds = ds.shuffle(
            min(cfg.shuffle_buffer, max(src.count, 1)), seed=seed, reshuffle_each_iteration=True
        )
    # batches are copied together in parallel (in order unless `deterministic: false`)
    ds = ds.batch(
        batch_size,
        drop_remainder=cfg.drop_remainder,
        num_parallel_calls=_num_parallel(cfg),
        deterministic=cfg.deterministic,
    )
    n_pipes = input_context.num_input_pipelines if input_context else 1
    if ds.cardinality() == tf.data.UNKNOWN_CARDINALITY and n_pipes == 1 and not cfg.ignore_errors:
        # filtered records (a split of TFRecords) or a stream: the split's count is known, so
        # say it; else Keras warns "Your input ran out of data" at the end of every epoch
        batches = count // batch_size if cfg.drop_remainder else -(-count // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    batch_fn = _batch_fn(ds, parse_fn(src) if needs_parse else None, post)
    if batch_fn is not None:
        ds = ds.map(
            batch_fn, num_parallel_calls=_num_parallel(cfg), deterministic=cfg.deterministic
        )
    if training and cfg.repeat:
        ds = ds.repeat()
    if cfg.prefetch:
        ds = ds.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = cfg.deterministic
    return ds.with_options(options)


def _batch_fn(ds: tf.data.Dataset, parse, post):
    """The one per-batch map: `parse` (TFRecords still serialized) then `post`, either left
    out when it has nothing to do; None when both are. One map stage instead of two saves a
    thread hand-off and a buffer per batch."""
    if parse is None:
        return None if _is_identity(post, ds.element_spec) else post
    if _is_identity(post, ds.map(parse).element_spec):  # traced only, nothing runs
        return parse

    def parse_post(*batch):
        element = parse(*batch)
        return post(*element) if isinstance(element, tuple) else post(element)

    return parse_post


def _num_parallel(cfg):
    return AUTOTUNE if cfg.num_parallel_calls == "autotune" else cfg.num_parallel_calls


def _check_compatible(a: Source, b: Source) -> None:
    if a.input_names != b.input_names or [tuple(s) for s in a.input_shapes] != [
        tuple(s) for s in b.input_shapes
    ]:
        raise UserError(
            f"`{b.where}` does not match `{a.where}`: inputs "
            f"{dict(zip(b.input_names, b.input_shapes, strict=True))} vs {dict(zip(a.input_names, a.input_shapes, strict=False))}"
        )


def per_replica_batch(cfg, input_context) -> int:
    """The batch each input pipeline produces: global `batch_size` / replicas in sync."""
    if cfg.batch_size < 1:
        raise UserError(f"`data.batch_size` must be >= 1. Received: batch_size={cfg.batch_size}")
    if input_context is None:
        return cfg.batch_size
    try:
        return input_context.get_per_replica_batch_size(cfg.batch_size)
    except ValueError:
        raise UserError(
            f"`data.batch_size` ({cfg.batch_size}) must be divisible by the number of replicas "
            f"({input_context.num_replicas_in_sync})"
        ) from None


def build(cfg, *, seed: int = 0, input_context: tf.distribute.InputContext | None = None) -> Splits:
    """Build the train/val/test datasets of a `DataConfig`.

    Args:
        cfg: the `data` section.
        seed: default shuffling/augmentation seed (`runtime.seed`) when `cfg.seed` is None.
        input_context: from `strategy.distribute_datasets_from_function`; each pipeline then
            batches at the per-replica batch size and reads its own shard (files for
            TFRecords when there are enough, else examples).

    Returns:
        `Splits` with batched datasets and the `DataSpec`; `spec.counts` are global counts.

    Raises:
        UserError: bad paths, unreadable data, missing columns/features, or a batch size
            not divisible by the replicas.
    """
    batch_size = per_replica_batch(cfg, input_context)
    seed = cfg.seed if cfg.seed is not None else seed
    src = resolve(cfg.source, cfg, "data.source")
    separate = {"val": cfg.val_source, "test": cfg.test_source}
    fractions = {s: getattr(cfg.split, s) for s in SPLITS if s == "train" or separate[s] is None}
    table = split_table(src.count, fractions, cfg.split.seed)
    sources = {s: (src, table) for s in fractions}
    for s, scfg in separate.items():
        if scfg is not None:
            other = resolve(scfg, cfg, f"data.{s}_source")
            _check_compatible(src, other)
            sources[s] = (other, None)
    counts = {
        s: int(sources[s][0].count if sources[s][1] is None else np.sum(table == SPLITS.index(s)))
        for s in SPLITS
    }
    if counts["train"] == 0:
        raise UserError(f"`data.split` leaves the train split empty ({src.count} examples)")
    checks.check_split_counts(
        {s: counts[s] for s in fractions}, {s: fractions[s] for s in fractions}, src.count
    )
    checks.check_steps(counts, cfg.batch_size, cfg.drop_remainder)

    one_hot = None
    if cfg.one_hot:
        if src.task != "multiclass":
            raise UserError(
                f"`data.one_hot: true` needs a multiclass task. Received: task={src.task}"
            )
        one_hot = src.num_classes
    normalizers = {}
    if cfg.normalize in ("rescale", "minus_one_one") and _float_range(src) is not None:
        stats = {
            n: {} for n, d in zip(src.input_names, src.input_dtypes, strict=True) if d != "string"
        }
        normalizers = make_normalizers(cfg.normalize, stats, _float_range(src))
    elif cfg.normalize != "none":
        stats = _stats(_stats_batches(src, table, cfg), src.input_names)
        normalizers = make_normalizers(cfg.normalize, stats, _float_range(src))
    augment = _augmenter(cfg, seed)
    post_train = make_postprocess(
        src.input_names, normalizers=normalizers, augment=augment, one_hot=one_hot
    )
    post_eval = make_postprocess(src.input_names, normalizers=normalizers, one_hot=one_hot)

    out = {}
    for s in SPLITS:
        if counts[s] == 0:
            out[s] = None
            continue
        s_src, s_table = sources[s]
        out[s] = _split_dataset(
            s_src, s_table, SPLITS.index(s), s, cfg,
            batch_size=batch_size, seed=seed, input_context=input_context,
            post=post_train if s == "train" else post_eval, training=s == "train",
            count=counts[s],
        )  # fmt: skip
    skipped = {}
    for s_src, _ in sources.values():
        skipped.update(s_src.skipped)
    return Splits(
        out["train"],
        out["val"],
        out["test"],
        spec=dataclasses.replace(
            make_spec(src, cfg, counts), normalization=normalization_record(normalizers)
        ),
        skipped=skipped,
    )


def make_spec(src: Source, cfg, counts: dict[str, int]) -> DataSpec:
    """The `DataSpec` of a source's examples after the pipeline (floats, one-hot labels)."""
    features = src.input_features or src.input_names
    inputs = tuple(
        InputSpec(n, tuple(s), "string" if d == "string" else "float32", f if f != n else None)
        for n, s, d, f in zip(
            src.input_names, src.input_shapes, src.input_dtypes, features, strict=True
        )
    )
    one_hot = bool(cfg.one_hot)
    label_shape = (src.num_classes,) if one_hot else tuple(src.label_shape)
    return DataSpec(
        inputs=inputs,
        task=src.task or "regression",
        num_classes=src.num_classes,
        label_shape=label_shape,
        one_hot=one_hot,
        has_sample_weight=src.has_sample_weight,
        counts=counts,
        class_names=src.class_names,
    )


def pipeline(
    ds: tf.data.Dataset,
    cfg,
    *,
    training: bool = True,
    seed: int = 0,
    num_classes: int | None = None,
    input_names: list[str] | None = None,
) -> tf.data.Dataset:
    """Apply a `DataConfig`'s options to an unbatched dataset from the `from_*` functions.

    Caches, shuffles (when `training`), batches, converts uint8 to [0, 1] floats, augments
    (when `training`), normalizes (statistics from one pass over `ds`), one-hot encodes
    (needs `num_classes`), repeats (when `training` and `cfg.repeat`) and prefetches.
    """
    from tfkit.config import DataConfig

    if not isinstance(cfg, DataConfig):
        from pydantic import ValidationError

        try:
            cfg = DataConfig.model_validate(cfg or {})
        except ValidationError as err:
            from tfkit.config import format_validation_error

            raise UserError(format_validation_error(err, {"data": cfg}, "pipeline(cfg)")) from None
    if cfg.batch_size < 1:
        raise UserError(f"`batch_size` must be >= 1. Received: batch_size={cfg.batch_size}")
    names = input_names or ["x"]
    normalizers = {}
    if cfg.normalize != "none":
        batches = ds.batch(1024).map(lambda *e: e[0]).as_numpy_iterator()
        normalizers = make_normalizers(cfg.normalize, _stats(batches, names), None)
    if cfg.one_hot and not num_classes:
        raise UserError("`one_hot: true` needs `num_classes` in pipeline(...)")
    post = make_postprocess(
        names,
        normalizers=normalizers,
        augment=_augmenter(cfg, seed) if training else None,
        one_hot=num_classes if cfg.one_hot else None,
    )
    ds = _cache(ds, cfg, "pipeline", 0)
    if training and cfg.shuffle_buffer > 0:
        ds = ds.shuffle(cfg.shuffle_buffer, seed=cfg.seed if cfg.seed is not None else seed)
    ds = ds.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    if not _is_identity(post, ds.element_spec):
        ds = ds.map(post, num_parallel_calls=_num_parallel(cfg), deterministic=cfg.deterministic)
    if training and cfg.repeat:
        ds = ds.repeat()
    return ds.prefetch(AUTOTUNE) if cfg.prefetch else ds
