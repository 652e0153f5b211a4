# %% [markdown]
# # Training: compile/fit, custom losses, callbacks, the GradientTape loop, distribution
#
# **Goal:** train tfkit models the two ways tfkit offers (Keras `fit`, and a custom
# `GradientTape` loop), with the seed's losses and optimizers, a custom Huber loss,
# built-in and custom callbacks, `MirroredStrategy` over two devices, and TensorBoard
# logs.
#
# The model knows nothing of the loop and the loop takes any model and any dataset:
# the same digits classifier is trained every way below.

# %% [markdown]
# ## Setup: two logical CPU devices
#
# `MirroredStrategy` needs several devices. On a CPU-only machine we split the CPU
# into two *logical* devices; this must happen before TensorFlow initialises its
# devices, so it is the very first thing the notebook does (tfkit's
# `runtime.logical_cpus: 2` does the same from a config).

# %%
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info lines
sys.path.insert(0, str(Path.cwd().parent))  # the repository root, when run from notebooks/
WORK = Path(tempfile.mkdtemp(prefix="tfkit-nb-"))  # everything this notebook writes

import tensorflow as tf

from tfkit import distribute

distribute.split_cpu(2)  # before any TensorFlow op runs
tf.get_logger().setLevel("ERROR")  # tf.distribute logs every all-reduce at INFO level
print(tf.config.list_logical_devices("CPU"))

# %%
import json
import warnings

import keras
import numpy as np

import tfkit.data
import tfkit.models
import tfkit.training
from tfkit.config import DataConfig, ExperimentConfig, TrainConfig

keras.utils.set_random_seed(0)
# Keras warns that it cannot shuffle a tf.data dataset; tfkit's pipeline already shuffles it.
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")

digits = tfkit.data.build(
    DataConfig.model_validate({"source": {"kind": "digits", "layout": "flat"}, "batch_size": 64})
)
spec = digits.spec
print(spec.inputs, spec.task, spec.num_classes, spec.counts)


def new_model(**section):
    """A fresh digits MLP: the model builder is separate from any training code."""
    cfg = ExperimentConfig.model_validate({"model": {"name": "mlp", "units": [64], **section}})
    return tfkit.models.build(cfg.model, spec)


# %% [markdown]
# ## compile / fit with tfkit's losses and optimizers
#
# `compile_model(model, train_cfg, spec)` builds the loss, optimizer and metrics named
# in the `train:` section. Names are checked (an unknown one lists the valid ones) and
# so is the fit between loss and output head. Four optimizers, three epochs each:

