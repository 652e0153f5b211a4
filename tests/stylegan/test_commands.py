"""`tfkit gan train` / `tfkit gan generate` end to end on tiny settings, and the slow shapes16 run."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import run_launch
from PIL import Image

from tfkit.cli import main
from tfkit.runs import G_EMA_FILE

CONFIG = """
name: gan_tiny
data:
  source: {kind: shapes, count: 64, resolution: 8, seed: 0}
  split: {train: 1.0, val: 0.0, test: 0.0}
  normalize: minus_one_one
  batch_size: 32
  shuffle_buffer: 0
gan:
  preset: shapes16
  z_dim: 8
  w_dim: 8
  map_layers: 1
  channel_base: 64
  channel_max: 8
  batch: 8
  mbstd_group: 2
  kimg: 0.016
  tick_kimg: 0.008
  snapshot_ticks: 1
  grid: [2, 2]
  pl_weight: 0.0  # regularizer phases are tested in test_trainer.py
  gamma: 0.0
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "gan.yaml"
    path.write_text(CONFIG)
    return str(path)


def test_signals_stop_with_one_line_and_resume(config, tmp_path, capsys, monkeypatch):
    """SIGTERM exits 143 and Ctrl-C 130, each after a checkpoint and with one line naming
    the kimg and the resume command; `--resume` goes on from the checkpoint. (A resume that
    finishes the run equals the uninterrupted run: test_trainer.py, and through the CLI
    after kill -9 the property tier's test_sigkill_mid_training_then_resume_equals_uninterrupted.)"""
    import re
    import signal

    from tfkit.stylegan.trainer import Trainer

    original = Trainer.run
    stop = {}  # signal to raise after the iteration that ends at this step

    def run(self, max_iterations=None, hook=None):
        def send(trainer):
            if int(trainer.step.numpy()) == stop.get("step"):
                signal.raise_signal(stop["signal"])

        return original(self, max_iterations, send)

    monkeypatch.setattr(Trainer, "run", run)
    run_dir = tmp_path / "run"
    stop.update(step=1, signal=signal.SIGTERM)
    assert (
        main(["gan", "train", config, "--run-dir", str(run_dir), "--set", "gan.kimg=0.032"]) == 143
    )
    line = (
        f"tfkit gan train: stopped at kimg 0.008; continue with: tfkit gan train --resume {run_dir}"
    )
    assert re.findall(r"^tfkit gan train: .*$", capsys.readouterr().err, re.M) == [line]
    stop.update(step=2, signal=signal.SIGINT)
    assert main(["gan", "train", "--resume", str(run_dir)]) == 130
    out, err = capsys.readouterr()
    assert line.replace("0.008", "0.016") in err.splitlines()
    # the first line names the run and where it continues
    assert re.search(
        rf"^tfkit gan train: gan_tiny -> {re.escape(str(run_dir))} \(.*, resuming at kimg 0.008\)$",
        out,
        re.M,
    ), out
    assert (run_dir / "checkpoints" / "ckpt-2.index").exists()
    ticks = [json.loads(t) for t in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [t["kimg"] for t in ticks] == [0.008, 0.016]  # each once, the 2nd after the resume
    # the preset's augment: none: D's sign statistic is logged, an augment probability not
    assert "augment_rt" in ticks[0] and "augment_p" not in ticks[0]


def test_augment_grid_shows_reals_and_what_d_sees(config, tmp_path, capsys):
    out = tmp_path / "aug.png"
    args = ["gan", "augment-grid", config, "--count", "6", "--cols", "3", "--out", str(out)]
    assert main([*args, "--p", "0"]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (4 * 8, 3 * 8, 3)  # 2 rows of reals, each above its augmentation
    assert np.array_equal(grid[:8], grid[8:16]) and np.array_equal(grid[16:24], grid[24:])
    assert main([*args, "--p", "1", "--augpipe", "bgcfnc"]) == 0
    grid = np.asarray(Image.open(out))
    assert not np.array_equal(grid[:8], grid[8:16])
    assert main([*args, "--augpipe", "bgx"]) == 2
    assert "--augpipe: unknown augmentation pipeline 'bgx'" in capsys.readouterr().err
    assert main([*args, "--p", "1.5"]) == 2


def test_train_resume_generate(config, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["gan", "train", config, "--run-dir", str(run)]) == 0
    assert (run / "gan_options.json").is_file() and (run / "fakes_init.png").is_file()
    ticks = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert ticks[-1]["kimg"] == pytest.approx(0.016)
    assert all(math.isfinite(t["Loss/G/loss"]) and math.isfinite(t["Loss/D/loss"]) for t in ticks)
    # a finished run resumes as done (kimg may grow); other changes are refused
    assert main(["gan", "train", config, "--resume", str(run)]) == 0
    assert main(["gan", "train", "--resume", str(run)]) == 0  # the run's own config
    assert main(["gan", "generate", str(run), "--out", str(tmp_path / "grid")]) == 2
    assert "argument --out: expected a file name ending in .png" in capsys.readouterr().err
    assert main(["gan", "train", config, "--resume", str(run), "--set", "gan.z_dim=16"]) == 2
    assert "gan.z_dim" in capsys.readouterr().err
    # generation is reproducible for the same seeds
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert (
        main(["gan", "generate", str(run), "--seeds", "0-3", "--trunc", "0.7", "--out", str(a)])
        == 0
    )
    assert (
        main(["gan", "generate", str(run), "--seeds", "0-3", "--trunc", "0.7", "--out", str(b)])
        == 0
    )
    assert a.read_bytes() == b.read_bytes() and Image.open(a).size == (16, 16)
    mix = tmp_path / "mix.png"
    assert main(["gan", "generate", str(run), "--style-mix", "0-2", "5-8", "--out", str(mix)]) == 0
    assert Image.open(mix).size == (5 * 8, 4 * 8)
    strip = tmp_path / "strip.png"
    assert (
        main(
            [
                "gan",
                "generate",
                str(run),
                "--interpolate",
                "1",
                "2",
                "--steps",
                "5",
                "--out",
                str(strip),
            ]
        )
        == 0
    )
    assert Image.open(strip).size == (40, 8)
    capsys.readouterr()
    assert main(["gan", "generate", str(run), "--seeds", "x-y", "--out", str(a)]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["gan", "generate", str(run), "--class", "1", "--out", str(a)]) == 2
    assert "unconditional" in capsys.readouterr().err


# a fresh process that imports only keras and tfkit.saving loads G_ema.keras in safe mode
LOAD_G_EMA = """
import sys
import keras
import numpy as np
import tfkit.saving

G = keras.saving.load_model(sys.argv[1], safe_mode=True)
assert type(G).__name__ == "Generator", type(G)
z = np.stack([np.random.RandomState(s).randn(G.z_dim) for s in (0, 1, 2, 3)]).astype("float32")
np.save(sys.argv[2], G(z, psi=0.7, noise_mode="const").numpy())
"""


def test_finished_run_writes_g_ema_keras_that_generates_the_same_images(config, tmp_path):
    from tfkit.stylegan.generate import images, load_generator

    run = tmp_path / "run"
    assert main(["gan", "train", config, "--run-dir", str(run)]) == 0
    out = tmp_path / "images.npy"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, "-c", LOAD_G_EMA, str(run / G_EMA_FILE), str(out)], check=True, env=env
    )
    G, _ = load_generator(run)  # what `tfkit gan generate` uses: the latest checkpoint
    expected = images(G, [0, 1, 2, 3], psi=0.7)
    assert expected.shape == (4, 8, 8, 3) and np.std(expected) > 0
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_dry_run_and_bad_input(config, tmp_path, capsys):
    assert main(["gan", "train", config, "--dry-run", "--runs-root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert '"resolution": 8' in out and '"lr": 0.0025' in out
    assert not (tmp_path / "runs").exists()
    assert main(["gan", "train", config, "--set", "gan.preset=paper128", "--dry-run"]) == 2
    assert "Valid presets: auto, stylegan2, paper256" in capsys.readouterr().err
    assert (
        main(
            [
                "gan",
                "train",
                config,
                "--set",
                "gan.batch=6",
                "--set",
                "gan.mbstd_group=4",
                "--dry-run",
            ]
        )
        == 2
    )
    assert "mbstd_group" in capsys.readouterr().err
    assert main(
        [
            "gan",
            "train",
            config,
            "--set",
            "gan.conditional=true",
            "--set",
            "data.source.kind=digits",
            "--dry-run",
        ]
    ) in (0, 2)
    capsys.readouterr()
    assert main(["gan", "train", config, "--set", "gan.resolution=16", "--dry-run"]) == 2
    assert "does not match" in capsys.readouterr().err


def _pixel_frechet(trainer, reals: np.ndarray, n: int = 512) -> float:
    """Fréchet distance between G_ema's images and `reals` ([-1, 1], 16x16) on 4x4 average
    pooled pixels (48 features): shapes' layout and colours, cheap and without a network."""
    import tensorflow as tf

    from tfkit.stylegan.metrics import fid_from_features

    z = tf.random.stateless_normal([n, trainer.opts.z_dim], [7, 0])
    c = tf.zeros([n], tf.int32)
    fakes = np.concatenate(
        [
            trainer.G_ema(z[i : i + 128], c[i : i + 128], noise_mode="const").numpy()
            for i in range(0, n, 128)
        ]
    )

    def pool(x):
        return x.reshape(len(x), 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(len(x), -1)

    return fid_from_features(pool(fakes.astype(np.float64)), pool(reals.astype(np.float64)))


@pytest.mark.property
def test_shapes16_learns(tmp_path):
    """The shapes16 preset for 6 kimg (of its 10; ~2 min): losses stay finite and the
    generator's images come to look like the data: their Fréchet distance to real shapes on
    4x4 pooled pixels falls to a quarter or less (64.4 -> 4.7 measured; with G's loss
    sign flipped, so that G learns the wrong way while its images still change: 64.4 ->
    36.9)."""
    from tfkit.config import load_config
    from tfkit.data.datasets import shapes
    from tfkit.stylegan.trainer import Trainer

    cfg = load_config("configs/stylegan_shapes16.yaml", ["gan.kimg=6", "gan.tick_kimg=1"])
    trainer = Trainer(cfg, tmp_path / "run", log=print)
    reals = shapes(count=512, resolution=16, seed=1).x * 2.0 - 1.0  # unseen shapes
    start = _pixel_frechet(trainer, reals)
    assert trainer.run() == "done"
    ticks = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert all(math.isfinite(t["Loss/G/loss"]) and math.isfinite(t["Loss/D/loss"]) for t in ticks)
    end = _pixel_frechet(trainer, reals)
    print(f"pixel Fréchet distance to real shapes: {start:.4f} -> {end:.4f}")
    assert end < 0.25 * start, (start, end)


# configs/stylegan_shapes32.yaml made tiny for the multi-worker tests
# the one line `gan train` prints when SIGTERM or Ctrl-C stopped it (group 1: the kimg)
STOP_LINE = (
    r"^tfkit gan train: stopped at kimg ([\d.]+); continue with: tfkit gan train --resume \S+$"
)

SMALL_MULTI_WORKER = {
    "data.source.count": 64,
    "gan.batch": 8,
    "gan.channel_base": 256,
    "gan.channel_max": 16,
    "gan.z_dim": 16,
    "gan.w_dim": 16,
    "gan.tick_kimg": 0.016,
    "gan.snapshot_ticks": 2,
    "gan.grid": "[2, 2]",
}


@pytest.mark.property
def test_two_workers_train_identical_weights_and_only_the_chief_writes(tmp_path):
    """`tfkit launch --workers 2 -- gan train configs/stylegan_shapes32.yaml` on 127.0.0.1."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    small = {**SMALL_MULTI_WORKER, "gan.kimg": 0.048}
    sets = [a for k, v in small.items() for a in ("--set", f"{k}={v}")]
    run_dir = tmp_path / "run"
    config = str(root / "configs" / "stylegan_shapes32.yaml")
    proc = run_launch(
        ["--workers", "2"],
        ["gan", "train", config, "--run-dir", str(run_dir), *sets],
        timeout=400,
        env={"TMPDIR": str(scratch)},
        cwd=tmp_path,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    sums = dict(re.findall(r"\[worker (\d)\] final weights checksum: (.+)", out))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"], sums
    assert "(2 replicas)" in out  # the banner: MultiWorkerMirroredStrategy (2 replicas)
    assert sorted(p.name for p in run_dir.glob("fakes*.png")) == [
        "fakes000000032.png",
        "fakes000000048.png",
        "fakes_init.png",
    ]
    assert (run_dir / "checkpoints" / "ckpt-6.index").exists()
    ticks = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(ticks) == 3  # the chief's ticks only
    assert not list(scratch.glob("tfkit-*"))  # worker 1's temp output was removed


@pytest.mark.property
def test_sigterm_to_the_chief_stops_both_workers_after_the_same_iteration(tmp_path):
    """Only the chief gets SIGTERM: worker 1 must stop with it (not hang in the next
    collective), both at the same kimg, and the chief writes the checkpoint to resume from."""
    import re
    from pathlib import Path

    from helpers import sigterm_one_worker, start_local_workers

    root = Path(__file__).resolve().parents[2]
    small = {**SMALL_MULTI_WORKER, "gan.kimg": 100, "gan.tick_kimg": 0.008}
    sets = [a for k, v in small.items() for a in ("--set", f"{k}={v}")]
    run_dir = tmp_path / "run"
    config = str(root / "configs" / "stylegan_shapes32.yaml")
    args = ["gan", "train", config, "--run-dir", str(run_dir), *sets]
    procs, logs = start_local_workers(args, tmp_path / "logs", env={"TMPDIR": str(tmp_path)})
    codes, out = sigterm_one_worker(procs, logs, "tick 3 ", index=0)
    assert codes == [143, 143], out  # `gan train` exits 143 when stopped by SIGTERM
    stops = [re.search(STOP_LINE, o, re.MULTILINE) for o in out]
    assert stops[0] and stops[1], out
    assert stops[0].group(1) == stops[1].group(1)
    steps = round(float(stops[0].group(1)) * 1000 / 8)
    assert steps % 4 == 0  # workers agree on a stop every STOP_CHECK_EVERY iterations
    assert (run_dir / "checkpoints" / f"ckpt-{steps}.index").exists()


SECOND_SIGNAL_CHILD = """
import os, signal, sys
from tfkit.stylegan.trainer import Trainer
signum = getattr(signal, os.environ["STOP_SIGNAL"])
original_run, original_save, sent = Trainer.run, Trainer.save, []

def run(self, max_iterations=None, hook=None):
    def first(trainer):  # the first signal: stop after this iteration, with a checkpoint
        if int(trainer.step.numpy()) == 1:
            sent.append(signum)
            signal.raise_signal(signum)
    return original_run(self, max_iterations, first)

def save(self):
    if sent:  # the second signal arrives while the trainer saves
        signal.raise_signal(signum)
    path = original_save(self)
    print("saved after the second signal", flush=True)
    return path

Trainer.run, Trainer.save = run, save
from tfkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.property
@pytest.mark.parametrize("signum, code", [("SIGTERM", -15), ("SIGINT", 130)])
def test_a_second_signal_during_the_save_stops_at_once(config, tmp_path, signum, code):
    """The first SIGTERM / Ctrl-C asks for a checkpoint and a stop; a second one during that
    save stops at once: SIGTERM ends the process by the signal (a shell reports 143), Ctrl-C
    exits 130, neither waits for the save nor prints the `stopped at` line."""
    env = {**os.environ, "STOP_SIGNAL": signum, "PYTHONPATH": os.pathsep.join(sys.path)}
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-c", SECOND_SIGNAL_CHILD, "gan", "train", config]
    proc = subprocess.run(
        [*cmd, "--run-dir", str(run_dir)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == code, proc.stderr[-2000:]
    assert f"tfkit gan train: gan_tiny -> {run_dir} (" in proc.stdout  # it trained
    assert "saved after the second signal" not in proc.stdout
    assert "stopped at" not in proc.stderr


KILL_CHILD = """
import os, signal, sys
from tfkit.stylegan.trainer import Trainer
kill_at, original = int(os.environ["KILL_AT"]), Trainer.run

def run(self, max_iterations=None, hook=None):
    def kill(trainer):  # after this iteration, before its tick's checkpoint
        if int(trainer.step.numpy()) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    return original(self, max_iterations, kill)

Trainer.run = run
from tfkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _final_checkpoint(run_dir) -> dict[str, np.ndarray]:
    """Every variable of the run's latest trainer checkpoint but the wall-clock time."""
    import tensorflow as tf

    from tfkit.runs import Run

    latest = tf.train.latest_checkpoint(str(Run(run_dir).checkpoints_dir))
    reader = tf.train.load_checkpoint(latest)
    return {
        name: np.asarray(reader.get_tensor(name))
        for name, _ in tf.train.list_variables(latest)
        if not name.startswith(("train_seconds", "_CHECKPOINTABLE", "save_counter"))
    }


# kill -9 between checkpoints (every 2 iterations), with every state a resume restores in use
SIGKILL_SETS = [
    "gan.kimg=0.048",  # 6 iterations of 8 images
    "gan.tick_kimg=0.016",  # a tick and a checkpoint every 2 iterations
    "gan.gamma=1.0",
    "gan.pl_weight=2.0",
    "gan.augment=ada",
    "gan.ada_target=-1.0",  # p rises at every adjustment
    "gan.ada_kimg=0.1",
    "gan.ada_interval=1",
    "runtime.deterministic=true",
]


def _gan_train(*args, child=None, kill_at=0):
    """`tfkit gan train ARGS` in a new process (`child`: a script run instead of the CLI)."""
    env = {**os.environ, "KILL_AT": str(kill_at), "PYTHONPATH": os.pathsep.join(sys.path)}
    code = ["-c", child] if child else ["-m", "tfkit.cli"]
    cmd = [sys.executable, *code, "gan", "train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def uninterrupted_gan(tmp_path_factory):
    """The uninterrupted run the kill -9 tests compare with: (config path, run dir)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    config = root / "gan.yaml"
    config.write_text(CONFIG)
    full = root / "full"
    sets_args = [a for s in SIGKILL_SETS for a in ("--set", s)]
    done = _gan_train(str(config), "--run-dir", str(full), *sets_args)
    assert done.returncode == 0, done.stderr[-2000:]
    return str(config), full


@pytest.mark.property
@pytest.mark.parametrize("kill_at", [3, 5])
def test_sigkill_mid_training_then_resume_equals_uninterrupted(
    uninterrupted_gan, tmp_path, kill_at
):
    """kill -9 between checkpoints (every 2 iterations), then `--resume`: G, D, G_ema, the
    optimizers, the RNG and ADA's p end exactly as in the uninterrupted run (deterministic
    ops; R1, path length and ADA on)."""
    config, full = uninterrupted_gan
    sets_args = [a for s in SIGKILL_SETS for a in ("--set", s)]
    run = tmp_path / "run"
    killed = _gan_train(
        config, "--run-dir", str(run), *sets_args, child=KILL_CHILD, kill_at=kill_at
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = _gan_train("--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, got = _final_checkpoint(full), _final_checkpoint(run)
    assert sorted(got) == sorted(expected)
    assert any(name.startswith("augment") for name in got)
    for name in ("G", "D", "G_ema", "augment"):
        assert any(n.startswith(name + "/") for n in got), name
    worst = {name: float(np.max(np.abs(got[name] - expected[name]), initial=0)) for name in got}
    assert max(worst.values()) <= 1e-6, sorted(worst.items(), key=lambda kv: -kv[1])[:5]
    ticks = [json.loads(t) for t in (run / "metrics.jsonl").read_text().splitlines()]
    assert [t["kimg"] for t in ticks] == [0.016, 0.032, 0.048]  # each tick logged once
    p = [v for n, v in got.items() if n.startswith("augment/p")]
    assert p and float(p[0]) > 0  # ADA moved p, identically
