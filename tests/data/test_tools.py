"""`tfkit data convert` and `tfkit data inspect`: exit codes, messages, round trips."""

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
        and "`--resolution` must be a power of two. Received: --resolution 48"
        in capsys.readouterr().err
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
