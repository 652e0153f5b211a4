"""`run_search` end to end on a small tabular MLP: results, resume, HParams, bad input."""

import csv
import json
import os
import re
import signal
import socket
from pathlib import Path

import keras
import pytest
import yaml
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tfkit.config import load_config, read_yaml, validate
from tfkit.errors import UserError
from tfkit.tuning import search as search_lib
from tfkit.tuning import space as space_lib

RAW = {
    "name": "tiny_tune",
    "data": {
        "source": {"kind": "tabular_binary", "count": 600, "features": 10, "seed": 0},
        "batch_size": 64,
        "normalize": "standardize",
    },
    "model": {"name": "mlp", "units": [16]},
    "train": {
        "epochs": 2,
        "loss": "binary_crossentropy",
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "metrics": ["accuracy"],
        "checkpoint": "none",
    },
    "runtime": {"seed": 0},
    "tune": {
        "tuner": "random",
        "objective": {"name": "val_accuracy", "direction": "max"},
        "max_trials": 2,
        "space": {
            "model.units": {"choice": [[8], [32, 16]]},
            "train.optimizer.learning_rate": {"float": [1.0e-3, 3.0e-2], "sampling": "log"},
            "train.optimizer.name": {"choice": ["adam", "sgd"]},
            "train.optimizer.momentum": {
                "float": [0.0, 0.9],
                "when": {"train.optimizer.name": "sgd"},
            },
        },
    },
}

KT_ENV = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


@pytest.fixture(autouse=True)
def _restore_keras_tuner_env():
    saved = {k: os.environ.get(k) for k in KT_ENV}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def with_tune(raw, **tune):
    raw = json.loads(json.dumps(raw))
    raw["tune"].update(tune)
    return raw


def search(raw, run_dir, **kwargs):
    return search_lib.run_search(validate(raw), raw, run_dir, **kwargs)


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tune") / "run"
    result = search(RAW, run_dir)
    return run_dir, result


