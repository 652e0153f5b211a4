"""Run directories: numbering, the resume policy, the lock, failed and damaged runs.

Each test states a property of `tfkit.runs` and checks it over several cases.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfkit.cli import main
from tfkit.config import load_config, validate
from tfkit.errors import Stopped, UserError
from tfkit.runs import (
    RESUMABLE_KEYS,
    Run,
    check_resume_compatible,
    create_run_dir,
    is_run_dir,
    load_run_config,
    write_json_atomic,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ROOT = Path(__file__).resolve().parent.parent


def test_numbered_run_dirs_hold_the_resolved_config(run_root):
    cfg = validate({"name": "exp", "train": {"epochs": 3}})
    first = create_run_dir(cfg, root=run_root)
    second = create_run_dir(cfg, root=run_root)
    assert first.name == "00000" and second.name == "00001"
    assert first.parent == run_root / "exp"
    assert is_run_dir(first)
    assert load_run_config(first) == cfg
    assert not list(first.glob("*.tmp"))


def test_explicit_run_dir_refuses_an_existing_run(tmp_path):
    cfg = load_config(None)
    path = create_run_dir(cfg, run_dir=tmp_path / "mine")
    assert path == tmp_path / "mine"
    with pytest.raises(UserError, match="already holds a run; use --resume"):
        create_run_dir(cfg, run_dir=path)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(UserError, match="not a tfkit run directory"):
        load_run_config(tmp_path)
    with pytest.raises(UserError, match="not found"):
        load_run_config(tmp_path / "missing")


# ---- the resume policy ---------------------------------------------------------------------

REFUSED = [
    ["train.optimizer.learning_rate=0.5"],
    ["model.filters=[16]"],
    ["data.batch_size=7"],
    ["data.normalize=standardize"],
    ["runtime.seed=3"],
    ["train.loss=mse"],
    # several at once: every key is named, an allowed one alongside changes nothing
    ["train.optimizer.learning_rate=0.5", "model.filters=[16]", "data.batch_size=7"],
    ["train.epochs=9", "model.dropout=0.5", "train.optimizer.name=sgd"],
]


def _started(tmp_path: Path) -> Run:
    config = load_config(None, ["model.name=cnn", "model.filters=[8]", "train.epochs=2"])
    return Run.create(config, tmp_path / "run", lock=False)


@pytest.mark.parametrize("overrides", REFUSED)
def test_resume_refuses_every_change_outside_the_allow_list(tmp_path, overrides):
    run = _started(tmp_path)
    saved = run.config_file.read_bytes()
    refused = [o.partition("=")[0] for o in overrides if o.partition("=")[0] not in RESUMABLE_KEYS]
    with pytest.raises(UserError) as info:
        run.plan_resume(overrides)
    message = str(info.value)
    assert str(run.path) in message
    for key in refused:
        assert key in message.split("; a resumed run")[0]
    assert "train.epochs (" not in message  # an allowed change is not reported as refused
    assert run.config_file.read_bytes() == saved
    assert not run.resumes_file.exists()
    # the CLI: exit 2, one line naming the keys, before anything is trained or written
    args = ["train", "--resume", str(run.path), "--dry-run"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 2
    assert run.config_file.read_bytes() == saved and not run.resumes_file.exists()


@pytest.mark.parametrize(
    "overrides",
    [
        ["train.epochs=5"],
        ["train.epochs=7", "train.verbose=0"],
        ["train.epochs=3", "train.checkpoint_every=4", "train.tensorboard=false"],
    ],
)
def test_resume_records_allowed_changes_and_keeps_config_yaml(tmp_path, overrides):
    run = _started(tmp_path)
    saved = run.config_file.read_bytes()
    config = run.resume_config(overrides)
    assert run.config_file.read_bytes() == saved
    (record,) = run.resumes()
    changes = {c["key"]: (c["old"], c["new"]) for c in record["changes"]}
    expected = dict(o.split("=") for o in overrides)
    assert set(changes) == set(expected)
    assert changes["train.epochs"] == (2, int(expected["train.epochs"]))
    # the effective config is the saved one plus the record, and a second resume builds on it
    assert run.load_config() == config
    assert run.load_config().train.epochs == int(expected["train.epochs"])
    again = run.resume_config(["train.epochs=11"])
    assert again.train.epochs == 11 and len(run.resumes()) == 2
    assert run.load_config() == again
    assert run.resume_config([]) == again and len(run.resumes()) == 2  # no change: no record


def test_resume_accepts_gan_length_and_refuses_gan_architecture(tmp_path):
    config = load_config(None, ["gan.preset=shapes16", "gan.kimg=2"])
    run = Run.create(config, tmp_path / "gan", lock=False)
    assert run.resume_config(["gan.kimg=4", "gan.max_minutes=3"]).gan.kimg == 4
    with pytest.raises(UserError, match=r"gan\.gamma.*gan\.z_dim|gan\.z_dim.*gan\.gamma"):
        run.plan_resume(["gan.gamma=1.0", "gan.z_dim=16"])
    assert run.load_config().gan.kimg == 4
    # the CLI refuses it before anything runs
    args = ["gan", "train", "--resume", str(run.path), "--set", "gan.z_dim=16", "--dry-run"]
    assert main(args) == 2
    assert len(run.resumes()) == 1


def test_a_config_file_given_with_resume_is_held_to_the_same_policy(tmp_path):
    run = _started(tmp_path)
    saved = run.config_file.read_bytes()
    same = tmp_path / "same.yaml"
    same.write_text(run.config_file.read_text().replace("epochs: 2", "epochs: 6"))
    assert run.plan_resume(None, same)[0].train.epochs == 6
    changed = tmp_path / "changed.yaml"
    changed.write_text(
        run.config_file.read_text().replace("epochs: 2", "epochs: 6").replace("seed: 0", "seed: 1")
    )
    with pytest.raises(UserError, match=r"changed\.yaml.*runtime\.seed \(0 -> 1\)"):
        run.plan_resume(None, changed)
    assert main(["train", str(changed), "--resume", str(run.path), "--dry-run"]) == 2
    assert run.config_file.read_bytes() == saved and not run.resumes_file.exists()


def test_check_resume_compatible_names_the_keys(tmp_path):
    cfg = validate({"model": {"name": "cnn", "filters": [8]}})
    path = create_run_dir(cfg, run_dir=tmp_path / "r")
    check_resume_compatible(path, cfg)  # unchanged: fine
    changed = validate({"model": {"name": "cnn", "filters": [16]}})
    with pytest.raises(UserError, match=r"changed at model.filters"):
        check_resume_compatible(path, changed)


# ---- strict results --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_results_are_strict_json(tmp_path, value):
    path = write_json_atomic(
        tmp_path / "r.json", {"test": {"loss": value, "acc": 0.5}, "n": [value]}
    )
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in {text}"))
    assert data["test"]["acc"] == 0.5
    assert (
        data["test"]["loss"] == data["n"][0] == {"nan": "nan", "inf": "inf"}.get(str(value), "-inf")
    )


# ---- the lock ------------------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    from tfkit.runs import Run
    run = Run(sys.argv[1]).lock()  # held while `run` lives
    print("locked", flush=True)
    time.sleep(600)
    """
)


