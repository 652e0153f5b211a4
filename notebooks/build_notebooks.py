"""Write (and optionally execute) the tfkit notebooks from the cell sources in this file.

The notebooks are committed with their outputs so they read on a code host; this script is
how they are made, so a change to a notebook is a change to a few strings here:

    .venv/bin/python notebooks/build_notebooks.py            # write and execute all
    .venv/bin/python notebooks/build_notebooks.py 01 03      # only these
    .venv/bin/python notebooks/build_notebooks.py --no-execute

Execution uses nbclient with the `python3` kernel; `jupyter_client` starts it with this
interpreter (`sys.executable`), so run the script with the virtual environment's Python.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from textwrap import dedent

HERE = Path(__file__).resolve().parent

# Every notebook starts like this: quiet TensorFlow logs, a temporary working directory
# (runs, TFRecords and logs never land in the repository), and tfkit importable when the
# notebook runs from a checkout without `pip install -e .`.
PREAMBLE = """\
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info lines
sys.path.insert(0, str(Path.cwd().parent))  # the repository root, when run from notebooks/
WORK = Path(tempfile.mkdtemp(prefix="tfkit-nb-"))  # everything this notebook writes
"""


def md(text: str) -> tuple[str, str]:
    """A markdown cell."""
    return ("markdown", dedent(text).strip("\n"))


def code(text: str) -> tuple[str, str]:
    """A code cell."""
    return ("code", dedent(text).strip("\n"))


# --------------------------------------------------------------------------------------
# 01 data pipelines
# --------------------------------------------------------------------------------------

NB01 = [
    md(
        """
        # Data pipelines with tfkit

        **Goal:** feed a Keras model from any source (arrays, pandas, CSV/Parquet files,
        Python generators, TFRecords, image folders, the embedded datasets) through one
        `tf.data` pipeline whose options come from a config section.

        tfkit's data block knows nothing of models: it turns a `data:` config into batched
        `train`/`val`/`test` datasets plus a `DataSpec`, the small contract that model
        builders read to size their inputs and outputs. Every dataset here is generated on
        the spot or bundled with scikit-learn: nothing is downloaded.
        """
    ),
    md("## Setup"),
    code(
        PREAMBLE
        + """
import numpy as np
import pandas as pd
import tensorflow as tf

import tfkit.data
from tfkit.config import DataConfig

