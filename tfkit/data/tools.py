"""`tfkit data convert` and `tfkit data inspect`.

convert: arrays (.npz), tables (.csv/.parquet) or an image folder -> sharded TFRecords plus
`schema.json`. inspect: reads every record (verifying it against the schema), prints the
schema, the count and a few examples; for files without a schema it prints the features of
the first records in the config's `features:` form, ready to paste.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tfkit.data import tfrecord as tfr
from tfkit.errors import UserError


def _square(img, fit: str):
    """Centre-crop (`crop`) or zero-pad (`pad`) a PIL image to a square."""
    from PIL import Image

    w, h = img.size
    if w == h:
        return img
    if fit == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return img.crop((left, top, left + s, top + s))
    s = max(w, h)
    canvas = Image.new(img.mode, (s, s))
    canvas.paste(img, ((s - w) // 2, (s - h) // 2))
    return canvas


def load_image_folder(
    src: str,
    *,
    size: tuple[int, int],
    color_mode: str = "rgb",
    fit: str | None = "crop",
    labels: str = "inferred",
    report=None,
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...], dict[str, str]]:
    """Decode an image folder into uint8 arrays (N, H, W, C); undecodable files are skipped.

    Returns:
        (images, labels or None, class names, {skipped file: reason}).
    """
    from PIL import Image

    from tfkit.data.imageio import to_mode
    from tfkit.data.sources import IMAGE_EXTENSIONS, list_images

    files, ys, classes = list_images(src, labels, "--from images SRC")
    mode = "RGB" if color_mode == "rgb" else "L"
    h, w = size
    images, kept, skipped = [], [], {}
    listed = set(files)
    for f in sorted(Path(src).rglob("*")):
        hidden = any(part.startswith(".") for part in f.relative_to(src).parts)
        if f.is_file() and not hidden and str(f) not in listed:
            skipped[str(f)] = (
                f"not an image file (extension {f.suffix or 'none'})"
                if f.suffix.lower() not in IMAGE_EXTENSIONS
                else "outside the class subfolders"
            )
            if report:
                report(f"skipped {f}: {skipped[str(f)]}")
    for f, y in zip(files, ys, strict=True):
        try:
            with Image.open(f) as img:
                img = to_mode(img, mode)
                if fit is not None:
                    img = _square(img, fit)
                img = img.resize((w, h), Image.BILINEAR)
                arr = np.asarray(img, np.uint8)
        except Exception as err:  # noqa: BLE001 - PIL raises many types
            skipped[f] = f"{type(err).__name__}: {err}"
            if report:
                report(f"skipped {f}: cannot decode ({skipped[f]})")
            continue
        images.append(arr if arr.ndim == 3 else arr[..., None])
        kept.append(y)
    if not images:
        raise UserError(f"--from images {src}: no image could be decoded ({len(skipped)} skipped)")
    y = np.asarray(kept, np.int64) if labels == "inferred" else None
    return np.stack(images), y, classes, skipped


def _check_convertible(arrays, where: str, names: list[str] | None) -> None:
    """The checks `train` makes on arrays (`tfkit.data.checks`), before writing anything."""
    from tfkit.data import checks

    checks.check_rows(arrays.x, arrays.y, where)
    lengths = {"x": len(arrays)}
    if arrays.y is not None:
        lengths["y"] = len(arrays.y)
    checks.check_lengths(lengths, where)
    checks.check_dtypes(arrays.x, arrays.y, where)
    checks.apply_nan_policy(
        arrays, where, "error", names, hint="Remove or fill those cells before converting"
    )


def convert_command(args: argparse.Namespace) -> int:
    """`tfkit data convert`: write sharded TFRecords plus `schema.json` from SRC."""
    from tfkit.data.sources import infer_task, read_table, table_arrays

    fmt = args.source_format
    src = args.src
    meta: dict = {}
    columns: dict[str, np.ndarray] = {}
    if fmt == "npz":
        from types import SimpleNamespace

        from tfkit.data.sources import load_npz

        arrays = load_npz(
            SimpleNamespace(path=src, x=args.x, y=args.y, sample_weight=None), "--from npz SRC"
        )
        _check_convertible(arrays, f"--from npz {src}", None)
        columns[args.x] = np.asarray(arrays.x)
        meta["inputs"] = [args.x]
        y = arrays.y
    elif fmt in ("csv", "parquet"):
        df = read_table(src, fmt, f"--from {fmt} SRC")
        arrays = table_arrays(df, args.features, args.label, None, src, prefix="--")
        names = args.features or [c for c in map(str, df.columns) if c != args.label]
        _check_convertible(arrays, f"--from {fmt} {src}", names)
        columns["x"] = arrays.x
        meta["inputs"] = ["x"]
        meta["feature_columns"] = args.features or [
            c for c in map(str, df.columns) if c != args.label
        ]
        y = arrays.y
    else:
        if args.image_size:
            size, fit = tuple(args.image_size), None
        else:
            r = args.resolution or 64
            size, fit = (r, r), args.fit
        images, y, classes, skipped = load_image_folder(
            src, size=size, color_mode=args.color_mode, fit=fit, labels=args.labels,
            report=lambda m: print(m, file=sys.stderr),
        )  # fmt: skip
        columns["image"] = images
        meta["inputs"] = ["image"]
        if classes:
            meta["class_names"] = list(classes)
        if skipped:
            meta["skipped"] = skipped
    if y is not None:
        y = np.asarray(y)
        if fmt == "images":
            task, k = "multiclass", len(meta.get("class_names", [])) or None
        else:
            task, k = infer_task(y)
        columns["label"] = y.astype(np.float32) if task == "regression" else y.astype(np.int64)
        meta.update(label="label", task=task, num_classes=k)
    else:
        meta["label"] = None
    schema = tfr.write_tfrecords(
        columns,
        args.out,
        shard_mb=args.shard_mb,
        compression=args.compression,
        meta=meta,
        overwrite=args.overwrite,
    )
    feats = ", ".join(f"{f['name']} {f['dtype']}{f['shape']}" for f in schema["features"])
    skipped_note = (
        f"; skipped {len(meta['skipped'])} files (reasons above and in schema.json)"
        if meta.get("skipped")
        else ""
    )
    print(
        f"wrote {schema['count']} examples in {len(schema['shards'])} shard(s) to {args.out} "
        f"({feats}; compression {args.compression or 'none'}){skipped_note}"
    )
    return 0


def _summary(value: np.ndarray) -> str:
    value = np.asarray(value)
    if value.dtype.kind in "SO":
        text = value.item() if value.ndim == 0 else value.tolist()
        return repr(text)[:80]
    if value.size <= 8:
        return np.array2string(value, precision=4, separator=", ")
    return f"shape {list(value.shape)} min {value.min():.4g} max {value.max():.4g} mean {value.mean():.4g}"


def _verify_file(
    file: str, specs, compression: str, ignore_errors: bool, examples: list, want: int
):
    """Parse every record of `file` by batch; return the number read. Errors name the file."""
    import tensorflow as tf

    ds = tf.data.TFRecordDataset(file, compression_type=compression, buffer_size=1 << 20)
    if ignore_errors:
        ds = ds.ignore_errors()
    fmap = tfr.parse_features(specs)
    name = tf.constant(file)
    ds = ds.batch(512).map(
        lambda r: tfr.decode_batch(
            tf.io.parse_example(r, fmap, example_names=tf.fill(tf.shape(r), name)), specs
        )
    )
    if ignore_errors:
        ds = ds.ignore_errors()
    n = 0
    try:
        for batch in ds.as_numpy_iterator():
            size = len(next(iter(batch.values())))
            for i in range(min(size, want - len(examples))):
                examples.append({k: v[i] for k, v in batch.items()})
            n += size
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        raise UserError(
            f"{file}: {tfr._tf_message(err)} (after {n} good records); pass --ignore-errors "
            "to skip bad records"
        ) from None
    return n


def write_grid(images: list[np.ndarray], path: str) -> Path:
    """Write uint8 (or [0, 1] float) HxWxC images as one PNG grid."""
    from PIL import Image

    imgs = [np.asarray(i) for i in images]
    imgs = [
        (np.clip(i, 0, 1) * 255).astype(np.uint8) if i.dtype.kind == "f" else i.astype(np.uint8)
        for i in imgs
    ]
    imgs = [i if i.ndim == 3 else i[..., None] for i in imgs]
    h, w, c = imgs[0].shape
    cols = int(np.ceil(np.sqrt(len(imgs))))
    rows = int(np.ceil(len(imgs) / cols))
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for k, img in enumerate(imgs):
        r, q = divmod(k, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = img
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(out)
    return out


CONFIG_SUFFIXES = (".yaml", ".yml")


def check_request(args: argparse.Namespace) -> None:
    """The checks of `tfkit data convert` / `tfkit data inspect` that need no TensorFlow
    (run before it loads): the source exists and is of the kind `--from` names; an inspected
    config validates; TFRecord paths resolve to files.

    Raises:
        UserError: naming the argument.
    """
    if args.subcommand == "convert":
        src = Path(args.src)
        if not src.exists():
            raise UserError(f"`--from {args.source_format} SRC`: no such file: {src}")
        if args.source_format == "images" and not src.is_dir():
            raise UserError(f"`--from images SRC`: {src} is a file; expected a folder of images")
        if args.source_format != "images" and src.is_dir():
            raise UserError(
                f"`--from {args.source_format} SRC`: {src} is a directory; expected a "
                f".{args.source_format} file"
            )
        return
    if Path(args.path).suffix.lower() in CONFIG_SUFFIXES:
        from tfkit.config import load_config

        load_config(args.path, getattr(args, "overrides", None) or [])
        return
    if getattr(args, "overrides", None):
        raise UserError(f"--set applies to an experiment YAML, not to the TFRecords at {args.path}")
    tfr.resolve_files(args.path, "PATH")


def display_range(normalize: str) -> tuple[float, float] | None:
    """The value range images have after `data.normalize` (None: unknown, use min/max)."""
    return {"rescale": (0.0, 1.0), "minus_one_one": (-1.0, 1.0)}.get(normalize)


def to_display(images: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Map model-range float images back to uint8 for display (min/max when unknown)."""
    x = np.asarray(images, np.float32)
    low, high = value_range if value_range else (float(x.min()), float(x.max()))
    x = (x - low) / max(high - low, 1e-8)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def config_images(cfg, count: int, *, images_only: bool = True) -> tuple[Any, str]:
    """Up to `count` training examples of an experiment as its model sees them.

    With a `gan` section the images come from the GAN trainer's own reader (square RGB in
    [-1, 1], x-flipped when `data.xflip`); otherwise from the train split of
    `tfkit.data.build` (after augmentation and `data.normalize`).

    Args:
        cfg: the experiment.
        count: how many examples at most.
        images_only: refuse inputs that are not one batch of images (N, H, W, C); else
            tabular, sequence and multi-input data come back as they are.

    Returns:
        (inputs: an array (N, ...) or a dict of them, a one-line description).
    """
    if cfg.gan is not None:
        from tfkit.data.gan_images import load_images

        ds, resolution, num_classes = load_images(cfg)
        ds = ds.map(lambda x, y: x).batch(count)
        what = f"GAN input {resolution}x{resolution}, {num_classes or 'no'} classes"
    else:
        from tfkit.data import build

        ds = build(cfg.data, seed=cfg.runtime.seed).train
        ds = ds.map(lambda x, *rest: x)
        what = "train split"
    batches, n = [], 0
    for batch in ds.as_numpy_iterator():
        if isinstance(batch, dict) and images_only:
            raise UserError(
                f"--grid: the model of {cfg.name} takes several inputs ({', '.join(batch)}); "
                "inspect one image source with a TFRecord path instead"
            )
        batches.append(batch)
        n += len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)
        if n >= count:
            break
    if isinstance(batches[0], dict):
        inputs: Any = {k: np.concatenate([b[k] for b in batches])[:count] for k in batches[0]}
    else:
        inputs = np.concatenate(batches)[:count]
    if images_only and (inputs.ndim != 4 or inputs.shape[-1] not in (1, 3, 4)):
        raise UserError(
            f"--grid: {cfg.name}'s inputs are not images (N, H, W, C). "
            f"Received: shape {list(inputs.shape)}"
        )
    return inputs, (f"{what}; normalize {cfg.data.normalize}, xflip {cfg.data.xflip}")