# %%
results = {}
for optimizer in [
    {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
    {"name": "adam", "learning_rate": 3e-3},
    {"name": "adamw", "learning_rate": 3e-3, "weight_decay": 1e-4},
    {"name": "rmsprop", "learning_rate": 1e-3},
]:
    keras.utils.set_random_seed(0)  # same initial weights for every optimizer
    train_cfg = TrainConfig.model_validate(
        {"loss": "sparse_categorical_crossentropy", "optimizer": optimizer, "metrics": ["accuracy"]}
    )
    model = tfkit.training.compile_model(new_model(), train_cfg, spec)
    # shuffle=False: the tfkit pipeline already shuffles the train split (seeded).
    history = model.fit(
        digits.train, validation_data=digits.val, epochs=3, shuffle=False, verbose=0
    )
    results[optimizer["name"]] = history.history

print(f"{'optimizer':10s} {'loss epoch 1':>12s} {'loss epoch 3':>12s} {'val acc':>8s}")
for name, h in results.items():
    print(f"{name:10s} {h['loss'][0]:12.3f} {h['loss'][-1]:12.3f} {h['val_accuracy'][-1]:8.3f}")

# %% [markdown]
# Losses by name: `auto` picks the loss from the task (binary, multiclass, regression);
# `categorical_crossentropy` needs one-hot labels (`data.one_hot: true`) and takes
# `label_smoothing`; `binary_focal_crossentropy` takes `gamma` and `alpha`. A loss
# that does not fit the data is refused before training:

# %%
from tfkit.errors import UserError

print(type(tfkit.training.build_loss("auto", spec)).__name__)
from tfkit.config import LossConfig

smooth = LossConfig(name="categorical_crossentropy", label_smoothing=0.1)
print(
    type(tfkit.training.build_loss(smooth)).__name__,
    "label_smoothing =",
    tfkit.training.build_loss(smooth).get_config()["label_smoothing"],
)
for bad in ["categorical_crossentropy", "hinge"]:
    try:
        tfkit.training.compile_model(new_model(), TrainConfig.model_validate({"loss": bad}), spec)
    except UserError as err:
        print("UserError:", err)

# %% [markdown]
# Learning-rate schedules come from `train.optimizer.schedule`, with an optional
# linear warm-up in front of any of them:

# %%
from tfkit.config import OptimizerConfig

opt = tfkit.training.build_optimizer(
    OptimizerConfig.model_validate(
        {
            "name": "adam",
            "learning_rate": 1e-3,
            "schedule": {"name": "cosine", "decay_steps": 1000, "warmup_steps": 100},
        }
    )
)
schedule = opt.learning_rate if callable(opt.learning_rate) else opt._learning_rate
for step in [0, 50, 100, 500, 1100]:
    print(f"step {step:5d}: lr {float(schedule(step)):.2e}")

# %% [markdown]
# ## A custom loss, both ways: Huber
#
# The Huber loss is quadratic for small errors and linear for large ones, so a few
# wild targets pull the fit far less than with a squared error. tfkit writes it both
# ways the seed did: a function factory `huber(threshold)` and a
# `keras.losses.Loss` subclass `HuberLoss(threshold)`. Both match Keras' own Huber
# and both survive a `.keras` save (the threshold is in their config).

# %%
y_true = np.array([[0.0], [1.0], [2.0], [10.0]], "float32")
y_pred = np.array([[0.1], [0.5], [4.0], [0.0]], "float32")
print("huber(2.0)       :", np.asarray(tfkit.training.huber(2.0)(y_true, y_pred)))
print("HuberLoss(2.0)   :", float(tfkit.training.HuberLoss(threshold=2.0)(y_true, y_pred)))
print("keras Huber(2.0) :", float(keras.losses.Huber(delta=2.0)(y_true, y_pred)))

# %% [markdown]
# On regression data with 5% heavy outliers in the targets, train the same model with
# MSE and with each Huber form, and measure the error on the *clean* test targets
# (outliers removed): the Huber fits stay on the true line.

# %%
from tfkit.data import datasets

reg = datasets.regression(count=3000, features=8, outlier_fraction=0.05, seed=0)
x_train, y_train, x_test, y_test = reg.x[:2500], reg.y[:2500], reg.x[2500:], reg.y[2500:]
clean = np.abs(y_test[:, 0] - np.median(y_test)) < 8  # drop the outliers from the test set
reg_spec = tfkit.data.DataSpec(inputs=(tfkit.data.InputSpec("x", (8,)),), task="regression")

errors = {}
for name, loss in [
    ("mse", "mse"),
    ("huber(1.0) function", tfkit.training.huber(1.0)),
    ("HuberLoss(1.0) class", tfkit.training.HuberLoss(threshold=1.0)),
]:
    keras.utils.set_random_seed(0)
    model = tfkit.models.build(
        ExperimentConfig.model_validate({"model": {"name": "mlp", "units": [32]}}).model, reg_spec
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(x_train, y_train, batch_size=64, epochs=15, verbose=0)
    pred = model.predict(x_test, verbose=0)
    errors[name] = float(np.mean(np.abs(pred[clean] - y_test[clean])))
    print(f"{name:22s} MAE on clean test targets: {errors[name]:.3f}")

# %%
# The compiled loss round-trips through a .keras file in safe mode.
model.save(WORK / "huber.keras")
back = keras.saving.load_model(WORK / "huber.keras")
print(type(back.loss).__name__, back.loss.threshold)


# %% [markdown]
# ## Callbacks
#
# `build_callbacks(train_cfg, run_dir)` gives a run its standard callbacks (metrics
# log, best and last checkpoints, TensorBoard, throughput, backup for `--resume`) plus
# any listed under `train.callbacks`, whose arguments are checked against the
# callback's signature.
#
# A custom callback is a `keras.callbacks.Callback` subclass using the `on_*` hooks.
# This one stops training once validation accuracy reaches a target, and records
# when:


# %%
class StopAtAccuracy(keras.callbacks.Callback):
    """Stop training when `val_accuracy` reaches `target`."""

    def __init__(self, target: float):
        super().__init__()
        self.target = target
        self.stopped_at = None

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get("val_accuracy", 0.0) >= self.target:
            self.stopped_at = epoch + 1
            self.model.stop_training = True


run_dir = WORK / "runs" / "callbacks"
run_dir.mkdir(parents=True)  # `tfkit train` creates it; csv_logger expects it to exist
train_cfg = TrainConfig.model_validate(
    {
        "optimizer": {"name": "adam", "learning_rate": 3e-3},
        "callbacks": [
            {
                "name": "reduce_lr_on_plateau",
                "args": {"monitor": "val_loss", "factor": 0.5, "patience": 1},
            },
            {"name": "early_stopping", "args": {"monitor": "val_loss", "patience": 3}},
            {"name": "csv_logger"},
        ],
    }
)
callbacks = tfkit.training.build_callbacks(train_cfg, run_dir, batch_size=64)
stop = StopAtAccuracy(0.95)
keras.utils.set_random_seed(0)
model = tfkit.training.compile_model(new_model(), train_cfg, spec)
history = model.fit(
    digits.train, validation_data=digits.val, epochs=30, callbacks=[*callbacks, stop], verbose=2
)
print("callbacks:", [type(c).__name__ for c in callbacks])
print(
    "stopped after epoch",
    stop.stopped_at,
    "with val_accuracy",
    round(history.history["val_accuracy"][-1], 3),
)

# %%
# What the callbacks wrote into the run directory.
for path in sorted(run_dir.rglob("*")):
    if path.is_file():
        print(f"{str(path.relative_to(run_dir)):55s} {path.stat().st_size:>8d} bytes")
print(json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1]))

