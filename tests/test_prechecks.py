"""Errors that need no TensorFlow answer before it loads.

Property: for every command and every bad input in `CASES`, `tfkit` exits 2, prints exactly
one line on stderr naming the culprit (the path, key or argument) and nothing on stdout,
and TensorFlow is never imported in that process.

The runs below are built by hand (config, markers, fake model files): a check that let
such a run through to TensorFlow would fail the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tfkit.config import load_config
from tfkit.runs import Run
from tfkit.tuning import space as space_lib

ROOT = Path(__file__).resolve().parent.parent

FIT = """
name: fit_tiny
data:
  source: {kind: tabular_binary, count: 64, features: 4, seed: 0}
  batch_size: 16
model: {name: mlp, units: [4]}
train: {epochs: 2, loss: binary_crossentropy, optimizer: {name: adam, learning_rate: 0.001}}
"""
GAN = """
name: gan_tiny
data:
  source: {kind: shapes, count: 16, resolution: 8, seed: 0}
  split: {train: 1.0, val: 0.0, test: 0.0}
  normalize: minus_one_one
gan: {preset: shapes16, kimg: 0.016}
"""
TUNE = (
    FIT
    + """tune:
  tuner: random
  max_trials: 2
  objective: {name: val_loss, direction: min}
  space:
    model.units: {choice: [[4], [8]]}
