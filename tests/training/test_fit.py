"""The compile/fit path end to end: every config trains, results are written, bad input fails."""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkit.config import TrainConfig, load_config
from tfkit.data.spec import DataSpec, InputSpec
from tfkit.errors import UserError
from tfkit.runs import create_run_dir
from tfkit.training.commands import evaluate_command, predict_command, train_command
from tfkit.training.fit import compile_model
from tfkit.training.session import fit

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# small settings per config: two short epochs each
SMALL = {
    "digits_cnn": ["model.filters=[8,16]", "model.dense_units=[32]"],
    "binary_mlp": ["data.source.count=800"],
    "two_input": ["data.source.count=800"],
    "simple_ann": [],
    "sequence_bilstm": ["data.source.count=400", "model.units=[8]"],
    "huber_regression": ["data.source.count=800"],
}


def _losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_config_trains_and_writes_run(name, run_root):
    overrides = ["train.epochs=2", "train.tensorboard=false", *SMALL[name]]
    config = load_config(CONFIGS / f"{name}.yaml", overrides)
    run_dir = create_run_dir(config, root=run_root)
    result = fit(config, run_dir)
    losses = _losses(run_dir)
    assert len(losses) == result["epochs"] == 2 or name == "binary_mlp"
    assert losses[-1] < losses[0], losses
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test"]["loss"] == pytest.approx(result["test"]["loss"])
    assert np.isfinite(saved["test"]["loss"])
    for path in ["config.yaml", "model.keras", "checkpoints/last.keras", "checkpoints/best.keras"]:
        assert (run_dir / path).exists(), path
    assert not (run_dir / "backup").exists()
    val = [
        json.loads(line)["val_loss"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    if min(val) == val[-1]:  # the last epoch is the best: best.keras is the final model
        import keras

        best, final = (
            keras.saving.load_model(run_dir / p).get_weights()
            for p in ("checkpoints/best.keras", "model.keras")
        )
        for u, v in zip(best, final, strict=True):
            np.testing.assert_array_equal(u, v)


def test_last_checkpoint_is_written_at_the_first_epoch_end_not_before_the_first_step(run_root):
    """`checkpoints/last.keras` is the model after the first finished epoch (with any
    `train.checkpoint`, here none), and nothing writes it before training starts."""
    overrides = ["train.epochs=2", "train.tensorboard=false", "train.checkpoint=none"]
    config = load_config(CONFIGS / "simple_ann.yaml", overrides)
    run_dir = create_run_dir(config, root=run_root)
    last = run_dir / "checkpoints" / "last.keras"
    seen = {}

    class Probe(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.setdefault("at_first_step", last.exists())

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                seen["after_first_epoch"] = last.exists()
                seen["weights"] = self.model.get_weights()

    fit(config, run_dir, callbacks=[Probe()])
    assert seen["at_first_step"] is False and seen["after_first_epoch"] is True
    saved = keras.saving.load_model(last).get_weights()
    for u, v in zip(saved, seen["weights"], strict=True):
        np.testing.assert_array_equal(u, v)  # the first epoch's model, not the final one
    final = keras.saving.load_model(run_dir / "model.keras").get_weights()
    assert any(not np.array_equal(u, v) for u, v in zip(saved, final, strict=True))


def test_evaluate_and_predict_commands(run_root, tmp_path, capsys):
    config = load_config(CONFIGS / "simple_ann.yaml", ["train.epochs=3", "train.tensorboard=false"])
    run_dir = create_run_dir(config, root=run_root)
    result = fit(config, run_dir)
    assert result["test"]["accuracy"] > 0.8
    assert evaluate_command(argparse.Namespace(run_dir=str(run_dir), split="test")) == 0
    assert f"{result['test']['accuracy']:.4f}" in capsys.readouterr().out

    from sklearn.datasets import load_digits

    digits = load_digits()
    np.save(tmp_path / "x.npy", (digits.data[:50] / 16.0).astype("float32"))
    args = argparse.Namespace(
        run_dir=str(run_dir),
        input=str(tmp_path / "x.npy"),
        output=str(tmp_path / "p.csv"),
        batch_size=16,
    )
    assert predict_command(args) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "p.csv")
    assert table.shape == (50, 11)
    assert (table["class"].to_numpy() == digits.target[:50]).mean() > 0.8

    np.savez(tmp_path / "x.npz", x=(digits.data[:20] / 16.0).astype("float32"))
    args.input, args.output = str(tmp_path / "x.npz"), str(tmp_path / "p.npz")
    assert predict_command(args) == 0
    with np.load(tmp_path / "p.npz") as saved:
        assert saved["predictions"].shape == (20, 10)
        np.testing.assert_array_equal(saved["classes"], table["class"].to_numpy()[:20])

    np.save(tmp_path / "bad.npy", np.zeros((4, 8, 8), "float32"))
    args.input = str(tmp_path / "bad.npy")
    with pytest.raises(UserError, match=r"shape \(4, 8, 8\).*expects \(64,\) per example"):
        predict_command(args)


def _train_args(**kw):
    base = dict(
        config=None, overrides=[], run_dir=None, runs_root="runs", resume=None, dry_run=False
    )
    base.update(kw)
    return argparse.Namespace(**base)


def test_train_command_dry_run_and_resume_errors(tmp_path, capsys):
    root = tmp_path / "runs"
    args = _train_args(
        config=str(CONFIGS / "digits_cnn.yaml"),
        overrides=["train.epochs=3"],
        runs_root=str(root),
        dry_run=True,
    )
    assert train_command(args) == 0
    out = capsys.readouterr().out
    assert "epochs: 3" in out and "name: digits_cnn" in out
    assert not root.exists()
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match=r"--resume .*plain: not a tfkit run directory"):
        train_command(_train_args(resume=str(tmp_path / "plain")))
    config = load_config(CONFIGS / "digits_cnn.yaml")
    run_dir = create_run_dir(config, root=root)
    with pytest.raises(UserError, match=r"config changed at model.filters"):
        train_command(_train_args(resume=str(run_dir), overrides=["model.filters=[4]"]))


def test_model_that_does_not_fit_data_fails_before_training(run_root):
    config = load_config(CONFIGS / "digits_cnn.yaml", ["model.outputs=5"])
    with pytest.raises(UserError, match=r"5.*10 classes|10 classes.*5"):
        fit(config, create_run_dir(config, root=run_root))
    spec = DataSpec(inputs=(InputSpec("x", (4,)),), task="multiclass", num_classes=10)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="softmax")])
    with pytest.raises(UserError, match=r"model outputs 5 values.*data has 10 classes"):
        compile_model(model, TrainConfig(), spec)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(UserError, match=r"binary_crossentropy` is for 0/1 labels.*10 classes"):
        compile_model(model, TrainConfig(loss="binary_crossentropy"), spec)


