# %% [markdown]
# # Models: Sequential, functional, subclassed
#
# **Goal:** build Keras 3 models the three ways Keras offers, tour the layer families
# tfkit's builders use, write a custom layer, and save and load models safely.
#
# tfkit builds a model from two things: its `model:` config section and the data's
# `DataSpec` (input names and shapes, task, number of classes). The builder checks
# that the two fit before it makes a single layer, so a mismatch is a one-line error
# rather than a shape error in the middle of `fit`.

# %% [markdown]
# ## Setup

# %%
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info lines
sys.path.insert(0, str(Path.cwd().parent))  # the repository root, when run from notebooks/
WORK = Path(tempfile.mkdtemp(prefix="tfkit-nb-"))  # everything this notebook writes

import keras
import numpy as np

import tfkit.data
import tfkit.models
from tfkit.config import DataConfig, ExperimentConfig
from tfkit.data import DataSpec, InputSpec
from tfkit.errors import UserError

keras.utils.set_random_seed(0)  # the same initial weights on every run
print("Keras", keras.__version__, "| builders:", ", ".join(tfkit.models.BUILDERS))

# %% [markdown]
# ## The data contract: `DataSpec`
#
# `tfkit.data.build` returns a `DataSpec` with the datasets; a spec can also be
# written by hand, which is all a builder needs.

# %%
tabular = DataSpec(inputs=(InputSpec("x", (50,)),), task="binary")
digits = tfkit.data.build(
    DataConfig.model_validate({"source": {"kind": "digits"}, "batch_size": 64})
)
print(tabular.output_units, tabular.output_activation)
print(digits.spec.inputs, digits.spec.output_units, digits.spec.output_activation)


# %% [markdown]
# A config is validated by pydantic with unknown keys refused; model sections are
# chosen by `name`. `model_for` below turns a small dict into that config section.


# %%
def model_for(section: dict):
    return ExperimentConfig.model_validate({"model": section}).model


# %% [markdown]
# ## Sequential: the seed's binary MLP
#
# `mlp` is a `keras.Sequential` stack. With the defaults and 50 features it is the
# seed's classifier: 128 -> 64 -> 1 sigmoid. `outputs: auto` and
# `output_activation: auto` come from the spec.

# %%
mlp = tfkit.models.build(model_for({"name": "mlp", "dropout": 0.2, "batch_norm": True}), tabular)
mlp.summary()

# %%
# The same model written directly in Keras, for comparison: tfkit adds the checks and
# the float32 output layer (stable losses under mixed precision), nothing hidden.
plain = keras.Sequential(
    [
        keras.Input(shape=(50,)),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ]
)
print(
    "parameters:",
    plain.count_params(),
    "vs tfkit default mlp:",
    tfkit.models.build(model_for({"name": "mlp"}), tabular).count_params(),
)

# %% [markdown]
# ## Functional: two inputs, and convolutional networks
#
# The functional API wires layers as a graph, which allows several inputs and outputs.
# `two_input` runs a dense branch per input, concatenates, then a softmax head.

# %%
two_spec = DataSpec(
    inputs=(InputSpec("a", (50,)), InputSpec("b", (10,))), task="multiclass", num_classes=5
)
two = tfkit.models.build(model_for({"name": "two_input", "branch_units": [32, 16]}), two_spec)
print([t.shape for t in two.inputs], "->", two.output.shape)
out = two.predict({"a": np.zeros((4, 50)), "b": np.zeros((4, 10))}, verbose=0)
print("rows sum to 1 (softmax):", np.allclose(out.sum(axis=1), 1.0))

# %% [markdown]
# ### The layer families
#
# `cnn` composes the convolutional families: convolution (1-D, 2-D or 3-D), batch
# normalization, activation, pooling (max or average), spatial dropout and dropout
# per block, then flatten or global pooling into a dense head.

# %%
cnn_cfg = model_for(
    {
        "name": "cnn",
        "filters": [16, 32],
        "kernel_size": 3,
        "batch_norm": True,
        "pool": "max",
        "spatial_dropout": 0.1,
        "dropout": 0.1,
        "dense_units": [64],
    }
)
cnn = tfkit.models.build(cnn_cfg, digits.spec)
cnn.summary(line_length=90)