print("TensorFlow", tf.__version__)
"""
    ),
    md(
        """
        ## The embedded datasets

        `tfkit.data.datasets` makes small, learnable datasets in NumPy: scikit-learn's
        bundled 8x8 `digits`, procedurally drawn `shapes`, and synthetic tabular, two-input,
        sequence and regression sets. A config names one with `source.kind`.
        """
    ),
    code(
        """
        from tfkit.data import datasets

        for name, arrays in [
            ("digits", datasets.digits()),
            ("shapes", datasets.shapes(count=300, resolution=16)),
            ("tabular_binary", datasets.tabular_binary(count=300)),
            ("two_input", datasets.two_input(count=300)),
            ("sequences", datasets.sequences(count=300)),
            ("regression", datasets.regression(count=300)),
        ]:
            x = arrays.x
            shapes = {k: v.shape for k, v in x.items()} if isinstance(x, dict) else x.shape
            print(f"{name:15s} x={shapes}  y={arrays.y.shape}  task={arrays.task}")
        """
    ),
    md(
        """
        ## From a config to datasets: `tfkit.data.build`

        A `DataConfig` (the `data:` section of an experiment YAML) says where examples come
        from and how the pipeline serves them. `build` returns `Splits(train, val, test,
        spec)`; the split is a seeded permutation, so it is the same on every run.
        """
    ),
    code(
        """
        cfg = DataConfig.model_validate(
            {
                "source": {"kind": "digits"},
                "split": {"train": 0.8, "val": 0.1, "test": 0.1, "seed": 0},
                "batch_size": 64,
            }
        )
        splits = tfkit.data.build(cfg, seed=0)
        print(splits.spec)
        print(splits.train.element_spec)
        """
    ),
    md(
        """
        ## In-memory sources: NumPy, `.npz` and pandas

        The Python API mirrors the config: `from_numpy`, `from_dataframe` and
        `from_generator` return *unbatched* datasets, and `tfkit.data.pipeline(ds, cfg)`
        applies the config's options to them (shown further down). A dict of arrays gives a
        multi-input dataset.
        """
    ),
    code(
        """
        rng = np.random.default_rng(0)
        x = rng.normal(size=(500, 6)).astype("float32")
        y = (x[:, 0] + x[:, 1] > 0).astype("int64")

        ds = tfkit.data.from_numpy(x, y)
        print("numpy  :", ds.element_spec)

        two = tfkit.data.from_numpy({"left": x[:, :4], "right": x[:, 4:]}, y)
        print("dict   :", two.element_spec)

        df = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)]).assign(label=y)
        ds = tfkit.data.from_dataframe(df, features=["f0", "f1", "f2"], label="label")
        print("pandas :", ds.element_spec)
        """
    ),
    md(
        """
        The same arrays saved to a `.npz` file are a config source (`kind: npz`); `x` and
        `y` name the arrays in the file.
        """
    ),
    code(
        """
        np.savez(WORK / "table.npz", features=x, labels=y)
        cfg = DataConfig.model_validate(
            {"source": {"kind": "npz", "path": str(WORK / "table.npz"), "x": "features", "y": "labels"}}
        )
        splits = tfkit.data.build(cfg)
        print(splits.spec.inputs, splits.spec.task, splits.spec.counts)
        """
    ),
    md(
        """
        ## Files: CSV and Parquet

        Tables are read with pyarrow. `features` is a list of columns (one input) or a map
        of input name to columns (several inputs); it defaults to every column but the label.
        """
    ),
    code(
        """
        df.to_csv(WORK / "table.csv", index=False)
        df.to_parquet(WORK / "table.parquet")

        for kind in ("csv", "parquet"):
            cfg = DataConfig.model_validate(
                {
                    "source": {
                        "kind": kind,
                        "path": str(WORK / f"table.{kind}"),
                        "features": {"a": ["f0", "f1", "f2"], "b": ["f3", "f4", "f5"]},
                        "label": "label",
                    },
                    "batch_size": 32,
                }
            )
            splits = tfkit.data.build(cfg)
            x_batch, y_batch = next(iter(splits.train))
            print(kind, {k: v.shape for k, v in x_batch.items()}, y_batch.shape, splits.spec.task)
        """
    ),
    md(
        """
        A typo in a column name is a one-line error that names the config key and lists
        the columns, not a stack trace from deep inside pandas:
        """
    ),
    code(
        """
        from tfkit.errors import UserError

        bad = DataConfig.model_validate(
            {"source": {"kind": "csv", "path": str(WORK / "table.csv"), "label": "lable"}}
        )
        try:
            tfkit.data.build(bad)
        except UserError as err:
            print("UserError:", err)
        """
    ),
    md(
        """
        ## Python generators

        When examples come from Python code (a simulator, a custom reader), wrap the
        generator function with its `output_signature`. Generators run in the Python
        interpreter, one example at a time, so they are the slowest source (see the
        benchmark below); cache or convert to TFRecords what you read more than once.
        """
    ),
    code(
        """
        def noisy_sines():
            rng = np.random.default_rng(1)
            for _ in range(256):
                freq = rng.integers(1, 4)
                t = np.linspace(0, 1, 32, dtype="float32")
                yield np.sin(2 * np.pi * freq * t)[:, None] + rng.normal(0, 0.1, (32, 1)).astype("float32"), freq - 1

        ds = tfkit.data.from_generator(
            noisy_sines,
            output_signature=(
                tf.TensorSpec((32, 1), tf.float32),
                tf.TensorSpec((), tf.int64),
            ),
        )
        print(ds.element_spec)
        print("first labels:", [int(label) for _, label in ds.take(8)])
        """
    ),
    md(
        """
        ## TFRecords: write sharded, read in parallel

        `write_tfrecords` writes named arrays as `tf.train.Example` shards plus a
        `schema.json` (features, dtypes, shapes, counts, label). Readers need nothing else:
        the shards are read in parallel, batched, then parsed a whole batch at a time with
        `tf.io.parse_example`, which is much faster than parsing record by record. Images
        stay `uint8` on disk (4x smaller than float32) and become floats in [0, 1] in the
        pipeline.
        """
    ),
    code(
        """
        from tfkit.data import datasets

        shapes = datasets.shapes(count=1000, resolution=16, seed=0)
        images_uint8 = (shapes.x * 255).round().astype("uint8")
        schema = tfkit.data.write_tfrecords(
            {"image": images_uint8, "label": shapes.y.astype("int64")},
            WORK / "shapes_tfr",
            num_shards=4,
            compression="GZIP",
            meta={"label": "label", "class_names": list(shapes.class_names)},
        )
        print(sorted(p.name for p in (WORK / "shapes_tfr").iterdir()))
        print({k: schema[k] for k in ("count", "compression", "features")})
        """
    ),
    code(
        """
        # Read back directly (batched and parsed) ...
        ds = tfkit.data.from_tfrecords(WORK / "shapes_tfr", batch_size=100)
        images, labels = next(iter(ds))
        print(images.dtype, images.shape, labels[:10].numpy())

        # ... or as a config source, which also splits, caches, shuffles and scales.
        cfg = DataConfig.model_validate(
            {"source": {"kind": "tfrecord", "path": str(WORK / "shapes_tfr")}, "batch_size": 100}
        )
        splits = tfkit.data.build(cfg)
        images, labels = next(iter(splits.train))
        print(images.dtype, images.shape, float(tf.reduce_max(images)), splits.spec.class_names)
        """
    ),
    md(
        """
        The round trip is exact: the reader interleaves the shards (so the order differs),
        but the 1,000 (image, label) pairs read back are exactly the pairs written.
        """
    ),
    code(
        """
        read_back = sorted(
            (image.tobytes(), int(label))
            for images, labels in tfkit.data.from_tfrecords(WORK / "shapes_tfr", batch_size=100)
            for image, label in zip(images.numpy(), labels.numpy(), strict=True)
        )
        written = sorted((image.tobytes(), int(label)) for image, label in zip(images_uint8, shapes.y, strict=True))
        print(len(read_back), "examples read; identical to those written:", read_back == written)
        """
    ),
    md(
        """
        ## Image folders

        One subfolder per class, any format Pillow reads. Here we draw a small folder on
        the fly from the `shapes` arrays; tfkit lists the files, checks that every image
        decodes (a corrupt file is named, or skipped with `ignore_errors: true`), and
        resizes to `image_size`.
        """
    ),
    code(
        """
        from PIL import Image

        folder = WORK / "image_folder"
        for i, (image, label) in enumerate(zip(images_uint8[:60], shapes.y[:60], strict=True)):
            class_dir = folder / shapes.class_names[label]
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).resize((24, 24)).save(class_dir / f"{i:03d}.png")

        ds = tfkit.data.from_image_folder(str(folder), image_size=(24, 24))
        print(ds.element_spec)

        cfg = DataConfig.model_validate(
            {"source": {"kind": "images", "path": str(folder), "image_size": [24, 24]}, "batch_size": 16}
        )
        splits = tfkit.data.build(cfg)
        print(splits.spec.class_names, splits.spec.counts)
        """
    ),
    code(
        """
        # A broken file is reported by name before any training starts.
        (folder / "circle" / "broken.png").write_bytes(b"not a png")
        try:
            tfkit.data.build(cfg)
        except UserError as err:
            print("UserError:", err)
        (folder / "circle" / "broken.png").unlink()
        """
    ),
    md("## TensorFlow Datasets"),
    code(
        """
        import importlib.util

        if importlib.util.find_spec("tensorflow_datasets") is None:
            print("tensorflow-datasets is not installed: skipping the tfds source.")
        else:
            print("tensorflow-datasets is installed; see the note below.")
        """
    ),
    md(
        """
        With `tensorflow-datasets` installed, a `tfds` source reads a dataset already
        prepared in `data_dir` and never downloads unless `download: true`:
        `source: {kind: tfds, name: mnist, data_dir: /data/tfds, split: train}`. To use it
        offline, run `tfds.builder("mnist", data_dir=...).download_and_prepare()` once on a
        machine with network access and copy `data_dir` across.
        """
    ),
    md(
        """
        ## Pipeline options

        The order inside tfkit is: select the split -> (shard) -> decode -> cache -> shuffle
        -> batch -> parse -> uint8 to float -> augment -> normalize -> one-hot -> repeat ->
        prefetch. Each step is one config key. `tfkit.data.pipeline` applies them to any
        unbatched dataset from the `from_*` functions.
        """
    ),
    code(
        """
        cfg = DataConfig.model_validate(
            {
                "batch_size": 32,
                "shuffle_buffer": 1000,  # 0 disables shuffling (always off for val/test)
                "seed": 7,  # shuffling and augmentation seed: same order every run
                "cache": "memory",  # or "none", or a file prefix for datasets larger than RAM
                "normalize": "standardize",  # statistics from one pass over the data
                "augment": {"flip": "horizontal", "rotation": 0.05},  # train split only
                "one_hot": True,  # labels for categorical_crossentropy
                "drop_remainder": True,  # equal batches, e.g. for TPUs or GAN training
                "prefetch": True,  # overlap input with training
            }
        )
        ds = tfkit.data.from_numpy(images_uint8, shapes.y)
        train = tfkit.data.pipeline(ds, cfg, training=True, num_classes=3)
        images, labels = next(iter(train))
        print(images.shape, labels.shape)
        print(f"mean {float(tf.reduce_mean(images)):+.3f}  std {float(tf.math.reduce_std(images)):.3f}")
        print(labels[:3].numpy())
        """
    ),
    code(
        """
        # A seeded pipeline gives the same batches twice: rerunning an experiment reproduces it.
        def first_labels(seed):
            c = cfg.model_copy(update={"seed": seed, "one_hot": False, "augment": cfg.augment.model_copy(update={"flip": "none", "rotation": 0.0})})
            batch = next(iter(tfkit.data.pipeline(ds, c, training=True)))
            return batch[1][:12].numpy()

        print(first_labels(7))
        print(first_labels(7))
        print(first_labels(8), "(another seed)")
        """
    ),
    md(
        """
        ### Splits for distributed training

        Under a `tf.distribute` strategy, `build(cfg, input_context=...)` batches at the
        per-replica batch size (`batch_size` is the global batch) and gives each input
        pipeline its own shard. A batch size that does not divide by the replicas is an
        error that says so.
        """
    ),
    code(
        """
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=2)
        cfg = DataConfig.model_validate({"source": {"kind": "digits"}, "batch_size": 64})
        per_replica = tfkit.data.build(cfg, input_context=ctx)
        print("per-replica batch:", next(iter(per_replica.train))[0].shape[0])

        try:
            tfkit.data.build(cfg.model_copy(update={"batch_size": 63}), input_context=ctx)
        except UserError as err:
            print("UserError:", err)
        """
    ),
    md(
        """
        ## The data benchmark in miniature

        `benchmarks/bench_data.py` times the TFRecord pipeline against the same arrays read
        from memory and against the textbook reader (`parse_single_example` per record). A
        smaller version: 8,000 uint8 images of 32x32x3, batch 256, two timed epochs after a
        warm-up epoch. Numbers are examples per second on this machine; what matters is the
        ratio.
        """
    ),
    code(
        """
        import time

        COUNT, BATCH = 8000, 256
        rng = np.random.default_rng(0)
        bench_x = rng.integers(0, 256, size=(COUNT, 32, 32, 3), dtype=np.uint8)
        bench_y = rng.integers(0, 10, size=COUNT).astype("int64")
        tfkit.data.write_tfrecords(
            {"image": bench_x, "label": bench_y}, WORK / "bench_tfr", num_shards=8, meta={"label": "label"}
        )


        def rate(ds, epochs=2):
            for _ in ds:  # warm-up epoch: fills caches, traces functions
                pass
            start = time.perf_counter()
            for _ in range(epochs):
                for _ in ds:
                    pass
            return COUNT * epochs / (time.perf_counter() - start)


        def to_float(images, labels):
            return tf.cast(images, tf.float32) / 255.0, labels


        # (a) tfkit: cached serialized records, batch-wise parsing.
        cfg = DataConfig.model_validate(
            {
                "source": {"kind": "tfrecord", "path": str(WORK / "bench_tfr")},
                "split": {"train": 1.0, "val": 0.0, "test": 0.0},
                "batch_size": BATCH,
            }
        )
        tfkit_ds = tfkit.data.build(cfg).train

        # (b) the same arrays from memory.
        memory_ds = (
            tf.data.Dataset.from_tensor_slices((bench_x, bench_y))
            .shuffle(10_000, seed=0).batch(BATCH).map(to_float).prefetch(tf.data.AUTOTUNE)
        )

        # (c) the textbook reader: one parse_single_example per record. The image is stored
        # as raw bytes (see schema.json), so the reader decodes and reshapes it itself.
        features = {
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        }
        """
    ),
    code(
        """
        def parse_one(record):
            parsed = tf.io.parse_single_example(record, features)
            image = tf.reshape(tf.io.decode_raw(parsed["image"], tf.uint8), (32, 32, 3))
            return tf.cast(image, tf.float32) / 255.0, parsed["label"]


        files = sorted(str(p) for p in (WORK / "bench_tfr").glob("*.tfrecord"))
        textbook_ds = tf.data.TFRecordDataset(files).map(parse_one).shuffle(10_000, seed=0).batch(BATCH)

        # The three pipelines deliver the same kind of batch.
        for ds in (tfkit_ds, memory_ds, textbook_ds):
            images, labels = next(iter(ds))
            assert images.dtype == tf.float32 and images.shape == (BATCH, 32, 32, 3)

        results = {name: rate(ds) for name, ds in [("tfkit TFRecord", tfkit_ds), ("memory", memory_ds), ("textbook", textbook_ds)]}
        for name, value in results.items():
            print(f"{name:15s} {value:10,.0f} examples/s")
        print(f"tfkit / memory   = {results['tfkit TFRecord'] / results['memory']:.2f}")
        print(f"tfkit / textbook = {results['tfkit TFRecord'] / results['textbook']:.2f}")
        """
    ),
    md(
        """
        ## Takeaways

        - Every source ends as the same batched `(x, y)` dataset plus a `DataSpec`.
        - TFRecords written by tfkit carry their schema; reading parses whole batches.
        - Pipeline options are config keys, seeded and reproducible; mistakes are one-line
          errors that name the key.
        - Next: `02_models.ipynb` builds models from a `DataSpec`.
        """
    ),
]


# --------------------------------------------------------------------------------------
# 02 models
# --------------------------------------------------------------------------------------

NB02 = [
    md(
        """
        # Models: Sequential, functional, subclassed

        **Goal:** build Keras 3 models the three ways Keras offers, tour the layer families
        tfkit's builders use, write a custom layer, and save and load models safely.

        tfkit builds a model from two things: its `model:` config section and the data's
        `DataSpec` (input names and shapes, task, number of classes). The builder checks
        that the two fit before it makes a single layer, so a mismatch is a one-line error
        rather than a shape error in the middle of `fit`.
        """
    ),
    md("## Setup"),
    code(
        PREAMBLE
        + """
