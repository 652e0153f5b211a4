"""TFRecords: round trips, foreign files from declared features, bad files named."""

import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tfkit.config import DataConfig, TFRecordSource
from tfkit.data import build, from_tfrecords
from tfkit.data import tfrecord as tfr
from tfkit.errors import UserError


def _columns(n=23):
    rng = np.random.default_rng(0)
    return {
        "id": np.arange(n, dtype=np.int64),
        "f32": rng.normal(size=(n, 3)).astype(np.float32),
        "u8": rng.integers(0, 255, size=(n, 4, 4, 3), dtype=np.uint8),
        "i32": rng.integers(-5, 5, size=(n, 2)).astype(np.int32),
        "f64": rng.normal(size=(n, 2, 2)),
        "f16": rng.normal(size=(n,)).astype(np.float16),
        "flag": rng.random(n) < 0.5,
        "text": np.array([f"s{i}" for i in range(n)]),
        "label": rng.integers(0, 4, size=n).astype(np.int64),
    }


@pytest.mark.parametrize("compression", ["", "GZIP"])
def test_round_trip_every_dtype(tmp_path, compression):
    cols = _columns()
    schema = tfr.write_tfrecords(cols, tmp_path, num_shards=3, compression=compression)
    assert schema["count"] == 23 and len(schema["shards"]) == 3
    assert json.loads((tmp_path / "schema.json").read_text())["compression"] == compression
    inputs = [k for k in cols if k != "label"]
    ds = from_tfrecords(str(tmp_path), batch_size=5, inputs=inputs)
    xs, ys = [], []
    for x, y in ds:
        xs.append({k: v.numpy() for k, v in x.items()})
        ys.append(y.numpy())
    got = {k: np.concatenate([b[k] for b in xs]) for k in inputs}
    order = np.argsort(got["id"])
    for k in inputs:
        assert got[k].dtype == cols[k].dtype or k == "text", k
        expected = cols[k].astype(object) if k == "text" else cols[k]
        actual = got[k][order]
        if k == "text":
            actual = np.array([v.decode() for v in actual], dtype=object)
        np.testing.assert_array_equal(actual, expected, err_msg=k)
    np.testing.assert_array_equal(np.concatenate(ys)[order], cols["label"])


def test_shard_mb_sets_shard_count(tmp_path):
    cols = {"x": np.zeros((200, 250), np.float32), "label": np.zeros(200, np.int64)}
    schema = tfr.write_tfrecords(cols, tmp_path, shard_mb=0.1)  # ~1 kB each: ~100 per shard
    assert 2 <= len(schema["shards"]) <= 3
    assert sum(s["count"] for s in schema["shards"]) == 200
    with pytest.raises(UserError, match="already holds a dataset"):
        tfr.write_tfrecords(cols, tmp_path)


def _foreign(path, n=12, drop=None, wrong=None):
    """TFRecords written without tfkit: PNG image, float list, varlen ints, int label."""
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(n):
            img = tf.io.encode_png(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).numpy()
            f = tf.train
            feats = {
                "img": f.Feature(bytes_list=f.BytesList(value=[img])),
                "feat": f.Feature(float_list=f.FloatList(value=[i, i + 0.5])),
                "tokens": f.Feature(int64_list=f.Int64List(value=list(range(i % 4 + 1)))),
                "y": f.Feature(int64_list=f.Int64List(value=[i % 2])),
            }
            if wrong:
                feats[wrong] = f.Feature(bytes_list=f.BytesList(value=[b"oops"]))
            if drop:
                del feats[drop]
            w.write(f.Example(features=f.Features(feature=feats)).SerializeToString())
    return path


def test_foreign_tfrecords_inferred_features_paste_into_config(tmp_path):
    path = _foreign(tmp_path / "foreign.tfrecord")
    found = tfr.infer_features(tfr.first_records(str(path), 10))
    text = tfr.features_yaml(found)
    features = yaml.safe_load(text)["features"]
    by_name = {f["name"]: f for f in features}
    assert by_name["img"] == {"name": "img", "dtype": "uint8", "shape": [6, 5, 3], "encoded": "png"}
    assert by_name["tokens"]["varlen"] is True
    assert by_name["feat"]["shape"] == [2]
    cfg = DataConfig.model_validate(
        {
            "source": {"kind": "tfrecord", "path": str(path), "features": features, "label": "y",
                       "inputs": ["img", "feat", "tokens"]},
            "batch_size": 4, "split": {"train": 0.5, "val": 0.25, "test": 0.25},
        }
    )  # fmt: skip
    splits = build(cfg)
    assert splits.spec.task == "binary"
    assert sum(splits.spec.counts.values()) == 12
    x, y = next(iter(splits.val))
    assert x["img"].shape[1:] == (6, 5, 3) and x["img"].dtype == tf.float32
    assert float(tf.reduce_max(x["img"])) <= 1.0
    assert x["tokens"].shape.rank == 2 and x["feat"].shape[1:] == (2,)