# %% [markdown]
# Batch normalization and dropout behave differently in training and inference: the
# `training` argument switches them. Dropout zeroes a fraction of the activations and
# scales the rest up; batch norm normalizes with the batch's statistics in training
# and with its moving averages in inference.

# %%
x = np.ones((2, 8), "float32")
dropout = keras.layers.Dropout(0.5, seed=0)
print("dropout, training :", np.asarray(dropout(x, training=True))[0])
print("dropout, inference:", np.asarray(dropout(x, training=False))[0])

batch = np.random.default_rng(0).normal(5.0, 3.0, size=(256, 4)).astype("float32")
bn = keras.layers.BatchNormalization()
train_out = np.asarray(bn(batch, training=True))
infer_out = np.asarray(bn(batch, training=False))  # moving stats barely moved yet
print(f"batch norm, training : mean {train_out.mean():+.3f} std {train_out.std():.3f}")
print(f"batch norm, inference: mean {infer_out.mean():+.3f} std {infer_out.std():.3f}")

# %% [markdown]
# The pooling and convolution shapes, one family at a time (channels last, so every
# layer runs on CPU and GPU alike):

# %%
layers = {
    "Conv1D(8, 3)": (keras.layers.Conv1D(8, 3), (2, 20, 4)),
    "Conv2D(8, 3, same)": (keras.layers.Conv2D(8, 3, padding="same"), (2, 16, 16, 3)),
    "Conv3D(8, 3)": (keras.layers.Conv3D(8, 3), (2, 8, 8, 8, 1)),
    "Conv2DTranspose(8, 3, strides=2, same)": (
        keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same"),
        (2, 8, 8, 3),
    ),
    "MaxPooling2D(2)": (keras.layers.MaxPooling2D(2), (2, 16, 16, 3)),
    "AveragePooling1D(4)": (keras.layers.AveragePooling1D(4), (2, 20, 4)),
    "GlobalAveragePooling2D": (keras.layers.GlobalAveragePooling2D(), (2, 16, 16, 3)),
}
for name, (layer, shape) in layers.items():
    print(f"{name:40s} {str(shape):18s} -> {tuple(layer(np.zeros(shape, 'float32')).shape)}")

# %% [markdown]
# ### Recurrent and bidirectional layers
#
# `rnn` stacks SimpleRNN, LSTM, GRU (or ConvLSTM2D) layers; `bidirectional` reads each
# sequence both ways and merges the two (`concat` doubles the width). With
# `return_sequences` the head predicts at every step through `TimeDistributed`.

# %%
seq_spec = DataSpec(inputs=(InputSpec("x", (20, 4)),), task="multiclass", num_classes=3)
for section in [
    {"name": "rnn", "cell": "simple_rnn", "units": [16]},
    {"name": "rnn", "cell": "gru", "units": [16, 16]},
    {"name": "rnn", "cell": "lstm", "units": [16], "bidirectional": True},
    {"name": "rnn", "cell": "lstm", "units": [16], "bidirectional": True, "merge_mode": "sum"},
]:
    model = tfkit.models.build(model_for(section), seq_spec)
    recurrent = model.layers[-2]
    print(f"{recurrent.name:18s} output {recurrent.output.shape}  params {model.count_params():6d}")

# %%
# Per-step labels (one class per time step) need return_sequences.
per_step = DataSpec(
    inputs=(InputSpec("x", (20, 4)),), task="multiclass", num_classes=3, label_shape=(20,)
)
tagger = tfkit.models.build(
    model_for(
        {
            "name": "rnn",
            "cell": "lstm",
            "units": [16],
            "bidirectional": True,
            "return_sequences": True,
        }
    ),
    per_step,
)
print("tagger output:", tagger.output.shape)
try:  # without return_sequences the model cannot produce per-step predictions
    tfkit.models.build(model_for({"name": "rnn", "units": [16]}), per_step)
except UserError as err:
    print("UserError:", err)

