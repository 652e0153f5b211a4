"""Data benchmark: examples/s of 32x32x3 uint8 images + labels in 8 TFRecord shards.

(a) the tfkit TFRecord pipeline (`tfkit.data.build` on the shards with the default options:
    records parsed in blocks by the parallel file readers, memory cache of the parsed
    examples, seeded shuffle, batch, uint8 -> float), (a') the same without the cache (every
    epoch reads the files; records shuffled, batched, then parsed and converted in one map
    per batch), (b) the same arrays from memory (`from_tensor_slices`, shuffle, batch, the
    same uint8 -> float), (c) the textbook pipeline (`parse_single_example` per record, then
    shuffle and batch), (d) `from_generator` one example at a time. Every pipeline delivers
    the same float32 batches of 256 to the same consumer (`for _ in ds`); each is timed over
    whole epochs after a warm-up epoch (which fills the cache). a, a' and b are timed in
    alternating rounds (order reversed every round) and each ratio is the median of the
    per-round ratios, so a busy machine slows all three alike; c and d are timed once.
Ratios: data_vs_memory = a/b, nocache_vs_memory = a'/b, data_vs_textbook = a/c.

`--full` also measures a set much larger than memory: the shards hard-linked many times
(so it takes no disk space, and its bytes come from the page cache: the figure is the
pipeline's, not the disk's), read uncached by `tfkit.data.build` in a fresh process per
size, with the examples/s over the first batches and the peak RSS of each process.

    python benchmarks/bench_data.py [--quick] [--full-gb 30] --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_result

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 256


def _rate(ds, count: int, epochs: int, warm_epoch: bool = False) -> float:
    """Examples/s over `epochs` full passes, after a warm-up (a whole pass to fill a cache)."""
    if warm_epoch:
        for _ in ds:
            pass
    start = time.perf_counter()
    for _ in range(epochs):
        for _ in ds:
            pass
    return count * epochs / (time.perf_counter() - start)


def _rounds(arms: dict, count: int, epochs: int, rounds: int) -> dict[str, list[float]]:
    """Examples/s of each arm in `rounds` alternating rounds (order reversed every round),
    after one warm-up epoch of each."""
    for ds in arms.values():
        _rate(ds, count, 0, warm_epoch=True)
    rates: dict[str, list[float]] = {name: [] for name in arms}
    for r in range(rounds):
        for name in list(arms) if r % 2 == 0 else list(arms)[::-1]:
            rates[name].append(_rate(arms[name], count, epochs))
    return rates


def _ratio_runs(a: list[float], b: list[float]) -> list[float]:
    return [round(x / y, 3) for x, y in zip(a, b, strict=True)]


_LARGE = """
import json, resource, sys, time
from tfkit.config import DataConfig
from tfkit.data import build
path, batches = sys.argv[1], int(sys.argv[2])
cfg = DataConfig.model_validate({"source": {"kind": "tfrecord", "path": path}, "verify": False,
    "split": {"train": 1.0, "val": 0.0, "test": 0.0}, "batch_size": 256, "cache": "none"})
ds = build(cfg).train
it = iter(ds)
for _ in range(40):  # warm-up: the shuffle buffer fills
    next(it)
start = time.perf_counter()
for _ in range(batches):
    next(it)
rate = batches * 256 / (time.perf_counter() - start)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"ex_s": round(rate), "peak_rss_gb": round(rss, 3)}))
"""


def _large_sets(base: str, work: str, sizes_gb: list[float], batches: int) -> list[dict]:
    """Uncached examples/s and peak RSS over sets of `sizes_gb` made of hard links to the
    shards in `base`, each read by a fresh process."""
    schema = json.loads((Path(base) / "schema.json").read_text())
    shard_bytes = [os.path.getsize(Path(base) / s["file"]) for s in schema["shards"]]
    out = []
    for gb in sizes_gb:
        copies = max(1, round(gb * 1e9 / sum(shard_bytes)))
        folder = Path(work) / f"set_{gb}gb"
        folder.mkdir()
        shards = []
        for c in range(copies):
            for s in schema["shards"]:
                name = f"c{c:05d}-{s['file']}"
                os.link(Path(base) / s["file"], folder / name)
                shards.append({"file": name, "count": s["count"]})
        big = {**schema, "count": schema["count"] * copies, "shards": shards}
        (folder / "schema.json").write_text(json.dumps(big))
        proc = subprocess.run(
            [sys.executable, "-c", _LARGE, str(folder), str(batches)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        out.append({"set_gb": round(copies * sum(shard_bytes) / 1e9, 1),
                    "examples": big["count"], **row})  # fmt: skip
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="20,000 examples, 5 rounds of 3 timed epochs"
    )
    parser.add_argument(
        "--full-gb", type=float, default=30.0,
        help="largest set (GB) of the larger-than-memory figure in full mode (default 30: more than 24 GiB of RAM)",
    )  # fmt: skip
    parser.add_argument("--json", required=True, help="write the results here")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from tfkit.config import DataConfig
    from tfkit.data import build
    from tfkit.data.tfrecord import write_tfrecords

    count, epochs, rounds = (20_000, 3, 5) if args.quick else (50_000, 3, 7)
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

        to_float = lambda img, label: (tf.cast(img, tf.float32) / 255.0, label)  # noqa: E731
        b_ds = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(10_000, seed=0)
            .batch(BATCH)
            .map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
        rates = _rounds(
            {"tfkit": a_ds, "tfkit_nocache": tfkit_ds("none"), "memory": b_ds},
            count, epochs, rounds,
        )  # fmt: skip
        a, a_nocache, b = (
            statistics.median(rates[k]) for k in ("tfkit", "tfkit_nocache", "memory")
        )
        runs = {
            "data_vs_memory": _ratio_runs(rates["tfkit"], rates["memory"]),
            "nocache_vs_memory": _ratio_runs(rates["tfkit_nocache"], rates["memory"]),
            **{f"{k}_ex_s": [round(v) for v in rates[k]] for k in rates},
        }

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

        c = _rate(textbook(None), count, 1, warm_epoch=True)
        c_autotune = _rate(textbook(tf.data.AUTOTUNE), count, 1, warm_epoch=True)

        def gen():
            for i in range(count):
                yield x[i], y[i]

        sig = (tf.TensorSpec([32, 32, 3], tf.uint8), tf.TensorSpec([], tf.int64))
        d_ds = tf.data.Dataset.from_generator(gen, output_signature=sig).batch(BATCH).map(to_float)
        d = _rate(d_ds.prefetch(tf.data.AUTOTUNE), count, 1)
        if not args.quick:
            sizes = [s for s in (1, 10, 100, 1000) if s < args.full_gb] + [args.full_gb]
            large = _large_sets(tmp, tmp, sizes, batches=400)
            figures["large_sets"] = large
            rss = [r["peak_rss_gb"] for r in large]
            figures["large_peak_rss_growth"] = round(rss[-1] / rss[0], 3)
            figures["large_vs_small_ex_s"] = round(large[-1]["ex_s"] / large[0]["ex_s"], 3)

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
            "data_vs_memory": statistics.median(runs["data_vs_memory"]),
            "nocache_vs_memory": statistics.median(runs["nocache_vs_memory"]),
            "data_vs_textbook": round(a / c, 3),
        },
        "figures": {
            **figures,
            "nocache_vs_textbook": round(a_nocache / c, 3),
            "data_vs_generator": round(a / d, 3),
        },
        "runs": runs,
    }
    write_result(args.json, **out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
