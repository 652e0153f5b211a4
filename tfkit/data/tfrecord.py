"""TFRecord files: feature specs, a sharded writer with a schema file, and a batched reader.

`write_tfrecords` writes `data-NNNNN-of-MMMMM.tfrecord[.gz]` shards plus `schema.json`
(feature names, dtypes, shapes, storage, per-shard counts and the label meta), so nobody
writes a feature spec by hand. The reader parses whole batches with `tf.io.parse_example`
(several times faster than one `parse_single_example` per record) and passes the file name
of every record as `names`, so a parse error names the file and the feature.

TFRecords written elsewhere are read from features declared in the config; `infer_features`
describes the first records of such files in that same form (`tfkit data inspect`).
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import struct
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfkit.errors import MissingPathError, UserError

SCHEMA_FILE = "schema.json"
SCHEMA_VERSION = 1

# numpy dtype -> how values are stored in a tf.train.Example
_FLOAT_LIST = {"float32"}
_INT64_LIST = {"int64", "int32", "int16", "int8", "uint16", "bool"}
_RAW = {"uint8", "float16", "float64", "uint32", "uint64"}


@dataclass(frozen=True)
class FeatureSpec:
    """How one feature is stored and what tensor it becomes.

    Attributes:
        name: the feature key in each `tf.train.Example`.
        dtype: numpy dtype of the decoded values (`float32`, `uint8`, `int64`, `string`...).
        shape: per-example shape; `[None]` with `varlen` for variable-length lists.
        storage: `float_list`, `int64_list`, `raw` (array bytes), `bytes` (kept as string),
            `png` or `jpeg` (encoded images, decoded to uint8 of `shape`).
        varlen: a variable-length list, padded with zeros to the longest in each batch.
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...] = ()
    storage: str = "float_list"
    varlen: bool = False

    def to_json(self) -> dict[str, Any]:
        """The dict written to `schema.json`."""
        out = asdict(self)
        out["shape"] = list(self.shape)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FeatureSpec:
        """Inverse of `to_json`."""
        return cls(
            name=d["name"],
            dtype=d["dtype"],
            shape=tuple(d.get("shape", ())),
            storage=d.get("storage", "float_list"),
            varlen=bool(d.get("varlen", False)),
        )


def storage_for(dtype: np.dtype) -> str:
    """How the writer stores an array of `dtype`."""
    dtype = np.dtype(dtype)
    if dtype.kind in "SUO":
        return "bytes"
    name = dtype.name
    if name in _FLOAT_LIST:
        return "float_list"
    if name in _INT64_LIST:
        return "int64_list"
    if name in _RAW:
        return "raw"
    raise UserError(f"Cannot store arrays of dtype {name} in TFRecords")


def spec_from_config(feature) -> FeatureSpec:
    """A `FeatureSpec` from a `TFRecordFeature` of the config (foreign TFRecords)."""
    shape = tuple(feature.shape)
    if feature.varlen:
        return FeatureSpec(feature.name, feature.dtype, (None,), _list_storage(feature.dtype), True)
    if feature.encoded in ("png", "jpeg"):
        if len(shape) != 3:
            raise UserError(
                f"TFRecord feature `{feature.name}`: encoded {feature.encoded} images need "
                f"shape [height, width, channels]. Received: shape={list(shape)}"
            )
        return FeatureSpec(feature.name, "uint8", shape, feature.encoded)
    if feature.dtype == "uint8" or feature.encoded == "raw":
        dtype = "uint8" if feature.dtype == "string" else feature.dtype
        return FeatureSpec(feature.name, dtype, shape, "raw")
    return FeatureSpec(feature.name, feature.dtype, shape, _list_storage(feature.dtype))


def _list_storage(dtype: str) -> str:
    return {"float32": "float_list", "int64": "int64_list", "string": "bytes"}.get(
        dtype, "int64_list"
    )


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


def _feature(value: np.ndarray | bytes | str, spec: FeatureSpec):
    import tensorflow as tf

    train = tf.train
    if spec.storage == "float_list":
        return train.Feature(float_list=train.FloatList(value=np.ravel(value)))
    if spec.storage == "int64_list":
        return train.Feature(int64_list=train.Int64List(value=np.ravel(value).astype(np.int64)))
    if spec.storage == "raw":
        data = np.ascontiguousarray(value, dtype=np.dtype(spec.dtype).newbyteorder("<")).tobytes()
        return train.Feature(bytes_list=train.BytesList(value=[data]))
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, str):
        value = value.encode()
    return train.Feature(bytes_list=train.BytesList(value=[value]))