def test_sample_weights_from_data_weigh_the_loss():
    """Examples with weight 0 teach nothing: training on them leaves the weights as they were."""
    spec = DataSpec(
        inputs=(InputSpec("x", (4,)),), task="binary", num_classes=2, has_sample_weight=True
    )
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    compile_model(model, TrainConfig(loss="binary_crossentropy"), spec)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    zero = tf.data.Dataset.from_tensor_slices((x, y, np.zeros(64, "float32"))).batch(16)
    model.fit(zero, epochs=2, verbose=0)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-7)
    ones = tf.data.Dataset.from_tensor_slices((x, y, np.ones(64, "float32"))).batch(16)
    model.fit(ones, epochs=1, verbose=0)
    assert not np.allclose(before[0], model.get_weights()[0])


def _binary_mlp_weights(run_root, class_weight=None, count=400):
    """Train binary_mlp (2 epochs, no early stop) on the fit path; its final weights."""
    sets = [
        f"data.source.count={count}",
        "train.epochs=2",
        "train.callbacks=[]",
        "train.tensorboard=false",
    ]
    if class_weight is not None:
        sets.append(f"train.class_weight={class_weight}")
    config = load_config(CONFIGS / "binary_mlp.yaml", sets)
    run_dir = create_run_dir(config, root=run_root)
    result = fit(config, run_dir)
    assert result["epochs"] == 2 and np.isfinite(result["test"]["loss"])
    return keras.saving.load_model(run_dir / "model.keras")


