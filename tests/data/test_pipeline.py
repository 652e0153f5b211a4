"""The pipeline: splits, determinism, sharding, batching options, normalization, Python API."""

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfkit.config import DataConfig, validate
from tfkit.data import (
    build,
    from_dataframe,
    from_generator,
    from_numpy,
    pipeline,
    split_table,
)
from tfkit.errors import UserError


def _ids(ds):
    """Example ids (feature 0) of every element of a dataset, in order."""
    out = []
    for x, *_ in ds:
        out.extend(x.numpy()[:, 0].astype(int).tolist())
    return out


@pytest.fixture
def npz_cfg(tmp_path, id_arrays):
    x, y = id_arrays
    np.savez(tmp_path / "a.npz", x=x, y=y)
    return lambda **kw: DataConfig.model_validate(
        {"source": {"kind": "npz", "path": str(tmp_path / "a.npz")}, "batch_size": 8, **kw}
    )


def test_split_table_exact_disjoint_complete():
    table = split_table(1000, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3)
    assert np.bincount(table).tolist() == [700, 200, 100]
    assert np.array_equal(table, split_table(1000, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=3))
    assert not np.array_equal(
        table, split_table(1000, {"train": 0.7, "val": 0.2, "test": 0.1}, seed=4)
    )


@pytest.mark.parametrize("source", ["npz", "tfrecord"])
def test_splits_disjoint_and_complete(source, npz_cfg, id_records):
    cfg = npz_cfg(split={"train": 0.6, "val": 0.25, "test": 0.15, "seed": 5})
    if source == "tfrecord":
        cfg = DataConfig.model_validate(
            {**cfg.model_dump(), "source": {"kind": "tfrecord", "path": str(id_records)}}
        )
    splits = build(cfg)
    parts = {s: _ids(getattr(splits, s)) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in parts.items()} == {"train": 60, "val": 25, "test": 15}
    assert splits.spec.counts == {"train": 60, "val": 25, "test": 15}
    union = set(parts["train"]) | set(parts["val"]) | set(parts["test"])
    assert union == set(range(100)) and sum(map(len, parts.values())) == 100
    assert splits.spec.task == "multiclass" and splits.spec.num_classes == 3


def test_separate_val_source_renormalizes_the_rest(npz_cfg, tmp_path):
    x = np.stack([np.arange(1000, 1010), np.zeros(10)], 1).astype(np.float32)
    np.savez(tmp_path / "val.npz", x=x, y=np.arange(10) % 3)
    cfg = npz_cfg(val_source={"kind": "npz", "path": str(tmp_path / "val.npz")})
    splits = build(cfg)
    assert splits.spec.counts == {"train": 89, "val": 10, "test": 11}  # 0.8/0.9 and 0.1/0.9
    assert sorted(_ids(splits.val)) == list(range(1000, 1010))


def test_shuffle_deterministic_under_seed(npz_cfg):
    def epochs(seed):
        ds = build(npz_cfg(seed=seed)).train
        return [_ids(ds), _ids(ds)]

    a, b = epochs(7), epochs(7)
    assert a == b
    assert a[0] != a[1]  # reshuffled each epoch
    assert sorted(a[0]) == sorted(a[1])
    assert epochs(8)[0] != a[0]


@pytest.mark.parametrize("source", ["npz", "tfrecord", "tfrecord_one_file"])
def test_input_context_shards_disjoint(source, npz_cfg, id_records):
    cfg = npz_cfg(split={"train": 1.0, "val": 0.0, "test": 0.0})
    if source != "npz":
        path = (
            str(id_records)
            if source == "tfrecord"
            else str(id_records / "data-00000-of-00004.tfrecord")
        )
        cfg = DataConfig.model_validate(
            {**cfg.model_dump(), "source": {"kind": "tfrecord", "path": path, "label": "label"}}
        )
    shards = []
    for i in range(2):
        ctx = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=i, num_replicas_in_sync=2
        )
        ds = build(cfg, input_context=ctx).train
        assert ds.element_spec[0].shape[0] in (4, None)  # per-replica batch 8 / 2
        assert max(b[0].shape[0] for b in ds) == 4
        shards.append(_ids(ds))
    assert not set(shards[0]) & set(shards[1])
    expected = 100 if source != "tfrecord_one_file" else 25
    assert len(shards[0]) + len(shards[1]) == expected


def test_distribute_datasets_from_function_on_two_replicas(npz_cfg, two_replicas):
    strategy = two_replicas
    cfg = npz_cfg(split={"train": 1.0, "val": 0.0, "test": 0.0}, drop_remainder=True)
    dist = strategy.distribute_datasets_from_function(
        lambda ctx: build(cfg, input_context=ctx).train
    )
    x, y = next(iter(dist))
    per_replica = strategy.experimental_local_results(x)
    assert len(per_replica) == 2 and all(t.shape[0] == 4 for t in per_replica)