def test_tfrecord_without_schema_or_features_suggests_them(tmp_path):
    path = _foreign(tmp_path / "f.tfrecord")
    cfg = DataConfig(source=TFRecordSource(kind="tfrecord", path=str(path)))
    with pytest.raises(UserError, match=r"(?s)no schema.json; declare the features.*name: img"):
        build(cfg)


def _declared(path, **extra):
    feats = [
        {"name": "feat", "dtype": "float32", "shape": [2]},
        {"name": "y", "dtype": "int64"},
    ]
    return DataConfig.model_validate(
        {
            "source": {"kind": "tfrecord", "path": str(path), "features": feats, "label": "y"},
            **extra,
        }
    )


def test_missing_feature_names_feature_and_file(tmp_path):
    _foreign(tmp_path / "a.tfrecord")
    _foreign(tmp_path / "b.tfrecord", drop="feat")
    with pytest.raises(UserError, match=r"b\.tfrecord: feature `feat` is missing"):
        build(_declared(tmp_path))


def test_wrong_dtype_names_feature_and_file(tmp_path):
    _foreign(tmp_path / "a.tfrecord", wrong="feat")
    with pytest.raises(UserError, match=r"a\.tfrecord: feature `feat` has the wrong dtype"):
        build(_declared(tmp_path))


def _damaged(tmp_path, how):
    tfr.write_tfrecords(
        {"x": np.arange(40, dtype=np.float32)[:, None], "label": np.arange(40) % 2}, tmp_path,
        num_shards=2, meta={"label": "label"},
    )  # fmt: skip
    bad = tmp_path / tfr.shard_name(1, 2, "")
    data = bytearray(bad.read_bytes())
    if how == "truncated":
        bad.write_bytes(bytes(data[:-30]))
    else:
        data[len(data) // 2] ^= 0xFF
        bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_tfrecord_named_or_skipped(tmp_path, how):
    bad = _damaged(tmp_path, how)
    cfg = DataConfig.model_validate({"source": {"kind": "tfrecord", "path": str(tmp_path)}})
    with pytest.raises(UserError, match=f"{bad.name}: corrupt or truncated"):
        build(cfg)
    cfg.ignore_errors = True
    splits = build(cfg)
    skipped = splits.skipped[str(bad)]
    assert skipped >= 1
    total = sum(splits.spec.counts.values())
    assert total == 40 - skipped
    seen = sum(int(b[1].shape[0]) for ds in (splits.train, splits.val, splits.test) for b in ds)
    assert seen == total


def test_truncated_detected_without_full_verify(tmp_path):
    bad = _damaged(tmp_path, "truncated")
    cfg = DataConfig.model_validate(
        {"source": {"kind": "tfrecord", "path": str(tmp_path)}, "verify": False}
    )
    with pytest.raises(UserError, match=f"{bad.name}: corrupt or truncated.*truncated record"):
        build(cfg)


def test_parse_errors_at_run_time_name_the_file(tmp_path):
    """A record that breaks the spec past the first one still names its file (parse names)."""
    path = tmp_path / "mixed.tfrecord"
    good = _foreign(tmp_path / "g.tfrecord", n=3)
    bad = _foreign(tmp_path / "b.tfrecord", n=3, drop="feat")
    with tf.io.TFRecordWriter(str(path)) as w:
        for src in (good, bad):
            for r in tf.data.TFRecordDataset(str(src)):
                w.write(r.numpy())
    good.unlink()
    bad.unlink()
    cfg = _declared(path, shuffle_buffer=0, batch_size=6, split={"train": 1.0, "val": 0, "test": 0})
    splits = build(cfg)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"mixed\.tfrecord.*feat"):
        list(splits.train)


def test_missing_path(tmp_path):
    cfg = DataConfig.model_validate(
        {"source": {"kind": "tfrecord", "path": str(tmp_path / "nope")}}
    )
    with pytest.raises(UserError, match=r"`data.source.path`: no such file or directory"):
        build(cfg)
    (tmp_path / "empty").mkdir()
    cfg.source.path = str(tmp_path / "empty")
    with pytest.raises(UserError, match="holds no TFRecord files"):
        build(cfg)


def test_failed_write_leaves_nothing(tmp_path):
    bad = np.array(["a", "b", "c", 3], dtype=object)  # the 4th value cannot be stored
    with pytest.raises(TypeError):
        tfr.write_tfrecords({"s": bad, "label": np.arange(4)}, tmp_path / "out", num_shards=2)
    assert list(tmp_path.iterdir()) == []