def test_class_weight_on_the_fit_path_weighs_the_training_loss(run_root):
    """Weights of 1 train exactly as no weights; almost no weight on class 1 teaches the
    model that class 1 hardly matters (its predicted probability falls); `balanced` trains."""
    plain = _binary_mlp_weights(run_root)
    ones = _binary_mlp_weights(run_root, "{0: 1.0, 1: 1.0}")
    for a, b in zip(plain.get_weights(), ones.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    light_ones = _binary_mlp_weights(run_root, "{0: 1.0, 1: 0.01}")
    x = np.random.default_rng(0).normal(size=(512, 50)).astype("float32")
    p_plain = float(plain.predict(x, verbose=0).mean())
    p_light = float(light_ones.predict(x, verbose=0).mean())
    assert p_light < 0.5 * p_plain, (p_light, p_plain)
    balanced = _binary_mlp_weights(run_root, "balanced")
    assert np.isfinite(balanced.predict(x, verbose=0)).all()


_MIRRORED_SCRIPT = """
import json, sys
from tfkit.config import load_config
from tfkit.runs import create_run_dir
from tfkit.training.session import fit
out = {}
for strategy in ("default", "mirrored"):
    config = load_config(sys.argv[1], [f"runtime.strategy={strategy}", *sys.argv[3:]])
    config.name = f"ann_{strategy}"
    result = fit(config, create_run_dir(config, root=sys.argv[2]))
    out[strategy] = {"accuracy": result["test"]["accuracy"], "replicas": result["replicas"]}
print("RESULT", json.dumps(out))
"""


def test_mirrored_two_devices_matches_one_device(run_root):
    """MirroredStrategy over 2 logical CPUs trains to the accuracy of one device.

    Runs in a fresh process: TensorFlow keeps collective-op state per process, and a second
    MirroredStrategy over the same devices in the same process can clash with it.
    """
    import os
    import subprocess
    import sys

    overrides = [
        "runtime.logical_cpus=2",
        # few long epochs: MirroredStrategy on CPU pays ~2 s per epoch to set up
        "data.batch_size=128",
        "data.repeat=true",
        "train.steps_per_epoch=40",
        "train.epochs=2",
        "train.validation_freq=2",
        "train.optimizer={name: adam, learning_rate: 0.01}",
        "train.tensorboard=false",
        "train.checkpoint=none",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _MIRRORED_SCRIPT,
            str(CONFIGS / "simple_ann.yaml"),
            str(run_root),
            *overrides,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["default"]["replicas"] == 1 and result["mirrored"]["replicas"] == 2
    assert result["mirrored"]["accuracy"] > 0.9
    assert abs(result["mirrored"]["accuracy"] - result["default"]["accuracy"]) <= 0.03, result


def test_example_script_trains(tmp_path, monkeypatch, capsys):
    import runpy

    monkeypatch.chdir(tmp_path)
    script = CONFIGS.parent / "examples" / "train_script.py"
    argv = [str(script), str(CONFIGS / "simple_ann.yaml"), "--set", "train.epochs=2"]
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    accuracy = float(out.split("'accuracy': ")[1].split(",")[0])
    assert accuracy > 0.8, out
    lines = (tmp_path / "runs" / "train_script" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2


def _gray_8x8_model_and_source(folder) -> tuple[keras.Model, dict]:
    """A model taking 8x8 grayscale images and the `images` source of `folder`."""
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    source = {
        "kind": "images",
        "path": str(folder),
        "image_size": [8, 8],
        "color_mode": "grayscale",
    }
    return model, source


@pytest.mark.property  # the main job as configured: about 2 minutes on 2 busy cores
def test_digits_cnn_reaches_99_percent(run_root):
    """The main job as configured: >= 99.0 % test accuracy on the digits."""
    config = load_config(CONFIGS / "digits_cnn.yaml")
    start = time.perf_counter()
    result = fit(config, create_run_dir(config, root=run_root))
    print(
        f"digits_cnn: test accuracy {result['test']['accuracy']:.4f} in {time.perf_counter() - start:.1f}s"
    )
    assert result["epochs"] == config.train.epochs
    assert result["test"]["accuracy"] >= 0.99


def test_predict_reads_parquet_columns_and_image_folders_like_the_data_sources(tmp_path):
    import pandas as pd
    from PIL import Image

    from tfkit.config import validate
    from tfkit.training.predict import read_inputs

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "y": [0, 1, 0]})
    frame.to_parquet(tmp_path / "t.parquet")
    config = validate(
        {
            "data": {
                "source": {
                    "kind": "parquet",
                    "path": "t.parquet",
                    "features": ["a", "b"],
                    "label": "y",
                }
            }
        }
    )
    x = read_inputs(tmp_path / "t.parquet", model, config)
    np.testing.assert_array_equal(x, frame[["a", "b"]].to_numpy("float32"))

    folder = tmp_path / "images"
    folder.mkdir()
    for i, value in enumerate((0, 255, 0)):
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(folder / f"{i}.png")
    model, source = _gray_8x8_model_and_source(folder)
    for normalize, low, high in (("none", 0.0, 1.0), ("minus_one_one", -1.0, 1.0)):
        config = validate({"data": {"source": source, "normalize": normalize}})
        x = read_inputs(folder, model, config)
        assert x.shape == (3, 8, 8, 1) and x.dtype == np.float32
        assert x[0].max() == low and x[1].min() == high
    config = validate({"data": {"source": source, "normalize": "standardize"}})
    with pytest.raises(UserError, match="standardizes its images"):
        read_inputs(folder, model, config)


@pytest.mark.parametrize("sizes", [[(8, 8), (10, 8)], [(6, 6)], [(8, 8), (8, 8), (8, 9)]])
def test_predict_refuses_images_of_another_size_unless_asked_to_resize(tmp_path, sizes):
    """An image folder whose images are not the model's input size is refused, naming the
    first such file with its size and the expected one; `resize=True` resizes every image
    (and leaves images of the right size exactly as they are)."""
    from PIL import Image

    from tfkit.config import validate
    from tfkit.training.predict import read_inputs

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pixels = []
    for i, (h, w) in enumerate(sizes):
        pixels.append((rng.random((h, w)) * 255).astype(np.uint8))
        Image.fromarray(pixels[-1]).save(folder / f"{i}.png")
    model, source = _gray_8x8_model_and_source(folder)
    config = validate({"data": {"source": source}})
    first = next(i for i, size in enumerate(sizes) if size != (8, 8))
    h, w = sizes[first]
    with pytest.raises(UserError) as err:
        read_inputs(folder, model, config)
    assert str(err.value).startswith(
        f"--input: {folder / f'{first}.png'} is {h}x{w} (height x width); the model takes 8x8"
    ), err.value
    assert "--resize" in str(err.value)
    x = read_inputs(folder, model, config, resize=True)
    assert x.shape == (len(sizes), 8, 8, 1)
    for i, size in enumerate(sizes):
        if size == (8, 8):
            np.testing.assert_array_equal(x[i, ..., 0], pixels[i] / np.float32(255.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("kind", ["npy", "npz", "csv"])
def test_predict_refuses_inputs_with_nan_or_inf_naming_file_and_count(tmp_path, kind, bad):
    """Like training's data.nan_policy: error, `tfkit predict` refuses non-finite inputs
    (the file, the input and how many values and examples) instead of predicting them."""
    from tfkit.config import validate
    from tfkit.training.predict import read_inputs

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    x = np.arange(15, dtype="float32").reshape(5, 3)
    x[1, 0] = x[3, 2] = x[3, 1] = bad
    path = tmp_path / f"in.{kind}"
    if kind == "npy":
        np.save(path, x)
    elif kind == "npz":
        np.savez(path, x=x)
    else:
        import pandas as pd

        pd.DataFrame(x, columns=["a", "b", "c"]).to_csv(path, index=False)
    source = {"kind": "csv", "path": "t.csv", "features": ["a", "b", "c"], "label": "y"}
    config = validate({"data": {"source": source, "normalize": "none"}})
    message = f"--input {path}: input `.*` holds 3 NaN or infinite value\\(s\\) in 2 of 5 example"
    with pytest.raises(UserError, match=message):
        read_inputs(path, model, config)
    x[np.isin(np.arange(5), [1, 3])] = 0.0  # the same file with finite values is read as is
    np.save(tmp_path / "ok.npy", x)
    np.testing.assert_array_equal(read_inputs(tmp_path / "ok.npy", model, config), x)


def test_predict_takes_raw_inputs_of_a_standardized_run(tmp_path, capsys):
    """`data.normalize: standardize` statistics are saved in spec.json: `tfkit predict` on raw
    arrays matches the model on normalized ones; `--normalized` takes them as they are."""
    import json

    from tfkit.cli import main
    from tfkit.data.datasets import digits
    from tfkit.data.input_pipeline import apply_normalization
    from tfkit.runs import Run

    config = tmp_path / "digits.yaml"
    config.write_text(
        "name: std_digits\n"
        "data:\n"
        "  source: {kind: digits, layout: flat}\n"
        "  split: {train: 0.8, val: 0.0, test: 0.2, seed: 0}\n"
        "  normalize: standardize\n"
        "  batch_size: 64\n"
        "model: {name: mlp, units: [32]}\n"
        "train: {epochs: 3, verbose: 0, tensorboard: false,"
        " optimizer: {name: adam, learning_rate: 0.003}}\n"
    )
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run_dir)]) == 0
    record = json.loads((run_dir / "spec.json").read_text())["normalization"]
    assert set(record) == {"x"} and len(record["x"]["scale"]) == 64

    data = digits("flat")
    np.save(tmp_path / "raw.npy", data.x)
    normalized = apply_normalization(data.x, record, ["x"])
    informative = data.x.std(0) > 0.05  # the constant border pixels stay as they are
    assert np.abs(normalized.mean(0)[informative]).max() < 0.25  # train stats: ~0 mean
    assert np.abs(normalized.std(0)[informative] - 1).max() < 0.25  # ~unit variance

    out_raw, out_norm = tmp_path / "p_raw.npy", tmp_path / "p_norm.npy"
    assert (
        main(
            [
                "predict",
                str(run_dir),
                "--input",
                str(tmp_path / "raw.npy"),
                "--output",
                str(out_raw),
            ]
        )
        == 0
    )
    np.save(tmp_path / "norm.npy", normalized)
    args = ["--input", str(tmp_path / "norm.npy"), "--output", str(out_norm), "--normalized"]
    assert main(["predict", str(run_dir), *args]) == 0
    a, b = np.load(out_raw), np.load(out_norm)
    expected = Run(run_dir).load_model().predict(normalized, verbose=0)
    np.testing.assert_allclose(a, expected, atol=1e-5)
    np.testing.assert_allclose(b, expected, atol=1e-5)
    assert (a.argmax(1) == data.y).mean() >= 0.9  # raw inputs are classified well
    # the raw pixels taken as normalized give other probabilities: the normalization mattered
    args = ["--input", str(tmp_path / "raw.npy"), "--output", str(tmp_path / "bad.npy")]
    assert main(["predict", str(run_dir), *args, "--normalized"]) == 0
    assert np.abs(np.load(tmp_path / "bad.npy") - expected).max() > 0.2