def inspect_config(args: argparse.Namespace) -> int:
    """`tfkit data inspect CONFIG.yaml`: the train inputs as the model (or GAN) sees them;
    `--grid` writes image inputs as a PNG grid."""
    from tfkit.config import load_config

    cfg = load_config(args.path, getattr(args, "overrides", None) or [])
    want = max(args.examples, 64 if args.grid else 0, 1)
    inputs, what = config_images(cfg, want, images_only=bool(args.grid))
    print(f"{args.path}: {what}")
    named = inputs if isinstance(inputs, dict) else {"": inputs}
    for name, values in named.items():
        kind = "images" if values.ndim == 4 else "inputs"
        label = f"input `{name}`" if name else kind
        print(
            f"{label}: shape {list(values.shape[1:])} {values.dtype}, range "
            f"[{values.min():.4g}, {values.max():.4g}] over {len(values)} examples"
        )
    count = len(next(iter(named.values())))
    for i in range(min(args.examples, count)):
        parts = [(f"{k}: " if k else "") + _summary(v[i]) for k, v in named.items()]
        print(f"example {i}: {'; '.join(parts)}")
    if args.grid:
        shown = to_display(inputs[:64], display_range(cfg.data.normalize))
        out = write_grid(list(shown), args.grid)
        print(f"grid: {out} ({len(shown)} images, {cfg.data.normalize} mapped back to 0-255)")
    return 0


