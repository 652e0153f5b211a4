# %% [markdown]
# # Data pipelines with tfkit
#
# **Goal:** feed a Keras model from any source (arrays, pandas, CSV/Parquet files,
# Python generators, TFRecords, image folders, the embedded datasets) through one
# `tf.data` pipeline whose options come from a config section.
#
# tfkit's data block knows nothing of models: it turns a `data:` config into batched
# `train`/`val`/`test` datasets plus a `DataSpec`, the small contract that model
# builders read to size their inputs and outputs. Every dataset here is generated on
# the spot or bundled with scikit-learn: nothing is downloaded.

# %% [markdown]
# ## Setup

# %%
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info lines
sys.path.insert(0, str(Path.cwd().parent))  # the repository root, when run from notebooks/
WORK = Path(tempfile.mkdtemp(prefix="tfkit-nb-"))  # everything this notebook writes

import numpy as np
import pandas as pd
import tensorflow as tf

import tfkit.data
from tfkit.config import DataConfig

print("TensorFlow", tf.__version__)

# %% [markdown]
# ## The embedded datasets
#
# `tfkit.data.datasets` makes small, learnable datasets in NumPy: scikit-learn's
# bundled 8x8 `digits`, procedurally drawn `shapes`, and synthetic tabular, two-input,
# sequence and regression sets. A config names one with `source.kind`.

# %%
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

# %% [markdown]
# ## From a config to datasets: `tfkit.data.build`
#
# A `DataConfig` (the `data:` section of an experiment YAML) says where examples come
# from and how the pipeline serves them. `build` returns `Splits(train, val, test,
# spec)`; the split is a seeded permutation, so it is the same on every run.

# %%
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

# %% [markdown]
# ## In-memory sources: NumPy, `.npz` and pandas
#
# The Python API mirrors the config: `from_numpy`, `from_dataframe` and
# `from_generator` return *unbatched* datasets, and `tfkit.data.pipeline(ds, cfg)`
# applies the config's options to them (shown further down). A dict of arrays gives a
# multi-input dataset.

# %%
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

# %% [markdown]
# The same arrays saved to a `.npz` file are a config source (`kind: npz`); `x` and
# `y` name the arrays in the file.

# %%
np.savez(WORK / "table.npz", features=x, labels=y)
cfg = DataConfig.model_validate(
    {"source": {"kind": "npz", "path": str(WORK / "table.npz"), "x": "features", "y": "labels"}}
)
splits = tfkit.data.build(cfg)
print(splits.spec.inputs, splits.spec.task, splits.spec.counts)

# %% [markdown]
# ## Files: CSV and Parquet
#
# Tables are read with pyarrow. `features` is a list of columns (one input) or a map
# of input name to columns (several inputs); it defaults to every column but the label.

# %%
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

# %% [markdown]
# A typo in a column name is a one-line error that names the config key and lists
# the columns, not a stack trace from deep inside pandas:

# %%
from tfkit.errors import UserError

bad = DataConfig.model_validate(
    {"source": {"kind": "csv", "path": str(WORK / "table.csv"), "label": "lable"}}
)
try:
    tfkit.data.build(bad)
except UserError as err:
    print("UserError:", err)


# %% [markdown]
# ## Python generators
#
# When examples come from Python code (a simulator, a custom reader), wrap the
# generator function with its `output_signature`. Generators run in the Python
# interpreter, one example at a time, so they are the slowest source (see the
# benchmark below); cache or convert to TFRecords what you read more than once.


# %%
def noisy_sines():
    rng = np.random.default_rng(1)
    for _ in range(256):
        freq = rng.integers(1, 4)
        t = np.linspace(0, 1, 32, dtype="float32")
        yield (
            np.sin(2 * np.pi * freq * t)[:, None] + rng.normal(0, 0.1, (32, 1)).astype("float32"),
            freq - 1,
        )


ds = tfkit.data.from_generator(
    noisy_sines,
    output_signature=(
        tf.TensorSpec((32, 1), tf.float32),
        tf.TensorSpec((), tf.int64),
    ),
)
print(ds.element_spec)
print("first labels:", [int(label) for _, label in ds.take(8)])

# %% [markdown]
# ## TFRecords: write sharded, read in parallel
#
# `write_tfrecords` writes named arrays as `tf.train.Example` shards plus a
# `schema.json` (features, dtypes, shapes, counts, label). Readers need nothing else:
# the shards are read in parallel, batched, then parsed a whole batch at a time with
# `tf.io.parse_example`, which is much faster than parsing record by record. Images
# stay `uint8` on disk (4x smaller than float32) and become floats in [0, 1] in the
# pipeline.

# %%
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

# %%
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

# %% [markdown]
# The round trip is exact: the reader interleaves the shards (so the order differs),
# but the 1,000 (image, label) pairs read back are exactly the pairs written.