def test_search_writes_table_csv_best_config_and_model(searched):
    run_dir, result = searched
    rows = list(csv.DictReader(open(run_dir / "trials.csv")))
    assert [r["trial"] for r in rows] == [t["trial"] for t in result["trials"]]
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
    scores = [float(r["val_accuracy"]) for r in rows]
    best = result["best"]
    assert best["objective"] == pytest.approx(max(scores))
    # best.yaml is the full config of the best trial, without the tune section
    best_config = load_config(run_dir / "best.yaml")
    assert best_config.tune is None
    for key, value in best["values"].items():
        assert space_lib._get(best_config.model_dump(mode="json"), key) == pytest.approx(value)
    # the saved best model reproduces the objective on the validation split
    import tfkit.data

    splits = tfkit.data.build(best_config.data, seed=best_config.runtime.seed)
    model = keras.saving.load_model(run_dir / "best_model.keras", safe_mode=True)
    logs = model.evaluate(splits.val, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(best["objective"], abs=1e-4)
    assert best["objective"] > 0.6  # it learned


def test_every_trial_is_a_tensorboard_hparams_session(searched):
    run_dir, result = searched
    tb = run_dir / "search" / "tb"
    for trial in result["trials"]:
        session = tb / trial["trial"]
        acc = event_accumulator.EventAccumulator(str(session))
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(
            content["_hparams_/session_start_info"]
        ).session_start_info
        hparams = {
            k: json.loads(json.dumps(v.number_value or v.string_value or v.bool_value))
            for k, v in start.hparams.items()
        }
        assert start.group_name == trial["trial"]
        assert set(hparams) == set(trial["values"])
        for key, value in trial["values"].items():
            expected = value if isinstance(value, (int, float, str)) else json.dumps(value)
            assert hparams[key] == pytest.approx(expected)
        assert "_hparams_/session_end_info" in content
        # the metrics the dashboard shows: per-epoch validation accuracy of the trial
        val = event_accumulator.EventAccumulator(
            str(session / "validation"), size_guidance={"tensors": 0}
        )
        val.Reload()
        assert "epoch_accuracy" in val.Tags()["tensors"]
        assert len(val.Tensors("epoch_accuracy")) == 2  # train.epochs


def test_rerun_continues_and_changed_space_is_refused(searched, capsys, tmp_path):
    run_dir, first = searched
    # the same search again: nothing to do, no trial re-run
    again = search(RAW, run_dir)
    assert [t["trial"] for t in again["trials"]] == [t["trial"] for t in first["trials"]]
    capsys.readouterr()
    # more trials: only the new one runs; config.yaml stays, the change is recorded
    from tfkit.runs import Run

    run = Run(run_dir)
    saved = run.config_file.read_bytes()
    more = search(with_tune(RAW, max_trials=3), run_dir)
    out = capsys.readouterr().out
    assert len(more["trials"]) == 3
    assert run.config_file.read_bytes() == saved
    assert [c["key"] for r in run.resumes() for c in r["changes"]] == ["tune.max_trials"]
    assert run.load_config().tune.max_trials == 3
    assert out.count("completed val_accuracy=") == 1
    assert "[3/3]" in out
    # tfkit's own line says the search continues; Keras Tuner's reload notice stays off
    assert ", continuing)" in out and "Reloading Tuner" not in out
    assert [t["objective"] for t in more["trials"][:2]] == [t["objective"] for t in first["trials"]]
    # a changed space or objective is refused, naming the change
    changed = with_tune(RAW, max_trials=3)
    changed["tune"]["space"]["model.units"] = {"choice": [[8], [64]]}
    changed["tune"]["objective"] = {"name": "val_loss", "direction": "min"}
    with pytest.raises(UserError) as err:
        search(changed, run_dir)
    text = str(err.value)
    assert "tune.space.model.units (choice: [[8], [32, 16]] -> [[8], [64]])" in text
    assert "tune.objective.name ('val_accuracy' -> 'val_loss')" in text
    assert "--overwrite" in text


def test_overwrite_starts_a_new_search(tmp_path):
    raw = with_tune(RAW, max_trials=1)
    search(raw, tmp_path / "run")
    changed = with_tune(raw, objective={"name": "val_loss", "direction": "min"})
    result = search(changed, tmp_path / "run", overwrite=True)
    assert len(result["trials"]) == 1
    assert (
        yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["tune"]["objective"]["name"]
        == "val_loss"
    )


def test_objective_the_model_does_not_produce_names_the_available_ones(tmp_path):
    raw = with_tune(RAW, objective={"name": "val_auc", "direction": "max"})
    with pytest.raises(UserError) as err:
        search(raw, tmp_path / "run")
    assert "`tune.objective.name`: no metric `val_auc` is logged" in str(err.value)
    assert "val_accuracy" in str(err.value) and "val_loss" in str(err.value)


def test_worker_that_cannot_reach_the_oracle_times_out_clearly(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        UserError, match=rf"Could not reach the tuning oracle at 127.0.0.1:{port} within 1s"
    ):
        search(RAW, tmp_path / "run", role="worker", oracle=f"127.0.0.1:{port}", oracle_timeout=1)
    with pytest.raises(UserError, match="--oracle expects HOST:PORT"):
        search(RAW, tmp_path / "run", role="worker", oracle="localhost")


def test_config_without_tune_section_is_refused(tmp_path):
    raw = dict(RAW)
    raw.pop("tune")
    with pytest.raises(UserError, match="no `tune:` section"):
        search_lib.run_search(validate(raw), raw, tmp_path)


def test_hyperband_config_runs_with_conditional_momentum(tmp_path):
    path = Path("configs/tune_binary_mlp_hyperband.yaml")
    raw = read_yaml(path)
    raw["data"]["source"]["count"] = 600
    raw["tune"]["max_epochs"] = 2
    raw["tune"]["factor"] = 2
    result = search(raw, tmp_path / "run")
    assert len(result["trials"]) >= 3
    for trial in result["trials"]:
        assert trial["status"] == "COMPLETED"
        sgd = trial["values"]["train.optimizer.name"] == "sgd"
        assert ("train.optimizer.momentum" in trial["values"]) == sgd
        assert trial["values"]["train.epochs"] in (1, 2)
    best = load_config(tmp_path / "run" / "best.yaml")
    assert best.train.epochs == result["best"]["values"]["train.epochs"]


@pytest.mark.property
def test_tfkit_train_reproduces_every_trial_and_best_yaml_the_best(tmp_path):
    """A trial and `tfkit train` of its config run the same code with the same seeds and
    data order: the same objective (0.002; exact where ops are deterministic)."""
    from tfkit.cli import main
    from tfkit.config import save_config

    raw = with_tune(RAW, max_trials=3)
    raw["train"]["epochs"] = 4
    result = search(raw, tmp_path / "tune")
    best = result["best"]["objective"]
    completed = [t for t in result["trials"] if t["status"] == "COMPLETED"]
    assert len(completed) == 3
    for trial in completed:
        path = tmp_path / f"trial_{trial['trial']}.yaml"
        if trial["trial"] == result["best"]["trial"]:
            path = tmp_path / "tune" / "best.yaml"
        else:
            save_config(space_lib.trial_config(raw, trial["values"]), path)
        train_dir = tmp_path / f"train_{trial['trial']}"
        assert main(["train", str(path), "--run-dir", str(train_dir)]) == 0
        epochs = [json.loads(line) for line in open(train_dir / "metrics.jsonl")]
        assert len(epochs) == 4
        reproduced = max(e["val_accuracy"] for e in epochs)
        print(f"trial {trial['trial']} {trial['objective']:.4f}, tfkit train {reproduced:.4f}")
        assert reproduced == pytest.approx(trial["objective"], abs=0.002)
    assert best == max(t["objective"] for t in completed)


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.property)],
)
def test_signal_stops_the_search_with_one_line_and_a_rerun_finishes_it(
    signum, code, tmp_path, monkeypatch, capsys
):
    import tfkit.training.callbacks as callbacks_module
    from tfkit.cli import main

    config = tmp_path / "tune.yaml"
    config.write_text(yaml.safe_dump(with_tune(RAW, max_trials=2)))
    run_dir = tmp_path / "run"
    original = callbacks_module.build_callbacks
    trials = []

    class Signal(keras.callbacks.Callback):
        sent = False

        def on_train_batch_end(self, batch, logs=None):
            # batch hooks come every steps_per_execution steps: signal once, from step 3 on
            if len(trials) == 2 and batch >= 3 and not Signal.sent:
                Signal.sent = True
                os.kill(os.getpid(), signum)

    def with_signal(*args, **kwargs):
        trials.append(1)
        return [*original(*args, **kwargs), Signal()]

    monkeypatch.setattr(callbacks_module, "build_callbacks", with_signal)
    assert main(["tune", str(config), "--run-dir", str(run_dir)]) == code
    err = capsys.readouterr().err
    rerun = re.escape(f"tfkit tune {config} --run-dir {run_dir}")
    line = rf"tfkit tune: stopped at epoch \d+; continue with: {rerun}"
    assert re.fullmatch(line, err.splitlines()[-1]), err
    assert signal.getsignal(signum) in (signal.default_int_handler, signal.SIGTERM, signal.SIG_DFL)
    monkeypatch.setattr(callbacks_module, "build_callbacks", original)
    assert main(["tune", str(config), "--run-dir", str(run_dir)]) == 0
    with open(run_dir / "trials.csv") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["COMPLETED", "COMPLETED"]