# %% [markdown]
# A wrong callback argument is caught when the callbacks are built, not an epoch later:

# %%
try:
    tfkit.training.build_callbacks(
        TrainConfig.model_validate(
            {"callbacks": [{"name": "early_stopping", "args": {"patients": 3}}]}
        ),
        WORK / "runs" / "bad",
    )
except UserError as err:
    print("UserError:", err)

# %% [markdown]
# ## The GradientTape loop
#
# `fit` hides the training step. Written out, one step is: forward pass under a
# `GradientTape`, per-example losses averaged over the *global* batch, gradients,
# optimizer update. Here it is by hand, in a `tf.function` for speed:

# %%
keras.utils.set_random_seed(0)
model = new_model()
optimizer = keras.optimizers.Adam(3e-3)
loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")  # per example


@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        per_example = loss_fn(y, model(x, training=True))
        # Average over the global batch, not the per-replica one: under a strategy the
        # replicas' gradients are summed, so this gives the gradient of the true mean.
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=64)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss


for epoch in range(3):
    losses = [float(train_step(x, y)) for x, y in digits.train]
    print(f"epoch {epoch + 1}: mean loss {np.mean(losses):.3f}")

# %% [markdown]
# Between the two sits `train_on_batch`: one optimizer step of a *compiled* model on
# one batch, with its compiled loss, metrics and optimizer, for loops you drive
# yourself (alternating two models, a curriculum). A tfkit-built, tfkit-compiled model
# steps like any Keras model; each call resets the metrics, so its logs are that
# batch's own:

# %%
keras.utils.set_random_seed(0)
model = tfkit.training.compile_model(new_model(), train_cfg, spec)
for epoch in range(3):
    losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for x, y in digits.train]
    val = model.evaluate(digits.val, verbose=0, return_dict=True)
    print(
        f"epoch {epoch + 1}: mean batch loss {np.mean(losses):.3f}, val_accuracy {val['accuracy']:.3f}"
    )

# %% [markdown]
# `tfkit.training.loop.Loop` is that step made complete: it runs under any strategy
# (`strategy.run` per replica), several steps per `tf.function` call, metrics,
# validation, Keras callbacks, checkpoints of model, optimizer, step and RNG state
# (exact resume), NaN detection and TensorBoard summaries. Datasets are passed as
# functions of an `InputContext`, so each replica's pipeline reads its own shard at
# the per-replica batch size.

# %%
from tfkit.training.loop import Loop

data_cfg = DataConfig.model_validate(
    {"source": {"kind": "digits", "layout": "flat"}, "batch_size": 64}
)


def train_fn(ctx):
    return tfkit.data.build(data_cfg, input_context=ctx).train


def val_fn(ctx):
    return tfkit.data.build(data_cfg, input_context=ctx).val