import keras
import numpy as np

import tfkit.data
import tfkit.models
from tfkit.config import DataConfig, ExperimentConfig
from tfkit.data import DataSpec, InputSpec
from tfkit.errors import UserError

keras.utils.set_random_seed(0)  # the same initial weights on every run
print("Keras", keras.__version__, "| builders:", ", ".join(tfkit.models.BUILDERS))
"""
    ),
    md(
        """
        ## The data contract: `DataSpec`

        `tfkit.data.build` returns a `DataSpec` with the datasets; a spec can also be
        written by hand, which is all a builder needs.
        """
    ),
    code(
        """
        tabular = DataSpec(inputs=(InputSpec("x", (50,)),), task="binary")
        digits = tfkit.data.build(DataConfig.model_validate({"source": {"kind": "digits"}, "batch_size": 64}))
        print(tabular.output_units, tabular.output_activation)
        print(digits.spec.inputs, digits.spec.output_units, digits.spec.output_activation)
        """
    ),
    md(
        """
        A config is validated by pydantic with unknown keys refused; model sections are
        chosen by `name`. `model_for` below turns a small dict into that config section.
        """
    ),
    code(
        """
        def model_for(section: dict):
            return ExperimentConfig.model_validate({"model": section}).model
        """
    ),
    md(
        """
        ## Sequential: the seed's binary MLP

        `mlp` is a `keras.Sequential` stack. With the defaults and 50 features it is the
        seed's classifier: 128 -> 64 -> 1 sigmoid. `outputs: auto` and
        `output_activation: auto` come from the spec.
        """
    ),
    code(
        """
        mlp = tfkit.models.build(model_for({"name": "mlp", "dropout": 0.2, "batch_norm": True}), tabular)
        mlp.summary()
        """
    ),
    code(
        """
        # The same model written directly in Keras, for comparison: tfkit adds the checks and
        # the float32 output layer (stable losses under mixed precision), nothing hidden.
        plain = keras.Sequential(
            [
                keras.Input(shape=(50,)),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        print("parameters:", plain.count_params(), "vs tfkit default mlp:",
              tfkit.models.build(model_for({"name": "mlp"}), tabular).count_params())
        """
    ),
    md(
        """
        ## Functional: two inputs, and convolutional networks

        The functional API wires layers as a graph, which allows several inputs and outputs.
        `two_input` runs a dense branch per input, concatenates, then a softmax head.
        """
    ),
    code(
        """
        two_spec = DataSpec(
            inputs=(InputSpec("a", (50,)), InputSpec("b", (10,))), task="multiclass", num_classes=5
        )
        two = tfkit.models.build(model_for({"name": "two_input", "branch_units": [32, 16]}), two_spec)
        print([t.shape for t in two.inputs], "->", two.output.shape)
        out = two.predict({"a": np.zeros((4, 50)), "b": np.zeros((4, 10))}, verbose=0)
        print("rows sum to 1 (softmax):", np.allclose(out.sum(axis=1), 1.0))
        """
    ),
    md(
        """
        ### The layer families

        `cnn` composes the convolutional families: convolution (1-D, 2-D or 3-D), batch
        normalization, activation, pooling (max or average), spatial dropout and dropout
        per block, then flatten or global pooling into a dense head.
        """
    ),
    code(
        """
        cnn_cfg = model_for(
            {
                "name": "cnn",
                "filters": [16, 32],
                "kernel_size": 3,
                "batch_norm": True,
                "pool": "max",
                "spatial_dropout": 0.1,
                "dropout": 0.1,
                "dense_units": [64],
            }
        )
        cnn = tfkit.models.build(cnn_cfg, digits.spec)
        cnn.summary(line_length=90)
        """
    ),
    md(
        """
        Batch normalization and dropout behave differently in training and inference: the
        `training` argument switches them. Dropout zeroes a fraction of the activations and
        scales the rest up; batch norm normalizes with the batch's statistics in training
        and with its moving averages in inference.
        """
    ),
    code(
        """
        x = np.ones((2, 8), "float32")
        dropout = keras.layers.Dropout(0.5, seed=0)
        print("dropout, training :", np.asarray(dropout(x, training=True))[0])
        print("dropout, inference:", np.asarray(dropout(x, training=False))[0])

        batch = np.random.default_rng(0).normal(5.0, 3.0, size=(256, 4)).astype("float32")
        bn = keras.layers.BatchNormalization()
        train_out = np.asarray(bn(batch, training=True))
        infer_out = np.asarray(bn(batch, training=False))  # moving stats barely moved yet
        print(f"batch norm, training : mean {train_out.mean():+.3f} std {train_out.std():.3f}")
        print(f"batch norm, inference: mean {infer_out.mean():+.3f} std {infer_out.std():.3f}")
        """
    ),
    md(
        """
        The pooling and convolution shapes, one family at a time (channels last, so every
        layer runs on CPU and GPU alike):
        """
    ),
    code(
        """
        layers = {
            "Conv1D(8, 3)": (keras.layers.Conv1D(8, 3), (2, 20, 4)),
            "Conv2D(8, 3, same)": (keras.layers.Conv2D(8, 3, padding="same"), (2, 16, 16, 3)),
            "Conv3D(8, 3)": (keras.layers.Conv3D(8, 3), (2, 8, 8, 8, 1)),
            "Conv2DTranspose(8, 3, strides=2, same)": (
                keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same"), (2, 8, 8, 3)),
            "MaxPooling2D(2)": (keras.layers.MaxPooling2D(2), (2, 16, 16, 3)),
            "AveragePooling1D(4)": (keras.layers.AveragePooling1D(4), (2, 20, 4)),
            "GlobalAveragePooling2D": (keras.layers.GlobalAveragePooling2D(), (2, 16, 16, 3)),
        }
        for name, (layer, shape) in layers.items():
            print(f"{name:40s} {str(shape):18s} -> {tuple(layer(np.zeros(shape, 'float32')).shape)}")
        """
    ),
    md(
        """
        ### Recurrent and bidirectional layers

        `rnn` stacks SimpleRNN, LSTM, GRU (or ConvLSTM2D) layers; `bidirectional` reads each
        sequence both ways and merges the two (`concat` doubles the width). With
        `return_sequences` the head predicts at every step through `TimeDistributed`.
        """
    ),
    code(
        """
        seq_spec = DataSpec(inputs=(InputSpec("x", (20, 4)),), task="multiclass", num_classes=3)
        for section in [
            {"name": "rnn", "cell": "simple_rnn", "units": [16]},
            {"name": "rnn", "cell": "gru", "units": [16, 16]},
            {"name": "rnn", "cell": "lstm", "units": [16], "bidirectional": True},
            {"name": "rnn", "cell": "lstm", "units": [16], "bidirectional": True, "merge_mode": "sum"},
        ]:
            model = tfkit.models.build(model_for(section), seq_spec)
            recurrent = model.layers[-2]
            print(f"{recurrent.name:18s} output {recurrent.output.shape}  params {model.count_params():6d}")
        """
    ),
    code(
        """
        # Per-step labels (one class per time step) need return_sequences.
        per_step = DataSpec(
            inputs=(InputSpec("x", (20, 4)),), task="multiclass", num_classes=3, label_shape=(20,)
        )
        tagger = tfkit.models.build(
            model_for({"name": "rnn", "cell": "lstm", "units": [16], "bidirectional": True,
                       "return_sequences": True}),
            per_step,
        )
        print("tagger output:", tagger.output.shape)
        try:  # without return_sequences the model cannot produce per-step predictions
            tfkit.models.build(model_for({"name": "rnn", "units": [16]}), per_step)
        except UserError as err:
            print("UserError:", err)
        """
    ),
    md(
        """
        ## Subclassed: `SimpleANN`

        A `keras.Model` subclass defines its layers in `__init__` and the computation in
        `call`, which allows any Python control flow. Its graph exists only inside `call`,
        so `summary()` cannot show output shapes; `build_graph` wraps the same layers in a
        functional model whose summary can.
        """
    ),
    code(
        """
        ann = tfkit.models.build(model_for({"name": "simple_ann", "units": [32, 16], "dropout": 0.1}), digits.spec)
        print(type(ann).__name__, "with", ann.outputs, "outputs")
        ann.build_graph(digits.spec.inputs[0].shape).summary(line_length=80)
        """
    ),
    md(
        """
        ## A custom layer

        `tfkit.models.Dense` is a fully connected layer written from scratch the Keras way:
        weights created in `build` with `add_weight`, the maths in `call`, every constructor
        argument in `get_config` (so it saves and loads), and registered as `tfkit>Dense`.
        With the same weights it computes exactly what `keras.layers.Dense` computes.
        """
    ),
    code(
        """
        ours = tfkit.models.Dense(6, activation="tanh")
        theirs = keras.layers.Dense(6, activation="tanh")
        x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
        ours.build(x.shape)
        theirs.build(x.shape)
        theirs.set_weights(ours.get_weights())
        print("weights:", [w.path for w in ours.weights])
        print("max |difference|:", float(np.max(np.abs(np.asarray(ours(x)) - np.asarray(theirs(x))))))
        print("config:", ours.get_config())
        """
    ),
    md(
        """
        Every builder takes `dense_impl: custom` to use it. A short fit on digits shows the
        custom layer learns like the Keras one:
        """
    ),
    code(
        """
        custom_cfg = model_for({"name": "mlp", "units": [64], "dense_impl": "custom"})
        custom_mlp = tfkit.models.build(custom_cfg, digits.spec)
        print([type(layer).__name__ for layer in custom_mlp.layers])
        custom_mlp.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        # shuffle=False: the tfkit pipeline already shuffles the train split (seeded).
        history = custom_mlp.fit(digits.train, validation_data=digits.val, epochs=8, shuffle=False, verbose=0)
        print(f"val accuracy after 8 epochs: {history.history['val_accuracy'][-1]:.3f}")
        """
    ),
    md(
        """
        ## Save and load: the `.keras` round trip

        A `.keras` file holds the architecture (as config, not pickled code), the weights
        and the optimizer state. tfkit loads with Keras safe mode on: registered classes
        such as `tfkit>Dense` and `SimpleANN` load, arbitrary code does not run.
        """
    ),
    code(
        """
        path = WORK / "custom_mlp.keras"
        custom_mlp.save(path)
        restored = keras.saving.load_model(path, safe_mode=True)

        images = next(iter(digits.test))[0]
        before = custom_mlp.predict(images, verbose=0)
        after = restored.predict(images, verbose=0)
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KiB, identical predictions:", np.array_equal(before, after))
        print("restored layer types:", [type(layer).__name__ for layer in restored.layers])
        print("optimizer state restored:", int(restored.optimizer.iterations), "steps")
        """
    ),
    code(
        """
        # The subclassed model round-trips too, thanks to get_config/from_config.
        ann.save(WORK / "simple_ann.keras")
        ann_back = keras.saving.load_model(WORK / "simple_ann.keras")
        print(type(ann_back).__name__, "identical predictions:", np.allclose(ann(images), ann_back(images)))
        """
    ),
    md(
        """
        ## When config and data disagree

        Builders check the fit before building. Each message names the model field and the
        data it disagrees with:
        """
    ),
    code(
        """
        for section, spec in [
            ({"name": "cnn", "dims": 1}, digits.spec),
            ({"name": "mlp", "outputs": 3}, digits.spec),
            ({"name": "mlp", "input_shape": [32]}, tabular),
            ({"name": "two_input"}, tabular),
        ]:
            try:
                tfkit.models.build(model_for(section), spec)
            except UserError as err:
                print("-", err)
        """
    ),
    md(
        """
        ## Takeaways

        - One `model:` section plus a `DataSpec` gives a built, uncompiled `keras.Model`.
        - Sequential for stacks, functional for graphs (several inputs), subclassing for
          free-form `call` logic; all three save to `.keras` and load in safe mode.
        - Custom layers: weights in `build`, maths in `call`, arguments in `get_config`.
        - Next: `03_training.ipynb` compiles and trains them.
        """
    ),
]


# --------------------------------------------------------------------------------------
# 03 training
# --------------------------------------------------------------------------------------

NB03 = [
    md(
        """
        # Training: compile/fit, custom losses, callbacks, the GradientTape loop, distribution

        **Goal:** train tfkit models the two ways tfkit offers (Keras `fit`, and a custom
        `GradientTape` loop), with the seed's losses and optimizers, a custom Huber loss,
        built-in and custom callbacks, `MirroredStrategy` over two devices, and TensorBoard
        logs.

        The model knows nothing of the loop and the loop takes any model and any dataset:
        the same digits classifier is trained every way below.
        """
    ),
    md(
        """
        ## Setup: two logical CPU devices

        `MirroredStrategy` needs several devices. On a CPU-only machine we split the CPU
        into two *logical* devices; this must happen before TensorFlow initialises its
        devices, so it is the very first thing the notebook does (tfkit's
        `runtime.logical_cpus: 2` does the same from a config).
        """
    ),
    code(
        PREAMBLE
        + """
import tensorflow as tf

from tfkit import distribute

distribute.split_cpu(2)  # before any TensorFlow op runs
tf.get_logger().setLevel("ERROR")  # tf.distribute logs every all-reduce at INFO level
print(tf.config.list_logical_devices("CPU"))
"""
    ),
    code(
        """
        import json
        import warnings

        import keras
        import numpy as np

        import tfkit.data
        import tfkit.models
        import tfkit.training
        from tfkit.config import DataConfig, ExperimentConfig, TrainConfig

        keras.utils.set_random_seed(0)
        # Keras warns that it cannot shuffle a tf.data dataset; tfkit's pipeline already shuffles it.
        warnings.filterwarnings("ignore", message="`shuffle=True` was passed")

        digits = tfkit.data.build(
            DataConfig.model_validate({"source": {"kind": "digits", "layout": "flat"}, "batch_size": 64})
        )
        spec = digits.spec
        print(spec.inputs, spec.task, spec.num_classes, spec.counts)


        def new_model(**section):
            \"\"\"A fresh digits MLP: the model builder is separate from any training code.\"\"\"
            cfg = ExperimentConfig.model_validate({"model": {"name": "mlp", "units": [64], **section}})
            return tfkit.models.build(cfg.model, spec)
        """
    ),
    md(
        """
        ## compile / fit with tfkit's losses and optimizers

        `compile_model(model, train_cfg, spec)` builds the loss, optimizer and metrics named
        in the `train:` section. Names are checked (an unknown one lists the valid ones) and
        so is the fit between loss and output head. Four optimizers, three epochs each:
        """
    ),
    code(
        """
        results = {}
        for optimizer in [
            {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
            {"name": "adam", "learning_rate": 3e-3},
            {"name": "adamw", "learning_rate": 3e-3, "weight_decay": 1e-4},
            {"name": "rmsprop", "learning_rate": 1e-3},
        ]:
            keras.utils.set_random_seed(0)  # same initial weights for every optimizer
            train_cfg = TrainConfig.model_validate(
                {"loss": "sparse_categorical_crossentropy", "optimizer": optimizer, "metrics": ["accuracy"]}
            )
            model = tfkit.training.compile_model(new_model(), train_cfg, spec)
            # shuffle=False: the tfkit pipeline already shuffles the train split (seeded).
            history = model.fit(digits.train, validation_data=digits.val, epochs=3, shuffle=False, verbose=0)
            results[optimizer["name"]] = history.history

        print(f"{'optimizer':10s} {'loss epoch 1':>12s} {'loss epoch 3':>12s} {'val acc':>8s}")
        for name, h in results.items():
            print(f"{name:10s} {h['loss'][0]:12.3f} {h['loss'][-1]:12.3f} {h['val_accuracy'][-1]:8.3f}")
        """
    ),
    md(
        """
        Losses by name: `auto` picks the loss from the task (binary, multiclass, regression);
        `categorical_crossentropy` needs one-hot labels (`data.one_hot: true`) and takes
        `label_smoothing`; `binary_focal_crossentropy` takes `gamma` and `alpha`. A loss
        that does not fit the data is refused before training:
        """
    ),
    code(
        """
        from tfkit.errors import UserError

        print(type(tfkit.training.build_loss("auto", spec)).__name__)
        from tfkit.config import LossConfig

        smooth = LossConfig(name="categorical_crossentropy", label_smoothing=0.1)
        print(type(tfkit.training.build_loss(smooth)).__name__, "label_smoothing =", tfkit.training.build_loss(smooth).get_config()["label_smoothing"])
        for bad in ["categorical_crossentropy", "hinge"]:
            try:
                tfkit.training.compile_model(new_model(), TrainConfig.model_validate({"loss": bad}), spec)
            except UserError as err:
                print("UserError:", err)
        """
    ),
    md(
        """
        Learning-rate schedules come from `train.optimizer.schedule`, with an optional
        linear warm-up in front of any of them:
        """
    ),
    code(
        """
        from tfkit.config import OptimizerConfig

        opt = tfkit.training.build_optimizer(
            OptimizerConfig.model_validate(
                {"name": "adam", "learning_rate": 1e-3,
                 "schedule": {"name": "cosine", "decay_steps": 1000, "warmup_steps": 100}}
            )
        )
        schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
        for step in [0, 50, 100, 500, 1100]:
            print(f"step {step:5d}: lr {float(schedule(step)):.2e}")
        """
    ),
    md(
        """
        ## A custom loss, both ways: Huber

        The Huber loss is quadratic for small errors and linear for large ones, so a few
        wild targets pull the fit far less than with a squared error. tfkit writes it both
        ways the seed did: a function factory `huber(threshold)` and a
        `keras.losses.Loss` subclass `HuberLoss(threshold)`. Both match Keras' own Huber
        and both survive a `.keras` save (the threshold is in their config).
        """
    ),
    code(
        """
        y_true = np.array([[0.0], [1.0], [2.0], [10.0]], "float32")
        y_pred = np.array([[0.1], [0.5], [4.0], [0.0]], "float32")
        print("huber(2.0)       :", np.asarray(tfkit.training.huber(2.0)(y_true, y_pred)))
        print("HuberLoss(2.0)   :", float(tfkit.training.HuberLoss(threshold=2.0)(y_true, y_pred)))
        print("keras Huber(2.0) :", float(keras.losses.Huber(delta=2.0)(y_true, y_pred)))
        """
    ),
    md(
        """
        On regression data with 5% heavy outliers in the targets, train the same model with
        MSE and with each Huber form, and measure the error on the *clean* test targets
        (outliers removed): the Huber fits stay on the true line.
        """
    ),
    code(
        """
        from tfkit.data import datasets

        reg = datasets.regression(count=3000, features=8, outlier_fraction=0.05, seed=0)
        x_train, y_train, x_test, y_test = reg.x[:2500], reg.y[:2500], reg.x[2500:], reg.y[2500:]
        clean = np.abs(y_test[:, 0] - np.median(y_test)) < 8  # drop the outliers from the test set
        reg_spec = tfkit.data.DataSpec(inputs=(tfkit.data.InputSpec("x", (8,)),), task="regression")

        errors = {}
        for name, loss in [
            ("mse", "mse"),
            ("huber(1.0) function", tfkit.training.huber(1.0)),
            ("HuberLoss(1.0) class", tfkit.training.HuberLoss(threshold=1.0)),
        ]:
            keras.utils.set_random_seed(0)
            model = tfkit.models.build(
                ExperimentConfig.model_validate({"model": {"name": "mlp", "units": [32]}}).model, reg_spec
            )
            model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
            model.fit(x_train, y_train, batch_size=64, epochs=15, verbose=0)
            pred = model.predict(x_test, verbose=0)
            errors[name] = float(np.mean(np.abs(pred[clean] - y_test[clean])))
            print(f"{name:22s} MAE on clean test targets: {errors[name]:.3f}")
        """
    ),
    code(
        """
        # The compiled loss round-trips through a .keras file in safe mode.
        model.save(WORK / "huber.keras")
        back = keras.saving.load_model(WORK / "huber.keras")
        print(type(back.loss).__name__, back.loss.threshold)
        """
    ),
    md(
        """
        ## Callbacks

        `build_callbacks(train_cfg, run_dir)` gives a run its standard callbacks (metrics
        log, best and last checkpoints, TensorBoard, throughput, backup for `--resume`) plus
        any listed under `train.callbacks`, whose arguments are checked against the
        callback's signature.

        A custom callback is a `keras.callbacks.Callback` subclass using the `on_*` hooks.
        This one stops training once validation accuracy reaches a target, and records
        when:
        """
    ),
    code(
        """
        class StopAtAccuracy(keras.callbacks.Callback):
            \"\"\"Stop training when `val_accuracy` reaches `target`.\"\"\"

            def __init__(self, target: float):
                super().__init__()
                self.target = target
                self.stopped_at = None

            def on_epoch_end(self, epoch, logs=None):
                if (logs or {}).get("val_accuracy", 0.0) >= self.target:
                    self.stopped_at = epoch + 1
                    self.model.stop_training = True


        run_dir = WORK / "runs" / "callbacks"
        run_dir.mkdir(parents=True)  # `tfkit train` creates it; csv_logger expects it to exist
        train_cfg = TrainConfig.model_validate(
            {
                "optimizer": {"name": "adam", "learning_rate": 3e-3},
                "callbacks": [
                    {"name": "reduce_lr_on_plateau", "args": {"monitor": "val_loss", "factor": 0.5, "patience": 1}},
                    {"name": "early_stopping", "args": {"monitor": "val_loss", "patience": 3}},
                    {"name": "csv_logger"},
                ],
            }
        )
        callbacks = tfkit.training.build_callbacks(train_cfg, run_dir, batch_size=64)
        stop = StopAtAccuracy(0.95)
        keras.utils.set_random_seed(0)
        model = tfkit.training.compile_model(new_model(), train_cfg, spec)
        history = model.fit(digits.train, validation_data=digits.val, epochs=30, callbacks=[*callbacks, stop], verbose=2)
        print("callbacks:", [type(c).__name__ for c in callbacks])
        print("stopped after epoch", stop.stopped_at, "with val_accuracy", round(history.history["val_accuracy"][-1], 3))
        """
    ),
    code(
        """
        # What the callbacks wrote into the run directory.
        for path in sorted(run_dir.rglob("*")):
            if path.is_file():
                print(f"{str(path.relative_to(run_dir)):55s} {path.stat().st_size:>8d} bytes")
        print(json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1]))
        """
    ),
    md(
        """
        A wrong callback argument is caught when the callbacks are built, not an epoch later:
        """
    ),
    code(
        """
        try:
            tfkit.training.build_callbacks(
                TrainConfig.model_validate({"callbacks": [{"name": "early_stopping", "args": {"patients": 3}}]}),
                WORK / "runs" / "bad",
            )
        except UserError as err:
            print("UserError:", err)
        """
    ),
    md(
        """
        ## The GradientTape loop

        `fit` hides the training step. Written out, one step is: forward pass under a
        `GradientTape`, per-example losses averaged over the *global* batch, gradients,
        optimizer update. Here it is by hand, in a `tf.function` for speed:
        """
    ),
    code(
        """
        keras.utils.set_random_seed(0)
        model = new_model()
        optimizer = keras.optimizers.Adam(3e-3)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")  # per example


        @tf.function
        def train_step(x, y):
            with tf.GradientTape() as tape:
                per_example = loss_fn(y, model(x, training=True))
                # Average over the global batch, not the per-replica one: under a strategy the
                # replicas' gradients are summed, so this gives the gradient of the true mean.
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=64)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss


        for epoch in range(3):
            losses = [float(train_step(x, y)) for x, y in digits.train]
            print(f"epoch {epoch + 1}: mean loss {np.mean(losses):.3f}")
        """
    ),
    md(
        """
        Between the two sits `train_on_batch`: one optimizer step of a *compiled* model on
        one batch, with its compiled loss, metrics and optimizer, for loops you drive
        yourself (alternating two models, a curriculum). A tfkit-built, tfkit-compiled model
        steps like any Keras model; each call resets the metrics, so its logs are that
        batch's own:
        """
    ),
    code(
        """
        keras.utils.set_random_seed(0)
        model = tfkit.training.compile_model(new_model(), train_cfg, spec)
        for epoch in range(3):
            losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for x, y in digits.train]
            val = model.evaluate(digits.val, verbose=0, return_dict=True)
            print(f"epoch {epoch + 1}: mean batch loss {np.mean(losses):.3f}, val_accuracy {val['accuracy']:.3f}")
        """
    ),
    md(
        """
        `tfkit.training.loop.Loop` is that step made complete: it runs under any strategy
        (`strategy.run` per replica), several steps per `tf.function` call, metrics,
        validation, Keras callbacks, checkpoints of model, optimizer, step and RNG state
        (exact resume), NaN detection and TensorBoard summaries. Datasets are passed as
        functions of an `InputContext`, so each replica's pipeline reads its own shard at
        the per-replica batch size.
        """
    ),
    code(
        """
        from tfkit.training.loop import Loop

        data_cfg = DataConfig.model_validate({"source": {"kind": "digits", "layout": "flat"}, "batch_size": 64})


        def train_fn(ctx):
            return tfkit.data.build(data_cfg, input_context=ctx).train


        def val_fn(ctx):
            return tfkit.data.build(data_cfg, input_context=ctx).val


        keras.utils.set_random_seed(0)
        model = new_model()
        loop = Loop(
            model=model,
            loss=keras.losses.SparseCategoricalCrossentropy(),
            optimizer=keras.optimizers.Adam(3e-3),
            train_data=train_fn,
            val_data=val_fn,
            global_batch_size=64,
            steps_per_epoch=23,  # 1438 training digits / 64
            epochs=5,
            metrics=["accuracy"],
            steps_per_loop=23,  # one tf.function call per epoch: less Python overhead
            checkpoint_dir=WORK / "runs" / "loop" / "checkpoints",
            verbose=2,
        )
        history = loop.run()
        print({k: [round(v, 3) for v in values] for k, values in history.items() if k in ("loss", "val_accuracy")})
        """
    ),
    md(
        """
        ## MirroredStrategy on two devices

        `MirroredStrategy` keeps a copy of the model on each device, splits every global
        batch between them and sums the gradients with an all-reduce, so the update equals
        one step on the whole batch. Build the model *inside* `strategy.scope()` so its
        variables are mirrored. `fit` distributes the dataset itself:
        """
    ),
    code(
        """
        from tfkit.config import RuntimeConfig

        strategy = distribute.strategy(RuntimeConfig(strategy="mirrored"))
        print(type(strategy).__name__, "replicas:", strategy.num_replicas_in_sync)

        keras.utils.set_random_seed(0)
        train_cfg = TrainConfig.model_validate({"optimizer": {"name": "adam", "learning_rate": 3e-3}})
        with strategy.scope():
            mirrored_model = tfkit.training.compile_model(new_model(), train_cfg, spec)
        print("variable type:", type(mirrored_model.weights[0].value).__name__)
        history = mirrored_model.fit(digits.train, validation_data=digits.val, epochs=3, verbose=2)
        """
    ),
    md(
        """
        The custom loop under the same strategy: each replica gets a pipeline of 32-example
        batches (global batch 64 / 2 replicas), and the loss scaling by the global batch
        keeps the result equal to the single-device loop.
        """
    ),
    code(
        """
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = new_model()
            optimizer = keras.optimizers.Adam(3e-3)
        print("per-replica batch:", next(iter(train_fn(tf.distribute.InputContext(2, 0, 2))))[0].shape[0])
        mirrored_loop = Loop(
            model=model,
            loss=keras.losses.SparseCategoricalCrossentropy(),
            optimizer=optimizer,
            strategy=strategy,
            train_data=train_fn,
            val_data=val_fn,
            global_batch_size=64,
            steps_per_epoch=23,
            epochs=3,
            metrics=["accuracy"],
            verbose=2,
        )
        history = mirrored_loop.run()
        """
    ),
    md(
        """
        ## TensorBoard

        Runs log to `tb/` inside the run directory: the Keras `TensorBoard` callback writes
        the epoch metrics, tfkit's `Throughput` callback adds examples/s and step time, and
        the custom loop writes the same scalars. The one-call path
        `fit(config, run_dir)` (what `tfkit train config.yaml` runs) writes a whole run directory:
        """
    ),
    code(
        """
        from tfkit.runs import create_run_dir
        from tfkit.training.session import fit

        config = ExperimentConfig.model_validate(
            {
                "name": "digits_mlp",
                "data": {"source": {"kind": "digits", "layout": "flat"}, "batch_size": 64},
                "model": {"name": "mlp", "units": [64]},
                "train": {"epochs": 3, "optimizer": {"name": "adam", "learning_rate": 3e-3}, "verbose": 2},
            }
        )
        run_dir = create_run_dir(config, root=WORK / "runs")
        result = fit(config, run_dir)
        """
    ),
    code(
        """
        for path in sorted((run_dir / "tb").rglob("*")):
            if path.is_file():
                print(path.relative_to(run_dir))

        # Read the scalars back, as TensorBoard does.
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        for sub in ("train", "validation"):
            events = EventAccumulator(str(run_dir / "tb" / sub)).Reload()
            tags = events.Tags()["tensors"] + events.Tags()["scalars"]
            print(sub, sorted(tags))
        print("examples/s logged:", result.get("examples_per_sec"))
        """
    ),
    md(
        """
        To browse them: `tensorboard --logdir runs/` (or `make tensorboard`), then open
        http://localhost:6006.

        ## Takeaways

        - `compile_model` + `model.fit` for the usual path; `Loop` when you need the step.
        - Custom losses: a function factory or a `Loss` subclass, both serializable.
        - Callbacks are plain Keras callbacks and work with both loops.
        - Under `MirroredStrategy`, build in `strategy.scope()` and scale per-example losses
          by the global batch.
        - Next: `04_stylegan.ipynb` trains a GAN with its own phase loop.
        """
    ),
]


# --------------------------------------------------------------------------------------
# 04 stylegan
# --------------------------------------------------------------------------------------

NB04 = [
    md(
        """
        # StyleGAN2 on procedural shapes

        **Goal:** build StyleGAN2's generator and discriminator, train them briefly on the
        embedded 16x16 `shapes` images, and look at what a style-based generator offers: a
        grid of samples, the truncation trick, and style mixing.

        tfkit's StyleGAN follows stylegan2-ada-pytorch's published configurations: mapping
        network, modulated convolutions, noise inputs, a residual discriminator with
        minibatch standard deviation, the non-saturating loss with lazy R1 and path-length
        regularization, style mixing and an exponential moving average of the generator
        (`G_ema`). The `shapes16` preset shrinks the networks so that they learn on a CPU.
        Here we train for only 3 thousand images (kimg) to keep the notebook under two
        minutes; the shapes take recognisable form after the preset's 10 kimg
        (`tfkit gan train configs/stylegan_shapes16.yaml`).
        """
    ),
    md("## Setup"),
    code(
        PREAMBLE
        + """
