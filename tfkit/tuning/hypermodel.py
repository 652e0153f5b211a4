"""`TfkitHyperModel`: a Keras Tuner hypermodel over a tfkit experiment config.

`build(hp)` applies the sampled values to the raw config, validates it (every trial is a
valid tfkit config) and calls the same model builder and `compile_model` as `tfkit train`;
`fit` trains on the same data with the same callbacks as `tfkit train` (Keras Tuner's own
best-epoch checkpoint replaces tfkit's checkpoints) and logs the trial to TensorBoard's
HParams dashboard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from tfkit.config import ExperimentConfig, HyperParameterConfig
from tfkit.runs import TENSORBOARD_DIR
from tfkit.tuning import space as space_lib

TRIALS_TB_DIR = TENSORBOARD_DIR  # <search dir>/tb/<trial id>: one HParams session per trial


class TfkitHyperModel(keras_tuner.HyperModel):
    """A Keras Tuner `HyperModel` whose trials are tfkit configs.

    Args:
        raw: the experiment's raw config tree (with `--set` overrides applied).
        space: `tune.space`: dotted config key -> hyperparameter.
        log_dir: where each trial's TensorBoard run goes (`log_dir/<trial id>`).
        **kwargs: passed to `keras_tuner.HyperModel`.

    Example:

    ```python
    hypermodel = TfkitHyperModel(raw, config.tune.space, "runs/x/tune/search/tb")
    tuner = keras_tuner.RandomSearch(hypermodel, objective="val_accuracy", max_trials=4)
    tuner.search()
    ```
    """

    def __init__(
        self,
        raw: dict,
        space: dict[str, HyperParameterConfig],
        log_dir: str | Path,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.raw = raw
        self.space = space
        self.log_dir = Path(log_dir)
        self._splits: dict[str, Any] = {}
        self.stop = None  # a `StopSignals` while a search runs: trials stop on its request

    # ----------------------------------------------------------------------------------

    def trial_config(self, hp: keras_tuner.HyperParameters) -> ExperimentConfig:
        """The validated tfkit config of the trial `hp` describes."""
        space_lib.declare(hp, self.space)
        return space_lib.trial_config(self.raw, space_lib.values_from_hp(hp, self.space))

    def splits(self, config: ExperimentConfig):
        """The data splits of `config`, built once per distinct data section."""
        import tfkit.data

        key = json.dumps([config.data.model_dump(mode="json"), config.runtime.seed], sort_keys=True)
        if key not in self._splits:
            self._splits.clear()  # one data set alive at a time
            self._splits[key] = tfkit.data.build(
                config.data, seed=config.runtime.seed, input_context=None
            )
        return self._splits[key]

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """Build and compile the trial's model as `tfkit train` does (`build_model`: the
        same initial weights)."""
        from tfkit.training.fit import build_model, train_batches

        config = self.trial_config(hp)
        splits = self.splits(config)
        return build_model(config, splits.spec, train_batches(config, splits))

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, *args: Any, **kwargs: Any):
        """Train the trial's model as `tfkit train` does (`fit_model`: the same data order,
        so `tfkit train best.yaml` reproduces the trial), with tfkit's callbacks."""
        from tensorboard.plugins.hparams import api as hparams_api

        from tfkit.training.backup import StopOnSignal
        from tfkit.training.callbacks import build_callbacks
        from tfkit.training.fit import fit_model, train_batches

        config = self.trial_config(hp)
        splits = self.splits(config)
        tuner_callbacks = list(kwargs.pop("callbacks", None) or [])
        trial = next((c.trial for c in tuner_callbacks if hasattr(c, "trial")), None)
        trial_id = trial.trial_id if trial is not None else "trial"
        log_dir = self.log_dir / str(trial_id)
        if (log_dir).exists() and any(log_dir.iterdir()):
            # another execution of the same trial: its own session
            n = sum(1 for p in self.log_dir.glob(f"{trial_id}*") if p.is_dir())
            log_dir = self.log_dir / f"{trial_id}_execution{n}"
        train_cfg = config.train.model_copy(update={"checkpoint": "none"})
        callbacks = build_callbacks(
            train_cfg, log_dir, batch_size=config.data.batch_size, backup=False
        )
        # build_callbacks writes TensorBoard under <dir>/tb; make the trial dir the session
        for callback in callbacks:
            if isinstance(callback, keras.callbacks.TensorBoard):
                callback.log_dir = str(log_dir)
        hparams = {
            key: (value if isinstance(value, (bool, int, float, str)) else json.dumps(value))
            for key, value in space_lib.values_from_hp(hp, self.space).items()
        }
        callbacks.append(
            hparams_api.KerasCallback(writer=str(log_dir), hparams=hparams, trial_id=str(trial_id))
        )
        epochs = kwargs.pop("epochs", None) or config.train.epochs
        initial_epoch = int(kwargs.pop("initial_epoch", 0) or 0)  # Hyperband's later rounds
        unused = set(kwargs) - {"verbose", "shuffle"}
        if unused:
            raise TypeError(f"TfkitHyperModel.fit does not take {sorted(unused)}")
        if self.stop is not None:
            callbacks.insert(0, StopOnSignal(self.stop))
        steps = train_batches(config, splits) or 0
        return fit_model(
            model,
            config,
            splits,
            callbacks + tuner_callbacks,
            epochs=epochs,
            start_step=initial_epoch * steps,
            start_epoch=initial_epoch,
            verbose=0,
        )