keras.utils.set_random_seed(0)
model = new_model()
loop = Loop(
    model=model,
    loss=keras.losses.SparseCategoricalCrossentropy(),
    optimizer=keras.optimizers.Adam(3e-3),
    train_data=train_fn,
    val_data=val_fn,
    global_batch_size=64,
    steps_per_epoch=23,  # 1438 training digits / 64
    epochs=5,
    metrics=["accuracy"],
    steps_per_loop=23,  # one tf.function call per epoch: less Python overhead
    checkpoint_dir=WORK / "runs" / "loop" / "checkpoints",
    verbose=2,
)
history = loop.run()
print(
    {
        k: [round(v, 3) for v in values]
        for k, values in history.items()
        if k in ("loss", "val_accuracy")
    }
)

# %% [markdown]
# ## MirroredStrategy on two devices
#
# `MirroredStrategy` keeps a copy of the model on each device, splits every global
# batch between them and sums the gradients with an all-reduce, so the update equals
# one step on the whole batch. Build the model *inside* `strategy.scope()` so its
# variables are mirrored. `fit` distributes the dataset itself:

# %%
from tfkit.config import RuntimeConfig

strategy = distribute.strategy(RuntimeConfig(strategy="mirrored"))
print(type(strategy).__name__, "replicas:", strategy.num_replicas_in_sync)

keras.utils.set_random_seed(0)
train_cfg = TrainConfig.model_validate({"optimizer": {"name": "adam", "learning_rate": 3e-3}})
with strategy.scope():
    mirrored_model = tfkit.training.compile_model(new_model(), train_cfg, spec)
print("variable type:", type(mirrored_model.weights[0].value).__name__)
history = mirrored_model.fit(digits.train, validation_data=digits.val, epochs=3, verbose=2)

# %% [markdown]
# The custom loop under the same strategy: each replica gets a pipeline of 32-example
# batches (global batch 64 / 2 replicas), and the loss scaling by the global batch
# keeps the result equal to the single-device loop.

# %%
keras.utils.set_random_seed(0)
with strategy.scope():
    model = new_model()
    optimizer = keras.optimizers.Adam(3e-3)
print("per-replica batch:", next(iter(train_fn(tf.distribute.InputContext(2, 0, 2))))[0].shape[0])
mirrored_loop = Loop(
    model=model,
    loss=keras.losses.SparseCategoricalCrossentropy(),
    optimizer=optimizer,
    strategy=strategy,
    train_data=train_fn,
    val_data=val_fn,
    global_batch_size=64,
    steps_per_epoch=23,
    epochs=3,
    metrics=["accuracy"],
    verbose=2,
)
history = mirrored_loop.run()

# %% [markdown]
# ## TensorBoard
#
# Runs log to `tb/` inside the run directory: the Keras `TensorBoard` callback writes
# the epoch metrics, tfkit's `Throughput` callback adds examples/s and step time, and
# the custom loop writes the same scalars. The one-call path
# `fit(config, run_dir)` (what `tfkit train config.yaml` runs) writes a whole run directory:

# %%
from tfkit.runs import create_run_dir
from tfkit.training.session import fit

config = ExperimentConfig.model_validate(
    {
        "name": "digits_mlp",
        "data": {"source": {"kind": "digits", "layout": "flat"}, "batch_size": 64},
        "model": {"name": "mlp", "units": [64]},
        "train": {"epochs": 3, "optimizer": {"name": "adam", "learning_rate": 3e-3}, "verbose": 2},
    }
)
run_dir = create_run_dir(config, root=WORK / "runs")
result = fit(config, run_dir)

# %%
for path in sorted((run_dir / "tb").rglob("*")):
    if path.is_file():
        print(path.relative_to(run_dir))

# Read the scalars back, as TensorBoard does.
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

for sub in ("train", "validation"):
    events = EventAccumulator(str(run_dir / "tb" / sub)).Reload()
    tags = events.Tags()["tensors"] + events.Tags()["scalars"]
    print(sub, sorted(tags))
print("examples/s logged:", result.get("examples_per_sec"))

# %% [markdown]
# To browse them: `tensorboard --logdir runs/` (or `make tensorboard`), then open
# http://localhost:6006.
#
# ## Takeaways
#
# - `compile_model` + `model.fit` for the usual path; `Loop` when you need the step.
# - Custom losses: a function factory or a `Loss` subclass, both serializable.
# - Callbacks are plain Keras callbacks and work with both loops.
# - Under `MirroredStrategy`, build in `strategy.scope()` and scale per-example losses
#   by the global batch.
# - Next: `04_stylegan.ipynb` trains a GAN with its own phase loop.