"""
)

# argv (with {placeholders}), then the texts the one stderr line must contain
CASES: list[tuple[list[str], list[str]]] = [
    # run directories given to the commands that read one
    (["evaluate", "{missing}"], ["Run directory not found", "{missing}"]),
    (["evaluate", "{empty}"], ["{empty}", "not a tfkit run directory"]),
    (["evaluate", "{gan}"], ["{gan}", "GAN run", "tfkit gan metrics {gan}"]),
    (["evaluate", "{tune}"], ["{tune}", "tfkit tune", "tfkit train {tune}/best.yaml"]),
    (["evaluate", "{failed}"], ["{failed}", "failed before it trained"]),
    (["evaluate", "{untrained}"], ["{untrained}", "no trained model"]),
    (["predict", "{missing}", "--input", "{x}", "--output", "y.npy"], ["{missing}", "not found"]),
    (["predict", "{gan}", "--input", "{x}", "--output", "y.npy"], ["{gan}", "tfkit gan generate"]),
    (["predict", "{tune}", "--input", "{x}", "--output", "y.npy"], ["{tune}", "tfkit tune"]),
    (["predict", "{untrained}", "--input", "{x}", "--output", "y.npy"], ["{untrained}"]),
    (
        ["predict", "{fit}", "--input", "{tmp}/none.npy", "--output", "y.npy"],
        ["--input", "none.npy"],
    ),
    (["predict", "{fit}", "--input", "{txt}", "--output", "y.npy"], ["--input", "x.txt", ".npy"]),
    (["predict", "{fit}", "--input", "{x}", "--output", "y.txt"], ["--output", "y.txt", ".csv"]),
    (["predict", "{fit}", "--input", "{x}", "--output", "{tmp}"], ["--output", "is a directory"]),
    (["predict", "{fit}", "--input", "{x}"], ["--output", "required"]),
    (
        ["predict", "{images_run}", "--input", "{images}", "--output", "y.npy"],
        ["--input", "{images}/1.png is 10x8", "8x8", "--resize"],
    ),
    (
        ["predict", "{images_run}", "--input", "{empty}", "--output", "y.npy"],
        ["{empty}", "no images"],
    ),
    (["export", "{missing}", "--out", "{tmp}/e"], ["{missing}", "not found"]),
    (["export", "{empty}", "--out", "{tmp}/e"], ["{empty}", "not a tfkit run directory"]),
    (["export", "{tune}", "--out", "{tmp}/e"], ["{tune}", "tfkit tune"]),
    (["export", "{untrained}", "--out", "{tmp}/e"], ["{untrained}", "no trained model"]),
    (["export", "{fit}", "--out", "{tmp}/e", "--format", "onnx"], ["onnx", "saved_model"]),
    (["export", "{fit}", "--out", "{full}"], ["--out {full}", "--overwrite"]),
    (["export", "{fit}", "--out", "{gan}"], ["--out {gan}", "run directory"]),
    (["export", "{fit}", "--out", "{x}"], ["--out", "x.npy", "is a file"]),
    (["gan", "generate", "{missing}", "--out", "a.png"], ["{missing}", "not found"]),
    (["gan", "generate", "{empty}", "--out", "a.png"], ["{empty}", "not a tfkit run"]),
    (["gan", "generate", "{fit}", "--out", "a.png"], ["{fit}", "not a GAN run", "tfkit predict"]),
    (["gan", "generate", "{tune}", "--out", "a.png"], ["{tune}", "tfkit tune"]),
    (["gan", "generate", "{gan_untrained}", "--out", "a.png"], ["{gan_untrained}", "no trained"]),
    (["gan", "generate", "{gan}", "--out", "a.png", "--class", "1"], ["--class", "unconditional"]),
    (["gan", "generate", "{gan}", "--out", "a.jpg"], ["--out", "a.jpg", ".png"]),
    (["gan", "generate", "{gan}", "--out", "a.png", "--seeds", "5-1"], ["--seeds", "5-1"]),
    (["gan", "metrics", "{missing}"], ["{missing}", "not found"]),
    (["gan", "metrics", "{fit}"], ["{fit}", "not a GAN run", "tfkit evaluate {fit}"]),
    # training: the config, or the run to resume, and the resume policy
    (["train", "{missing}.yaml"], ["{missing}.yaml", "not found"]),
    (["train", "{fit_yaml}", "--set", "train.epocs=3"], ["train.epocs", "epochs"]),
    (["train", "{gan_yaml}"], ["{gan_yaml}", "gan", "tfkit gan train {gan_yaml}"]),
    (["train"], ["CONFIG", "--resume"]),
    (["train", "--resume", "{missing}"], ["--resume {missing}", "not found"]),
    (["train", "--resume", "{empty}"], ["--resume {empty}", "not a tfkit run"]),
    (["train", "--resume", "{gan}"], ["--resume {gan}", "tfkit gan train --resume {gan}"]),
    (["train", "--resume", "{tune}"], ["--resume {tune}", "tfkit tune"]),
    (["train", "--resume", "{fit}"], ["--resume {fit}", "already finished"]),
    (["train", "--resume", "{stopped}", "--run-dir", "{tmp}/r"], ["--resume", "--run-dir"]),
    (
        ["train", "--resume", "{stopped}", "--set", "train.optimizer.learning_rate=0.1"],
        ["--resume {stopped}", "train.optimizer.learning_rate (0.001 -> 0.1)"],
    ),
    (
        ["train", "--resume", "{stopped}", "--set", "model.units=[8]"],
        ["--resume {stopped}", "model.units ([4] -> [8])"],
    ),
    (["train", "{fit_yaml}", "--run-dir", "{x}"], ["--run-dir", "x.npy", "is a file"]),
    (["gan", "train", "{fit_yaml}"], ["{fit_yaml}", "no `gan` section", "tfkit train"]),
    (["gan", "train", "--resume", "{fit}"], ["--resume {fit}", "tfkit train --resume {fit}"]),
    (["gan", "train", "--resume", "{gan}", "--set", "gan.lr=0.1"], ["gan.lr (0.0025 -> 0.1)"]),
    (["gan", "train", "--resume", "{gan}", "--set", "gan.bogus=1"], ["gan.bogus"]),
    (["gan", "augment-grid", "{gan_yaml}", "--augpipe", "bogus", "--out", "g.png"], ["--augpipe"]),
    # a search: its config, its space, and whether the run directory's search may continue
    (["tune", "{fit_yaml}"], ["{fit_yaml}", "no `tune:` section"]),
    (
        [
            "tune",
            "{tune_yaml}",
            "--run-dir",
            "{tune}",
            "--set",
            "train.optimizer.learning_rate=0.1",
        ],
        ["{tune}/search", "train.optimizer.learning_rate (0.001 -> 0.1)", "--overwrite"],
    ),
    (
        ["tune", "{tune_yaml}", "--run-dir", "{tune}", "--set", "tune.objective.name=loss"],
        ["{tune}/search", "tune.objective", "--overwrite"],
    ),
    (
        ["tune", "{tune_yaml}", "--run-dir", "{tune}", "--set", "name=other"],
        ["{tune}", "name ('fit_tiny' -> 'other')", "--overwrite"],
    ),
    (["tune", "{tune_yaml}", "--role", "worker"], ["--role", "--oracle"]),
    (["tune", "{tune_yaml}", "--role", "chief", "--oracle", "nohost"], ["--oracle", "nohost"]),
    (
        ["tune", "{tune_yaml}", "--set", "tune.space={{model.unitz: {{choice: [1]}}}}"],
        ["model.unitz"],
    ),
    (
        ["tune", "{tune_yaml}", "--set", "tune.space.model.units.chioce=[[2]]"],
        ["--set tune.space.model.units.chioce", "`chioce` is not a field", "FIELD"],
    ),
    # data tools
    (["data", "convert", "--from", "npz", "{missing}.npz", "--out", "d"], ["{missing}.npz"]),
    (["data", "convert", "--from", "images", "{x}", "--out", "d"], ["--from images", "x.npy"]),
    (["data", "inspect", "{missing}"], ["PATH", "{missing}"]),
    (["data", "inspect", "{fit_yaml}", "--set", "model.unitz=1"], ["model.unitz"]),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Run directories of every kind and state, config files and inputs (no TensorFlow)."""
    tmp = tmp_path_factory.mktemp("prechecks")
    yamls = {}
    for name, text in (("fit_yaml", FIT), ("gan_yaml", GAN), ("tune_yaml", TUNE)):
        yamls[name] = tmp / f"{name}.yaml"
        yamls[name].write_text(text)
    fit_config = load_config(str(yamls["fit_yaml"]))
    gan_config = load_config(str(yamls["gan_yaml"]))

    fit = Run.create(fit_config, tmp / "fit")  # finished: model and result, no backup
    fit.model_file.write_bytes(b"not read before TensorFlow")
    fit.result_file.write_text("{}\n")
    stopped = Run.create(fit_config, tmp / "stopped")  # stopped mid-training: a backup
    stopped.backup_dir.mkdir()
    stopped.metrics_file.write_text('{"epoch": 1}\n')
    images_run = Run.create(fit_config, tmp / "images_run")  # a model of 8x8 gray images
    images_run.model_file.write_bytes(b"not read before TensorFlow")
    images_run.spec_file.write_text(json.dumps({"inputs": [{"name": "image", "shape": [8, 8, 1]}]}))
    (tmp / "images").mkdir()
    for i, size in enumerate([(8, 8), (8, 10), (8, 8)]):  # PIL sizes: width x height
        Image.new("L", size).save(tmp / "images" / f"{i}.png")
    untrained = Run.create(fit_config, tmp / "untrained")
    untrained.spec_file.write_text("{}\n")
    failed = Run.create(fit_config, tmp / "failed")
    failed.failed_file.write_text('{"error": "ValueError: boom"}\n')
    gan = Run.create(gan_config, tmp / "gan")
    gan.g_ema_file.write_bytes(b"not read before TensorFlow")
    gan.gan_options_file.write_text(json.dumps({"lr": 0.0025, "num_classes": 0}))
    Run.create(gan_config, tmp / "gan_untrained")

    # a search directory as `tfkit tune` leaves it
    tune_config = load_config(str(yamls["tune_yaml"]))
    tune = Run.create(tune_config, tmp / "tune")
    search = space_lib.search_dir(tune_config, tune.path)
    (search / space_lib.PROJECT).mkdir(parents=True)
    fingerprint = space_lib.fingerprint(tune_config)
    (search / space_lib.FINGERPRINT_FILE).write_text(json.dumps(fingerprint))

    (tmp / "empty").mkdir()
    (tmp / "full").mkdir()
    (tmp / "full" / "something").write_text("kept\n")
    (tmp / "x.npy").write_bytes(b"")
    (tmp / "x.txt").write_text("1,2\n")
    places = {
        **{k: str(v) for k, v in yamls.items()},
        **{k: str(tmp / k) for k in ("fit", "stopped", "untrained", "failed", "gan", "tune")},
        "gan_untrained": str(tmp / "gan_untrained"),
        "images_run": str(tmp / "images_run"),
        "images": str(tmp / "images"),
        "empty": str(tmp / "empty"),
        "full": str(tmp / "full"),
        "missing": str(tmp / "missing"),
        "x": str(tmp / "x.npy"),
        "txt": str(tmp / "x.txt"),
        "tmp": str(tmp),
    }
    places["listing"] = _listing(str(tmp))
    return places