import io
import json

import numpy as np
import tensorflow as tf
from IPython.display import Image, display
from PIL import Image as PILImage

from tfkit.config import load_config
from tfkit.data import datasets
from tfkit.stylegan import generate
from tfkit.stylegan.trainer import Trainer, build_networks, make_grid


def show(grid: np.ndarray, scale: int = 3) -> None:
    \"\"\"Display a uint8 image grid as a PNG, enlarged with nearest-neighbour pixels.\"\"\"
    h, w = grid.shape[:2]
    image = PILImage.fromarray(grid).resize((w * scale, h * scale), PILImage.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    display(Image(buffer.getvalue()))
"""
    ),
    md(
        """
        ## The data

        Circles, squares and triangles of random colour, size and position on dark
        backgrounds. GAN training wants pixels in [-1, 1] (`data.normalize: minus_one_one`).
        """
    ),
    code(
        """
        real = datasets.shapes(count=32, resolution=16, seed=0)
        show(make_grid(real.x * 2 - 1, cols=8, rows=4))
        """
    ),
    md(
        """
        ## The experiment config

        `configs/stylegan_shapes16.yaml` holds the data section and `gan.preset: shapes16`;
        any `gan.*` key overrides the preset. `--set` style overrides shorten the run.
        """
    ),
    code(
        """
        config_path = Path.cwd().parent / "configs" / "stylegan_shapes16.yaml"
        print(config_path.read_text())
        cfg = load_config(
            config_path,
            ["gan.kimg=3", "gan.tick_kimg=1", "gan.snapshot_ticks=3", "data.source.count=1000"],
        )
        """
    ),
    md(
        """
        ## The networks

        The generator is a mapping network (z -> w, 2 dense layers here, 8 in the paper
        configs) and a synthesis network that starts from a learned 4x4 constant and, per
        resolution, runs modulated 3x3 convolutions whose weights are scaled by a style
        computed from w, adds per-pixel noise, and sums skip connections to RGB. One w is
        broadcast to every layer (`num_ws` copies), which is what makes style mixing
        possible. The discriminator mirrors it with residual blocks down to 4x4.
        """
    ),
    code(
        """
        from tfkit.stylegan.presets import resolve_options

        opts = resolve_options(cfg.gan, resolution=16)
        print({k: v for k, v in opts.as_dict().items() if k in (
            "preset", "batch", "z_dim", "w_dim", "map_layers", "channel_base", "channel_max",
            "lr", "gamma", "ema_kimg", "pl_weight", "style_mixing", "g_reg_interval", "d_reg_interval")})

        G, D = build_networks(opts)
        z = tf.random.normal([4, opts.z_dim], seed=0)
        ws = G.mapping(z)
        fake = G.synthesis(ws)
        print(f"z {tuple(z.shape)} -> w {tuple(ws.shape)} (num_ws x w_dim) -> image {tuple(fake.shape)}")
        print(f"D(image) -> {tuple(D(fake).shape)} logits")
        print(f"G {G.count_params():,} parameters, D {D.count_params():,} parameters")
        """
    ),
    md(
        """
        ## Training

        `Trainer` runs the four phases of stylegan2-ada-pytorch in a `GradientTape` loop
        under any `tf.distribute` strategy. Each iteration takes one batch of reals and runs
        the phases whose interval divides the step; the regularizers run lazily (every 4
        and 16 steps) with their weight scaled up to compensate. Progress is counted in
        images: every tick (1 kimg here) prints one line, and every `snapshot_ticks` a
        fixed-seed grid and a checkpoint (G, D, G_ema, both optimizers, counters, RNG) are
        written, so a stopped run resumes exactly. The first tick includes tracing the
        `tf.function`s.
        """
    ),
    code(
        """
        run_dir = WORK / "runs" / "stylegan_shapes16"
        trainer = Trainer(cfg, run_dir)
        for phase in trainer.phases:
            print(f"{phase.name:7s} trains {phase.module} every {phase.interval:2d} step(s)")
        status = trainer.run()
        print("status:", status)
        """
    ),
    code(
        """
        # What the run directory holds; metrics.jsonl has one record per tick.
        print(sorted(p.name for p in run_dir.iterdir()))
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            record = json.loads(line)
            print(f"kimg {record['kimg']:.3f}  G loss {record['Loss/G/loss']:.3f}  D loss {record['Loss/D/loss']:.3f}  "
                  f"img/s {record['img_per_sec']:.0f}")
        """
    ),
    md(
        """
        The fixed-seed snapshot grid before training (noise from a random generator) and
        after 3 kimg (`G_ema`): colour, dark backgrounds and bright centred blobs come
        first; edges and the three shape classes follow with more training.
        """
    ),
    code(
        """
        latest = sorted(run_dir.glob("fakes0*.png"))[-1]  # named by images seen
        for name in ("fakes_init.png", latest.name):
            print(name)
            show(np.asarray(PILImage.open(run_dir / name)), scale=2)
        """
    ),
    md(
        """
        ## A generated grid

        `tfkit.stylegan.generate` makes images from seeds: each seed gives one latent z
        (`np.random.RandomState(seed)`), so a seed always gives the same image. The noise
        inputs are held constant (`noise_mode="const"`) for reproducible pictures.
        """
    ),
    code(
        """
        G_ema = trainer.G_ema
        show(generate.seed_grid(G_ema, list(range(32)), cols=8))
        """
    ),
    md(
        """
        ## Truncation

        The truncation trick pulls each w towards the average w (tracked during training):
        `w = w_avg + psi * (w - w_avg)`. Lower `psi` trades variety for typical,
        cleaner-looking samples; `psi = 0` gives the average image for every seed. Each
        row below shows the same 8 seeds at psi = 1, 0.7, 0.4 and 0.
        """
    ),
    code(
        """
        seeds = list(range(8))
        rows = [generate.images(G_ema, seeds, psi=psi) for psi in (1.0, 0.7, 0.4, 0.0)]
        show(make_grid(np.concatenate(rows), cols=8, rows=4))
        """
    ),
    md(
        """
        ## Style mixing

        Because every synthesis layer reads its own copy of w, two latents can be mixed:
        the coarse layers (low resolutions: layout, size) from one seed and the fine layers
        (colour, texture) from another. Top row: the column seeds; left column: the row
        seeds; each inner image takes its coarse styles from its column and the rest from
        its row. Training with `style_mixing: 0.9` is what keeps the layers' roles separate.
        """
    ),
    code(
        """
        show(generate.style_mix_figure(G_ema, row_seeds=[10, 11, 12, 13], col_seeds=[20, 21, 22, 23, 24]))
        """
    ),
    md(
        """
        And a straight line in w space between two seeds:
        """
    ),
    code(
        """
        show(generate.interpolation_strip(G_ema, seed_a=3, seed_b=7, steps=8))
        """
    ),
    md(
        """
        ## From the command line

        The same run, at full length, and images from it:

        ```
        tfkit gan train configs/stylegan_shapes16.yaml
        tfkit gan generate runs/stylegan_shapes16/00000 --seeds 0-31 --out grid.png
        ```

        Next: `05_tuning.ipynb` searches hyperparameters.
        """
    ),
]


# --------------------------------------------------------------------------------------
# 05 tuning
# --------------------------------------------------------------------------------------

NB05 = [
    md(
        """
        # Hyperparameter search with Keras Tuner

        **Goal:** search the hyperparameters of the digits CNN from a config's `tune:`
        section, read the results table, and reuse the best trial.

        A search space maps *dotted config keys* (`model.dropout`,
        `train.optimizer.learning_rate`) to hyperparameters. Each trial is the experiment
        with the sampled values applied, built and trained by the same `tfkit.models.build`
        and `model.fit` as `tfkit train`, so anything a config can say can be tuned and the
        best trial is an ordinary config file.
        """
    ),
    md("## Setup"),
    code(
        PREAMBLE
        + """
import warnings

import pandas as pd

from tfkit.config import apply_overrides, diff_keys, read_yaml, validate
from tfkit.errors import UserError

# Keras warns that it cannot shuffle a tf.data dataset; tfkit's pipeline already shuffles it.
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
"""
    ),
    md(
        """
        ## The tune section

        `configs/tune_digits.yaml` searches the conv stack's width and depth, the dense
        width, dropout, batch norm and the learning rate with a random search. To keep this
        notebook short we run 5 trials of 4 epochs instead of 10 of 8, with the same
        overrides `tfkit tune --set` would apply.
        """
    ),
    code(
        """
        config_path = Path.cwd().parent / "configs" / "tune_digits.yaml"
        overrides = ["tune.max_trials=5", "train.epochs=4"]
        raw = apply_overrides(read_yaml(config_path), overrides)
        config = validate(raw, str(config_path))
        print(f"tuner={config.tune.tuner}, objective={config.tune.objective.name} "
              f"({config.tune.objective.direction}), max_trials={config.tune.max_trials}")
        for key, param in config.tune.space.items():
            print(f"  {key:32s} {param.model_dump(exclude_none=True, exclude_defaults=True)}")
        """
    ),
    md(
        """
        Space keys are checked against the experiment before any trial runs; a typo lists
        the keys that exist:
        """
    ),
    code(
        """
        import copy

        from tfkit.tuning import space as space_lib

        bad = copy.deepcopy(raw)
        bad["tune"]["space"]["model.filterz"] = {"choice": [[8], [16]]}
        try:
            space_lib.check_space(bad, validate(bad).tune)
        except UserError as err:
            print("UserError:", err)
        """
    ),
    md(
        """
        ## The search

        `run_search` (what `tfkit tune` calls) builds a Keras Tuner tuner around a
        `HyperModel` whose `build` applies the trial's values to the config and calls
        `tfkit.models.build`, and whose `fit` is the tfkit compile/fit path. It prints one
        line per trial, then the results table, and writes `trials.csv`, `best.yaml` and the
        best model into the run directory.
        """
    ),
    code(
        """
        from tfkit.tuning.search import run_search

        run_dir = WORK / "runs" / "tune_digits"
        result = run_search(config, raw, run_dir)
        print(f"{len(result['trials'])} trials in {result['seconds']:.0f} s")
        """
    ),
    md(
        """
        ## The results table

        The trials as a DataFrame, best first:
        """
    ),
    code(
        """
        table = pd.DataFrame(
            [{"trial": row["trial"], "val_accuracy": row["objective"], **row["values"]} for row in result["trials"]]
        ).sort_values("val_accuracy", ascending=False)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        """
    ),
    code(
        """
        print(sorted(p.name for p in run_dir.iterdir()))
        print((run_dir / "trials.csv").read_text().splitlines()[0])
        """
    ),
    md(
        """
        ## The best trial

        `best.yaml` is the experiment with the best values applied: train it again with
        `tfkit train runs/.../best.yaml`. The differences from the base experiment are
        exactly the tuned keys (and the search section is dropped):
        """
    ),
    code(
        """
        best = validate(read_yaml(run_dir / "best.yaml"), "best.yaml")
        print("best trial:", result["best"]["trial"], "val_accuracy", round(result["best"]["objective"], 4))
        print("changed keys:", diff_keys(config.model_dump(), best.model_dump()))
        """
    ),
    code(
        """
        # The best model was saved too; check it on the held-out test split.
        import keras

        import tfkit.data

        with warnings.catch_warnings():  # a trial checkpoint holds no optimizer state
            warnings.simplefilter("ignore", UserWarning)
            best_model = keras.saving.load_model(run_dir / "best_model.keras")
        best_model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        test = tfkit.data.build(best.data, seed=best.runtime.seed).test
        print("test:", {k: round(v, 4) for k, v in best_model.evaluate(test, verbose=0, return_dict=True).items()})
        """
    ),
    md(
        """
        ## Continuing a search

        The search state lives in the run directory, so running again with the same
        directory continues it: here, raising `max_trials` to 6 runs one more trial.
        A search whose space or objective changed is refused unless `--overwrite` is given.
        """
    ),
    code(
        """
        more = apply_overrides(raw, ["tune.max_trials=6"])
        result = run_search(validate(more), more, run_dir)
        print(f"{len(result['trials'])} trials now")
        """
    ),
    md(
        """
        ## In TensorBoard

        Each trial logs under `search/tb`, with its hyperparameters in the HParams
        dashboard: `tensorboard --logdir <run dir>/search/tb`.

        ## Takeaways

        - The space is a dict of dotted config keys; every trial is a valid config.
        - `best.yaml` reproduces the best trial with `tfkit train`.
        - Searches continue where they stopped; `tfkit launch --tune-workers N` runs trials
          in parallel processes.
        """
    ),
]


NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "01_data_pipelines": NB01,
    "02_models": NB02,
    "03_training": NB03,
    "04_stylegan": NB04,
    "05_tuning": NB05,
}


def make_notebook(cells: list[tuple[str, str]]):
    """An nbformat v4 notebook of `cells` with the venv's python3 kernel."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        cell = (
            nbformat.v4.new_markdown_cell(source)
            if kind == "markdown"
            else nbformat.v4.new_code_cell(source)
        )
        nb.cells.append(cell)
    return nb


