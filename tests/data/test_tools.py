"""`tfkit data convert` and `tfkit data inspect`: exit codes, messages, round trips."""

import json

import numpy as np
import pandas as pd
import tensorflow as tf
import yaml
from PIL import Image

from tfkit.cli import main
from tfkit.config import DataConfig
from tfkit.data import build

from .conftest import write_image_folder


def test_convert_npz_then_inspect_and_train_source(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)).astype(np.float32), rng.integers(0, 3, 60)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    out = tmp_path / "rec"
    rc = main(["data", "convert", "--from", "npz", str(tmp_path / "a.npz"), "--out", str(out),
               "--shard-mb", "0.001", "--compression", "GZIP"])  # fmt: skip
    assert rc == 0
    assert "wrote 60 examples in" in capsys.readouterr().out
    assert len(list(out.glob("*.tfrecord.gz"))) > 1
    assert main(["data", "inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "examples: 60" in text and "x: float32 [5]" in text and "num_classes: 3" in text
    splits = build(DataConfig.model_validate({"source": {"kind": "tfrecord", "path": str(out)},
                                              "split": {"train": 1.0, "val": 0, "test": 0}, "shuffle_buffer": 0}))  # fmt: skip
    got = np.concatenate([b[0].numpy() for b in splits.train])
    assert sorted(got[:, 0].tolist()) == sorted(x[:, 0].tolist())
    assert (
        main(["data", "convert", "--from", "npz", str(tmp_path / "a.npz"), "--out", str(out)]) == 2
    )
    assert "already holds a dataset" in capsys.readouterr().err


def test_convert_images_crop_pad_and_skip_bad(tmp_path, capsys):
    src = write_image_folder(tmp_path / "img", bad="dog")
    out = tmp_path / "rec"
    rc = main(
        [
            "data",
            "convert",
            "--from",
            "images",
            str(src),
            "--out",
            str(out),
            "--resolution",
            "8",
            "--fit",
            "pad",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0
    assert (
        "skipped" in captured.err
        and "broken.png" in captured.err
        and "UnidentifiedImageError" in captured.err
    )
    assert "wrote 8 examples" in captured.out and "image uint8[8, 8, 3]" in captured.out
    grid = tmp_path / "grid.png"
    assert main(["data", "inspect", str(out), "--grid", str(grid)]) == 0
    assert Image.open(grid).size == (24, 24)  # 8 images -> 3x3 grid of 8x8
    assert "class_names: ['cat', 'dog']" in capsys.readouterr().out
    rc = main(
        [
            "data",
            "convert",
            "--from",
            "images",
            str(src),
            "--out",
            str(tmp_path / "x"),
            "--resolution",
            "48",
        ]
    )
    assert (
        rc == 2
        and "argument --resolution: must be a power of two. Received: 48" in capsys.readouterr().err
    )


def test_convert_csv_missing_column(tmp_path, capsys):
    pd.DataFrame({"a": [1.0, 2.0], "b": [0, 1]}).to_csv(tmp_path / "t.csv", index=False)
    rc = main(
        [
            "data",
            "convert",
            "--from",
            "csv",
            str(tmp_path / "t.csv"),
            "--out",
            str(tmp_path / "o"),
            "--label",
            "target",
        ]
    )
    assert rc == 2
    assert "`--label`: column `target` is not in" in capsys.readouterr().err
    assert (
        main(
            [
                "data",
                "convert",
                "--from",
                "csv",
                str(tmp_path / "nope.csv"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "no such file" in capsys.readouterr().err


def test_inspect_foreign_prints_pasteable_features(tmp_path, capsys):
    path = tmp_path / "f.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(5):
            f = tf.train
            ex = f.Example(features=f.Features(feature={
                "v": f.Feature(float_list=f.FloatList(value=[i, i])),
                "k": f.Feature(int64_list=f.Int64List(value=[i])),
            }))  # fmt: skip
            w.write(ex.SerializeToString())
    assert main(["data", "inspect", str(path)]) == 0
    text = capsys.readouterr().out
    block = text[text.index("features:") : text.index("files:")]
    features = yaml.safe_load(block)["features"]
    assert features == [
        {"name": "k", "dtype": "int64", "shape": []},
        {"name": "v", "dtype": "float32", "shape": [2]},
    ]
    assert "examples: 5" in text


def test_inspect_damaged_and_missing(tmp_path, capsys):
    from tfkit.data.tfrecord import shard_name, write_tfrecords

    write_tfrecords(
        {"x": np.zeros((30, 4), np.float32), "label": np.zeros(30, np.int64)},
        tmp_path / "r",
        num_shards=2,
    )
    bad = tmp_path / "r" / shard_name(0, 2, "")
    bad.write_bytes(bad.read_bytes()[:-10])
    assert main(["data", "inspect", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert bad.name in err and "truncated record" in err
    assert main(["data", "inspect", str(tmp_path / "r"), "--ignore-errors"]) == 0
    assert "skipped bad records: 1" in capsys.readouterr().out
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


# GAN data: square fitting, power-of-two sizes, labels, skipped files, x-flip, [-1, 1] ------


def _bands(path, width=32, height=16):
    """A wide image: red left quarter, green middle half, blue right quarter."""
    arr = np.zeros((height, width, 3), np.uint8)
    q = width // 4
    arr[:, :q, 0] = arr[:, q : 3 * q, 1] = arr[:, 3 * q :, 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _convert_images(src, out, *extra):
    return main(["data", "convert", "--from", "images", str(src), "--out", str(out), *extra])


def _read_images(out):
    from tfkit.data.sources import from_tfrecords

    batches = list(from_tfrecords(str(out), batch_size=64, label=None).as_numpy_iterator())
    return np.concatenate([b for b in batches])


def test_convert_images_crop_or_pad_to_a_power_of_two(tmp_path, capsys):
    _bands(tmp_path / "flat" / "a.png")
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    (tmp_path / "flat" / "bad.jpg").write_bytes(b"garbage")
    args = ["--resolution", "8", "--labels", "none"]
    assert _convert_images(tmp_path / "flat", tmp_path / "crop", *args, "--fit", "crop") == 0
    err = capsys.readouterr().err
    assert "notes.txt: not an image file (extension .txt)" in err
    assert "bad.jpg: cannot decode (UnidentifiedImageError" in err
    crop = _read_images(tmp_path / "crop")
    assert crop.shape == (1, 8, 8, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop[0], np.broadcast_to([0, 255, 0], (8, 8, 3)))  # centre
    assert _convert_images(tmp_path / "flat", tmp_path / "pad", *args, "--fit", "pad") == 0
    pad = _read_images(tmp_path / "pad")[0].astype(int)
    assert pad.shape == (8, 8, 3)
    assert pad[0].max() == 0 and pad[7].max() == 0  # black bars above and below
    assert pad[4, 0, 0] > 200 and pad[4, 4, 1] > 200 and pad[4, 7, 2] > 200  # red, green, blue
    schema = json.loads((tmp_path / "pad" / "schema.json").read_text())
    assert set(schema["skipped"]) == {str(tmp_path / "flat" / n) for n in ("notes.txt", "bad.jpg")}
    assert schema["label"] is None
    for bad in ("12", "0"):
        assert _convert_images(tmp_path / "flat", tmp_path / "x", "--resolution", bad) == 2
        err = capsys.readouterr().err
        assert f"argument --resolution: must be a power of two. Received: {bad}" in err


def test_convert_images_labels_from_subfolders(tmp_path, capsys):
    src = write_image_folder(tmp_path / "img", classes=("a", "b", "c"), per_class=2)
    assert _convert_images(src, tmp_path / "rec", "--resolution", "4") == 0
    schema = json.loads((tmp_path / "rec" / "schema.json").read_text())
    assert schema["class_names"] == ["a", "b", "c"] and schema["num_classes"] == 3
    from tfkit.data.sources import from_tfrecords

    ds = from_tfrecords(str(tmp_path / "rec"), batch_size=16)
    x, y = next(iter(ds.as_numpy_iterator()))
    assert x.shape == (6, 4, 4, 3) and sorted(y.tolist()) == [0, 0, 1, 1, 2, 2]


def _gan_images(tmp_path, n=32, size=8):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        (tmp_path / "src").mkdir(exist_ok=True)
        Image.fromarray(img).save(tmp_path / "src" / f"{i:03d}.png")
    assert _convert_images(tmp_path / "src", tmp_path / "rec", "--resolution", str(size),
                           "--labels", "none") == 0  # fmt: skip
    return images


def test_xflip_and_minus_one_one_at_read_time(tmp_path):
    images = _gan_images(tmp_path)
    cfg = DataConfig.model_validate({
        "source": {"kind": "tfrecord", "path": str(tmp_path / "rec"), "label": None},
        "split": {"train": 1.0, "val": 0, "test": 0}, "shuffle_buffer": 0, "batch_size": 8,
        "normalize": "minus_one_one", "xflip": True,
    })  # fmt: skip
    train = build(cfg, seed=0).train
    expected = images.astype(np.float32) / 127.5 - 1.0
    flips = []
    for _ in range(3):  # the flips are drawn again every epoch
        got = np.concatenate(list(train.as_numpy_iterator()))
        assert got.shape == expected.shape and got.min() >= -1.0 and got.max() <= 1.0
        same = np.isclose(got, expected, atol=1e-5).all(axis=(1, 2, 3))
        mirrored = np.isclose(got, expected[:, :, ::-1], atol=1e-5).all(axis=(1, 2, 3))
        assert (same | mirrored).all()
        flips.append(mirrored)
    flips = np.array(flips)
    assert 0.2 < flips.mean() < 0.8
    assert not (flips == flips[0]).all()
    plain = build(cfg.model_copy(update={"xflip": False}), seed=0).train
    np.testing.assert_allclose(np.concatenate(list(plain.as_numpy_iterator())), expected, atol=1e-5)


def test_inspect_config_grid_shows_what_the_gan_sees(tmp_path, capsys):
    images = _gan_images(tmp_path, n=16)
    config = tmp_path / "gan.yaml"
    config.write_text(yaml.safe_dump({
        "name": "g",
        "data": {"source": {"kind": "tfrecord", "path": str(tmp_path / "rec"), "label": None},
                 "split": {"train": 1.0, "val": 0.0, "test": 0.0}, "shuffle_buffer": 0,
                 "normalize": "minus_one_one", "batch_size": 8},
        "gan": {"preset": "shapes16"},
    }))  # fmt: skip
    grid = tmp_path / "grid.png"
    assert main(["data", "inspect", str(config), "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "GAN input 8x8, no classes; normalize minus_one_one, xflip False" in out
    assert "range [-1, 1]" in out
    shown = np.asarray(Image.open(grid))
    assert shown.shape == (32, 32, 3)  # 16 images -> 4x4 grid of 8x8
    np.testing.assert_allclose(shown[:8, :8].astype(int), images[0].astype(int), atol=1)
    rc = main(["data", "inspect", str(config), "--set", "data.normalize=rescale"])
    assert rc == 2
    assert "`data.normalize` must be 'minus_one_one' for GAN training" in capsys.readouterr().err
