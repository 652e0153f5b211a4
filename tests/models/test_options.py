"""The chapter's layer options reach the Keras layers, the base RNN runs tfkit's cell (or
the user's, by class path), and options that cannot work are refused naming the key."""

import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import model_cfg, spec_of

from tfkit.config import OptimizerConfig
from tfkit.errors import UserError
from tfkit.models import build
from tfkit.models.cells import MinimalRNNCell
from tfkit.training.optimizers import build_optimizer

IMAGES = spec_of("multiclass", ("x", (8, 8, 4)), num_classes=3)
SEQUENCES = spec_of("multiclass", ("x", (5, 3)), num_classes=3)


def _layers(model, cls):
    return [layer for layer in model.layers if type(layer) is cls]


@pytest.mark.parametrize(("dilation", "groups"), [(1, 2), (2, 1), (3, 4)])
def test_convolution_options_reach_the_layers(dilation, groups):
    cfg = model_cfg(name="cnn", filters=[8, 4], dilation_rate=dilation, groups=groups, pool="none")
    convs = _layers(build(cfg, IMAGES), keras.layers.Conv2D)
    assert [c.dilation_rate for c in convs] == [(dilation, dilation)] * 2
    assert [c.groups for c in convs] == [groups] * 2
    # a grouped kernel sees in_channels / groups inputs per output channel
    assert [tuple(c.kernel.shape) for c in convs] == [
        (3, 3, 4 // groups, 8),
        (3, 3, 8 // groups, 4),
    ]


@pytest.mark.parametrize(
    ("pool_size", "strides", "padding", "size"),
    [(2, None, "valid", 4), (3, 1, "same", 8), (3, 2, "valid", 3), (3, 2, "same", 4)],
)
def test_pooling_strides_and_padding_give_the_keras_output_size(pool_size, strides, padding, size):
    cfg = model_cfg(
        name="cnn", filters=[4], pool_size=pool_size, pool_strides=strides, pool_padding=padding
    )
    (pool,) = _layers(build(cfg, IMAGES), keras.layers.MaxPooling2D)
    assert pool.strides == ((strides or pool_size),) * 2 and pool.padding == padding
    assert pool.output.shape[1:3] == (size, size)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_batch_norm_epsilon_reaches_every_batch_norm(name):
    spec = spec_of("multiclass", ("x", (8, 8, 1)), num_classes=3)
    model = build(model_cfg(name=name, batch_norm=True, batch_norm_epsilon=0.25), spec)
    norms = _layers(model, keras.layers.BatchNormalization)
    assert norms and all(n.epsilon == 0.25 for n in norms)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_activation_layer_equals_the_fused_activation(activation):
    spec = spec_of("binary", ("x", (6,)))
    fused = build(model_cfg(name="mlp", units=[5, 4], activation=activation), spec)
    split = build(
        model_cfg(name="mlp", units=[5, 4], activation=activation, activation_layer=True), spec
    )
    acts = _layers(split, keras.layers.Activation)
    assert [a.name for a in acts] == ["activation_0", "activation_1"]
    assert all(d.activation.__name__ == "linear" for d in _layers(split, keras.layers.Dense)[:2])
    split.set_weights(fused.get_weights())
    x = np.random.default_rng(0).normal(size=(7, 6)).astype("float32")
    np.testing.assert_allclose(split(x), fused(x), atol=1e-6)


@pytest.mark.parametrize("units", [1, 4])
def test_minimal_rnn_cell_is_the_elman_recurrence(units):
    x = np.random.default_rng(units).normal(size=(3, 6, 2)).astype("float32")
    layer = keras.layers.RNN(MinimalRNNCell(units), return_sequences=True)
    out = keras.ops.convert_to_numpy(layer(x))
    kernel, recurrent, bias = (keras.ops.convert_to_numpy(w) for w in layer.cell.weights)
    h = np.zeros((3, units), "float32")
    for t in range(6):
        h = np.tanh(x[:, t] @ kernel + h @ recurrent + bias)
        np.testing.assert_allclose(out[:, t], h, atol=1e-5)


def test_base_rnn_builder_uses_the_minimal_cell():
    model = build(model_cfg(name="rnn", cell="rnn", units=[4, 3]), SEQUENCES)
    rnns = _layers(model, keras.layers.RNN)
    assert [type(r.cell) for r in rnns] == [MinimalRNNCell] * 2
    assert [r.cell.units for r in rnns] == [4, 3]


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_amsgrad_reaches_adam(name):
    assert build_optimizer(OptimizerConfig(name=name, amsgrad=True)).amsgrad is True
    assert build_optimizer(OptimizerConfig(name=name)).amsgrad is False


CELLS = '''
import keras


class ScaledCell(keras.layers.Layer):
    """h_t = tanh(scale * x_t @ W + h_{t-1} @ U)"""

    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.scale, self.state_size = units, scale, units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), name="w")
        self.u = self.add_weight(shape=(self.units, self.units), name="u")

    def call(self, inputs, states):
        h = keras.ops.tanh(self.scale * inputs @ self.w + states[0] @ self.u)
        return h, [h]


class NoState(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)


class NotALayer:
    def __init__(self, units):
        pass
'''


@pytest.fixture
def user_cells(tmp_path, monkeypatch):
    (tmp_path / "user_cells_mod.py").write_text(textwrap.dedent(CELLS))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_cells_mod"
    sys.modules.pop("user_cells_mod", None)


def test_user_cell_by_class_path_builds_and_trains(user_cells):
    cell = {"class_path": f"{user_cells}.ScaledCell", "args": {"scale": 0.5}}
    model = build(model_cfg(name="rnn", cell=cell, units=[4]), SEQUENCES)
    (rnn,) = _layers(model, keras.layers.RNN)
    assert type(rnn.cell).__name__ == "ScaledCell" and rnn.cell.scale == 0.5
    assert rnn.cell.units == 4
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(8, 5, 3)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, np.arange(8) % 3)
    assert np.isfinite(loss)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ({"class_path": "no_such_pkg_xyz.Cell"}, "cannot import module `no_such_pkg_xyz`"),
        ({"class_path": "{m}.Missing"}, "module `{m}` has no `Missing`"),
        ({"class_path": "{m}.NotALayer"}, "is not a Keras layer (an RNN cell)"),
        (
            {"class_path": "{m}.NoState"},
            "is not an RNN cell: keras.layers.RNN needs a `state_size`",
        ),
        ({"class_path": "{m}.ScaledCell", "args": {"scal": 2}}, "`model.cell.args` do not fit"),
    ],
)
def test_user_cell_errors_name_the_path(user_cells, cell, message):
    cell = {k: (v.format(m=user_cells) if isinstance(v, str) else v) for k, v in cell.items()}
    with pytest.raises(UserError) as err:
        build(model_cfg(name="rnn", cell=cell, units=[4]), SEQUENCES)
    text = str(err.value)
    assert message.format(m=user_cells) in text and cell["class_path"] in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"name": "cnn", "dilation_rate": 2, "strides": 2},
            "`dilation_rate` > 1 needs `strides` 1",
        ),
        ({"name": "cnn", "filters": [6, 4], "groups": 4}, "`groups` (4) must divide every entry"),
        ({"name": "rnn", "cell": "rnn", "dropout": 0.1}, "the base keras.layers.RNN"),
        ({"name": "cnn", "pool_padding": "full"}, "model.pool_padding"),
        ({"name": "cnn", "batch_norm_epsilon": 0}, "model.batch_norm_epsilon"),
        ({"name": "rnn", "cell": {"class_path": "not a path"}}, "must be an import path"),
        ({"name": "rnn", "cell": {"class_path": "Cell"}}, "must be an import path"),
    ],
)
def test_impossible_options_are_refused_by_the_config(fields, message):
    with pytest.raises(UserError, match=None) as err:
        model_cfg(**fields)
    assert message in str(err.value)


def test_groups_must_divide_the_input_channels():
    cfg = model_cfg(name="cnn", filters=[6], groups=3)
    with pytest.raises(
        UserError, match=r"groups=3, which must divide the input channels.*4 channels"
    ):
        build(cfg, IMAGES)


def test_amsgrad_is_refused_for_other_optimizers():
    from tfkit.config import validate

    with pytest.raises(UserError, match="`amsgrad` is for adam and adamw"):
        validate({"train": {"optimizer": {"name": "sgd", "amsgrad": True}}})