def _hold_lock(path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_one_process_per_run_and_kill_9_releases_the_lock(tmp_path, capsys):
    run = _started(tmp_path)
    holder = _hold_lock(run.path)
    try:
        for _attempt in range(2):  # refused every time while the holder lives
            with pytest.raises(
                UserError, match=rf"{run.path} is in use by another.*pid {holder.pid}"
            ):
                Run(run.path).lock()
        assert main(["train", "--resume", str(run.path), "--set", "train.epochs=3"]) == 2
        err = capsys.readouterr().err
        assert f"{run.path} is in use" in err and "Traceback" not in err
        assert not run.resumes_file.exists()  # the refused resume recorded nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    mine = Run(run.path).lock()  # kill -9 left no stale lock
    try:
        with pytest.raises(UserError, match="in use"):
            Run(run.path).lock()  # and the lock holds within one process too
    finally:
        mine.unlock()
    Run(run.path).lock().unlock()


# ---- failed, untrained and damaged runs --------------------------------------------------------


def test_a_failure_before_training_leaves_no_usable_run(tmp_path, capsys):
    config = load_config(None, ["train.epochs=1"])
    # only config.yaml: the directory is removed
    run = Run.create(config, tmp_path / "bare")
    with pytest.raises(RuntimeError), run.training():
        raise RuntimeError("data failed to load")
    assert not run.path.exists()
    # something written but nothing trained: marked failed, and refused by every reader
    run = Run.create(config, tmp_path / "partial")
    with pytest.raises(ValueError), run.training():
        run.checkpoints_dir.mkdir()
        run.last_checkpoint.write_bytes(b"untrained")
        raise ValueError("exploded in the first step")
    assert run.is_failed and "exploded in the first step" in run.failure()["error"]
    inputs = tmp_path / "x.npy"
    inputs.write_bytes(b"")  # never read: the run is refused first
    commands = [
        ["evaluate", str(run.path)],
        ["predict", str(run.path), "--input", str(inputs), "--output", str(tmp_path / "p.npy")],
        ["export", str(run.path), "--out", str(tmp_path / "export")],
    ]
    for command in commands:
        assert main(command) == 2
        err = capsys.readouterr().err
        assert str(run.path) in err and "failed" in err and "Traceback" not in err
    assert not (tmp_path / "p.npy").exists() and not (tmp_path / "export").exists()
    # a stop (Ctrl-C, a signal that saved and stopped) is not a failure
    for name, stop in [("ctrl_c", KeyboardInterrupt()), ("sigterm", Stopped(15, 1, 3))]:
        run = Run.create(config, tmp_path / name)
        with pytest.raises(type(stop)), run.training():
            run.tensorboard_dir.mkdir()
            raise stop
        assert run.path.exists() and not run.is_failed


def test_an_untrained_run_is_refused_by_model_readers(tmp_path, capsys):
    config = load_config(None)
    run = Run.create(config, tmp_path / "untrained", lock=False)
    run.checkpoints_dir.mkdir()
    run.last_checkpoint.write_bytes(b"weights before any epoch")
    for command in (["evaluate", str(run.path)], ["export", str(run.path), "--out", "x"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert f"{run.path} holds no trained model" in err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A binary_mlp run trained for one epoch through `tfkit train`."""
    root = tmp_path_factory.mktemp("trained")
    args = ["train", str(CONFIGS / "binary_mlp.yaml"), "--set", "train.epochs=1"]
    assert main([*args, "--run-dir", str(root / "run")]) == 0
    return Run(root / "run")


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.9, -1])
def test_a_truncated_model_file_is_refused_never_loaded(trained_run, tmp_path, capsys, fraction):
    import shutil

    run = Run(tmp_path / "copy")
    shutil.copytree(trained_run.path, run.path)
    data = run.model_file.read_bytes()
    run.model_file.write_bytes(data[: int(len(data) * fraction)] if fraction >= 0 else data[:-1])
    assert main(["evaluate", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert f"{run.model_file} is truncated or corrupt" in err and "Traceback" not in err


@pytest.mark.parametrize("keep", [0, 100, -16])
def test_truncated_resume_state_is_refused(tmp_path, keep):
    import numpy as np
    import tensorflow as tf

    run = _started(tmp_path)
    # the custom loop's TF checkpoint: the data file cut
    ckpt = tf.train.Checkpoint(w=tf.Variable(np.arange(4096, dtype=np.float32)))
    prefix = tf.train.CheckpointManager(ckpt, str(run.loop_checkpoints_dir), 2).save()
    run.check_resume_state()  # intact: fine
    data = Path(prefix + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:keep])
    with pytest.raises(UserError, match=rf"checkpoint {prefix} is truncated or corrupt"):
        run.check_resume_state()
    data.unlink()
    (run.loop_checkpoints_dir / "checkpoint").unlink()
    # fit's backup weights: refused when truncated, unless Keras' previous copy is intact
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
    weights = run.backup_dir / "latest.weights.h5"
    run.backup_dir.mkdir()
    model.save_weights(weights)
    good = weights.read_bytes()
    weights.write_bytes(good[:keep])
    with pytest.raises(UserError, match=rf"{weights} is truncated or corrupt"):
        run.check_resume_state()
    weights.with_name(weights.name + ".bkp").write_bytes(good)
    run.check_resume_state()


def test_a_failed_write_names_the_path(tmp_path, monkeypatch):
    # a full disk, simulated at the write: the error names the file, the old file survives
    target = write_json_atomic(tmp_path / "metrics.json", {"epochs": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match=rf"could not write {target}: no space left on device"):
        write_json_atomic(target, {"epochs": 2})
    assert json.loads(target.read_text()) == {"epochs": 1}
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


@pytest.mark.parametrize(
    "error, named",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/run/model.keras"), "model.keras"),
        # TensorFlow's SaveV2 and summary writers raise OpErrors that name the file in text
        (
            RuntimeError("/data/run/backup/ckpt-9_temp/part-0.data; No space left on device"),
            "ckpt-9",
        ),
        (RuntimeError("Failed to write: No space left on device"), None),
    ],
)
def test_a_full_disk_during_training_ends_with_a_user_error(tmp_path, error, named):
    run = _started(tmp_path)
    run.metrics_file.write_text('{"epoch": 1}\n')  # trained an epoch: kept, not marked failed
    with pytest.raises(UserError, match="no space left on device") as info, run.training():
        raise error
    assert (named or str(run.path)) in str(info.value)
    assert not run.is_failed and run.config_file.exists()


@pytest.mark.parametrize(
    ("preset", "options", "expected"),
    [
        ("cifar", {"z_dim": 512}, "none"),  # started before ADA: trained without, goes on so
        ("cifar", {"z_dim": 512, "augment": "ada"}, None),  # an ADA run: its preset's default
        ("shapes16", {"z_dim": 64}, "none"),
    ],
)
def test_a_gan_run_started_before_ada_resumes_without_it(tmp_path, preset, options, expected):
    config = load_config(None, [f"gan.preset={preset}", "gan.kimg=2"])
    run = Run.create(config, tmp_path / "gan", lock=False)
    run.gan_options_file.write_text(json.dumps(options))
    new, changes = run.plan_resume(["gan.kimg=4"])
    assert new.gan.augment == expected and new.gan.kimg == 4
    assert changes == [{"key": "gan.kimg", "old": 2, "new": 4}]
    if expected is None:  # a config that sets gan.augment keeps it
        config = load_config(
            None, [f"gan.preset={preset}", "gan.augment=fixed", "gan.augment_p=0.2"]
        )
        run = Run.create(config, tmp_path / "fixed", lock=False)
        run.gan_options_file.write_text(json.dumps({"z_dim": 512}))
        assert run.plan_resume([])[0].gan.augment == "fixed"
