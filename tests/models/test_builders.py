"""Every builder builds for matching data, predicts, trains one step, saves and summarizes."""

import keras
import numpy as np
import pytest
from helpers import capture_summary, model_cfg, run_model_test, run_serialization_test, spec_of

from tfkit.errors import UserError
from tfkit.models import BUILDERS, SimpleANN, build

N = 16


def features(spec, n=N, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {i.name: rng.normal(size=(n, *i.shape)).astype("float32") for i in spec.inputs}
    return arrays if spec.multi_input else arrays[spec.inputs[0].name]


def labels(spec, n=N, seed=1):
    rng = np.random.default_rng(seed)
    if spec.task == "regression":
        return rng.normal(size=(n, *spec.label_shape)).astype("float32")
    high = 2 if spec.task == "binary" else spec.num_classes
    return rng.integers(0, high, size=(n, *spec.label_shape))


LOSS = {"binary": "binary_crossentropy", "multiclass": "sparse_categorical_crossentropy",
        "regression": "mse"}  # fmt: skip

SEED_BINARY = spec_of("binary", ("x", (50,)))
TWO_INPUT = spec_of("multiclass", ("a", (50,)), ("b", (10,)), num_classes=5)
DIGITS = spec_of("multiclass", ("x", (8, 8, 1)), num_classes=10)
SEQUENCES = spec_of("multiclass", ("x", (6, 4)), num_classes=3)

CASES = {
    "mlp": ({"name": "mlp"}, SEED_BINARY, (1,)),
    "mlp_custom_bn_dropout_images": (
        {"name": "mlp", "units": [16], "batch_norm": True, "dropout": 0.2, "dense_impl": "custom"},
        DIGITS,
        (10,),
    ),
    "two_input": ({"name": "two_input"}, TWO_INPUT, (5,)),
    "two_input_custom": (
        {"name": "two_input", "dense_impl": "custom", "dropout": 0.1},
        TWO_INPUT,
        (5,),
    ),  # fmt: skip
    "simple_ann": ({"name": "simple_ann", "dropout": 0.1}, SEED_BINARY, (1,)),
    "simple_ann_custom": ({"name": "simple_ann", "dense_impl": "custom"}, DIGITS, (10,)),
    "cnn2d": ({"name": "cnn"}, DIGITS, (10,)),
    "cnn2d_avg_global_custom": (
        {
            "name": "cnn",
            "filters": [8, 8],
            "kernel_size": [3, 5],
            "convs_per_block": 2,
            "pool": "average",
            "spatial_dropout": 0.1,
            "dropout": 0.1,
            "global_pool": "average",
            "dense_units": [8],
            "dense_dropout": 0.1,
            "dense_impl": "custom",
        },
        DIGITS,
        (10,),
    ),  # fmt: skip
    "cnn1d": (
        {"name": "cnn", "dims": 1, "filters": [8], "global_pool": "max"},
        spec_of("regression", ("x", (16, 3))),
        (1,),
    ),  # fmt: skip
    "cnn3d": (
        {"name": "cnn", "dims": 3, "filters": [4], "batch_norm": False, "dense_units": []},
        spec_of("binary", ("x", (4, 4, 4, 1))),
        (1,),
    ),  # fmt: skip
    "cnn2d_transpose_decoder": (
        {"name": "cnn", "filters": [8, 8], "transpose_filters": [8, 4]},
        spec_of("regression", ("x", (8, 8, 1)), label_shape=(8, 8, 1)),
        (8, 8, 1),
    ),
    "lstm": ({"name": "rnn", "units": [8, 8], "dense_units": [8]}, SEQUENCES, (3,)),
    "simple_rnn_per_step": (
        {
            "name": "rnn",
            "cell": "simple_rnn",
            "units": [8],
            "return_sequences": True,
            "bidirectional": True,
            "dense_units": [4],
            "dense_impl": "custom",
        },
        spec_of("multiclass", ("x", (6, 4)), num_classes=3, label_shape=(6,)),
        (6, 3),
    ),  # fmt: skip
    "conv_lstm2d": (
        {"name": "rnn", "cell": "conv_lstm2d", "units": [4]},
        spec_of("binary", ("x", (2, 4, 4, 1))),
        (1,),
    ),  # fmt: skip
    # the chapter's options: base RNN with a custom cell, dilated and grouped convolutions,
    # pooling strides and padding, batch-norm epsilon, a separate Activation layer
    "base_rnn_minimal_cell": (
        {"name": "rnn", "cell": "rnn", "units": [8, 4], "dense_units": [4]},
        SEQUENCES,
        (3,),
    ),
    "base_rnn_per_step_bidirectional": (
        {
            "name": "rnn",
            "cell": "rnn",
            "units": [4],
            "return_sequences": True,
            "bidirectional": True,
        },
        spec_of("multiclass", ("x", (6, 4)), num_classes=3, label_shape=(6,)),
        (6, 3),
    ),  # fmt: skip
    "cnn2d_dilated_grouped": (
        {"name": "cnn", "filters": [8, 8], "dilation_rate": 2, "groups": 2, "pool": "none"},
        spec_of("multiclass", ("x", (8, 8, 2)), num_classes=10),
        (10,),
    ),
    "cnn1d_dilated": (
        {
            "name": "cnn",
            "dims": 1,
            "filters": [4, 4],
            "dilation_rate": 3,
            "padding": "valid",
            "pool": "none",
            "global_pool": "average",
        },
        spec_of("regression", ("x", (16, 3))),
        (1,),
    ),  # fmt: skip
    "cnn2d_pool_strides_same_bn_epsilon": (
        {
            "name": "cnn",
            "filters": [4, 4],
            "pool_size": 3,
            "pool_strides": 1,
            "pool_padding": "same",
            "batch_norm_epsilon": 1e-5,
        },
        DIGITS,
        (10,),
    ),  # fmt: skip
    "mlp_activation_layer": (
        {"name": "mlp", "units": [8, 4], "activation_layer": True, "activation": "tanh"},
        SEED_BINARY,
        (1,),
    ),
    "mlp_bn_epsilon": (
        {"name": "mlp", "units": [8], "batch_norm": True, "batch_norm_epsilon": 0.1},
        SEED_BINARY,
        (1,),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_builder_predicts_fits_saves_and_summarizes(case, tmp_path):
    fields, spec, out_shape = CASES[case]
    model = build(model_cfg(**fields), spec)
    assert isinstance(model, keras.Model)
    x, y = features(spec), labels(spec)
    loss = run_model_test(model, x, y, LOSS[spec.task], expected_output_shape=(N, *out_shape))
    assert loss > 0
    run_serialization_test(model, x, tmp_path, atol=1e-5)
    text = capture_summary(model)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert f"Trainable params: {trainable:,}" in text
    assert all(layer.name in text for layer in model.layers)


def test_mlp_default_is_the_seed_model():
    model = build(model_cfg(name="mlp"), SEED_BINARY)
    assert isinstance(model, keras.Sequential)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [(d.units, d.activation.__name__) for d in dense] == [
        (128, "relu"), (64, "relu"), (1, "sigmoid")]  # fmt: skip
    assert model.input_shape == (None, 50)


def test_two_input_takes_a_dict_keyed_by_input_name():
    model = build(model_cfg(name="two_input"), TWO_INPUT)
    assert sorted(model.input_names if hasattr(model, "input_names") else model.input) == ["a", "b"]
    out = model.predict(features(TWO_INPUT), verbose=0)
    assert out.shape == (N, 5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)  # 5-way softmax
    assert any(isinstance(layer, keras.layers.Concatenate) for layer in model.layers)


def test_explicit_outputs_and_activation_override_auto():
    model = build(model_cfg(name="mlp", outputs=2, output_activation="linear"), SEED_BINARY)
    assert model.output_shape == (None, 2)
    assert model.layers[-1].activation.__name__ == "linear"
    # binary data with 2 outputs and "auto" activation: softmax over the two classes
    model = build(model_cfg(name="mlp", outputs=2), SEED_BINARY)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_simple_ann_is_subclassed_and_build_graph_shows_its_layers():
    model = build(model_cfg(name="simple_ann", units=[12, 6]), SEED_BINARY)
    assert isinstance(model, SimpleANN) and type(model) is not keras.Model
    graph = model.build_graph((50,))
    assert graph.output_shape == (None, 1)
    text = capture_summary(graph)
    for name, shape in [
        ("dense_0", "(None, 12)"),
        ("dense_1", "(None, 6)"),
        ("output", "(None, 1)"),
    ]:
        line = next(line for line in text.splitlines() if name in line)
        assert shape in line
    assert "dense_0" in capture_summary(model)
    clone = SimpleANN.from_config(model.get_config())
    assert clone.get_config() == model.get_config()


def test_rnn_bidirectional_merge_mode_and_per_step_head():
    model = build(model_cfg(name="rnn", cell="gru", units=[8], bidirectional=True,
                            merge_mode="sum", return_sequences=True),
                  spec_of("multiclass", ("x", (6, 4)), num_classes=3, label_shape=(6,)))  # fmt: skip
    bidi = next(layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional))
    assert isinstance(bidi.forward_layer, keras.layers.GRU)
    assert bidi.merge_mode == "sum" and bidi.output.shape == (None, 6, 8)  # sum keeps 8 units
    assert isinstance(model.layers[-1], keras.layers.TimeDistributed)


def test_one_fit_run_lowers_loss_on_a_learnable_problem():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 50)).astype("float32")
    y = (x[:, :5].sum(axis=1) > 0).astype("float32")
    model = build(model_cfg(name="mlp", units=[32]), SEED_BINARY)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)
    assert after["loss"] < before["loss"] * 0.8
    assert after["accuracy"] > 0.85


