"""The custom `tf.GradientTape` training loop (Orbit-like): any model, any dataset function.

`Loop.train_step(iterator, steps)` runs `steps` optimizer steps under `strategy.run` inside
one `tf.function`; `Loop.run()` is the controller: epochs, validation, checkpoints,
TensorBoard summaries, Keras callbacks and the progress bar.

Exact resume: the run engine's `CheckpointWriter` saves (in the background) the model's and
the optimizer's variables, the step, the epoch, the state of a `tf.random.Generator`, the
cut epoch's metrics and the callbacks' state. The input stream is a deterministic function of the seed (seeded
shuffles, repeated), so the iterator position is restored by replaying the stream to the
saved step (`Dataset.skip`); distributed iterators cannot be written to checkpoints.

The generic loop imports nothing of tfkit's data or models: the config-driven entry point
(`tfkit.training.session.run_loop`, used by `tfkit train` when `train.loop: custom` or under
a multi-worker strategy) builds those and hands them over.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfkit.errors import NonFiniteLossError, UserError
from tfkit.runs import restore_tf_checkpoint
from tfkit.training.callback_state import CallbackStates
from tfkit.training.checkpointing import CheckpointWriter, raw_variable, read_checkpoint
from tfkit.training.stop import StopSignals, end_progress_line

DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]

AUTO_STEPS_PER_LOOP = 16


def resolve_steps_per_loop(value: int | str, steps_per_epoch: int) -> int:
    """Optimizer steps per `tf.function` call: `value`, or for `auto` 16 (at most one
    epoch). Measured on a 2-core CPU (digits CNN, batch 32, `tfkit train`): 2,080 ex/s
    at one step per call, 2,727 at 16 (Python's per-call dispatch taken out). Chunks
    are cut at epoch ends and `checkpoint_every` steps, so any value trains and saves at
    the same steps; the number of steps is a tensor argument, so a short chunk does not
    retrace.

    Raises:
        UserError: a value that is neither `auto` nor an integer >= 1.
    """
    if value == "auto":
        return max(1, min(AUTO_STEPS_PER_LOOP, int(steps_per_epoch)))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(
            f"`train.steps_per_loop` must be an integer >= 1 or 'auto'. Received: {value!r}"
        )
    return value


def resolve_metric(metric: Any, loss: Any, output_units: int | None) -> keras.metrics.Metric:
    """A metric object for `metric`; `"accuracy"` becomes the accuracy matching the loss."""
    if not isinstance(metric, str):
        return metric
    key = metric.lower()
    if key in ("accuracy", "acc"):
        loss_name = getattr(loss, "name", "") or type(loss).__name__
        loss_name = str(loss_name).lower()
        if "binary" in loss_name or output_units == 1:
            return keras.metrics.BinaryAccuracy(name="accuracy")
        if "sparse" in loss_name:
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.get(metric)


class Loop:
    """A GradientTape trainer: `train_step` under `strategy.run`, `run()` as controller.

    Args:
        model: any Keras model (built, or buildable on the first batch), created inside
            `strategy.scope()`.
        loss: a `keras.losses.Loss` (its unreduced `call` gives per-example losses).
        optimizer: a Keras optimizer; wrapped in `LossScaleOptimizer` under `mixed_float16`.
        train_data: `fn(input_context) -> tf.data.Dataset` of per-replica batches
            `(x, y)` or `(x, y, sample_weight)`; the loop repeats it.
        global_batch_size: examples per step over all replicas.
        steps_per_epoch: optimizer steps per epoch.
        epochs: number of epochs.
        strategy: the distribution strategy (default: the current one).
        val_data: like `train_data` for validation (finite, not repeated), or None.
        metrics: metric objects or names (`"accuracy"` matches the loss).
        steps_per_loop: optimizer steps per `tf.function` call, or `auto` (see
            `resolve_steps_per_loop`); the batch hooks and the progress bar see each call.
        jit_compile: compile the replica step with XLA.
        callbacks: Keras callbacks receiving the hooks `fit` calls (`on_train_*`, `on_epoch_*`,
            and `on_test_*` around each validation); `predict` calls `on_predict_*`.
        checkpoint_dir: where checkpoints are written (None: no checkpoints).
        checkpoint_every: save every N steps (0: at each epoch end only).
        nan_policy: `stop` (raise `NonFiniteLossError` naming the step, leaving the last
            good checkpoint) or `skip_step` (skip the update of that step).
        summary_dir: TensorBoard directory (None: no summaries).
        class_weight: `{class: weight}` multiplied into the per-example loss.
        validation_freq: validate every N epochs.
        validation_steps: batches per validation (None: the whole split).
        seed: seed of the loop's `tf.random.Generator` (saved in checkpoints).
        verbose: 1 shows a Keras progress bar, 2 one line per epoch, 0 nothing.

    Example:
        with strategy.scope():
            model = keras.Sequential([...]); optimizer = keras.optimizers.Adam()
        loop = Loop(model=model, loss=keras.losses.SparseCategoricalCrossentropy(),
                    optimizer=optimizer, train_data=fn, global_batch_size=32,
                    steps_per_epoch=50, epochs=3, strategy=strategy)
        history = loop.run()
    """

    def __init__(
        self,
        *,
        model: keras.Model,
        loss: keras.losses.Loss,
        optimizer: keras.optimizers.Optimizer,
        train_data: DatasetFn,
        global_batch_size: int,
        steps_per_epoch: int,
        epochs: int = 1,
        strategy: tf.distribute.Strategy | None = None,
        val_data: DatasetFn | None = None,
        metrics: Sequence[Any] = (),
        steps_per_loop: int | str = "auto",
        jit_compile: bool = False,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 0,
        max_to_keep: int = 3,
        nan_policy: str = "stop",
        summary_dir: str | Path | None = None,
        class_weight: dict[int, float] | None = None,
        validation_freq: int = 1,
        validation_steps: int | None = None,
        seed: int = 0,
        verbose: int = 1,
    ):
        if nan_policy not in ("stop", "skip_step"):
            raise UserError(
                f"`train.nan_policy` must be one of stop, skip_step. Received: {nan_policy!r}"
            )
        if steps_per_epoch < 1:
            raise UserError(f"`steps_per_epoch` must be >= 1. Received: {steps_per_epoch}")
        self.strategy = strategy or tf.distribute.get_strategy()
        from tfkit.distribute import global_batch_check

        global_batch_check(global_batch_size, self.strategy)
        self.model = model
        self.loss = loss
        self.global_batch_size = global_batch_size
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.train_data = train_data
        self.val_data = val_data
        self.steps_per_loop = resolve_steps_per_loop(steps_per_loop, steps_per_epoch)
        self.jit_compile = jit_compile
        self.callbacks = list(callbacks)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.checkpoint_every = checkpoint_every
        self.nan_policy = nan_policy
        self.summary_dir = Path(summary_dir) if summary_dir else None
        self.validation_freq = validation_freq
        self.validation_steps = validation_steps
        self.verbose = verbose
        self._stop = StopSignals()  # entered by `run()`
        self._stop_signal: int | None = None  # the signal this process received
        self._stopping = False  # every worker agreed to stop (see StopAgreement)
        self._saved_step: int | None = None  # the step of the last checkpoint written
        from tfkit.distribute import StopAgreement

        # multi-worker: a SIGTERM to any worker stops every worker at the same step
        self._stop_agreement = StopAgreement(self.strategy)

        with self.strategy.scope():
            if keras.mixed_precision.global_policy().name == "mixed_float16" and not isinstance(
                optimizer, keras.optimizers.LossScaleOptimizer
            ):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            units = None
            try:
                units = int(model.outputs[0].shape[-1])
            except (AttributeError, IndexError, TypeError, ValueError):
                pass
            self.metrics = [resolve_metric(m, loss, units) for m in metrics]
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.rng = tf.random.Generator.from_seed(seed)
            self.class_weight = None
            if class_weight:
                size = max(int(k) for k in class_weight) + 1
                table = np.ones(size, dtype="float32")
                for k, v in class_weight.items():
                    table[int(k)] = float(v)
                self.class_weight = tf.constant(table)
            # callbacks (ReduceLROnPlateau, TensorBoard) read model.optimizer
            model.optimizer = self.optimizer
        # EarlyStopping's patience, the best value behind best.keras...: saved with the weights
        self.callback_states = CallbackStates(self.callbacks)
        with tf.device("/cpu:0"):
            self._states_var = tf.Variable(b"", dtype=tf.string, trainable=False)
            # the epoch's loss sum and weight so far: a cut epoch logs the whole epoch's mean
            self._loss_sums = tf.Variable([0.0, 0.0], dtype=tf.float64, trainable=False)
        self.max_to_keep = max_to_keep
        self.writer: CheckpointWriter | None = None  # made once every variable exists
        self._train_fn = None
        self._eval_fn = None
        self._distributed: dict[int, tuple[DatasetFn, Any]] = {}  # per evaluated dataset fn
        self._predict_fn = None

    # ----------------------------------------------------------------------------------
    # one replica's work
    # ----------------------------------------------------------------------------------

    def _per_example_loss(self, y, y_pred, sample_weight, *, class_weighted: bool = True):
        """Per-example losses weighted by `sample_weight` (and by `class_weight` when
        `class_weighted`: training only, as `fit` does), and the weight the metrics get:
        `sample_weight` alone, so metrics are never weighted by class."""
        y_pred = tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), y_pred)
        per_example = tf.cast(self.loss.call(y, y_pred), tf.float32)
        rank = per_example.shape.rank
        if rank and rank > 1:  # e.g. per-timestep losses: average over non-batch axes
            per_example = tf.reduce_mean(per_example, axis=list(range(1, rank)))
        metric_weight = None
        if sample_weight is not None:
            metric_weight = tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
            per_example = per_example * metric_weight
        if class_weighted and self.class_weight is not None:
            labels = y if y.shape.rank == 1 or y.shape[-1] == 1 else tf.argmax(y, axis=-1)
            labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
            size = tf.shape(self.class_weight)[0]  # classes not named weigh 1
            known = tf.gather(self.class_weight, tf.minimum(labels, size - 1))
            per_example = per_example * tf.where(labels < size, known, 1.0)
        return per_example, metric_weight

    def _update_metrics(self, y, y_pred, weight):
        for metric in self.metrics:
            metric.update_state(y, y_pred, sample_weight=weight)

    def _replica_step(self, batch):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        ctx = tf.distribute.get_replica_context()
        local_n = tf.shape(tf.nest.flatten(y)[0])[0]
        global_n = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_n)
        with tf.GradientTape() as tape:
            y_pred = self.model(x, training=True)
            per_example, weight = self._per_example_loss(y, y_pred, sample_weight)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_n)
            if self.model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(self.model.losses))
            scaled = self.optimizer.scale_loss(loss)
        variables = self.model.trainable_variables
        grads = tape.gradient(scaled, variables)
        loss_scaling = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        ok = tf.math.is_finite(loss)
        if not loss_scaling:  # under loss scaling, overflowing gradients are normal (skipped)
            ok = tf.reduce_all(
                [ok] + [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
            )
        loss = tf.where(ok, loss, tf.constant(float("nan"), loss.dtype))  # reported as NaN
        if self.nan_policy == "skip_step" and not isinstance(
            self.optimizer, keras.optimizers.LossScaleOptimizer
        ):
            # the cond must run in cross-replica context (apply_gradients calls merge_call)
            finite = tf.math.is_finite(ctx.all_reduce(tf.distribute.ReduceOp.SUM, loss))

            def _apply(strategy, grads):
                def apply_fn():
                    strategy.extended.call_for_each_replica(
                        lambda g: self.optimizer.apply_gradients(zip(g, variables, strict=True)),
                        args=(grads,),
                    )
                    return tf.constant(True)

                first = strategy.experimental_local_results(finite)[0]
                tf.cond(first, apply_fn, lambda: tf.constant(False))

            ctx.merge_call(_apply, args=(grads,))
        else:
            self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self._update_metrics(y, y_pred, weight)
        return loss, tf.cast(local_n, tf.float32)

    def _replica_eval(self, batch):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        y_pred = self.model(x, training=False)
        per_example, weight = self._per_example_loss(y, y_pred, sample_weight, class_weighted=False)
        self._update_metrics(y, y_pred, weight)
        return tf.reduce_sum(per_example), tf.cast(tf.shape(per_example)[0], tf.float32)

    # ----------------------------------------------------------------------------------
    # tf.functions
    # ----------------------------------------------------------------------------------

    def train_step(self, iterator, steps: int | tf.Tensor = 1):
        """Run up to `steps` optimizer steps from `iterator` (a distributed iterator).

        Returns:
            `(losses, counts, done)`: the global loss and example count of each step run,
            and the number of steps run (fewer than `steps` when a loss was not finite under
            `nan_policy: stop`; that step's update is already applied).
        """
        if self._train_fn is None:
            # no AutoGraph, as in Keras' own train function: the step's Python runs once
            # at tracing; the loop over steps is a `tf.while_loop` written out
            replica_step = tf.autograph.experimental.do_not_convert(self._replica_step)
            if self.jit_compile:
                replica_step = tf.function(replica_step, jit_compile=True)
            strategy = self.strategy
            stop_on_nan = self.nan_policy == "stop"

            @tf.function(autograph=False)
            def train_fn(iterator, steps):
                def body(i, losses, counts, finite):
                    # one reduction for both: [loss, examples] summed over replicas
                    pair = strategy.run(lambda b: tf.stack(replica_step(b)), args=(next(iterator),))
                    total = strategy.reduce(tf.distribute.ReduceOp.SUM, pair, axis=None)
                    self.step.assign_add(1)
                    if stop_on_nan:  # the step is done; the loop ends after it
                        finite = tf.math.is_finite(total[0])
                    return i + 1, losses.write(i, total[0]), counts.write(i, total[1]), finite

                _, losses, counts, _ = tf.while_loop(
                    lambda i, _losses, _counts, finite: tf.logical_and(i < steps, finite),
                    body,
                    (
                        tf.constant(0),
                        tf.TensorArray(tf.float32, size=0, dynamic_size=True),
                        tf.TensorArray(tf.float32, size=0, dynamic_size=True),
                        tf.constant(True),
                    ),
                )
                losses = losses.stack()
                return losses, counts.stack(), tf.shape(losses)[0]

            self._train_fn = train_fn
        return self._train_fn(iterator, tf.constant(steps, dtype=tf.int32))

    def evaluate(
        self,
        data: DatasetFn,
        steps: int | None = None,
        callbacks: keras.callbacks.CallbackList | None = None,
    ) -> dict[str, float]:
        """Loss and metrics over a finite dataset function (all of it, or `steps` batches).

        `callbacks` receive `on_test_begin`, `on_test_batch_begin/end` per batch and
        `on_test_end`, as during `model.fit`'s validation.
        """
        self._ensure_built()
        callbacks = callbacks or keras.callbacks.CallbackList([], model=self.model)
        batch_logs = _overrides(callbacks, "on_test_batch_end")
        for metric in self.metrics:
            metric.reset_state()
        if self._eval_fn is None:
            strategy = self.strategy

            replica_eval = tf.autograph.experimental.do_not_convert(self._replica_eval)

            @tf.function(autograph=False)
            def eval_fn(iterator, steps):
                # the next batch is fetched only while steps remain: none is consumed past
                # `steps`; the loop ends early at the end of the data
                def body(i, sums, batch):
                    pair = strategy.run(
                        lambda b: tf.stack(replica_eval(b)), args=(batch.get_value(),)
                    )
                    sums += strategy.reduce(tf.distribute.ReduceOp.SUM, pair, axis=None)
                    batch = tf.cond(i + 1 < steps, iterator.get_next_as_optional, lambda: batch)
                    return i + 1, sums, batch

                done, sums, _ = tf.while_loop(
                    lambda i, _sums, batch: tf.logical_and(i < steps, batch.has_value()),
                    body,
                    (tf.constant(0), tf.zeros([2]), iterator.get_next_as_optional()),
                )
                return sums[0], sums[1], done

            self._eval_fn = eval_fn
        dist = self._distributed.get(id(data))
        if dist is None or dist[0] is not data:  # made once per dataset function
            dist = self._distributed[id(data)] = (
                data,
                self.strategy.distribute_datasets_from_function(data),
            )
        iterator = iter(dist[1])
        known = _cardinality(dist[1])  # known: no call past the end (its hook would show)
        if known is not None:
            steps = known if steps is None else min(steps, known)
        callbacks.on_test_begin()
        totals = []  # kept on device; one transfer at the end
        # like the train steps, several batches per call; the batch hooks see each call
        chunk = 1 if batch_logs else self.steps_per_loop
        seen = 0
        while steps is None or seen < steps:
            n = chunk if steps is None else min(chunk, steps - seen)
            callbacks.on_test_batch_begin(seen)
            total, count, done = self._eval_fn(iterator, tf.constant(n, dtype=tf.int32))
            done = int(done)
            if done == 0:
                break
            totals.append((total, count))
            seen += done
            # running logs cost a device sync per call: only for callbacks that read them
            callbacks.on_test_batch_end(seen - 1, self._eval_logs(totals) if batch_logs else None)
            if done < n:
                break
        logs = self._eval_logs(totals)
        callbacks.on_test_end(logs)
        return logs

    def _eval_logs(self, totals: list) -> dict[str, float]:
        total = float(tf.add_n([t for t, _ in totals])) if totals else 0.0
        count = float(tf.add_n([n for _, n in totals])) if totals else 0.0
        logs = {"loss": total / max(count, 1.0)}
        logs.update({m.name: float(m.result()) for m in self.metrics})
        if self.model.losses:
            logs["loss"] += float(tf.add_n(self.model.losses))
        return logs

    def predict(
        self,
        data: DatasetFn | tf.data.Dataset,
        steps: int | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
    ) -> Any:
        """The model's outputs over a finite dataset (or dataset function), in order.

        Batches may be `x` or `(x, y[, sample_weight])`. `callbacks` receive
        `on_predict_begin`, `on_predict_batch_begin/end` (logs `{"outputs": ...}`) and
        `on_predict_end`, as with `model.predict`.
        """
        self._ensure_built()
        dataset = data(tf.distribute.InputContext()) if callable(data) else data
        if self._predict_fn is None:
            self._predict_fn = tf.function(lambda x: self.model(x, training=False))
        callback_list = keras.callbacks.CallbackList(list(callbacks), model=self.model)
        callback_list.on_predict_begin()
        outputs = []
        for i, batch in enumerate(dataset):
            if steps is not None and i >= steps:
                break
            callback_list.on_predict_batch_begin(i)
            x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
            y = tf.nest.map_structure(lambda t: t.numpy(), self._predict_fn(x))
            outputs.append(y)
            callback_list.on_predict_batch_end(i, {"outputs": y})
        callback_list.on_predict_end()
        if not outputs:
            return None
        return tf.nest.map_structure(lambda *ys: np.concatenate(ys), *outputs)

    # ----------------------------------------------------------------------------------
    # the controller
    # ----------------------------------------------------------------------------------

    def _ensure_built(self) -> None:
        """Create model and optimizer variables eagerly (never inside the step's while loop)."""
        with self.strategy.scope():
            if not self.model.built:
                batch = next(iter(self.train_data(tf.distribute.InputContext()).take(1)))
                x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
                self.model(x, training=False)
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)
        if self.writer is None and self.checkpoint_dir is not None:
            self.writer = CheckpointWriter(
                self.checkpoint_dir, self._checkpoint_state(), max_to_keep=self.max_to_keep
            )

    def _checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint holds: every model variable (Keras seed generators of dropout
        and noise layers included), the optimizer's, the step and epoch, the generator's
        state, and a cut epoch's state: the train metrics, the loss sums, the callbacks'."""
        return {
            "model_variables": self.model.variables,
            "optimizer_variables": self.optimizer.variables,
            "step": self.step,
            "epoch": self.epoch,
            "rng_state": self.rng.state,
            "metric_variables": [v for m in self.metrics for v in m.variables],
            "epoch_loss": self._loss_sums,
            "callbacks": self._states_var,
        }

    def _legacy_checkpoint_items(self) -> dict[str, Any]:
        """The object structure of checkpoints written by tfkit before the run engine (the
        model and optimizer as Keras objects, the generator as itself)."""
        items = self._checkpoint_state()
        del items["optimizer_variables"], items["rng_state"]
        items["model_variables"] = [raw_variable(v) for v in self.model.variables]
        items["metric_variables"] = [raw_variable(v) for v in items["metric_variables"]]
        return dict(model=self.model, optimizer=self.optimizer, rng=self.rng, **items)

    @property
    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint fully written in `checkpoint_dir` (None before the first)."""
        if self.checkpoint_dir is None:
            return None
        return tf.train.latest_checkpoint(str(self.checkpoint_dir))

    def restore(self) -> int:
        """Restore the latest checkpoint (if any); returns the restored step."""
        self._ensure_built()
        if self.latest_checkpoint:
            self.restore_checkpoint(self.latest_checkpoint)
        return int(self.step.numpy())

    def restore_checkpoint(self, path: str) -> None:
        """Restore the checkpoint `path` (e.g. the chief's, on every worker); every saved
        object must match. The callbacks' state goes back at the next `run()`."""
        self._ensure_built()
        saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
        if "optimizer_variables" in saved:
            read_checkpoint(path, self._checkpoint_state())
        else:  # written before the run engine; the oldest lack the cut epoch's state
            items = self._legacy_checkpoint_items()
            optional = {"metric_variables", "epoch_loss", "callbacks"}
            restore_tf_checkpoint(tf.train.Checkpoint(**items), items, path, optional)
        self.callback_states.load(self._states_var.numpy())

    def save(self) -> None:
        """Save a checkpoint at the current step (no-op without `checkpoint_dir`); it is
        written in the background (`wait_for_checkpoint` waits for it)."""
        if self.writer is None:
            return
        self._states_var.assign(self.callback_states.dump())
        self._saved_step = int(self.step.numpy())
        self.writer.save(self._saved_step)

    def _latest_written(self) -> str | None:
        """The newest checkpoint once the write in progress (if any) is done."""
        if self.writer is not None:
            self.writer.wait(raise_errors=False)
        return self.latest_checkpoint

    def wait_for_checkpoint(self) -> None:
        """Wait until the last checkpoint saved is written; raise the write's error."""
        if self.writer is not None:
            self.writer.wait()

    def _input_iterator(self, start_step: int):
        strategy = self.strategy
        fn = self.train_data

        def repeated(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
            ds = fn(ctx).repeat()
            if start_step:
                # each global step draws one batch per replica of this input pipeline
                per_pipeline = ctx.num_replicas_in_sync // max(ctx.num_input_pipelines, 1)
                ds = ds.skip(start_step * per_pipeline)
            return ds

        return iter(strategy.distribute_datasets_from_function(repeated))

    @property
    def stopped_by_signal(self) -> bool:
        """Whether the last `run()` stopped early on SIGTERM (after saving a checkpoint)."""
        return self._stopping

    def _set_monitor_modes(self) -> None:
        """Tell `mode: auto` monitor callbacks (ModelCheckpoint, EarlyStopping, ...) whether
        their metric goes up or down; Keras looks only at compiled metrics for that."""
        directions = {m.name: getattr(m, "_direction", None) for m in self.metrics}
        for callback in self.callbacks:
            if getattr(callback, "mode", None) != "auto" or not hasattr(callback, "monitor"):
                continue
            name = str(callback.monitor).removeprefix("val_")
            if directions.get(name) in ("up", "down"):
                callback.mode = "max" if directions[name] == "up" else "min"

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped the last `run()` (SIGTERM when another worker's did)."""
        if not self._stopping:
            return None
        return self._stop_signal if self._stop_signal is not None else int(signal.SIGTERM)

    def run(self, resume: bool = True) -> dict[str, list[float]]:
        """Train for `epochs` epochs (continuing from the latest checkpoint when `resume`).

        SIGTERM and SIGINT stop the run at the next chunk of steps, after a checkpoint
        (`stopped_by_signal`, `stop_signal`); a second signal acts at once.

        Returns:
            The history: each logged key -> one value per epoch trained in this call.

        Raises:
            NonFiniteLossError: a non-finite loss under `nan_policy: stop`.
        """
        self._ensure_built()
        if resume:
            self.restore()
        start_step = int(self.step.numpy())
        start_epoch = start_step // self.steps_per_epoch
        iterator = self._input_iterator(start_step)
        self._set_monitor_modes()
        history = keras.callbacks.History()
        callbacks = keras.callbacks.CallbackList(
            # the states last: their on_train_begin puts back what the others' reset
            [*self.callbacks, history, self.callback_states],
            model=self.model,
            epochs=self.epochs,
            steps=self.steps_per_epoch,
            verbose=0,
        )
        writer = tf.summary.create_file_writer(str(self.summary_dir)) if self.summary_dir else None
        self.model.stop_training = False
        self._stop_signal = None
        self._stopping = False
        callbacks.on_train_begin()
        logs: dict[str, float] = {}
        with StopSignals() as self._stop:
            try:
                for epoch in range(start_epoch, self.epochs):
                    logs = self._run_epoch(epoch, iterator, callbacks, writer)
                    if self._stopping:
                        if self._saved_step != int(self.step.numpy()):
                            self.save()
                        break
                    if self.model.stop_training:
                        break
            except BaseException:
                if self.writer is not None:  # a checkpoint being written completes first
                    self.writer.wait(raise_errors=False)
                raise
            self.wait_for_checkpoint()  # the run's last checkpoint is on disk
        callbacks.on_train_end(logs)
        if writer is not None:
            writer.flush()
        return dict(history.history)

    def _run_epoch(self, epoch, iterator, callbacks, writer) -> dict[str, float]:
        done_in_epoch = int(self.step.numpy()) - epoch * self.steps_per_epoch
        if done_in_epoch == 0:  # a cut epoch (resumed) goes on with its restored sums
            for metric in self.metrics:
                metric.reset_state()
            self._loss_sums.assign([0.0, 0.0])
        loss_sum, count_sum = (float(v) for v in self._loss_sums.numpy())
        seen = 0.0  # examples trained in this call (the throughput's)
        callbacks.on_epoch_begin(epoch)
        progbar = (
            keras.utils.Progbar(self.steps_per_epoch, verbose=1) if self.verbose == 1 else None
        )
        start = time.perf_counter()
        logs: dict[str, float] = {}
        while done_in_epoch < self.steps_per_epoch:
            n = min(self.steps_per_loop, self.steps_per_epoch - done_in_epoch)
            if self.checkpoint_every:
                to_save = self.checkpoint_every - int(self.step.numpy()) % self.checkpoint_every
                n = min(n, to_save)
            callbacks.on_train_batch_begin(done_in_epoch)
            losses, counts, done = self.train_step(iterator, n)
            losses, counts, done = losses.numpy(), counts.numpy(), int(done)
            if self.nan_policy == "stop" and not np.isfinite(losses[done - 1]):
                bad_step = int(self.step.numpy())
                raise NonFiniteLossError(
                    losses[done - 1],
                    bad_step,
                    epoch + 1,
                    self._latest_written(),
                )
            finite = np.isfinite(losses)
            loss_sum += float(np.sum(losses[finite] * counts[finite]))
            count_sum += float(np.sum(counts[finite]))
            seen += float(np.sum(counts))
            done_in_epoch += done
            self._loss_sums.assign([loss_sum, count_sum])
            logs = {"loss": loss_sum / max(count_sum, 1.0)}
            logs.update({m.name: float(m.result()) for m in self.metrics})
            callbacks.on_train_batch_end(done_in_epoch - 1, logs)
            if progbar is not None:
                progbar.update(done_in_epoch, list(logs.items()))
            if writer is not None:
                with writer.as_default(step=int(self.step.numpy())):
                    tf.summary.scalar("train/step_loss", float(losses[done - 1]))
            step = int(self.step.numpy())
            if (
                self.checkpoint_every
                and step % self.checkpoint_every == 0
                and done_in_epoch < self.steps_per_epoch  # else after the epoch-end hooks
            ):
                self.save()
            # chunk ends are the same steps on every worker: agree there on a stop request
            self._stop_signal = self._stop.requested
            self._stopping = self._stop_agreement.should_stop(self._stop_signal is not None)
            if self._stopping or self.model.stop_training:
                break
        seconds = time.perf_counter() - start
        if self._stopping and done_in_epoch < self.steps_per_epoch:
            # interrupted mid-epoch: no validation or epoch-end hooks (a stop asked during
            # the epoch's last chunk lets the epoch end, validate and log first)
            if progbar is not None:
                end_progress_line(1)
            return logs
        if self.val_data is not None and (epoch + 1) % self.validation_freq == 0:
            val = self.evaluate(self.val_data, self.validation_steps, callbacks)
            logs.update({f"val_{k}": v for k, v in val.items()})
        finished = done_in_epoch >= self.steps_per_epoch
        if finished:
            self.epoch.assign(epoch + 1)
        if self.verbose == 2 or (progbar is not None and "val_loss" in logs):
            text = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
            print(f"Epoch {epoch + 1}/{self.epochs} - {seconds:.1f}s - {text}")
        if writer is not None:
            with writer.as_default(step=epoch + 1):
                for key, value in logs.items():
                    tf.summary.scalar(f"epoch/{key}", value)
                tf.summary.scalar("epoch/examples_per_sec", seen / max(seconds, 1e-9))
        callbacks.on_epoch_end(epoch, logs)
        # after the callbacks' epoch end: the checkpoint holds their new state. An epoch end
        # whose previous write is still running skips its save (the next one catches up,
        # as fit's backup does); the last epoch always saves
        last = epoch + 1 >= self.epochs or self.model.stop_training
        if finished and (last or self.writer is None or not self.writer.writing):
            self.save()
        return logs


def _overrides(callbacks: keras.callbacks.CallbackList, hook: str) -> bool:
    """Whether any callback implements `hook` (the base class's is a no-op)."""
    base = getattr(keras.callbacks.Callback, hook)
    return any(getattr(type(c), hook, base) is not base for c in callbacks.callbacks)


def _cardinality(dataset: Any) -> int | None:
    """Number of batches of a (distributed) dataset; None when unknown or infinite."""
    value = getattr(dataset, "cardinality", None)
    if value is None:
        return None
    value = int(value() if callable(value) else value)
    return value if value >= 0 else None