def test_recorded_normalization_equals_the_pipeline_normalizers():
    """`apply_normalization` with the spec's record gives what the pipeline feeds the model."""
    import tfkit.data
    from tfkit.config import validate
    from tfkit.data.input_pipeline import apply_normalization

    def data(normalize, source):
        cfg = validate(
            {
                "data": {
                    "source": source,
                    "split": {"train": 0.8, "val": 0.0, "test": 0.2, "seed": 0},
                    "normalize": normalize,
                    "batch_size": 500,
                }
            }
        ).data
        return tfkit.data.build(cfg, seed=0)

    sources = [
        {"kind": "digits", "layout": "flat"},
        {"kind": "digits", "layout": "image"},
        {"kind": "two_input", "count": 300},
    ]
    for source in sources:
        raw = next(iter(data("none", source).test))[0]
        for normalize in ("standardize", "rescale", "minus_one_one"):
            splits = data(normalize, source)
            fed = next(iter(splits.test))[0]
            names = [i.name for i in splits.spec.inputs]
            raw_np = (
                {k: v.numpy() for k, v in raw.items()} if isinstance(raw, dict) else raw.numpy()
            )
            got = apply_normalization(raw_np, splits.spec.normalization, names)
            fed = fed if isinstance(fed, dict) else {names[0]: fed}
            got = got if isinstance(got, dict) else {names[0]: got}
            for name in names:
                np.testing.assert_allclose(got[name], fed[name].numpy(), atol=1e-5, err_msg=name)
