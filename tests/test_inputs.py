"""Every bad input of issue #15, one row each: `tfkit` answers 0 (a valid edge case, handled)
or 2 with one stderr line naming the file, key or argument; never a traceback, never a hang.

`CASES` maps a case id to (argv, expected exit status, a fragment the one error line must
hold). Files are built once per module in `inputs`; the predict cases share one tiny
digits run. `test_every_listed_case_is_in_the_table` counts the cases.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tfkit.cli import main

TABULAR = {
    "name": "inputs",
    "data": {"source": {"kind": "npz", "path": "good.npz"}, "batch_size": 16},
    "model": {"name": "mlp", "units": [8]},
    "train": {"epochs": 1, "loss": "auto", "checkpoint": "none", "tensorboard": False},
}


def _yaml(path: Path, tree: dict) -> str:
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def _with(tree: dict, **sections) -> dict:
    out = json.loads(json.dumps(tree))
    for dotted, value in sections.items():
        node = out
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _png(path: Path, array: np.ndarray, mode: str | None = None, palette=None) -> None:
    img = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        img.putpalette(palette)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _foreign_tfrecords(d: Path) -> None:
    """Two TFRecord files written elsewhere: `image/encoded` PNGs, `image/class/label`."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for shard in range(2):
        with tf.io.TFRecordWriter(str(d / f"foreign-{shard}.tfrecord")) as w:
            for i in range(24):
                buf = io.BytesIO()
                Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(buf, "PNG")
                feature = {
                    "image/encoded": tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[buf.getvalue()])
                    ),
                    "image/class/label": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[i % 3])
                    ),
                }
                w.write(
                    tf.train.Example(
                        features=tf.train.Features(feature=feature)
                    ).SerializeToString()
                )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Every bad (and edge-case) input file, built once; the module runs inside this dir."""
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(d / "good.npz", x=x, y=y, w=np.ones(200, np.float32))
    np.savez(d / "tenclass.npz", x=x, y=np.arange(200) % 10)
    np.savez(d / "oneclass.npz", x=x, y=np.zeros(200, np.int64))
    np.savez(d / "complex.npz", x=x.astype(np.complex64), y=y)
    np.savez(d / "mismatch.npz", x=x, y=y[:150])
    np.savez(d / "inf.npz", x=np.where(np.arange(200)[:, None] == 5, np.inf, x), y=y)
    np.savez(d / "nanlabel.npz", x=x, y=np.where(np.arange(200) == 3, np.nan, y))
    np.savez(d / "negative.npz", x=x, y=np.arange(200) % 3 - 1)
    np.savez(d / "object.npz", x=np.array([1, "a", None], dtype=object), y=np.array([0, 1, 0]))
    ragged = np.empty(3, dtype=object)
    ragged[:] = [np.zeros(3), np.zeros(4), np.zeros(2)]
    np.savez(d / "ragged.npz", x=ragged, y=np.array([0, 1, 0]))
    np.save(d / "empty.npy", np.zeros((0, 8, 8, 1), np.float32))
    np.save(d / "x.npy", np.zeros((2, 8, 8, 1), np.float32))  # a valid --input
    (d / "random.npy").write_bytes(rng.bytes(512))
    rows = "".join(f"{i},{i * 2},{'cat' if i % 2 else 'dog'}\n" for i in range(50))
    (d / "strlab.csv").write_text("a,b,label\n" + rows)
    rows = "".join(f"{'' if i in (3, 7) else i},{i * 2},{i % 2}\n" for i in range(50))
    (d / "nan.csv").write_text("a,b,label\n" + rows)
    (d / "header.csv").write_text("a,b,label\n")
    (d / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (d / "random.yaml").write_bytes(b"\xff\xfe" + rng.bytes(300))
    (d / "empty.yaml").write_text("")
    os.mkfifo(d / "fifo.yaml")
    (d / "a_file").write_text("not a directory")
    # images: 16-bit and palette PNGs (to convert), a truncated PNG (to refuse or skip)
    ramp16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    _png(d / "png16" / "a" / "ramp.png", ramp16)
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (768 - 9)
    _png(
        d / "palette" / "a" / "p.png",
        (np.arange(64).reshape(8, 8) % 3).astype(np.uint8),
        "P",
        palette,
    )
    good = (rng.random((8, 8)) * 255).astype(np.uint8)
    for cls in ("a", "b"):
        for i in range(4):
            _png(d / "imgs" / cls / f"{i}.png", good)
    data = (d / "imgs" / "a" / "0.png").read_bytes()
    (d / "imgs" / "a" / "truncated.png").write_bytes(data[: len(data) // 2])
    (d / "predict_imgs").mkdir()
    (d / "predict_imgs" / "ok.png").write_bytes(data)
    (d / "predict_imgs" / "truncated.png").write_bytes(data[: len(data) // 2])
    _foreign_tfrecords(d)
    # issue #25: 0-d and text arrays, CSV/Parquet/TFRecord files that cannot be parsed
    np.savez(d / "scalar.npz", x=np.float32(3.0), y=np.int64(1))
    np.savez(d / "text.npz", x=np.array(["a", "b", "c"] * 10), y=np.arange(30) % 2)
    (d / "good.csv").write_text(
        "a,b,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(60))
    )
    (d / "strfeat.csv").write_text(
        "a,b\n" + "".join(f"{i},{'x' if i % 2 else 'y'}\n" for i in range(9))
    )
    rows = "".join(f"{i},{i * 2},{i % 2}\n" for i in range(50))
    (d / "badrow.csv").write_text("a,b,label\n" + rows + "1,2,3,4,5\n" + rows)
    (d / "binary.csv").write_bytes(rng.bytes(400))
    (d / "garbage.tfrecord").write_bytes(rng.bytes(1000))
    np.savez(d / "moved.npz", x=x, y=y)
    old = os.getcwd()
    os.chdir(d)
    yield d
    os.chdir(old)


@pytest.fixture(scope="module")
def digits_run(inputs):
    """One tiny trained digits CNN, for the predict cases."""
    argv = ["train", str(Path(__file__).parents[1] / "configs" / "digits_cnn.yaml"),
            "--run-dir", "digits_run", "--set", "train.epochs=1", "--set", "model.filters=[4]",
            "--set", "model.convs_per_block=1", "--set", "model.dense_units=[8]",
            "--set", "train.tensorboard=false", "--set", "train.checkpoint=none"]  # fmt: skip
    assert main(argv) == 0
    return "digits_run"


@pytest.fixture(scope="module")
def csv_run(inputs):
    """One tiny run trained on a CSV (columns a, b; label `label`), for predict."""
    tree = T(data__source={"kind": "csv", "path": "good.csv", "label": "label"})
    assert main(["train", _yaml(inputs / "csv_run.yaml", tree), "--run-dir", "csv_run"]) == 0
    return "csv_run"


@pytest.fixture(scope="module")
def moved_run(inputs):
    """A run whose data file was removed after training, for evaluate."""
    tree = T(data__source={"kind": "npz", "path": "moved.npz"})
    assert main(["train", _yaml(inputs / "moved_run.yaml", tree), "--run-dir", "moved_run"]) == 0
    (inputs / "moved.npz").unlink()
    return "moved_run"


def T(**sections) -> dict:
    """The tabular config with `a__b=value` changes."""
    return _with(TABULAR, **sections)


SOURCE = "data__source"
# id -> (config tree or None, argv after the config (or the whole argv), exit, fragment)
CASES: dict[str, tuple] = {
    # --- config files -------------------------------------------------------------------
    "config-latin1": (None, ["config", "validate", "latin1.yaml"], 2, "latin1.yaml: not UTF-8"),
    "config-random-bytes": (None, ["config", "validate", "random.yaml"], 2, "random.yaml: not UTF-8"),
    "config-fifo-validate": (None, ["config", "validate", "fifo.yaml"], 2, "fifo.yaml: not a regular file"),
    "config-fifo-train": (None, ["train", "fifo.yaml"], 2, "fifo.yaml: not a regular file"),
    "config-directory": (None, ["config", "validate", "."], 2, "is a directory"),
    "config-empty-validate": (None, ["config", "validate", "empty.yaml"], 2, "empty.yaml: the config file is empty"),
    "config-empty-train": (None, ["train", "empty.yaml"], 2, "empty.yaml: the config file is empty"),
    "batch-size-huge": (T(), ["config", "validate", "--set", "data.batch_size=99999999999999999999999"], 2, "`data.batch_size`: must fit in 64 bits"),
    # found while fuzzing: a segfault in tf.data and NumPy's seed range
    "shuffle-buffer-huge": (T(), ["config", "validate", "--set", "data.shuffle_buffer=4611686018427387904"], 2, "`data.shuffle_buffer`: Input should be less than or equal to 2147483647"),
    "seed-negative": (T(), ["train", "--set", "runtime.seed=-5"], 2, "`runtime.seed`: Input should be greater than or equal to 0"),
    # --- names and values validate checks as train does ---------------------------------
    "unknown-loss": (T(train__loss="msee"), ["config", "validate"], 2, "`train.loss.name`: unknown loss 'msee'"),
    "unknown-metric": (T(train__metrics=["acuracy"]), ["config", "validate"], 2, "`train.metrics[0]`: unknown metric 'acuracy'"),
    "unknown-activation": (T(model__activation="relo"), ["config", "validate"], 2, "`model.activation`: unknown activation 'relo'"),
    "unknown-callback": (T(train__callbacks=[{"name": "early_stop"}]), ["config", "validate"], 2, "`train.callbacks[0]`: unknown callback 'early_stop'"),
    "callback-unknown-arg": (T(train__callbacks=[{"name": "early_stopping", "args": {"patiense": 3}}]), ["config", "validate"], 2, "early_stopping does not take patiense"),
    "callback-arg-type": (T(train__callbacks=[{"name": "early_stopping", "args": {"patience": "3"}}]), ["config", "validate"], 2, "argument `patience` must be an integer"),
    "learning-rate-inf": (T(train__optimizer={"learning_rate": float("inf")}), ["config", "validate"], 2, "`train.optimizer.learning_rate`: Input should be a finite number"),
    "epochs-true": (T(train__epochs=True), ["config", "validate"], 2, "`train.epochs`: expected a number, not a boolean"),
    "monitor-val-f1": (T(), ["train", "--set", "train.monitor=val_f1"], 2, "`train.monitor`: no metric `val_f1`"),
    "tune-space-empty": (T(tune={"space": {}}), ["config", "validate"], 2, "`tune.space` is empty"),
    "tune-space-empty-tune": (T(tune={"space": {}}), ["tune"], 2, "`tune.space` is empty"),
    "repeat-without-steps": (T(data__repeat=True), ["train"], 2, "`data.repeat: true` makes the train split endless"),
    "sample-weight-and-class-weight": (T(data__source={"kind": "npz", "path": "good.npz", "sample_weight": "w"}, train__class_weight="balanced"), ["train"], 2, "`train.class_weight` and `data.source.sample_weight` cannot be combined"),
    # --- data checked before training ----------------------------------------------------
    "csv-nan-features": (T(data__source={"kind": "csv", "path": "nan.csv", "label": "label"}), ["train"], 2, "nan.csv): NaN or infinite values in feature `x` in column(s) `a`: 2 example(s) of 50"),
    "inf-feature": (T(data__source={"kind": "npz", "path": "inf.npz"}), ["train"], 2, "inf.npz): NaN or infinite values in feature `x`: 1 example(s) of 200"),
    "nan-label": (T(data__source={"kind": "npz", "path": "nanlabel.npz"}), ["train"], 2, "NaN or infinite values in the labels: 1 example(s)"),
    "nan-dropped-on-request": (T(data__source={"kind": "csv", "path": "nan.csv", "label": "label"}, data__nan_policy="drop"), ["train", "--run-dir", "run_nan_drop"], 0, None),
    "negative-labels-with-accuracy": (T(data__source={"kind": "npz", "path": "negative.npz"}, train__metrics=["accuracy"]), ["train"], 2, "data.task: auto takes float or negative labels for regression"),
    "labels-beyond-num-classes": (T(data__source={"kind": "npz", "path": "tenclass.npz"}, data__num_classes=3), ["train"], 2, "140 label(s) lie outside the classes 0..2"),
    "one-class": (T(data__source={"kind": "npz", "path": "oneclass.npz"}), ["train"], 2, "every one of the 200 labels is 0"),
    "ten-classes-task-binary": (T(data__source={"kind": "npz", "path": "tenclass.npz"}, data__task="binary"), ["train"], 2, "data task `binary` needs labels 0 and 1"),
    "complex-features": (T(data__source={"kind": "npz", "path": "complex.npz"}), ["train"], 2, "feature `x` is complex"),
    "object-npz": (T(data__source={"kind": "npz", "path": "object.npz"}), ["train"], 2, "cannot read array `x` of object.npz"),
    "ragged-npz": (T(data__source={"kind": "npz", "path": "ragged.npz"}), ["train"], 2, "cannot read array `x` of ragged.npz"),
    "x-y-length-mismatch": (T(data__source={"kind": "npz", "path": "mismatch.npz"}), ["train"], 2, "(x: 200, y: 150)"),
    "csv-string-labels-train": (T(data__source={"kind": "csv", "path": "strlab.csv", "label": "label"}), ["train"], 2, "strlab.csv): the labels are text"),
    "csv-string-labels-convert": (None, ["data", "convert", "--from", "csv", "strlab.csv", "--label", "label", "--out", "out_strlab"], 2, "--from csv strlab.csv: the labels are text"),
    "csv-header-only": (T(data__source={"kind": "csv", "path": "header.csv", "label": "label"}), ["train"], 2, "header.csv is empty: it has a header (3 columns) but no rows"),
    "val-split-too-small": (T(data__split={"train": 0.899, "val": 0.001, "test": 0.1}), ["train"], 2, "`data.split.val` is 0.001 of 200 examples"),
    "drop-remainder-zero-steps": (T(data__drop_remainder=True, data__batch_size=500), ["train"], 2, "leaves 0 steps in the train split"),
    # --- images ----------------------------------------------------------------------------
    "png16-convert": (None, ["data", "convert", "--from", "images", "png16", "--out", "out_png16", "--resolution", "8", "--color-mode", "grayscale"], 0, None),
    "palette-convert": (None, ["data", "convert", "--from", "images", "palette", "--out", "out_palette", "--resolution", "8"], 0, None),
    "truncated-image-train": (T(data__source={"kind": "images", "path": "imgs", "image_size": [8, 8]}, model={"name": "cnn", "filters": [4], "dense_units": [4]}), ["train"], 2, "cannot decode image imgs/a/truncated.png"),
    "truncated-image-ignored": (T(data__source={"kind": "images", "path": "imgs", "image_size": [8, 8]}, data__ignore_errors=True, model={"name": "cnn", "filters": [4], "dense_units": [4]}), ["data", "inspect"], 0, None),
    "convert-image-size-zero": (None, ["data", "convert", "--from", "images", "imgs", "--out", "o", "--image-size", "0", "0"], 2, "argument --image-size: must be an integer >= 1. Received: 0"),
    # --- foreign TFRecords -----------------------------------------------------------------
    "tfrecord-slash-feature-names": (T(data__source={"kind": "tfrecord", "path": "foreign-*.tfrecord", "label": "image/class/label", "features": [{"name": "image/encoded", "dtype": "string", "shape": [8, 8, 3], "encoded": "png"}, {"name": "image/class/label", "dtype": "int64"}]}, model={"name": "cnn", "filters": [4], "dense_units": [4]}), ["train", "--run-dir", "run_foreign"], 0, None),
    "tfrecord-list-of-files": (T(data__source={"kind": "tfrecord", "path": ["foreign-0.tfrecord", "foreign-1*"], "label": "image/class/label", "features": [{"name": "image/encoded", "dtype": "string", "shape": [8, 8, 3], "encoded": "png"}, {"name": "image/class/label", "dtype": "int64"}]}, model={"name": "cnn", "filters": [4], "dense_units": [4]}), ["data", "inspect"], 0, None),
    # --- arguments ---------------------------------------------------------------------------
    "predict-batch-size-negative": (None, ["predict", "r", "--input", "x.npy", "--output", "y.npy", "--batch-size", "-1"], 2, "argument --batch-size: must be an integer >= 1. Received: -1"),
    "predict-batch-size-zero": (None, ["predict", "r", "--input", "x.npy", "--output", "y.npy", "--batch-size", "0"], 2, "argument --batch-size: must be an integer >= 1"),
    "generate-seeds-too-many": (None, ["gan", "generate", "r", "--seeds", "0-99999999", "--out", "g.png"], 2, "argument --seeds: names more than 4096 seeds"),
    "generate-trunc-nan": (None, ["gan", "generate", "r", "--trunc", "nan", "--out", "g.png"], 2, "argument --trunc: expected a finite number"),
    "generate-cols-zero": (None, ["gan", "generate", "r", "--cols", "0", "--out", "g.png"], 2, "argument --cols: must be an integer >= 1"),
    "launch-port-out-of-range": (None, ["launch", "--base-port", "99999", "--", "train", "x.yaml"], 2, "argument --base-port: must be a port in 1..65535"),
    "launch-timeout-negative": (None, ["launch", "--timeout", "-5", "--", "train", "x.yaml"], 2, "argument --timeout: must be a number > 0"),
    "launch-workers-zero": (None, ["launch", "--workers", "0", "--", "train", "x.yaml"], 2, "argument --workers: must be an integer >= 1"),
    "output-below-a-file": (None, ["predict", "r", "--input", "x.npy", "--output", "a_file/y.npy"], 2, "argument --output: a_file/y.npy is below a_file, which is a file"),
    "run-dir-below-a-file": (T(), ["train", "--run-dir", "a_file/run"], 2, "argument --run-dir: a_file/run is below a_file"),
    "predict-empty-array": ("digits", ["--input", "empty.npy", "--output", "y.npy"], 2, "--input empty.npy: input `"),
    "predict-random-bytes-npy": ("digits", ["--input", "random.npy", "--output", "y.npy"], 2, "--input random.npy: cannot read as .npy"),
    "predict-truncated-png": ("digits", ["--input", "predict_imgs", "--output", "y.npy"], 2, "cannot decode image predict_imgs/truncated.png"),
    # --- the newcomer path -----------------------------------------------------------------
    "inspect-tabular-config": (T(), ["data", "inspect"], 0, None),
    # --- issue #25: the last bad inputs, and every refusal says how to fix it ---------------
    "npz-scalar-train": (T(data__source={"kind": "npz", "path": "scalar.npz"}), ["train"], 2, "(scalar.npz): feature `x` is a single value (float32 scalar, a 0-d array), not one row per example; store an array whose first axis counts the examples"),
    "npz-scalar-convert": (None, ["data", "convert", "--from", "npz", "scalar.npz", "--out", "o_scalar"], 2, "--from npz scalar.npz: feature `x` is a single value"),
    "npz-text-train": (T(data__source={"kind": "npz", "path": "text.npz"}), ["train"], 2, "(text.npz): feature `x` is text (<U1, e.g. 'a'); tfkit models take numbers. Encode the text as numbers"),
    "npz-text-convert": (None, ["data", "convert", "--from", "npz", "text.npz", "--out", "o_text"], 2, "--from npz text.npz: feature `x` is text"),
    "convert-out-under-proc": (None, ["data", "convert", "--from", "npz", "good.npz", "--out", "/proc/tfkit_out"], 2, "`--out` /proc/tfkit_out: cannot create a folder in /proc (No such file or directory); choose a writable location"),
    "gan-metrics-cache-below-file": (None, ["gan", "metrics", "r", "--cache-dir", "a_file/cache"], 2, "argument --cache-dir: a_file/cache is below a_file, which is a file"),
    "predict-csv-text-column": ("csv", ["--input", "strfeat.csv", "--output", "y.npy"], 2, "--input strfeat.csv: column `b` is not numeric (e.g. 'y'); the model was trained on numbers in that column"),
    "set-double-dot": (T(), ["config", "validate", "--set", "train..epochs=3"], 2, "--set train..epochs: the dotted key has an empty part (a leading, trailing or doubled dot); write train.epochs=3"),
    "set-outer-dots": (T(), ["train", "--set", ".train.epochs.=4"], 2, "--set .train.epochs.: the dotted key has an empty part (a leading, trailing or doubled dot); write train.epochs=4"),
    "early-stopping-patience-negative": (T(train__callbacks=[{"name": "early_stopping", "args": {"patience": -3}}]), ["train"], 2, "`train.callbacks[0]`: early_stopping argument `patience` must be an integer >= 0. Received: -3"),
    "early-stopping-mode-sideways": (T(train__callbacks=[{"name": "early_stopping", "args": {"mode": "sideways"}}]), ["train"], 2, "early_stopping argument `mode` must be one of auto, min, max. Received: 'sideways'"),
    "npz-source-random-bytes": (T(data__source={"kind": "npz", "path": "random.npy"}), ["train"], 2, "`data.source.path` random.npy: cannot read as .npz/.npy: not a NumPy file"),
    "predict-random-bytes-npy-hint": ("digits", ["--input", "random.npy", "--output", "y.npy"], 2, "write arrays with numpy.save (.npy) or numpy.savez (.npz)"),
    "csv-bad-row": (T(data__source={"kind": "csv", "path": "badrow.csv", "label": "label"}), ["train"], 2, "`data.source.path` badrow.csv: cannot read as csv: line 52 has 5 fields, the header has 3; fix that line"),
    "csv-binary": (T(data__source={"kind": "csv", "path": "binary.csv", "label": "label"}), ["train"], 2, "binary.csv: cannot read as csv: not CSV text (byte 0x"),
    "csv-declared-parquet": (T(data__source={"kind": "parquet", "path": "good.csv", "label": "label"}), ["train"], 2, "good.csv: cannot read as parquet: it is text, not Parquet (no PAR1 signature); if it is CSV, set `data.source.kind: csv`"),
    "convert-csv-declared-parquet": (None, ["data", "convert", "--from", "parquet", "good.csv", "--out", "o_parquet"], 2, "if it is CSV, use --from csv"),
    "tfrecord-garbage": (T(data__source={"kind": "tfrecord", "path": "garbage.tfrecord", "label": "y", "features": [{"name": "x", "dtype": "float32", "shape": [4]}, {"name": "y", "dtype": "int64"}]}), ["train"], 2, "garbage.tfrecord: not a readable TFRecord file (corrupted record at 0 (Is this even a TFRecord file?)); give files written by `tfkit data convert`"),
    "data-cache-unwritable": (T(data__cache="a_file/cache", data__source={"kind": "tfrecord", "path": "foreign-*.tfrecord", "label": "image/class/label", "features": [{"name": "image/encoded", "dtype": "string", "shape": [8, 8, 3], "encoded": "png"}, {"name": "image/class/label", "dtype": "int64"}]}, model={"name": "cnn", "filters": [4], "dense_units": [4]}), ["train"], 2, "`data.cache: a_file/cache`: cannot write cache files in a_file"),
    "gan-batch-not-divisible-by-group": (None, ["gan", "train", str(Path(__file__).parents[1] / "configs" / "stylegan_shapes16.yaml"), "--set", "gan.batch=6", "--dry-run"], 2, "must be divisible by `gan.mbstd_group` (4). Use --set gan.batch=4 or 8 (a multiple of 4) or --set gan.mbstd_group=3"),
    "evaluate-saved-data-missing": ("moved", ["evaluate"], 2, "`data.source.path`: no such file: moved.npz (from the run's saved config moved_run/config.yaml); if the data moved, pass --set data.source.path=NEW_PATH"),
    "evaluate-set-outside-data": ("moved", ["evaluate", "--set", "train.epochs=3"], 2, "--set train.epochs: evaluate changes only `data.*` keys"),
    "evaluate-saved-data-overridden": ("moved", ["evaluate", "--set", "data.source.path=good.npz"], 0, None),
    "unknown-loss-plural": (T(train__loss="msee"), ["config", "validate"], 2, "Did you mean `mse`? Valid losses: auto,"),
    "sparse-loss-task-binary": (T(train__loss="sparse_categorical_crossentropy", data__task="binary"), ["train"], 2, "is for multiclass labels, but the data task `binary`; set `data.task: multiclass`"),
}  # fmt: skip

# the cases of the issue that other helpers own (their tests cover them): truncated
# model.keras / checkpoints (runs, #12), TF_CONFIG task type `ps` and the multi-worker
# collective timeout (cluster, #16)
OWNED_ELSEWHERE = ("truncated-model", "tf-config-ps", "collective-timeout")


def _argv(case_id: str, inputs: Path, request) -> list[str]:
    tree, rest, _, _ = CASES[case_id]
    if tree is None:
        return list(rest)
    if tree == "digits":
        return ["predict", request.getfixturevalue("digits_run"), *rest]
    if tree == "csv":
        return ["predict", request.getfixturevalue("csv_run"), *rest]
    if tree == "moved":
        return [rest[0], request.getfixturevalue("moved_run"), *rest[1:]]
    config = _yaml(inputs / f"{case_id}.yaml", tree)
    command = rest[:1] if rest[0] != "data" else rest[:2]
    if rest[:2] == ["config", "validate"]:
        command = rest[:2]
    return [*command, config, *rest[len(command) :]]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input_exits_cleanly(case_id, inputs, capsys, request):
    argv = _argv(case_id, inputs, request)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    _, _, want, fragment = CASES[case_id]
    assert "Traceback" not in err and "internal error" not in err, err
    assert rc == want, (argv, err)
    if want == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert lines[0].startswith("tfkit ") and fragment in lines[0], lines[0]
        # never the raw bytes of a file, framework internals or a hint to a numpy option
        assert lines[0].isprintable(), lines[0]
        for internal in ("{{function_node", "allow_pickle", "magic bytes", "[Op:"):
            assert internal not in lines[0], lines[0]


def test_edge_cases_give_right_results(inputs, capsys):
    """The exit-0 rows do the right thing, not just exit 0."""
    import tensorflow as tf

    from tfkit.data.tfrecord import read_schema  # noqa: F401 - the converted data is readable

    def first_image(out: str) -> np.ndarray:
        files = sorted(Path(out).glob("*.tfrecord*"))
        record = next(iter(tf.data.TFRecordDataset([str(f) for f in files])))
        example = tf.train.Example.FromString(record.numpy())
        raw = example.features.feature["image"].bytes_list.value[0]
        return np.frombuffer(raw, np.uint8)

    for case_id in ("png16-convert", "palette-convert"):
        if not Path(CASES[case_id][1][6]).exists():
            assert main(CASES[case_id][1]) == 0
    # 16-bit: value v of 65535 maps to round(v / 65535 * 255), as tf.io.decode_png does
    ramp = np.arange(64) * 1000
    got = first_image("out_png16").astype(int)
    np.testing.assert_array_equal(got, np.round(ramp / 65535 * 255).astype(int))
    # palette: index 0 black, 1 red, 2 blue
    rgb = first_image("out_palette").reshape(8, 8, 3)
    index = np.arange(64).reshape(8, 8) % 3
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    np.testing.assert_array_equal(rgb, colours[index])
    # slash feature names: trained, the model input is Keras-valid, the spec keeps the feature
    if not Path("run_foreign/spec.json").exists():
        argv = _argv("tfrecord-slash-feature-names", inputs, None)
        assert main(argv) == 0
    spec = json.loads(Path("run_foreign/spec.json").read_text())
    assert spec["inputs"] == [
        {
            "name": "image_encoded",
            "shape": [8, 8, 3],
            "dtype": "float32",
            "feature": "image/encoded",
        }
    ]
    assert spec["counts"]["train"] + spec["counts"]["val"] + spec["counts"]["test"] == 48
    # nan_policy: drop trained on the 48 complete rows of 50
    if not Path("run_nan_drop/spec.json").exists():
        assert main(_argv("nan-dropped-on-request", inputs, None)) == 0
    counts = json.loads(Path("run_nan_drop/spec.json").read_text())["counts"]
    assert sum(counts.values()) == 48


def test_every_listed_case_is_in_the_table():
    """Each input the issue names for this helper is one row (3 more are owned elsewhere)."""
    assert len(CASES) == 61 + 25  # issue #15, then #25
    assert not set(OWNED_ELSEWHERE) & set(CASES)


@pytest.mark.parametrize("command", [["config", "show"], ["gan", "train", "--dry-run"]])
def test_gan_preset_values_are_shown_instead_of_null(command, capsys):
    from tfkit.stylegan.presets import PRESETS

    config = str(Path(__file__).parents[1] / "configs" / "stylegan_shapes16.yaml")
    argv = [*command[:2], config, *command[2:]]
    assert main(argv) == 0
    out = capsys.readouterr().out.split("# resolved gan options")[0]
    gan = yaml.safe_load(out)["gan"]
    preset = PRESETS["shapes16"]
    for key in ("batch", "lr", "gamma", "map_layers", "channel_base", "ema_kimg", "kimg"):
        assert gan[key] == preset[key], key
    assert gan["resolution"] == 16


def test_keras_input_names_are_valid_distinct_and_stable():
    import re

    import keras

    from tfkit.data.sources import keras_input_names

    features = ["image/encoded", "image_encoded", "1st", "", "a b", "x", "image/encoded/2"]
    names = keras_input_names(features)
    assert names == keras_input_names(features)  # the same features give the same names
    assert len(set(names)) == len(names)
    assert names[:2] == ["image_encoded", "image_encoded_2"] and names[5] == "x"
    for name in names:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]*", name), name
        keras.Input(shape=(1,), name=name)  # Keras accepts it


def test_converted_tfrecords_train_without_keras_warnings(inputs, capsys):
    """A folder `tfkit data convert` wrote trains for several epochs with no Keras warning:
    each split states its batch count ("Your input ran out of data" came from an unknown one)."""
    import warnings

    assert main(["data", "convert", "--from", "npz", "good.npz", "--out", "conv_good"]) == 0
    tree = T(data__source={"kind": "tfrecord", "path": "conv_good"}, train__epochs=3)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = main(["train", _yaml(inputs / "conv_good.yaml", tree), "--run-dir", "run_conv"])
    err = capsys.readouterr().err
    assert rc == 0, err
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "ran out of data" in m], messages
    assert "Warning" not in err, err
    logs = [json.loads(line) for line in Path("run_conv/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logs if "loss" in r][-1] == 3  # every epoch trained


def test_sparse_crossentropy_on_two_classes_trains_a_two_unit_softmax(inputs, capsys):
    """As in Keras: 0/1 labels with `sparse_categorical_crossentropy` train (data.task auto
    becomes multiclass with 2 classes); predictions are two probabilities per example."""
    import keras

    tree = T(train__loss="sparse_categorical_crossentropy", train__metrics=["accuracy"])
    config = _yaml(inputs / "sparse2.yaml", tree)
    assert main(["train", config, "--run-dir", "run_sparse2"]) == 0
    saved = yaml.safe_load(Path("run_sparse2/config.yaml").read_text())
    assert saved["data"]["task"] == "multiclass"
    spec = json.loads(Path("run_sparse2/spec.json").read_text())
    assert spec["task"] == "multiclass" and spec["num_classes"] == 2
    model = keras.saving.load_model("run_sparse2/model.keras")
    assert model.output_shape == (None, 2)
    assert main(["predict", "run_sparse2", "--input", "good.npz", "--output", "p2.npy"]) == 0
    p = np.load("p2.npy")
    assert p.shape == (200, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert main(["evaluate", "run_sparse2"]) == 0