def test_unknown_name_lists_the_builders():
    class Fake:
        name = "resnet"

    with pytest.raises(UserError, match=r"Unknown model `resnet`.*Valid models: cnn, mlp, rnn, "
                                        r"simple_ann, two_input"):  # fmt: skip
        build(Fake(), SEED_BINARY)
    assert set(BUILDERS) == {"mlp", "two_input", "simple_ann", "cnn", "rnn"}


def test_unknown_name_in_config_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown model.name 'resnet'.*'mlp', 'two_input', "
                                        r"'simple_ann', 'cnn', 'rnn'"):  # fmt: skip
        model_cfg(name="resnet")


@pytest.mark.parametrize("name", ["mlp", "simple_ann", "cnn"])
def test_mixed_precision_keeps_float32_outputs(name):
    spec = DIGITS if name == "cnn" else SEED_BINARY
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build(model_cfg(name=name, dense_impl="custom"), spec)
        out = model(features(spec, n=4))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    hidden = [layer for layer in model.layers if layer.name != "output" and layer.weights]
    assert hidden and all(layer.compute_dtype == "float16" for layer in hidden)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(out)))


def test_builds_inside_a_mirrored_strategy_scope(two_replicas):
    import tensorflow as tf

    with two_replicas.scope():
        model = build(model_cfg(name="two_input"), TWO_INPUT)
    assert all(
        isinstance(w.value, tf.distribute.DistributedValues) for w in model.trainable_weights
    )
    assert model.predict(features(TWO_INPUT), verbose=0).shape == (N, 5)


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_batch_norm_momentum_comes_from_the_config(name):
    spec = (
        spec_of("multiclass", ("x", (8, 8, 1)), num_classes=3)
        if name == "cnn"
        else spec_of("binary", ("x", (6,)))
    )
    model = build(model_cfg(name=name, batch_norm=True, batch_norm_momentum=0.8), spec)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.momentum == pytest.approx(0.8) for layer in norms)
