"""One `tfkit train` run, either path: ONE preparation and ONE result writer.

`prepare(config, run_dir)` turns a config into a `Session`: the runtime set up, the
strategy, the data, and the model built and compiled in the strategy's scope with initial
weights drawn from `runtime.seed` (`build_model`, also used by tuner trials). Then

- `fit(config, run_dir)` trains with `model.fit` (`fit_model`: exact resume, stop on
  signals and NaN), and
- `run_loop(config, run_dir)` trains with the generic `tfkit.training.loop.Loop`,

and both end in `write_result`: evaluate the test and val splits, the metrics table,
`spec.json`, `model.keras` and `metrics.json` (the chief only).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfkit.config import ExperimentConfig
from tfkit.errors import Stopped, UserError
from tfkit.runs import (
    BACKUP_DIR,
    CHECKPOINT_DIR,
    LAST_CHECKPOINT_FILE,
    LOOP_CHECKPOINT_DIR,
    LOOP_TENSORBOARD_DIR,
    MODEL_FILE,
    RESULT_FILE,
    SPEC_FILE,
    copy_atomic,
    save_model_atomic,
    write_json_atomic,
)
from tfkit.training.banner import continued_epoch, epoch_position, start_line
from tfkit.training.callbacks import (
    BestCheckpoint,
    FirstEpochCheckpoint,
    Throughput,
    build_callbacks,
)
from tfkit.training.fit import build_model, fit_model, format_table, spec_to_dict, train_batches


@dataclasses.dataclass
class Session:
    """What both training paths start from (see `prepare`)."""

    config: ExperimentConfig
    run_dir: Path
    strategy: tf.distribute.Strategy
    splits: Any  # tfkit.data.Splits, built without an input context (global batches)
    model: keras.Model  # compiled, in the strategy's scope
    chief: bool
    steps_per_epoch: int | None
    # the splits built per input context by `data_fn` (its key: pipelines, id, replicas)
    _built_for_context: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def spec(self):
        """The data spec (what the model was built against)."""
        return self.splits.spec

    def data_fn(self, split: str) -> Callable[[tf.distribute.InputContext], tf.data.Dataset]:
        """`fn(input_context) -> dataset` of `split`, for `distribute_datasets_from_function`.

        The splits of each input context are built once and reused: the loop asks for the
        validation split every epoch, and building reads and splits the source again."""
        import tfkit.data

        config = self.config
        built = self._built_for_context

        def fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            key = (ctx.num_input_pipelines, ctx.input_pipeline_id, ctx.num_replicas_in_sync)
            if key not in built:
                built[key] = tfkit.data.build(
                    config.data, seed=config.runtime.seed, input_context=ctx
                )
            return getattr(built[key], split)

        return fn


def prepare(config: ExperimentConfig, run_dir: str | os.PathLike) -> Session:
    """Runtime, strategy, data and the compiled model of `config` (both paths)."""
    import tfkit.data
    from tfkit import distribute

    distribute.setup_runtime(config.runtime)
    strategy = distribute.strategy(config.runtime)
    distribute.global_batch_check(config.data.batch_size, strategy)
    splits = tfkit.data.build(config.data, seed=config.runtime.seed, input_context=None)
    steps_per_epoch = train_batches(config, splits)
    with strategy.scope():
        model = build_model(config, splits.spec, steps_per_epoch)
    return Session(
        config=config,
        run_dir=Path(run_dir),
        strategy=strategy,
        splits=splits,
        model=model,
        chief=distribute.is_chief(strategy),
        steps_per_epoch=steps_per_epoch,
    )


def write_result(
    session: Session,
    evaluate: Callable[[str], dict[str, float]],
    history: dict[str, list[float]],
    **fields: Any,
) -> dict[str, Any]:
    """Evaluate the test and val splits and write the run's results (chief only).

    Args:
        session: the run.
        evaluate: `split name -> logs` (the path's own evaluation).
        history: each logged key -> one value per epoch trained in this session.
        **fields: the path's numbers (epochs, train_seconds, ...).

    Returns:
        The dict written to `metrics.json`, also printed as a table.
    """
    result: dict[str, Any] = {}
    for split in ("test", "val"):
        if getattr(session.splits, split, None) is not None:
            result[split] = {k: float(v) for k, v in evaluate(split).items()}
    if history:
        result["last_epoch"] = {k: float(v[-1]) for k, v in history.items()}
    result.update(fields)
    result.update(
        strategy=type(session.strategy).__name__,
        replicas=session.strategy.num_replicas_in_sync,
    )
    run_dir = session.run_dir
    if session.chief:
        write_json_atomic(run_dir / SPEC_FILE, spec_to_dict(session.spec))
        save_model_atomic(session.model, run_dir / MODEL_FILE)
        write_json_atomic(run_dir / RESULT_FILE, result)
    print(format_table(result), flush=True)
    return result


def _examples_per_sec(callbacks: Sequence[keras.callbacks.Callback]) -> float | None:
    """The last epoch's examples/s of training (validation excluded) as `Throughput`
    measured it; None without one."""
    for callback in callbacks:
        if isinstance(callback, Throughput) and callback.history:
            return round(callback.history[-1]["examples_per_sec"], 1)
    return None


# --------------------------------------------------------------------------------------
# the compile/fit path
# --------------------------------------------------------------------------------------


def fit(
    config: ExperimentConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Train with `model.fit` as the config says and write the run's results.

    Args:
        config: the resolved experiment config (already saved in `run_dir`).
        run_dir: the run directory (holds `config.yaml`).
        resume: continue exactly from the latest backup in `run_dir/backup` (a run whose
            training finished but whose results were not written only writes them).
        callbacks: Keras callbacks of your own, run after the config's.

    Returns:
        The result written to `metrics.json`: `{"test": {...}, "val": {...}, "epochs": N,
        "train_seconds": s, "examples_per_sec": e, "strategy": ..., "replicas": n}`.

    Raises:
        NonFiniteLossError: the loss became NaN/Inf (the last good backup is kept).
        Stopped: SIGTERM or SIGINT; the backup holds the step reached.
    """
    from tfkit import distribute
    from tfkit.training.backup import FitBackup, build_from_spec, saved_position, weights_finite
    from tfkit.training.callback_state import CallbackStates
    from tfkit.training.stop import StopSignals

    run_dir = Path(run_dir)
    if resume and not (run_dir / BACKUP_DIR).exists() and (run_dir / RESULT_FILE).exists():
        raise UserError(
            f"--resume {run_dir}: this run already finished (see {run_dir / RESULT_FILE})"
        )
    session = prepare(config, run_dir)
    model = session.model
    position = saved_position(run_dir / BACKUP_DIR) if resume else None
    start_step, start_epoch = position or (0, 0)
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT_FILE
    resuming_at = epoch_position(start_step, session.steps_per_epoch, start_epoch)
    print(
        start_line(
            "tfkit train",
            config.name,
            run_dir,
            [distribute.describe(session.strategy)],
            chief=session.chief,
            resuming_at=resuming_at if position else None,
        ),
        flush=True,
    )
    extra = list(callbacks)
    start = time.perf_counter()
    with StopSignals() as stop:
        others = [
            *build_callbacks(
                config.train,
                run_dir,
                batch_size=config.data.batch_size,
                is_chief=session.chief,
                backup=False,
                last_at_end=False,  # the final model.keras is copied there below
            ),
            *extra,
        ]
        states = CallbackStates(others)  # their state goes into the backup
        backup = FitBackup(
            run_dir / BACKUP_DIR,
            steps_per_epoch=session.steps_per_epoch,
            start_step=start_step,
            start_epoch=start_epoch,
            save_every=config.train.checkpoint_every,
            stop=stop,
            states=states,
        )
        build_from_spec(model, session.splits.train.element_spec)
        backup.set_model(model)
        backup.restore()  # also when training is over and only the results are missing
        # the backup first: a NaN stops the epoch end before any other callback saves;
        # then last.keras from the first epoch end on (before metrics.jsonl logs it);
        # the states last: their on_train_begin puts back what the others' reset
        first = [FirstEpochCheckpoint(last)] if session.chief else []
        callbacks = [backup, *first, *others, states]
        try:
            history = fit_model(
                model,
                config,
                session.splits,
                callbacks,
                start_step=start_step,
                start_epoch=start_epoch,
                fresh_train=session.splits.train,  # built by `prepare`, never iterated
            )
        except BaseException:
            backup.wait(raise_errors=False)  # a backup being written completes first
            if session.chief and weights_finite(model):  # keep what was learned, never NaN
                try:
                    save_model_atomic(model, last)
                except Exception:  # noqa: BLE001 - the original error matters more
                    pass
            raise
    train_seconds = time.perf_counter() - start

    epochs = (history.epoch[-1] + 1) if history.epoch else start_epoch
    fields: dict[str, Any] = {
        "epochs": epochs,
        "epochs_this_session": len(history.epoch),
        "train_seconds": round(train_seconds, 3),
    }
    rate = _examples_per_sec(callbacks)
    if rate is not None:
        fields["examples_per_sec"] = rate
    splits = session.splits
    result = write_result(
        session,
        lambda split: model.evaluate(getattr(splits, split), verbose=0, return_dict=True),
        history.history,
        **fields,
    )
    if session.chief:
        if config.train.checkpoint in ("last", "both"):
            copy_atomic(run_dir / MODEL_FILE, last)
        for callback in callbacks:  # the best epoch is the last: best.keras is model.keras
            if isinstance(callback, BestCheckpoint) and callback.final_is_best:
                copy_atomic(run_dir / MODEL_FILE, callback.path)
        shutil.rmtree(run_dir / BACKUP_DIR, ignore_errors=True)  # the run is complete
    print(f"epochs: {epochs}  train time: {train_seconds:.1f}s  run dir: {run_dir}", flush=True)
    return result


# --------------------------------------------------------------------------------------
# the custom loop
# --------------------------------------------------------------------------------------


def run_loop(config: ExperimentConfig, run_dir: str | Path, *, resume: bool) -> dict[str, Any]:
    """Train `config` with the custom loop (`tfkit.training.loop.Loop`) and write the run's
    results: the same preparation and result writer as `fit`. Only the chief writes into
    `run_dir`.

    Args:
        config: the resolved `ExperimentConfig` (already saved in `run_dir`).
        run_dir: the run directory.
        resume: continue from the latest checkpoint in `run_dir/checkpoints/loop`.

    Returns:
        The dict written to `metrics.json` (same keys as the fit path, plus `loop: custom`).

    Raises:
        NonFiniteLossError: a non-finite loss under `train.nan_policy: stop`.
        Stopped: SIGTERM or SIGINT (on any worker); a checkpoint holds the step reached.
    """
    from tfkit import distribute
    from tfkit.training.loop import Loop
    from tfkit.training.metrics import build_metrics, resolve_class_weight

    session = prepare(config, run_dir)
    run_dir, model, spec, strategy = session.run_dir, session.model, session.spec, session.strategy
    train_cfg = config.train
    batch = config.data.batch_size
    steps_per_epoch = session.steps_per_epoch
    if not steps_per_epoch:
        raise UserError(
            "The custom loop needs `train.steps_per_epoch` when the number of training "
            "batches is unknown (an infinite or unsized dataset)"
        )
    with strategy.scope():
        metrics = build_metrics(train_cfg.metrics, spec)
    class_weight = resolve_class_weight(train_cfg.class_weight, spec, session.splits.train)
    with distribute.worker_dir(run_dir, strategy) as out_dir:
        callbacks = build_callbacks(
            train_cfg, out_dir, batch_size=batch, is_chief=True, backup=False
        )
        jit = config.runtime.jit_compile
        loop = Loop(
            model=model,
            loss=model.loss,
            optimizer=model.optimizer,
            strategy=strategy,
            train_data=session.data_fn("train"),
            val_data=session.data_fn("val") if session.splits.val is not None else None,
            global_batch_size=batch,
            steps_per_epoch=steps_per_epoch,
            epochs=train_cfg.epochs,
            metrics=metrics,
            steps_per_loop=train_cfg.steps_per_loop,
            jit_compile=bool(jit) if jit != "auto" else False,
            callbacks=callbacks,
            checkpoint_dir=out_dir / LOOP_CHECKPOINT_DIR,
            checkpoint_every=train_cfg.checkpoint_every,
            nan_policy=train_cfg.nan_policy,
            summary_dir=out_dir / LOOP_TENSORBOARD_DIR,
            class_weight=class_weight,
            validation_freq=train_cfg.validation_freq,
            validation_steps=train_cfg.validation_steps,
            seed=config.runtime.seed,
            verbose=1 if train_cfg.verbose in (1, "auto") else int(train_cfg.verbose),
        )
        if resume:
            # every worker restores the chief's checkpoint, so all continue from one state
            latest = tf.train.latest_checkpoint(str(run_dir / LOOP_CHECKPOINT_DIR))
            if latest:
                from tfkit.training.backup import unreadable
                from tfkit.training.checkpointing import UNREADABLE_CHECKPOINT_ERRORS

                try:
                    loop.restore_checkpoint(latest)
                except UNREADABLE_CHECKPOINT_ERRORS as err:
                    raise unreadable(latest, err) from None
        start_step = int(loop.step.numpy())
        details = [distribute.describe(strategy), "custom loop", f"{steps_per_epoch} steps/epoch"]
        print(
            start_line(
                "tfkit train",
                config.name,
                run_dir,
                details,
                chief=session.chief,
                resuming_at=epoch_position(start_step, steps_per_epoch) if start_step else None,
            ),
            flush=True,
        )
        start = time.perf_counter()
        history = loop.run(resume=False)
        train_seconds = time.perf_counter() - start
        if loop.stopped_by_signal:
            step = int(loop.step.numpy())
            raise Stopped(loop.stop_signal, continued_epoch(step, steps_per_epoch), step)
        steps = int(loop.step.numpy())
        checksum = float(sum(np.abs(w).astype("float64").sum() for w in model.get_weights()))
        print(f"final weights checksum: {checksum:.6f}", flush=True)
        return write_result(
            session,
            lambda split: loop.evaluate(session.data_fn(split)),
            history,
            epochs=int(loop.epoch.numpy()),
            epochs_this_session=len(next(iter(history.values()), [])),
            train_seconds=round(train_seconds, 3),
            loop="custom",
            steps=steps,
            # as on the fit path; without Throughput, over the whole training time
            examples_per_sec=_examples_per_sec(callbacks)
            or round((steps - start_step) * batch / max(train_seconds, 1e-9), 1),
            weights_checksum=round(checksum, 6),
        )