def test_bad_batch_and_split_config_named():
    with pytest.raises(UserError, match=r"data\.batch_size.*greater than or equal to 1"):
        validate({"data": {"batch_size": 0}})
    with pytest.raises(UserError, match=r"data\.split.*must sum to 1.*sum 1\.1"):
        validate({"data": {"split": {"train": 0.8, "val": 0.2, "test": 0.1}}})
    ctx = tf.distribute.InputContext(
        num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=3
    )
    with pytest.raises(
        UserError, match=r"batch_size` \(32\) must be divisible by the number of replicas \(3\)"
    ):
        build(DataConfig(), input_context=ctx)
    with pytest.raises(UserError, match="batch_size` must be >= 1. Received: batch_size=0"):
        from tfkit.data.sources import from_tfrecords

        from_tfrecords("/nonexistent", batch_size=0)


def test_batch_options_repeat_drop_remainder_cache(npz_cfg, tmp_path):
    cfg = npz_cfg(drop_remainder=True, repeat=True, cache=str(tmp_path / "cache" / "c"))
    splits = build(cfg)
    assert splits.train.element_spec[0].shape[0] == 8
    batches = list(splits.train.take(25))  # 80 train examples: repeats past one epoch
    assert len(batches) == 25
    assert splits.val.cardinality() >= 0  # val never repeats
    cfg = npz_cfg(shuffle_buffer=0, split={"train": 1.0, "val": 0.0, "test": 0.0})
    assert _ids(build(cfg).train) == list(range(100))  # no shuffle: source order


def test_normalize_and_one_hot(npz_cfg):
    s = build(
        npz_cfg(normalize="standardize", one_hot=True, split={"train": 1.0, "val": 0, "test": 0})
    )
    x = np.concatenate([b[0].numpy() for b in s.train])
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x.std(0), 1, atol=1e-3)
    y = next(iter(s.train))[1]
    assert y.shape[1:] == (3,) and s.spec.one_hot and s.spec.label_shape == (3,)
    for mode, lo, hi in (("rescale", 0, 1), ("minus_one_one", -1, 1)):
        s = build(npz_cfg(normalize=mode, split={"train": 1.0, "val": 0, "test": 0}))
        x = np.concatenate([b[0].numpy() for b in s.train])
        assert x.min() == pytest.approx(lo, abs=1e-5) and x.max() == pytest.approx(hi, abs=1e-5)
    gan = build(DataConfig.model_validate({"source": {"kind": "shapes", "count": 20, "resolution": 8},
                                           "normalize": "minus_one_one", "batch_size": 20,
                                           "split": {"train": 1.0, "val": 0, "test": 0}}))  # fmt: skip
    x = next(iter(gan.train))[0].numpy()
    assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0
    with pytest.raises(UserError, match=r"pipeline\(cfg\): `batch_size`"):
        pipeline(from_numpy(np.zeros((2, 1))), {"batch_size": 0})
    with pytest.raises(UserError, match="one_hot: true` needs a multiclass task"):
        build(
            DataConfig.model_validate(
                {"source": {"kind": "tabular_binary", "count": 50}, "one_hot": True}
            )
        )


def test_augmentation_changes_train_images_only():
    cfg = DataConfig.model_validate(
        {
            "source": {"kind": "shapes", "count": 64, "resolution": 8},
            "augment": {"flip": "horizontal", "rotation": 0.2, "contrast": 0.3},
            "xflip": True, "shuffle_buffer": 0, "batch_size": 64,
            "split": {"train": 0.5, "val": 0.5, "test": 0.0},
        }
    )  # fmt: skip
    raw = build(cfg.model_copy(update={"augment": type(cfg.augment)(), "xflip": False}))
    aug = build(cfg)
    a, r = next(iter(aug.train))[0].numpy(), next(iter(raw.train))[0].numpy()
    assert a.shape == r.shape and not np.allclose(a, r)
    np.testing.assert_allclose(next(iter(aug.val))[0], next(iter(raw.val))[0])


def test_python_api_numpy_dataframe_generator():
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    y = np.arange(30) % 2
    ds = pipeline(from_numpy(x, y), {"batch_size": 7, "shuffle_buffer": 0}, training=True)
    bx, by = next(iter(ds))
    np.testing.assert_allclose(bx, x[:7])
    assert by.numpy().tolist() == y[:7].tolist()

    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "t": y, "w": np.ones(30)})
    elems = list(
        from_dataframe(
            df, features={"left": ["a", "b"], "right": ["c"]}, label="t", sample_weight="w"
        )
    )
    xe, ye, we = elems[0]
    assert xe["left"].shape == (2,) and xe["right"].shape == (1,) and float(we) == 1.0
    with pytest.raises(
        UserError, match=r"`label`: column `nope` is not in DataFrame. Columns found: a, b, c, t, w"
    ):
        from_dataframe(df, label="nope")

    def gen():
        for i in range(10):
            yield np.full(3, i, np.float32), i % 2

    sig = (tf.TensorSpec([3], tf.float32), tf.TensorSpec([], tf.int64))
    batches = list(
        pipeline(
            from_generator(gen, sig), DataConfig(batch_size=4, shuffle_buffer=0), training=False
        )
    )
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    with pytest.raises(UserError, match="same number of examples"):
        from_numpy(x, y[:5])