def test_each_trial_can_train_under_a_mirrored_strategy(tmp_path, two_replicas):
    raw = with_tune(RAW, max_trials=1)
    raw["runtime"] = {"seed": 0, "strategy": "mirrored"}
    result = search(raw, tmp_path / "run")
    assert result["replicas"] == 2
    assert result["trials"][0]["status"] == "COMPLETED"
    assert result["best"]["objective"] > 0.5


def test_interrupted_search_continues_without_redoing_completed_trials(tmp_path, monkeypatch):
    from tfkit.tuning import hypermodel

    raw = with_tune(RAW, max_trials=2)
    original = hypermodel.TfkitHyperModel.fit
    calls = []

    def interrupt_second_trial(self, hp, model, *args, **kwargs):
        calls.append(hp.values)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second trial
        return original(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(hypermodel.TfkitHyperModel, "fit", interrupt_second_trial)
    with pytest.raises(KeyboardInterrupt):
        search(raw, tmp_path / "run")
    monkeypatch.setattr(hypermodel.TfkitHyperModel, "fit", original)
    ran = []
    monkeypatch.setattr(
        hypermodel.TfkitHyperModel,
        "fit",
        lambda self, hp, model, *a, **k: (
            ran.append(hp.values) or original(self, hp, model, *a, **k)
        ),
    )
    result = search(raw, tmp_path / "run")
    assert len(ran) == 1  # only the interrupted trial runs again
    assert ran[0] == calls[1]
    assert [t["status"] for t in result["trials"]] == ["COMPLETED", "COMPLETED"]
