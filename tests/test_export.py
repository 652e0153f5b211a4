"""Export and serving: SavedModel and LiteRT exports match the Keras model; bad input fails."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkit.cli import main
from tfkit.config import load_config
from tfkit.export import FORMATS, export_run, load_exported
from tfkit.runs import Run, create_run_dir

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two trained runs: binary_mlp through `tfkit train` (writes spec.json) and two_input
    built and saved directly (its export reads the input names from the data config)."""
    root = tmp_path_factory.mktemp("export_runs")
    mlp_dir = root / "mlp"
    status = main(
        [
            "train",
            str(CONFIGS / "binary_mlp.yaml"),
            "--run-dir",
            str(mlp_dir),
            "--set",
            "data.source.count=400",
            "--set",
            "train.epochs=1",
            "--set",
            "train.verbose=0",
            "--set",
            "train.tensorboard=false",
        ]
    )
    assert status == 0
    assert (mlp_dir / "spec.json").exists()

    import tfkit.data
    import tfkit.models

    config = load_config(CONFIGS / "two_input.yaml", ["data.source.count=200"])
    two_dir = create_run_dir(config, root / "two_input")
    spec = tfkit.data.build(config.data, seed=config.runtime.seed).spec
    keras.utils.set_random_seed(0)
    tfkit.models.build(config.model, spec).save(two_dir / "model.keras")
    return {"mlp": mlp_dir, "two_input": two_dir}


