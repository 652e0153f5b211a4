"""Data benchmark: examples/s of 32x32x3 uint8 images + labels in 8 TFRecord shards.

(a) the tfkit TFRecord pipeline (`tfkit.data.build` on the shards with the default options:
    memory cache of the serialized records, seeded shuffle, batch, `parse_example` per batch,
    uint8 -> float), (b) the same arrays from memory (`from_tensor_slices`, shuffle, batch,
    the same uint8 -> float), (c) the textbook pipeline (`parse_single_example` per record,
    then shuffle and batch), (d) `from_generator` one example at a time. Every pipeline
    delivers the same float32 batches; each is timed over whole epochs after a warm-up epoch.
Ratios: data_vs_memory = a/b, data_vs_textbook = a/c. Figures also give tfkit without the
cache (every epoch reads and parses the files) and the textbook map with AUTOTUNE.

    python benchmarks/bench_data.py [--quick] --json out.json
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from common import write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 256


def _rate(ds, count: int, epochs: int, warm_epoch: bool = False) -> float:
    """Examples/s over `epochs` full passes, after a warm-up (a whole pass to fill a cache)."""
    for _ in ds if warm_epoch else ds.take(8):
        pass
    start = time.perf_counter()
    for _ in range(epochs):
        for _ in ds:
            pass
    return count * epochs / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 examples, 2 timed epochs")
    parser.add_argument("--json", required=True, help="write the results here")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from tfkit.config import DataConfig
    from tfkit.data import build
    from tfkit.data.tfrecord import write_tfrecords

    count, epochs = (20_000, 2) if args.quick else (50_000, 3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=count).astype(np.int64)
    figures: dict[str, float] = {"examples": count, "epochs_timed": epochs, "batch_size": BATCH}

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_tfrecords({"image": x, "label": y}, tmp, num_shards=8, meta={"label": "label"})
        figures["write_s"] = round(time.perf_counter() - start, 2)
        files = sorted(str(p) for p in __import__("pathlib").Path(tmp).glob("*.tfrecord"))

        def tfkit_ds(cache: str) -> tf.data.Dataset:
            cfg = DataConfig.model_validate(
                {
                    "source": {"kind": "tfrecord", "path": tmp},
                    "split": {"train": 1.0, "val": 0.0, "test": 0.0},
                    "batch_size": BATCH,
                    "cache": cache,
                }
            )
            return build(cfg).train

        start = time.perf_counter()
        a_ds = tfkit_ds("memory")
        figures["tfkit_build_s"] = round(time.perf_counter() - start, 2)
        a = _rate(a_ds, count, epochs, warm_epoch=True)
        a_nocache = _rate(tfkit_ds("none"), count, epochs)

        to_float = lambda img, label: (tf.cast(img, tf.float32) / 255.0, label)  # noqa: E731
        b_ds = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(10_000, seed=0)
            .batch(BATCH)
            .map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
        b = _rate(b_ds, count, epochs)

        spec = {
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        }

        def parse_single(record):
            ex = tf.io.parse_single_example(record, spec)
            img = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), [32, 32, 3])
            return tf.cast(img, tf.float32) / 255.0, ex["label"]

        def textbook(parallel) -> tf.data.Dataset:
            return (
                tf.data.TFRecordDataset(files)
                .map(parse_single, num_parallel_calls=parallel)
                .shuffle(10_000, seed=0)
                .batch(BATCH)
                .prefetch(tf.data.AUTOTUNE)
            )

        c = _rate(textbook(None), count, epochs)
        c_autotune = _rate(textbook(tf.data.AUTOTUNE), count, epochs)

        def gen():
            for i in range(count):
                yield x[i], y[i]

        sig = (tf.TensorSpec([32, 32, 3], tf.uint8), tf.TensorSpec([], tf.int64))
        d_ds = tf.data.Dataset.from_generator(gen, output_signature=sig).batch(BATCH).map(to_float)
        d = _rate(d_ds.prefetch(tf.data.AUTOTUNE), count, 1)

    figures.update(
        tfkit_tfrecord_ex_s=round(a),
        tfkit_tfrecord_nocache_ex_s=round(a_nocache),
        memory_ex_s=round(b),
        textbook_ex_s=round(c),
        textbook_autotune_ex_s=round(c_autotune),
        generator_ex_s=round(d),
    )
    out = {
        "ratios": {
            "data_vs_memory": round(a / b, 3),
            "data_vs_textbook": round(a / c, 3),
        },
        "figures": {
            **figures,
            "nocache_vs_memory": round(a_nocache / b, 3),
            "nocache_vs_textbook": round(a_nocache / c, 3),
            "data_vs_generator": round(a / d, 3),
        },
    }
    write_result(args.json, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