def inspect_command(args: argparse.Namespace) -> int:
    """`tfkit data inspect`: verify every record, print schema, count and a few examples.

    PATH may also be an experiment YAML: then the train images are shown as the model (or,
    with a `gan` section, the GAN) receives them; see `inspect_config`.
    """
    if Path(args.path).suffix.lower() in CONFIG_SUFFIXES:
        return inspect_config(args)
    if getattr(args, "overrides", None):
        raise UserError(f"--set applies to an experiment YAML, not to the TFRecords at {args.path}")
    files, schema = tfr.resolve_files(args.path, "PATH")
    compression = tfr.detect_compression(
        files[0], schema.get("compression", "auto") if schema else "auto"
    )
    if schema:
        specs = [tfr.FeatureSpec.from_json(f) for f in schema["features"]]
        print(f"schema: {Path(files[0]).parent / tfr.SCHEMA_FILE}")
        for s in specs:
            print(f"  {s.name}: {s.dtype} {list(s.shape)} ({s.storage})")
        for key in ("label", "task", "num_classes", "class_names"):
            if schema.get(key) is not None:
                print(f"  {key}: {schema[key]}")
    else:
        found = tfr.infer_features(tfr.first_records(files[0], 20, compression))
        if not found:
            raise UserError(f"{files[0]}: holds no records")
        print(f"no {tfr.SCHEMA_FILE}: features found in the first records of {files[0]}")
        print("(paste under data.source with kind: tfrecord)")
        print(tfr.features_yaml(found))
        from types import SimpleNamespace

        specs = [
            tfr.spec_from_config(
                SimpleNamespace(
                    name=f["name"], dtype=f["dtype"], shape=f.get("shape", []),
                    varlen=f.get("varlen", False), encoded=f.get("encoded"),
                )
            )
            for f in found
        ]  # fmt: skip
    want = max(args.examples, 64 if args.grid else 0)
    examples: list = []
    expected = {s["file"]: s["count"] for s in schema["shards"]} if schema else {}
    total, skipped = 0, {}
    for f in files:
        if schema:
            recs = tfr.first_records(f, 1, compression)
            if recs:
                tfr.check_example(recs[0], specs, f)
        n = _verify_file(f, specs, compression, args.ignore_errors, examples, want)
        total += n
        exp = expected.get(Path(f).name)
        if exp is not None and n != exp:
            if n < exp and args.ignore_errors:
                skipped[f] = exp - n
            else:
                raise UserError(f"{f}: {n} records read, the schema lists {exp}")
    print(f"files: {len(files)} ({compression or 'uncompressed'})")
    print(f"examples: {total}")
    if skipped:
        print(
            f"skipped bad records: {sum(skipped.values())} ({', '.join(f'{Path(k).name}: {v}' for k, v in skipped.items())})"
        )
    for i, ex in enumerate(examples[: args.examples]):
        print(f"example {i}:")
        for k, v in ex.items():
            print(f"  {k}: {_summary(v)}")
    if args.grid:
        image_keys = [s.name for s in specs if len(s.shape) == 3 and s.shape[-1] in (1, 3, 4)]
        if not image_keys:
            raise UserError(f"--grid: {args.path} has no image feature (shape [H, W, C])")
        out = write_grid([ex[image_keys[0]] for ex in examples[:64]], args.grid)
        print(f"grid: {out} ({min(len(examples), 64)} images of `{image_keys[0]}`)")
    return 0