# %%
read_back = sorted(
    (image.tobytes(), int(label))
    for images, labels in tfkit.data.from_tfrecords(WORK / "shapes_tfr", batch_size=100)
    for image, label in zip(images.numpy(), labels.numpy(), strict=True)
)
written = sorted(
    (image.tobytes(), int(label)) for image, label in zip(images_uint8, shapes.y, strict=True)
)
print(len(read_back), "examples read; identical to those written:", read_back == written)

# %% [markdown]
# ## Image folders
#
# One subfolder per class, any format Pillow reads. Here we draw a small folder on
# the fly from the `shapes` arrays; tfkit lists the files, checks that every image
# decodes (a corrupt file is named, or skipped with `ignore_errors: true`), and
# resizes to `image_size`.

# %%
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

# %%
# A broken file is reported by name before any training starts.
(folder / "circle" / "broken.png").write_bytes(b"not a png")
try:
    tfkit.data.build(cfg)
except UserError as err:
    print("UserError:", err)
(folder / "circle" / "broken.png").unlink()

# %% [markdown]
# ## TensorFlow Datasets

# %%
import importlib.util

if importlib.util.find_spec("tensorflow_datasets") is None:
    print("tensorflow-datasets is not installed: skipping the tfds source.")
else:
    print("tensorflow-datasets is installed; see the note below.")

# %% [markdown]
# With `tensorflow-datasets` installed, a `tfds` source reads a dataset already
# prepared in `data_dir` and never downloads unless `download: true`:
# `source: {kind: tfds, name: mnist, data_dir: /data/tfds, split: train}`. To use it
# offline, run `tfds.builder("mnist", data_dir=...).download_and_prepare()` once on a
# machine with network access and copy `data_dir` across.

# %% [markdown]
# ## Pipeline options
#
# The order inside tfkit is: select the split -> (shard) -> decode -> cache -> shuffle
# -> batch -> parse -> uint8 to float -> augment -> normalize -> one-hot -> repeat ->
# prefetch. Each step is one config key. `tfkit.data.pipeline` applies them to any
# unbatched dataset from the `from_*` functions.

# %%
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


# %%
# A seeded pipeline gives the same batches twice: rerunning an experiment reproduces it.
def first_labels(seed):
    c = cfg.model_copy(
        update={
            "seed": seed,
            "one_hot": False,
            "augment": cfg.augment.model_copy(update={"flip": "none", "rotation": 0.0}),
        }
    )
    batch = next(iter(tfkit.data.pipeline(ds, c, training=True)))
    return batch[1][:12].numpy()


print(first_labels(7))
print(first_labels(7))
print(first_labels(8), "(another seed)")

# %% [markdown]
# ### Splits for distributed training
#
# Under a `tf.distribute` strategy, `build(cfg, input_context=...)` batches at the
# per-replica batch size (`batch_size` is the global batch) and gives each input
# pipeline its own shard. A batch size that does not divide by the replicas is an
# error that says so.

# %%
ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=2)
cfg = DataConfig.model_validate({"source": {"kind": "digits"}, "batch_size": 64})
per_replica = tfkit.data.build(cfg, input_context=ctx)
print("per-replica batch:", next(iter(per_replica.train))[0].shape[0])

try:
    tfkit.data.build(cfg.model_copy(update={"batch_size": 63}), input_context=ctx)
except UserError as err:
    print("UserError:", err)

# %% [markdown]
# ## The data benchmark in miniature
#
# `benchmarks/bench_data.py` times the TFRecord pipeline against the same arrays read
# from memory and against the textbook reader (`parse_single_example` per record). A
# smaller version: 8,000 uint8 images of 32x32x3, batch 256, two timed epochs after a
# warm-up epoch. Numbers are examples per second on this machine; what matters is the
# ratio.

# %%
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
    .shuffle(10_000, seed=0)
    .batch(BATCH)
    .map(to_float)
    .prefetch(tf.data.AUTOTUNE)
)

# (c) the textbook reader: one parse_single_example per record. The image is stored
# as raw bytes (see schema.json), so the reader decodes and reshapes it itself.
features = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


# %%
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

results = {
    name: rate(ds)
    for name, ds in [("tfkit TFRecord", tfkit_ds), ("memory", memory_ds), ("textbook", textbook_ds)]
}
for name, value in results.items():
    print(f"{name:15s} {value:10,.0f} examples/s")
print(f"tfkit / memory   = {results['tfkit TFRecord'] / results['memory']:.2f}")
print(f"tfkit / textbook = {results['tfkit TFRecord'] / results['textbook']:.2f}")

# %% [markdown]
# ## Takeaways
#
# - Every source ends as the same batched `(x, y)` dataset plus a `DataSpec`.
# - TFRecords written by tfkit carry their schema; reading parses whole batches.
# - Pipeline options are config keys, seeded and reproducible; mistakes are one-line
#   errors that name the key.
# - Next: `02_models.ipynb` builds models from a `DataSpec`.
