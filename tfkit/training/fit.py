"""The compile/fit path: `tfkit train` when `train.loop: fit`.

Read it top to bottom: `fit(config, run_dir)` sets up the runtime, picks the strategy,
builds the data, builds and compiles the model inside the strategy scope, calls
`model.fit` with tfkit's callbacks, evaluates on the test split, saves `model.keras` and
writes `metrics.json`.
"""

from __future__ import annotations

from typing import Any

import keras

from tfkit.config import ExperimentConfig, RuntimeConfig, TrainConfig
from tfkit.data.spec import DataSpec
from tfkit.errors import UserError
from tfkit.keras_names import LOSSES
from tfkit.training.losses import build_loss, loss_name_of
from tfkit.training.metrics import build_metrics, resolve_class_weight
from tfkit.training.optimizers import build_optimizer


def spec_to_dict(spec: DataSpec) -> dict[str, Any]:
    """The data spec as JSON data (what `tfkit predict` checks its input against)."""
    import dataclasses

    out = dataclasses.asdict(spec)
    out["inputs"] = [
        {"name": i.name, "shape": list(i.shape), "dtype": i.dtype}
        | ({"feature": i.feature} if i.feature else {})
        for i in spec.inputs
    ]
    return out


def _output_units(model: keras.Model) -> int | None:
    try:
        shape = model.outputs[0].shape
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    return None if not shape or shape[-1] is None else int(shape[-1])


def check_model_fits_data(model: keras.Model, loss_name: str | None, spec: DataSpec) -> None:
    """Refuse a model whose output cannot match the labels, naming both sides (`loss_name`
    None: a loss class of your own, whose labels tfkit cannot know).

    Raises:
        UserError: e.g. a 5-way softmax for 10 classes, or 10 outputs for binary labels.
    """
    units = _output_units(model)
    if units is None:
        return
    binary_loss = LOSSES.get(loss_name, ("",))[0].startswith("Binary")
    if spec.task == "multiclass" and units != spec.num_classes:
        raise UserError(
            f"The model outputs {units} values per example, but the data has "
            f"{spec.num_classes} classes (labels 0..{(spec.num_classes or 1) - 1}). "
            f"Set model.outputs: {spec.num_classes} (or `auto`)"
        )
    if spec.task == "multiclass" and binary_loss:
        raise UserError(
            f"`train.loss: {loss_name}` is for 0/1 labels, but the data has "
            f"{spec.num_classes} classes (labels 0..{(spec.num_classes or 1) - 1}). "
            "Use sparse_categorical_crossentropy (integer labels) or "
            "categorical_crossentropy (one-hot labels)"
        )
    if spec.task == "binary" and binary_loss and units != 1:
        raise UserError(
            f"The model outputs {units} values per example, but `{loss_name}` on binary labels "
            "needs 1. Set model.outputs: 1 (or `auto`)"
        )


AUTO_STEPS_PER_EXECUTION = 16


def steps_per_execution(runtime_cfg: RuntimeConfig, steps_per_epoch: int | None = None) -> int:
    """`runtime.steps_per_execution` for the strategy in scope and the epoch length.

    `auto` is up to 16 steps per graph call on one replica (measured on the digits CNN:
    ~16 % less CPU per step than 1 on a 2-core CPU): the largest divisor of
    `steps_per_epoch` that is at most 16, because Keras runs whole executions on a repeated
    stream, so 16 steps a call in a 40-step epoch would train 48 steps an epoch and move
    every backup off its step. Under a multi-replica strategy `auto` is 1 (Keras'
    multi-step loop fails there).

    Raises:
        UserError: an explicit value that does not divide `steps_per_epoch`.
    """
    value = runtime_cfg.steps_per_execution
    if value != "auto":
        value = int(value)
        if steps_per_epoch and steps_per_epoch % value:
            raise UserError(
                f"`runtime.steps_per_execution` ({value}) must divide the steps per epoch "
                f"({steps_per_epoch}): Keras would train "
                f"{-(-steps_per_epoch // value) * value} steps an epoch. Use a divisor of "
                f"{steps_per_epoch} or `auto`"
            )
        return value
    import tensorflow as tf

    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        return 1
    if not steps_per_epoch:
        return AUTO_STEPS_PER_EXECUTION  # one finite pass: Keras ends it at the data's end
    return max(d for d in range(1, AUTO_STEPS_PER_EXECUTION + 1) if steps_per_epoch % d == 0)