def serialize(row: dict[str, Any], specs: list[FeatureSpec]) -> bytes:
    """One serialized `tf.train.Example` holding `row[spec.name]` for every spec."""
    import tensorflow as tf

    feats = {s.name: _feature(row[s.name], s) for s in specs}
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def specs_for_columns(columns: dict[str, np.ndarray]) -> list[FeatureSpec]:
    """Feature specs for named arrays whose first axis is the example axis."""
    specs = []
    for name, arr in columns.items():
        arr = np.asarray(arr)
        dtype = "string" if arr.dtype.kind in "SUO" else arr.dtype.name
        specs.append(FeatureSpec(name, dtype, tuple(arr.shape[1:]), storage_for(arr.dtype)))
    return specs


def shard_name(index: int, total: int, compression: str) -> str:
    """File name of shard `index` of `total`."""
    return f"data-{index:05d}-of-{total:05d}.tfrecord" + (".gz" if compression == "GZIP" else "")


def write_tfrecords(
    columns: dict[str, np.ndarray],
    out_dir: str | Path,
    *,
    shard_mb: float = 64.0,
    num_shards: int | None = None,
    compression: str = "",
    meta: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write named arrays as sharded TFRecords plus `schema.json`; return the schema.

    Args:
        columns: `{feature name: array}`, all with the same first (example) dimension.
        out_dir: the output directory (created).
        shard_mb: target uncompressed shard size in MB (ignored when `num_shards` is set).
        num_shards: exact number of shards.
        compression: `""`, `GZIP` or `ZLIB`.
        meta: extra schema entries (`label`, `inputs`, `task`, `num_classes`, `class_names`).
        overwrite: replace shards already in `out_dir`.

    Raises:
        UserError: empty or mismatched columns, bad shard size, or `out_dir` already holds
            a dataset and `overwrite` is false.
    """
    if not columns:
        raise UserError("Nothing to write: no columns given")
    counts = {name: len(arr) for name, arr in columns.items()}
    if len(set(counts.values())) != 1:
        raise UserError(f"All columns must have the same number of examples. Received: {counts}")
    count = next(iter(counts.values()))
    if count == 0:
        raise UserError("Nothing to write: the source holds 0 examples")
    if compression not in ("", "GZIP", "ZLIB"):
        raise UserError(f"`--compression` must be '', 'GZIP' or 'ZLIB'. Received: {compression!r}")
    if num_shards is None and not shard_mb > 0:
        raise UserError(f"`--shard-mb` must be > 0. Received: shard_mb={shard_mb}")
    out = Path(out_dir)
    if out.is_file():
        raise UserError(f"`--out` {out} is a file, expected a directory")
    if (out / SCHEMA_FILE).exists() and not overwrite:
        raise UserError(f"`--out` {out} already holds a dataset ({SCHEMA_FILE}); pass --overwrite")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"`--out` {out} is not empty; choose a new directory or pass --overwrite")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # write into a hidden sibling, then rename: `out` never holds a half-written dataset
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as err:
        raise UserError(
            f"`--out` {out}: cannot create a folder in {out.parent} ({err.strerror or err}); "
            "choose a writable location"
        ) from None
    staging.chmod(0o755)
    try:
        schema = _write_shards(columns, staging, shard_mb, num_shards, compression, meta)
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return schema


def _write_shards(columns, out: Path, shard_mb, num_shards, compression, meta) -> dict[str, Any]:
    import tensorflow as tf

    count = len(next(iter(columns.values())))
    specs = specs_for_columns(columns)
    columns = {k: np.asarray(v) for k, v in columns.items()}
    if num_shards is None:
        example_bytes = len(serialize({k: v[0] for k, v in columns.items()}, specs))
        per_shard = max(1, int(shard_mb * 1e6 // max(example_bytes, 1)))
        num_shards = math.ceil(count / per_shard)
    num_shards = max(1, min(int(num_shards), count))
    bounds = np.linspace(0, count, num_shards + 1).astype(int)
    options = tf.io.TFRecordOptions(compression_type=compression)
    shards = []
    for i in range(num_shards):
        name = shard_name(i, num_shards, compression)
        with tf.io.TFRecordWriter(str(out / name), options) as writer:
            for j in range(bounds[i], bounds[i + 1]):
                writer.write(serialize({k: v[j] for k, v in columns.items()}, specs))
        shards.append({"file": name, "count": int(bounds[i + 1] - bounds[i])})
    schema = {
        "version": SCHEMA_VERSION,
        "count": int(count),
        "compression": compression,
        "features": [s.to_json() for s in specs],
        "shards": shards,
        **(meta or {}),
    }
    (out / SCHEMA_FILE).write_text(json.dumps(schema, indent=2) + "\n")
    return schema


# --------------------------------------------------------------------------------------
# finding files
# --------------------------------------------------------------------------------------


def resolve_files(
    path: str | Path | list[str], what: str = "data.source.path"
) -> tuple[list[str], dict | None]:
    """The TFRecord files at `path` (a directory, a file, a glob, or a list of those) and
    its schema, if any (the first one found).

    Raises:
        UserError: the path does not exist, or holds no TFRecord files.
    """
    if isinstance(path, (list, tuple)):
        if not path:
            raise UserError(f"`{what}`: an empty list; name TFRecord files, globs or directories")
        files: list[str] = []
        schema = None
        for i, item in enumerate(path):
            found, found_schema = resolve_files(item, f"{what}[{i}]")
            files += [f for f in found if f not in files]
            schema = schema or found_schema
        return files, schema
    text = str(path)
    p = Path(text)
    schema = None
    if any(c in text for c in "*?["):
        files = sorted(f for f in glob.glob(text) if os.path.isfile(f))
        if not files:
            raise MissingPathError(what, f"`{what}`: no files match the pattern {text}")
        parent = Path(files[0]).parent
        if (parent / SCHEMA_FILE).exists():
            schema = read_schema(parent)
        return [f for f in files if not f.endswith(SCHEMA_FILE)], schema
    if not p.exists():
        raise MissingPathError(what, f"`{what}`: no such file or directory: {p}")
    if p.is_file():
        if (p.parent / SCHEMA_FILE).exists():
            schema = read_schema(p.parent)
        return [str(p)], schema
    if (p / SCHEMA_FILE).exists():
        schema = read_schema(p)
        files = [str(p / s["file"]) for s in schema["shards"]]
        missing = [f for f in files if not os.path.exists(f)]
        if missing:
            raise UserError(
                f"{p / SCHEMA_FILE} lists shards that are missing: {', '.join(missing)}"
            )
        return files, schema
    files = sorted(
        str(f)
        for f in p.iterdir()
        if f.is_file()
        and not f.name.startswith(".")
        and not f.name.endswith(".tmp")
        and (".tfrecord" in f.name or f.suffix == ".tfr")
    )
    if not files:
        raise UserError(f"`{what}`: the directory {p} holds no TFRecord files (*.tfrecord*)")
    return files, None


def read_schema(directory: str | Path) -> dict[str, Any]:
    """Read `schema.json` in `directory`, naming the file on errors."""
    path = Path(directory) / SCHEMA_FILE
    try:
        schema = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read the schema: {err}") from None
    for key in ("features", "shards"):
        if key not in schema:
            raise UserError(f"{path}: the schema lacks `{key}`")
    return schema


def detect_compression(file: str, compression: str = "auto") -> str:
    """`GZIP` for gzip files (by magic bytes) when `compression` is `auto`, else as given."""
    if compression != "auto":
        return compression
    with open(file, "rb") as f:
        return "GZIP" if f.read(2) == b"\x1f\x8b" else ""


# --------------------------------------------------------------------------------------
# checking
# --------------------------------------------------------------------------------------


def scan_structure(file: str) -> tuple[int, str | None]:
    """Walk the record headers of an uncompressed TFRecord file without reading payloads.

    Returns:
        (records found, None) for a sound file, or (records before the problem, what is
        wrong) for a truncated one. CRCs are not checked (reading does that).
    """
    size = os.path.getsize(file)
    n = 0
    offset = 0
    with open(file, "rb") as f:
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                return n, f"truncated record header at byte {offset}"
            (length,) = struct.unpack("<Q", header[:8])
            end = offset + 12 + length + 4
            if end > size:
                return n, f"truncated record at byte {offset} (needs {length} bytes, file ends)"
            f.seek(end)
            offset = end
            n += 1
    return n, None


def _dtype_of_kind(kind: str) -> str:
    return {"float_list": "float32", "int64_list": "int64", "bytes_list": "string"}.get(kind, "?")


def check_example(record: bytes, specs: list[FeatureSpec], file: str) -> None:
    """Check one serialized example against `specs`, naming the feature and file.

    Raises:
        UserError: a missing feature, a wrong value type or a wrong number of values.
    """
    import tensorflow as tf

    try:
        example = tf.train.Example.FromString(record)
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError
        raise UserError(f"{file}: a record is not a tf.train.Example ({err})") from None
    feats = example.features.feature
    for spec in specs:
        if spec.name not in feats:
            raise UserError(
                f"{file}: feature `{spec.name}` is missing. Features found: {', '.join(sorted(feats))}"
            )
        kind = feats[spec.name].WhichOneof("kind")
        expected = {"float_list": "float_list", "int64_list": "int64_list"}.get(
            spec.storage, "bytes_list"
        )
        if kind != expected:
            raise UserError(
                f"{file}: feature `{spec.name}` has the wrong dtype: expected "
                f"{_dtype_of_kind(expected)} ({expected}), found {_dtype_of_kind(kind)} ({kind})"
            )
        values = getattr(feats[spec.name], kind).value
        if spec.varlen:
            continue
        if spec.storage in ("float_list", "int64_list"):
            want = int(np.prod(spec.shape)) if spec.shape else 1
            if len(values) != want:
                raise UserError(
                    f"{file}: feature `{spec.name}` holds {len(values)} values, the spec "
                    f"expects shape {list(spec.shape)} ({want} values)"
                )
        elif spec.storage == "raw":
            want = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
            if len(values) != 1 or len(values[0]) != want:
                got = len(values[0]) if values else 0
                raise UserError(
                    f"{file}: feature `{spec.name}` holds {got} bytes, the spec expects "
                    f"{spec.dtype} of shape {list(spec.shape)} ({want} bytes)"
                )


def first_records(file: str, n: int, compression: str = "auto") -> list[bytes]:
    """The first `n` serialized records of `file` (fewer if the file is shorter).

    Raises:
        UserError: the file cannot be read (naming it).
    """
    import tensorflow as tf

    comp = detect_compression(file, compression)
    out = []
    try:
        for rec in tf.data.TFRecordDataset(file, compression_type=comp).take(n):
            out.append(rec.numpy())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        if not out:
            raise UserError(
                f"{file}: not a readable TFRecord file ({_tf_message(err)}); give files written "
                "by `tfkit data convert` or tf.io.TFRecordWriter (compressed ones need the "
                "matching `compression`)"
            ) from None
    return out


def count_records(file: str, compression: str = "auto", ignore_errors: bool = False) -> int:
    """Read every record of `file` and return how many are readable.

    Raises:
        UserError: a truncated or corrupt record (naming the file), unless `ignore_errors`.
    """
    import tensorflow as tf

    comp = detect_compression(file, compression)
    ds = tf.data.TFRecordDataset(file, compression_type=comp, buffer_size=1 << 20)
    if ignore_errors:
        ds = ds.ignore_errors()
    try:
        # batching first: the reduce function then runs once per 1024 records
        return int(ds.batch(1024).reduce(np.int64(0), lambda n, b: n + tf.shape(b, tf.int64)[0]))
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        raise UserError(f"{file}: corrupt or truncated TFRecord file: {_tf_message(err)}") from None


def _tf_message(err) -> str:
    text = getattr(err, "message", str(err))
    for line in text.splitlines():
        for marker in ("truncated record", "corrupted record", "Feature:", "Key:", "Data types"):
            if marker in line:
                return line[line.index(marker) :].split(" [Op:")[0].strip()
    return text.strip().splitlines()[-1][:300]


# --------------------------------------------------------------------------------------
# parsing (after batching)
# --------------------------------------------------------------------------------------


def parse_features(specs: list[FeatureSpec]) -> dict[str, Any]:
    """The `tf.io.parse_example` feature map for `specs`."""
    import tensorflow as tf

    out = {}
    for s in specs:
        if s.varlen:
            tf_dtype = {"float_list": tf.float32, "int64_list": tf.int64}.get(s.storage, tf.string)
            out[s.name] = tf.io.RaggedFeature(tf_dtype)
        elif s.storage == "float_list":
            out[s.name] = tf.io.FixedLenFeature(list(s.shape), tf.float32)
        elif s.storage == "int64_list":
            out[s.name] = tf.io.FixedLenFeature(list(s.shape), tf.int64)
        else:
            out[s.name] = tf.io.FixedLenFeature([], tf.string)
    return out


def decode_batch(parsed: dict[str, Any], specs: list[FeatureSpec]) -> dict[str, Any]:
    """Turn `parse_example` output into tensors of each spec's dtype and shape."""
    import tensorflow as tf

    out = {}
    for s in specs:
        t = parsed[s.name]
        if s.varlen:
            t = t.to_tensor()
        elif s.storage == "raw":
            t = tf.io.decode_raw(t, tf.dtypes.as_dtype(s.dtype), little_endian=True)
            t = tf.reshape(t, [-1, *s.shape])
        elif s.storage in ("png", "jpeg"):
            h, w, c = s.shape

            def _decode(data, h=h, w=w, c=c):
                img = tf.io.decode_image(data, channels=c, expand_animations=False)
                img = tf.image.resize(img, [h, w], method="bilinear")
                return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)

            t = tf.map_fn(_decode, t, fn_output_signature=tf.TensorSpec([h, w, c], tf.uint8))
        elif s.storage == "int64_list" and s.dtype not in ("int64",):
            t = tf.cast(t, tf.bool if s.dtype == "bool" else tf.dtypes.as_dtype(s.dtype))
        out[s.name] = t
    return out