# %% [markdown]
# ## Subclassed: `SimpleANN`
#
# A `keras.Model` subclass defines its layers in `__init__` and the computation in
# `call`, which allows any Python control flow. Its graph exists only inside `call`,
# so `summary()` cannot show output shapes; `build_graph` wraps the same layers in a
# functional model whose summary can.

# %%
ann = tfkit.models.build(
    model_for({"name": "simple_ann", "units": [32, 16], "dropout": 0.1}), digits.spec
)
print(type(ann).__name__, "with", ann.outputs, "outputs")
ann.build_graph(digits.spec.inputs[0].shape).summary(line_length=80)

# %% [markdown]
# ## A custom layer
#
# `tfkit.models.Dense` is a fully connected layer written from scratch the Keras way:
# weights created in `build` with `add_weight`, the maths in `call`, every constructor
# argument in `get_config` (so it saves and loads), and registered as `tfkit>Dense`.
# With the same weights it computes exactly what `keras.layers.Dense` computes.

# %%
ours = tfkit.models.Dense(6, activation="tanh")
theirs = keras.layers.Dense(6, activation="tanh")
x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
ours.build(x.shape)
theirs.build(x.shape)
theirs.set_weights(ours.get_weights())
print("weights:", [w.path for w in ours.weights])
print("max |difference|:", float(np.max(np.abs(np.asarray(ours(x)) - np.asarray(theirs(x))))))
print("config:", ours.get_config())

# %% [markdown]
# Every builder takes `dense_impl: custom` to use it. A short fit on digits shows the
# custom layer learns like the Keras one:

# %%
custom_cfg = model_for({"name": "mlp", "units": [64], "dense_impl": "custom"})
custom_mlp = tfkit.models.build(custom_cfg, digits.spec)
print([type(layer).__name__ for layer in custom_mlp.layers])
custom_mlp.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
# shuffle=False: the tfkit pipeline already shuffles the train split (seeded).
history = custom_mlp.fit(
    digits.train, validation_data=digits.val, epochs=8, shuffle=False, verbose=0
)
print(f"val accuracy after 8 epochs: {history.history['val_accuracy'][-1]:.3f}")

# %% [markdown]
# ## Save and load: the `.keras` round trip
#
# A `.keras` file holds the architecture (as config, not pickled code), the weights
# and the optimizer state. tfkit loads with Keras safe mode on: registered classes
# such as `tfkit>Dense` and `SimpleANN` load, arbitrary code does not run.

# %%
path = WORK / "custom_mlp.keras"
custom_mlp.save(path)
restored = keras.saving.load_model(path, safe_mode=True)

images = next(iter(digits.test))[0]
before = custom_mlp.predict(images, verbose=0)
after = restored.predict(images, verbose=0)
print(
    f"{path.name}: {path.stat().st_size / 1024:.0f} KiB, identical predictions:",
    np.array_equal(before, after),
)
print("restored layer types:", [type(layer).__name__ for layer in restored.layers])
print("optimizer state restored:", int(restored.optimizer.iterations), "steps")

# %%
# The subclassed model round-trips too, thanks to get_config/from_config.
ann.save(WORK / "simple_ann.keras")
ann_back = keras.saving.load_model(WORK / "simple_ann.keras")
print(type(ann_back).__name__, "identical predictions:", np.allclose(ann(images), ann_back(images)))

# %% [markdown]
# ## When config and data disagree
#
# Builders check the fit before building. Each message names the model field and the
# data it disagrees with:

# %%
for section, spec in [
    ({"name": "cnn", "dims": 1}, digits.spec),
    ({"name": "mlp", "outputs": 3}, digits.spec),
    ({"name": "mlp", "input_shape": [32]}, tabular),
    ({"name": "two_input"}, tabular),
]:
    try:
        tfkit.models.build(model_for(section), spec)
    except UserError as err:
        print("-", err)

# %% [markdown]
# ## Takeaways
#
# - One `model:` section plus a `DataSpec` gives a built, uncompiled `keras.Model`.
# - Sequential for stacks, functional for graphs (several inputs), subclassing for
#   free-form `call` logic; all three save to `.keras` and load in safe mode.
# - Custom layers: weights in `build`, maths in `call`, arguments in `get_config`.
# - Next: `03_training.ipynb` compiles and trains them.