# runs `tfkit` in-process, then reports its status and whether TensorFlow was imported
DRIVER = """
import json, sys
from tfkit.cli import main
code = main(json.loads(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    json.dump({"code": code, "tensorflow": "tensorflow" in sys.modules}, f)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize(
    ("argv", "named"),
    CASES,
    ids=[
        " ".join(a).replace("{{", "(").replace("}}", ")").replace("{", "").replace("}", "")
        for a, _ in CASES
    ],
)
def test_a_user_error_is_one_line_before_tensorflow_loads(places, tmp_path, argv, named):
    argv = [a.format(**places) for a in argv]
    named = [n.format(**places) for n in named]
    status = tmp_path / "status.json"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(argv), str(status)],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.is_file(), proc.stderr
    result = json.loads(status.read_text())
    assert result == {"code": 2, "tensorflow": False}, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    command = " ".join(a for a in argv[:2] if not a.startswith(("-", "/")))
    assert lines[0].startswith(f"tfkit {command}"), lines[0]
    for text in named:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in proc.stderr
    # nothing written: neither in the working directory nor in any run or input
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    assert _listing(places["tmp"]) == places["listing"]


def _listing(root: str) -> list[tuple[str, int]]:
    """Every file below `root` with its size."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size) for p in Path(root).rglob("*") if p.is_file()
    )