@pytest.mark.parametrize(
    ("dtype", "kw", "identity"),
    [
        ("float32", {}, True),
        ("float64", {}, False),  # cast to float32
        ("uint8", {}, False),  # scaled to [0, 1]
        ("float32", {"one_hot": 3}, False),
        ("float32", {"normalizers": {"x": keras.layers.Identity()}}, False),
    ],
)
def test_post_map_is_skipped_only_when_it_changes_nothing(dtype, kw, identity):
    """The per-batch map stage is left out exactly when its output equals its input."""
    from tfkit.data.input_pipeline import _is_identity, make_postprocess

    post = make_postprocess(["x"], **kw)
    x = (np.arange(24).reshape(4, 6) % 7).astype(dtype)
    y = np.arange(4) % 3
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    assert _is_identity(post, ds.element_spec) is identity
    if identity:
        for (bx, by), (px, py) in zip(ds, ds.map(post), strict=True):
            np.testing.assert_array_equal(bx.numpy(), px.numpy())
            np.testing.assert_array_equal(by.numpy(), py.numpy())
            assert px.dtype == bx.dtype and py.dtype == by.dtype


def test_tfkit_data_pipeline_is_the_plain_function_after_any_import():
    # `tfkit.data.pipeline(ds, cfg)` as the notebooks call it: a plain function, also once
    # the module defining it has been imported (a submodule of the same name would rebind
    # the package attribute to itself)
    import inspect

    import tfkit.data
    from tfkit.data import input_pipeline  # the module that defines pipeline

    assert inspect.isfunction(tfkit.data.pipeline)
    assert tfkit.data.pipeline is input_pipeline.pipeline
    ds = tfkit.data.pipeline(
        tf.data.Dataset.range(5), {"batch_size": 2, "shuffle_buffer": 0}, training=False
    )
    assert [b.numpy().tolist() for b in ds] == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_tfrecord_cache_parses_early_same_batches_as_uncached(tmp_path, drop_remainder):
    """With a cache, TFRecords are parsed before it (by the file readers); the batches, their
    order under the seed and their dtypes equal those of the uncached path, parsed per batch."""
    from tfkit.data.tfrecord import write_tfrecords

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(203, 4, 4, 3), dtype=np.uint8)
    labels = (np.arange(203) % 5).astype(np.int64)
    write_tfrecords({"image": images, "label": labels}, tmp_path, num_shards=3,
                    meta={"label": "label"})  # fmt: skip

    def batches(cache):
        cfg = DataConfig.model_validate(
            {"source": {"kind": "tfrecord", "path": str(tmp_path)}, "batch_size": 16,
             "cache": cache, "seed": 4, "drop_remainder": drop_remainder,
             "split": {"train": 0.8, "val": 0.2, "test": 0.0}}
        )  # fmt: skip
        splits = build(cfg)
        return [
            [(x.numpy(), y.numpy()) for x, y in ds]
            for ds in (splits.train, splits.train, splits.val)
        ]

    cached, uncached = batches("memory"), batches("none")
    assert [len(e) for e in cached] == [len(e) for e in uncached]
    assert sum(len(x) for x, _ in cached[2]) == (32 if drop_remainder else 41)
    for epoch_a, epoch_b in zip(cached, uncached, strict=True):
        for (xa, ya), (xb, yb) in zip(epoch_a, epoch_b, strict=True):
            assert xa.dtype == xb.dtype == np.float32 and ya.dtype == yb.dtype
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(cached[0][0][0], cached[1][0][0])  # reshuffled each epoch


def test_tfrecord_memory_cache_serves_later_epochs(tmp_path):
    """The cache holds the parsed examples: once filled, the files are not read again."""
    from tfkit.data.tfrecord import write_tfrecords

    images = np.arange(40 * 2 * 2, dtype=np.uint8).reshape(40, 2, 2, 1)
    write_tfrecords({"image": images, "label": np.arange(40) % 2}, tmp_path, num_shards=2,
                    meta={"label": "label"})  # fmt: skip
    cfg = DataConfig.model_validate(
        {"source": {"kind": "tfrecord", "path": str(tmp_path)}, "batch_size": 8,
         "split": {"train": 1.0, "val": 0.0, "test": 0.0}}
    )  # fmt: skip
    train = build(cfg).train
    first = sorted(float(v) for x, _ in train for v in x.numpy()[:, 0, 0, 0])
    for f in tmp_path.glob("*.tfrecord"):
        f.write_bytes(b"")  # emptied: only the cache can still give the examples
    again = sorted(float(v) for x, _ in train for v in x.numpy()[:, 0, 0, 0])
    assert again == first and len(first) == 40