def compile_model(
    model: keras.Model,
    train_cfg: TrainConfig,
    spec: DataSpec,
    runtime_cfg: RuntimeConfig | None = None,
    *,
    steps_per_epoch: int | None = None,
) -> keras.Model:
    """Compile `model` with the loss, optimizer and metrics of `train_cfg`.

    Call it inside `strategy.scope()` when training under a strategy.

    Args:
        model: any Keras model whose inputs and outputs fit `spec`.
        train_cfg: the `train` section.
        spec: the dataset spec (chooses `auto` losses, checks the output head).
        runtime_cfg: the `runtime` section (`jit_compile`, `steps_per_execution`).
        steps_per_epoch: the optimizer steps of one epoch, when known (`steps_per_execution`
            must divide it).

    Returns:
        The same model, compiled.

    Raises:
        UserError: unknown names, arguments that do not fit, or a head that does not
            match the labels.
    """
    runtime_cfg = runtime_cfg or RuntimeConfig()
    loss = build_loss(train_cfg.loss, spec)
    check_model_fits_data(model, loss_name_of(train_cfg.loss, spec), spec)
    model.compile(
        optimizer=build_optimizer(train_cfg.optimizer),
        loss=loss,
        metrics=build_metrics(train_cfg.metrics, spec),
        jit_compile=runtime_cfg.jit_compile,
        steps_per_execution=steps_per_execution(runtime_cfg, steps_per_epoch),
    )
    return model


def format_table(result: dict[str, Any]) -> str:
    """The final metrics as a small text table (one row per split)."""
    rows = {
        split: vals
        for split, vals in result.items()
        if isinstance(vals, dict) and split != "last_epoch"
    }
    names = sorted({k for vals in rows.values() for k in vals})
    header = ["split", *names]
    lines = [header] + [
        [s, *(f"{v[n]:.4f}" if n in v else "-" for n in names)] for s, v in rows.items()
    ]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def _floats(logs: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in logs.items()}


def build_model(
    config: ExperimentConfig, spec: DataSpec, steps_per_epoch: int | None = None
) -> keras.Model:
    """The model of `config`, compiled, with initial weights drawn from `runtime.seed` alone.

    `tfkit train` and every tuner trial call it, so a trial and `tfkit train best.yaml`
    start from the same weights. Call it inside `strategy.scope()`.
    """
    import tfkit.models

    keras.utils.set_random_seed(config.runtime.seed)
    model = tfkit.models.build(config.model, spec)
    compile_model(model, config.train, spec, config.runtime, steps_per_epoch=steps_per_epoch)
    return model


def train_batches(config: ExperimentConfig, splits: Any) -> int | None:
    """Optimizer steps per epoch: `train.steps_per_epoch`, else the batches of one pass."""
    batches = int(splits.train.cardinality())  # < 0: infinite or unknown
    return config.train.steps_per_epoch or (batches if batches >= 0 else None)


def fit_model(
    model: keras.Model,
    config: ExperimentConfig,
    splits: Any,
    callbacks: list[keras.callbacks.Callback],
    *,
    epochs: int | None = None,
    start_step: int = 0,
    start_epoch: int = 0,
    verbose: Any = None,
    fresh_train: Any = None,
) -> keras.callbacks.History:
    """Train a compiled model of `config` with `model.fit`, the data order a function of the
    seed and the step (see `tfkit.training.backup`). `tfkit train` and tuner trials use it.

    Args:
        model: built by `build_model`.
        config: the experiment.
        splits: its data (`tfkit.data.build`); the train split is rebuilt fresh.
        callbacks: Keras callbacks.
        epochs: train up to this epoch (default `train.epochs`).
        start_step, start_epoch: where a resumed run continues.
        verbose: `fit`'s verbosity (default `train.verbose`).
        fresh_train: the train split of `splits` when nothing has iterated it yet: the
            first phase trains on it instead of building the pipeline again.
    """
    import tfkit.data
    from tfkit.training.backup import fit_phases

    train = config.train

    def make_train():
        return tfkit.data.build(config.data, seed=config.runtime.seed, input_context=None).train

    class_weight = None  # counting labels iterates a train set: a fresh one, only if asked
    if train.class_weight is not None:
        class_weight = resolve_class_weight(train.class_weight, splits.spec, make_train())
    return fit_phases(
        model,
        make_train,
        epochs=train.epochs if epochs is None else epochs,
        steps_per_epoch=train_batches(config, splits),
        start_step=start_step,
        start_epoch=start_epoch,
        fresh_train=fresh_train,
        validation_data=splits.val,
        validation_steps=train.validation_steps,
        validation_freq=train.validation_freq,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=train.verbose if verbose is None else verbose,
    )
