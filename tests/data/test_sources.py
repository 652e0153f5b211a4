"""Every source from YAML-shaped configs, and every bad input named in its message."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfkit.config import DataConfig
from tfkit.data import build, from_image_folder
from tfkit.errors import UserError

from .conftest import write_image_folder


def _cfg(source, **kw):
    return DataConfig.model_validate({"source": source, "batch_size": 4, **kw})


def test_default_config_is_digits_images():
    splits = build(DataConfig())
    x, y = next(iter(splits.train))
    assert x.dtype == tf.float32 and x.shape[1:] == (8, 8, 1)
    assert 0.0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1.0
    assert y.dtype.is_integer
    spec = splits.spec
    assert (spec.task, spec.num_classes, spec.inputs[0].shape) == ("multiclass", 10, (8, 8, 1))
    assert sum(spec.counts.values()) == 1797
    labels = np.concatenate([b[1].numpy() for b in splits.train])
    assert set(labels.tolist()) == set(range(10))
    flat = build(_cfg({"kind": "digits", "layout": "flat"}))
    assert flat.spec.inputs[0].shape == (64,)


def test_digits_are_scikit_learns_digits(monkeypatch):
    """The digits read from scikit-learn's file equal `load_digits()`'s, and without the
    file the loader gives them all the same."""
    import importlib.util

    from sklearn.datasets import load_digits

    from tfkit.data import datasets

    bunch = load_digits()
    images, labels = datasets.digits_table()
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    images, labels = datasets.digits_table()
    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)


@pytest.mark.parametrize(
    "source, shape, task",
    [
        ({"kind": "shapes", "count": 40, "resolution": 16}, (16, 16, 3), "multiclass"),
        ({"kind": "tabular_binary", "count": 40}, (50,), "binary"),
        ({"kind": "sequences", "count": 40, "length": 12}, (12, 4), "multiclass"),
        ({"kind": "regression", "count": 40}, (8,), "regression"),
    ],
)
def test_embedded_sources(source, shape, task):
    splits = build(_cfg(source))
    assert splits.spec.inputs[0].shape == shape and splits.spec.task == task
    x, y = next(iter(splits.train))
    assert x.shape[1:] == shape


def test_two_input_named_inputs():
    splits = build(_cfg({"kind": "two_input", "count": 40}))
    assert [(i.name, i.shape) for i in splits.spec.inputs] == [("a", (50,)), ("b", (10,))]
    assert splits.spec.multi_input and splits.spec.num_classes == 5
    x, y = next(iter(splits.train))
    assert set(x) == {"a", "b"} and x["a"].shape == (4, 50) and x["b"].shape == (4, 10)


def test_npz_multi_input_and_sample_weight(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz", a=rng.normal(size=(20, 3)), b=rng.normal(size=(20, 2)),
        y=rng.normal(size=20), w=np.full(20, 2.0),
    )  # fmt: skip
    src = {"kind": "npz", "path": str(tmp_path / "d.npz"), "x": ["a", "b"], "sample_weight": "w"}
    splits = build(_cfg(src))
    x, y, w = next(iter(splits.train))
    assert x["a"].dtype == tf.float32 and x["b"].shape[1:] == (2,)
    assert splits.spec.task == "regression" and splits.spec.has_sample_weight
    assert np.all(w.numpy() == 2.0)
    with pytest.raises(
        UserError, match=r"`data.source.x`: .*d.npz has no array `c`. Arrays found: a, b, y, w"
    ):
        build(_cfg({**src, "x": "c"}))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_tables(tmp_path, kind):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"f1": rng.normal(size=30), "f2": rng.normal(size=30), "f3": rng.normal(size=30)}
    )
    df["target"] = (df.f1 > 0).astype(int)
    path = tmp_path / f"t.{kind}"
    df.to_csv(path, index=False) if kind == "csv" else df.to_parquet(path)
    splits = build(_cfg({"kind": kind, "path": str(path), "label": "target"}))
    assert splits.spec.inputs[0].shape == (3,) and splits.spec.task == "binary"
    multi = build(
        _cfg(
            {
                "kind": kind,
                "path": str(path),
                "label": "target",
                "features": {"p": ["f1"], "q": ["f2", "f3"]},
            }
        )
    )
    assert [i.shape for i in multi.spec.inputs] == [(1,), (2,)]
    with pytest.raises(
        UserError,
        match=r"`data.source.label`: column `tgt` is not in .*Columns found: f1, f2, f3, target",
    ):
        build(_cfg({"kind": kind, "path": str(path), "label": "tgt"}))
    with pytest.raises(UserError, match=r"`data.source.features`: column `f9` is not in"):
        build(_cfg({"kind": kind, "path": str(path), "label": "target", "features": ["f1", "f9"]}))


def test_image_folder(tmp_path, image_folder):
    with pytest.raises(UserError, match=r"cannot decode image .*dog/broken\.png"):
        build(_cfg({"kind": "images", "path": str(image_folder), "image_size": [8, 8]}))
    splits = build(
        _cfg({"kind": "images", "path": str(image_folder), "image_size": [8, 8], "color_mode": "grayscale"},
             ignore_errors=True)
    )  # fmt: skip
    assert list(splits.skipped) == [str(image_folder / "dog" / "broken.png")]
    assert splits.spec.class_names == ("cat", "dog") and sum(splits.spec.counts.values()) == 8
    x, y = next(iter(splits.train))
    assert x.shape[1:] == (8, 8, 1) and x.dtype == tf.float32 and float(tf.reduce_max(x)) <= 1.0
    good = write_image_folder(tmp_path / "good")
    images = list(from_image_folder(str(good), image_size=(5, 6)))
    assert len(images) == 8 and images[0][0].shape == (5, 6, 3) and images[0][0].dtype == tf.uint8
    assert sorted(int(e[1]) for e in images) == [0] * 4 + [1] * 4


def test_missing_and_empty_paths(tmp_path):
    for source in (
        {"kind": "npz", "path": str(tmp_path / "none.npz")},
        {"kind": "csv", "path": str(tmp_path / "none.csv")},
        {"kind": "images", "path": str(tmp_path / "none")},
    ):
        with pytest.raises(
            UserError, match=r"`data.source.path`: no such (file|directory): .*none"
        ):
            build(_cfg(source))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"`data.source.path`: .*empty has no class subfolders"):
        build(_cfg({"kind": "images", "path": str(tmp_path / "empty")}))
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(UserError, match=r"`data.source.path`: .*empty holds no images"):
        build(_cfg({"kind": "images", "path": str(tmp_path / "empty")}))
