"""A callback, a loss and a metric of the user's own, named by import path in a YAML config,
run in `tfkit train`; `config validate` checks the paths without importing them; every way a
path can be wrong exits 2 with one line naming it; `fit` takes extra callbacks."""

import json
import sys
import textwrap

import keras
import pytest

from tfkit.cli import main
from tfkit.config import load_config

MODULE = "user_ext_mod"

SOURCE = '''
import json

import keras


class RecordHooks(keras.callbacks.Callback):
    """Writes the epochs it saw and its tag when training ends."""

    def __init__(self, path, tag="x"):
        super().__init__()
        self.path, self.tag, self.epochs = path, tag, []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_end(self, logs=None):
        record = {"epochs": self.epochs, "tag": self.tag}
        with open(self.path, "w") as f:
            json.dump(record, f)


class ScaledCrossentropy(keras.losses.Loss):
    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def call(self, y_true, y_pred):
        return self.scale * keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


class MeanMaxProbability(keras.metrics.Mean):
    def __init__(self, name="mean_max_probability", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(keras.ops.max(y_pred, axis=-1), sample_weight)


def not_a_class(x):
    return x


class NotACallback:
    pass
'''

CONFIG = """
name: user_ext
data:
  source: {{kind: digits, layout: flat}}
  split: {{train: 0.5, val: 0.25, test: 0.25, seed: 0}}
  batch_size: 64
model: {{name: mlp, units: [16]}}
train:
  epochs: 2
  loop: {loop}
  tensorboard: false
  checkpoint: none
  loss: {{class_path: {m}.ScaledCrossentropy, args: {{scale: 2.0}}}}
  metrics: [accuracy, {{class_path: {m}.MeanMaxProbability}}]
  monitor: val_loss
  callbacks:
    - {{class_path: {m}.RecordHooks, args: {{path: {record}, tag: yaml}}}}
    - {{name: early_stopping, args: {{patience: 5}}}}
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The module written into the test's folder, which is put on the import path."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield MODULE
    sys.modules.pop(MODULE, None)


def _config(tmp_path, loop="fit"):
    path = tmp_path / "user.yaml"
    record = tmp_path / "record.json"
    path.write_text(CONFIG.format(m=MODULE, record=record, loop=loop))
    return path, record


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_user_callback_loss_and_metric_run_in_train(user_module, tmp_path, loop):
    config, record = _config(tmp_path, loop)
    run = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run)]) == 0
    assert json.loads(record.read_text()) == {"epochs": [0, 1], "tag": "yaml"}
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 2
    # the loss is the user's, twice the cross-entropy: a 10-class model that has barely
    # trained has a cross-entropy near ln(10) = 2.3, so its doubled loss is above 4
    assert epochs[0]["loss"] > 4.0 and epochs[0]["val_loss"] > 4.0
    for epoch in epochs:
        # a max softmax probability of 10 classes lies in [0.1, 1]
        assert 0.1 <= epoch["mean_max_probability"] <= 1.0
        assert 0.1 <= epoch["val_mean_max_probability"] <= 1.0


def test_config_validate_checks_paths_without_importing_them(tmp_path, capsys):
    config, _ = _config(tmp_path)
    assert main(["config", "validate", str(config)]) == 0  # the module is not even findable
    assert MODULE not in sys.modules
    capsys.readouterr()
    bad = config.read_text().replace(f"{MODULE}.ScaledCrossentropy", "ScaledCrossentropy")
    config.write_text(bad)
    assert main(["config", "validate", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.loss.class_path" in err and "must be an import path" in err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "train.loss={class_path: no_such_pkg_xyz.losses.Loss}",
            "`train.loss.class_path` no_such_pkg_xyz.losses.Loss: cannot import module "
            "`no_such_pkg_xyz.losses`",
        ),
        (
            "train.metrics=[{class_path: M.Missing}]",
            "`train.metrics[0].class_path` M.Missing: module `M` has no `Missing`",
        ),
        (
            "train.callbacks=[{class_path: M.NotACallback}]",
            "`train.callbacks[0].class_path` M.NotACallback is not a Keras callback: expected a "
            "subclass of keras.callbacks.Callback, got a class NotACallback",
        ),
        (
            "train.loss={class_path: M.not_a_class}",
            "`train.loss.class_path` M.not_a_class is not a Keras loss",
        ),
        (
            "train.callbacks=[{class_path: M.RecordHooks, args: {pth: x}}]",
            "`train.callbacks[0].args` do not fit M.RecordHooks (signature "
            "RecordHooks(path, tag='x'))",
        ),
        (
            "train.loss={class_path: M.ScaledCrossentropy, args: {scale: 1, colour: red}}",
            "`train.loss.args` do not fit M.ScaledCrossentropy",
        ),
    ],
)
def test_wrong_class_paths_exit_2_with_one_line(user_module, tmp_path, capsys, override, message):
    config, _ = _config(tmp_path)
    override = override.replace("M.", f"{MODULE}.").replace("`M`", f"`{MODULE}`")
    message = message.replace("M.", f"{MODULE}.").replace("`M`", f"`{MODULE}`")
    code = main(["train", str(config), "--run-dir", str(tmp_path / "run"), "--set", override])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err and "Traceback" not in err


def test_fit_takes_extra_callbacks(user_module, tmp_path):
    from tfkit.runs import create_run_dir
    from tfkit.training import fit

    config_path, record = _config(tmp_path)
    config = load_config(config_path, ["train.epochs=1", "train.callbacks=[]"])
    module = __import__(MODULE)
    extra = module.RecordHooks(str(record), tag="python")
    run = create_run_dir(config, tmp_path / "run")
    fit(config, run, callbacks=[extra])
    assert json.loads(record.read_text())["tag"] == "python"
    assert isinstance(extra, keras.callbacks.Callback) and extra.epochs == [0]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"loss": {"name": "huber", "delta": True}}}, "train.loss.delta"),
        ({"train": {"metrics": [{"class_path": "a.B"}], "epochs": True}}, "train.epochs"),
        ({"model": {"name": "cnn", "groups": True}}, "model.groups"),
    ],
)
def test_sections_that_may_be_class_paths_keep_their_number_checks(raw, key):
    from tfkit.config import validate
    from tfkit.errors import UserError

    with pytest.raises(UserError) as err:
        validate(raw)
    assert f"`{key}`" in str(err.value)


def test_monitor_may_name_a_class_path_metric_by_its_name_argument():
    from tfkit.config import validate
    from tfkit.errors import UserError

    metrics = ["accuracy", {"class_path": "pkg.metrics.Mine", "args": {"name": "mine"}}]
    validate({"train": {"metrics": metrics, "monitor": "val_mine"}})
    with pytest.raises(UserError) as err:
        validate({"train": {"metrics": metrics, "monitor": "val_theirs"}})
    text = str(err.value)
    assert "no metric `val_theirs` is logged" in text
    assert "train.metrics: ['accuracy', 'pkg.metrics.Mine']" in text and "val_mine" in text
    # without a `name` argument only the class knows its log key: any monitor is accepted
    validate({"train": {"metrics": [{"class_path": "pkg.metrics.Mine"}], "monitor": "val_x"}})