# --------------------------------------------------------------------------------------
# describing foreign files
# --------------------------------------------------------------------------------------


def infer_features(records: list[bytes]) -> list[dict[str, Any]]:
    """Describe the features of some serialized examples in the config's `features:` form.

    A list whose length varies between records is `varlen`; a single bytes value that
    starts like a PNG or JPEG is an encoded image with its decoded shape.
    """
    import tensorflow as tf

    seen: dict[str, dict[str, Any]] = {}
    for rec in records:
        feats = tf.train.Example.FromString(rec).features.feature
        for name in sorted(feats):
            kind = feats[name].WhichOneof("kind")
            values = list(getattr(feats[name], kind).value) if kind else []
            info = seen.setdefault(name, {"kind": kind, "lengths": set(), "first": values})
            info["lengths"].add(len(values))
    out = []
    for name, info in seen.items():
        kind, lengths = info["kind"], info["lengths"]
        entry: dict[str, Any] = {"name": name, "dtype": _dtype_of_kind(kind)}
        if kind == "bytes_list" and lengths == {1}:
            data = info["first"][0]
            encoded = (
                "png"
                if data[:8] == b"\x89PNG\r\n\x1a\n"
                else "jpeg"
                if data[:2] == b"\xff\xd8"
                else None
            )
            if encoded:
                img = tf.io.decode_image(data, expand_animations=False)
                entry.update(dtype="uint8", shape=list(img.shape), encoded=encoded)
            else:
                entry["shape"] = []
        elif len(lengths) > 1:
            entry.update(shape=[], varlen=True)
        else:
            n = next(iter(lengths))
            entry["shape"] = [] if n == 1 else [n]
        out.append(entry)
    return out


def features_yaml(features: list[dict[str, Any]]) -> str:
    """The `features:` block a user can paste into a `tfrecord` source."""
    lines = ["features:"]
    for f in features:
        parts = [f"name: {f['name']}", f"dtype: {f['dtype']}", f"shape: {f.get('shape', [])}"]
        if f.get("varlen"):
            parts.append("varlen: true")
        if f.get("encoded"):
            parts.append(f"encoded: {f['encoded']}")
        lines.append("  - {" + ", ".join(parts) + "}")
    return "\n".join(lines)