def _examples(name: str, n: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    if name == "mlp":
        return {"x": rng.normal(size=(n, 50)).astype("float32")}
    return {
        "a": rng.normal(size=(n, 50)).astype("float32"),
        "b": rng.normal(size=(n, 10)).astype("float32"),
    }


def _keras_predict(run_dir: Path, x: dict[str, np.ndarray]) -> np.ndarray:
    model = Run(run_dir).load_model()
    return model.predict(x if len(x) > 1 else next(iter(x.values())), verbose=0)


@pytest.mark.parametrize("name", ["mlp", "two_input"])
def test_saved_model_signature_matches_keras(runs, tmp_path, name):
    out = tmp_path / "sm"
    manifest = export_run(runs[name], out, "saved_model")
    x = _examples(name)
    expected = _keras_predict(runs[name], x)

    serving = tf.saved_model.load(str(out)).signatures["serving_default"]
    _, specs = serving.structured_input_signature
    assert sorted(specs) == sorted(x)  # named as in the data schema
    for key, array in x.items():
        assert specs[key].shape.as_list() == [None, *array.shape[1:]]
    outputs = serving(**{k: tf.constant(v) for k, v in x.items()})
    assert list(outputs) == ["output_0"]
    got = outputs["output_0"].numpy()
    assert got.shape == expected.shape == (7, 1 if name == "mlp" else 5)
    assert np.abs(got - expected).max() <= TOLERANCE

    written = json.loads((out / "export.json").read_text())
    assert written == manifest
    assert manifest["format"] == "saved_model" and manifest["kind"] == "model"
    assert [i["name"] for i in manifest["inputs"]] == list(x)
    assert manifest["outputs"] == [
        {"name": "output_0", "shape": [None, expected.shape[1]], "dtype": "float32"}
    ]
    assert manifest["source_run"] == str(Path(runs[name]).resolve())
    assert manifest["tfkit_version"]
    spec_file = Path(runs[name]) / "spec.json"
    if spec_file.exists():  # what predict applies to raw inputs travels with the export
        assert manifest["normalization"] == json.loads(spec_file.read_text())["normalization"]


@pytest.mark.parametrize("name", ["mlp", "two_input"])
def test_litert_matches_keras(runs, tmp_path, name, capsys):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "lite"
    assert main(["export", str(runs[name]), "--format", "litert", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.tflite"]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == "litert" and manifest["artifact"] == "model.tflite"

    x = _examples(name)
    expected = _keras_predict(runs[name], x)
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    assert interpreter.get_signature_list()["serving_default"] == {
        "inputs": sorted(x),
        "outputs": ["output_0"],
    }
    runner = interpreter.get_signature_runner("serving_default")
    for key, details in runner.get_input_details().items():
        assert details["dtype"] == np.float32  # float32, not quantized
        assert list(details["shape_signature"]) == [-1, x[key].shape[1]]
    got = runner(**x)["output_0"]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOLERANCE

    # `tfkit predict` serves SavedModel exports only, and says so for a LiteRT one
    np.savez(tmp_path / "x.npz", **x)
    args = ["--input", str(tmp_path / "x.npz"), "--output", str(tmp_path / "p.npy")]
    assert main(["predict", str(out), *args]) == 2
    assert "is a `litert` export" in capsys.readouterr().err


def test_predict_accepts_exported_saved_model(runs, tmp_path, capsys):
    for name, suffix in [("mlp", ".npy"), ("two_input", ".npz")]:
        x = _examples(name, n=300)
        path = tmp_path / f"{name}_in{suffix}"
        if suffix == ".npy":
            np.save(path, x["x"])
        else:
            np.savez(path, **x)
        out = tmp_path / f"{name}_export"
        assert main(["export", str(runs[name]), "--out", str(out)]) == 0
        from_run, from_export = tmp_path / f"{name}_run.npy", tmp_path / f"{name}_sm.npy"
        common = ["--input", str(path), "--batch-size", "128"]
        assert main(["predict", str(runs[name]), *common, "--output", str(from_run)]) == 0
        assert main(["predict", str(out), *common, "--output", str(from_export)]) == 0
        a, b = np.load(from_run), np.load(from_export)
        assert a.shape == b.shape == (300, 1 if name == "mlp" else 5)
        assert np.abs(a - b).max() <= TOLERANCE
    assert "wrote 300 predictions" in capsys.readouterr().out

    served = load_exported(tmp_path / "two_input_export")
    assert [i.name for i in served.inputs] == ["a", "b"]
    bad = tmp_path / "wrong.npz"
    np.savez(bad, a=x["a"], c=x["b"])
    assert (
        main(["predict", str(out), "--input", str(bad), "--output", str(tmp_path / "o.npy")]) == 2
    )
    assert "needs inputs named ['a', 'b']" in capsys.readouterr().err


def test_export_of_run_without_model(tmp_path, capsys):
    config = load_config(CONFIGS / "binary_mlp.yaml")
    run_dir = create_run_dir(config, tmp_path / "empty_run")
    assert main(["export", str(run_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds no trained model" in err and str(run_dir / "model.keras") in err
    assert not (tmp_path / "out").exists()
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert "Run directory not found" in capsys.readouterr().err


def test_export_unknown_format_lists_formats(runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["export", str(runs["mlp"]), "--format", "tflite", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Unknown export format `tflite`" in err
    for name in FORMATS:
        assert name in err
    assert not out.exists()


def test_export_refuses_existing_out_unless_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    assert main(["export", str(runs["mlp"]), "--out", str(out)]) == 2
    assert "--out" in (err := capsys.readouterr().err) and "--overwrite" in err
    assert (out / "old.txt").read_text() == "keep me"
    # the run directory itself is never a valid --out, even with --overwrite
    run = str(runs["mlp"])
    assert main(["export", run, "--out", run, "--overwrite"]) == 2
    assert "run directory" in capsys.readouterr().err
    assert (runs["mlp"] / "model.keras").exists()

    assert main(["export", str(runs["mlp"]), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "old.txt").exists()
    assert (out / "saved_model.pb").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging dirs left behind


# a tiny class-conditional StyleGAN (as in tests/stylegan/test_trainer.py), never trained:
# the export must reproduce the trainer's G_ema from the run's checkpoint
TINY_GAN = dict(
    preset="shapes16",
    conditional=True,
    z_dim=8,
    w_dim=8,
    map_layers=1,
    channel_base=64,
    channel_max=8,
    batch=8,
    mbstd_group=2,
)


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    """A GAN run directory (config, gan_options.json, one checkpoint) and its trainer."""
    from tfkit.config import ExperimentConfig, GanConfig
    from tfkit.stylegan.trainer import OPTIONS_FILE, Trainer

    config = ExperimentConfig(name="tiny_gan", gan=GanConfig(**TINY_GAN))
    run_dir = create_run_dir(config, tmp_path_factory.mktemp("gan") / "run")
    rng = np.random.RandomState(0)
    images = rng.uniform(-1, 1, (16, 8, 8, 3)).astype("float32")
    labels = rng.randint(0, 3, 16).astype("int32")
    trainer = Trainer(
        config,
        run_dir,
        dataset=tf.data.Dataset.from_tensor_slices((images, labels)),
        num_classes=3,
        strategy=tf.distribute.get_strategy(),
        log=lambda line: None,
    )
    (run_dir / OPTIONS_FILE).write_text(json.dumps(trainer.opts.as_dict()))
    trainer.save(wait=True)
    return run_dir, trainer


def test_gan_export_has_z_and_class_inputs(gan_run, tmp_path):
    run_dir, trainer = gan_run
    manifest = export_run(run_dir, tmp_path / "gan", "saved_model")
    assert manifest["kind"] == "gan_generator"
    assert manifest["inputs"] == [
        {"name": "z", "shape": [None, 8], "dtype": "float32"},
        {"name": "c", "shape": [None], "dtype": "int32"},
    ]
    assert manifest["outputs"] == [{"name": "image", "shape": [None, 8, 8, 3], "dtype": "float32"}]
    serving = tf.saved_model.load(str(tmp_path / "gan")).signatures["serving_default"]
    z = np.random.RandomState(1).normal(size=(4, 8)).astype("float32")
    c = np.array([0, 1, 2, 0], np.int32)
    image = serving(z=tf.constant(z), c=tf.constant(c))["image"].numpy()
    assert image.shape == (4, 8, 8, 3) and np.isfinite(image).all()


def test_gan_export_matches_trainer_g_ema(gan_run, tmp_path):
    run_dir, trainer = gan_run
    export_run(run_dir, tmp_path / "gan", "saved_model")
    served = load_exported(tmp_path / "gan")
    z = np.random.RandomState(1).normal(size=(4, 8)).astype("float32")
    c = np.array([0, 1, 2, 0], np.int32)
    expected = trainer.G_ema(tf.constant(z), tf.constant(c), noise_mode="const", training=False)
    got = served({"z": z, "c": c})["image"]
    assert np.abs(got - np.asarray(expected)).max() <= TOLERANCE


def test_gan_litert_matches_trainer_g_ema(gan_run, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    run_dir, trainer = gan_run
    export_run(run_dir, tmp_path / "gan_lite", "litert")
    runner = Interpreter(model_path=str(tmp_path / "gan_lite" / "model.tflite"))
    z = np.random.RandomState(1).normal(size=(4, 8)).astype("float32")
    c = np.array([0, 1, 2, 0], np.int32)
    expected = trainer.G_ema(tf.constant(z), tf.constant(c), noise_mode="const", training=False)
    got = runner.get_signature_runner("serving_default")(z=z, c=c)["image"]
    assert np.abs(got - np.asarray(expected)).max() <= TOLERANCE