def execute(nb, timeout: int = 300) -> None:
    """Run `nb` in place with nbclient from the notebooks directory."""
    from nbclient import NotebookClient

    # The kernel inherits TMPDIR, so everything the notebook writes (its `WORK` directory)
    # lands in a directory removed afterwards.
    previous = os.environ.get("TMPDIR")
    with tempfile.TemporaryDirectory(prefix="tfkit-nb-build-") as tmp:
        os.environ["TMPDIR"] = tmp
        try:
            NotebookClient(nb, **client_options(timeout)).execute()
        finally:
            if previous is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = previous


def client_options(timeout: int = 300) -> dict:
    """nbclient options shared with the tests.

    TensorFlow's C++ start-up lines are written straight to file descriptor 2; with
    `capture_fd_output=False` they go to the terminal, as in a classic Jupyter session,
    instead of into every notebook's first output.
    """
    return {
        "timeout": timeout,
        "kernel_name": "python3",
        "resources": {"metadata": {"path": str(HERE)}},
        "extra_arguments": ["--IPKernelApp.capture_fd_output=False"],
    }


def strip_ids(nb) -> None:
    """Stable cell ids (index based) so a rebuild only changes what changed."""
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="notebook prefixes, e.g. 01 03")
    parser.add_argument("--no-execute", action="store_true", help="write without running")
    args = parser.parse_args(argv)

    import nbformat

    for name, cells in NOTEBOOKS.items():
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        nb = make_notebook(cells)
        strip_ids(nb)
        start = time.perf_counter()
        if not args.no_execute:
            execute(nb)
        path = HERE / f"{name}.ipynb"
        nbformat.write(nb, path)
        size = path.stat().st_size / 1024
        print(f"{path.name}: {time.perf_counter() - start:.1f} s, {size:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
