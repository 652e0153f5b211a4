"""A model config that does not fit the data fails before building, naming both sides."""

import re

import pytest
from helpers import model_cfg, spec_of

from tfkit.errors import UserError
from tfkit.models import build

TABULAR = spec_of("binary", ("x", (50,)))
TWO = spec_of("multiclass", ("a", (50,)), ("b", (10,)), num_classes=5)
DIGITS = spec_of("multiclass", ("x", (8, 8, 1)), num_classes=10)
SEQ = spec_of("multiclass", ("x", (20, 4)), num_classes=3)


def raises(fields, spec, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build(model_cfg(**fields), spec)


def test_2d_conv_on_tabular_data():
    raises({"name": "cnn"}, TABULAR,
           "model `cnn` with dims=2 needs inputs of rank 3 (H, W, C); data input `x` has "
           "shape (50,)")  # fmt: skip


def test_1d_and_3d_conv_ranks():
    raises({"name": "cnn", "dims": 1}, DIGITS,
           "model `cnn` with dims=1 needs inputs of rank 2 (steps, C); data input `x` has "
           "shape (8, 8, 1)")  # fmt: skip
    raises({"name": "cnn", "dims": 3}, DIGITS, "rank 4 (D, H, W, C)")


def test_multi_input_model_on_single_input_data():
    raises({"name": "two_input"}, TABULAR,
           "model `two_input` needs 2 named inputs; data has 1 input(s): `x` (50,)")  # fmt: skip


def test_single_input_models_on_multi_input_data():
    for name in ("mlp", "simple_ann", "cnn", "rnn"):
        raises({"name": name}, TWO,
               f"model `{name}` takes one input; data has 2 inputs: `a` (50,), `b` (10,)")  # fmt: skip


def test_outputs_vs_class_count():
    raises({"name": "cnn", "outputs": 3}, DIGITS,
           "model `cnn` has outputs=3; data has 10 classes (num_classes=10, labels 0..9)")  # fmt: skip
    raises({"name": "mlp", "outputs": 4}, TABULAR,
           "model `mlp` has outputs=4; data is binary (labels 0/1)")  # fmt: skip
    raises({"name": "mlp", "outputs": 2},
           spec_of("regression", ("x", (8,)), label_shape=(3,)),
           "model `mlp` has outputs=2; data labels have shape (3,)")  # fmt: skip


def test_multiclass_data_without_class_count():
    raises({"name": "mlp"}, spec_of("multiclass", ("x", (8,))),
           "multiclass data must state its class count; data has num_classes=None")  # fmt: skip


def test_stated_input_shape_vs_data():
    raises({"name": "mlp", "input_shape": [64]}, TABULAR,
           "model `mlp` has input_shape=[64]; data input `x` has shape (50,)")  # fmt: skip
    raises({"name": "two_input", "input_shapes": {"a": [50], "b": [12]}}, TWO,
           "model `two_input` has input_shapes `a` (50,), `b` (12,); data has inputs "
           "`a` (50,), `b` (10,)")  # fmt: skip
    # a matching statement builds
    assert build(model_cfg(name="mlp", input_shape=[50]), TABULAR).input_shape == (None, 50)


def test_rnn_input_rank_per_cell():
    raises({"name": "rnn"}, TABULAR,
           "model `rnn` with cell=lstm needs inputs of rank 2 (time, features); data input "
           "`x` has shape (50,)")  # fmt: skip
    raises({"name": "rnn", "cell": "conv_lstm2d"}, SEQ,
           "model `rnn` with cell=conv_lstm2d needs inputs of rank 4 (time, H, W, C); data "
           "input `x` has shape (20, 4)")  # fmt: skip


def test_per_step_outputs_vs_per_sequence_labels():
    raises({"name": "rnn", "return_sequences": True}, SEQ,
           "model `rnn` with return_sequences=true predicts shape (20, 3) per example; data "
           "labels have shape ()")  # fmt: skip
    raises({"name": "rnn"}, spec_of("multiclass", ("x", (20, 4)), num_classes=3, label_shape=(20,)),
           "model `rnn` with return_sequences=false predicts shape (3,) per example; data "
           "labels have shape (20,)")  # fmt: skip


def test_cnn_blocks_shrinking_the_input_to_nothing():
    raises({"name": "cnn", "filters": [8, 8, 8, 8]}, DIGITS,
           "shrinks its input to nothing at block 4; data input `x` has shape (8, 8, 1)")  # fmt: skip
    raises({"name": "cnn", "filters": [8], "kernel_size": 9, "padding": "valid"}, DIGITS,
           "at block 1")  # fmt: skip


def test_cnn_decoder_output_vs_label_shape():
    raises({"name": "cnn", "filters": [8, 8], "transpose_filters": [8]},
           spec_of("regression", ("x", (8, 8, 1)), label_shape=(8, 8, 1)),
           "model `cnn` with transpose_filters=[8] predicts shape (4, 4, 1) per example; data "
           "labels have shape (8, 8, 1)")  # fmt: skip


def test_variable_size_images_need_global_pooling():
    spec = spec_of("multiclass", ("x", (None, None, 3)), num_classes=4)
    raises({"name": "cnn"}, spec, "Set global_pool to max or average")
    model = build(model_cfg(name="cnn", global_pool="average"), spec)
    assert model.output_shape == (None, 4)


def test_unknown_activation_lists_valid_ones():
    raises({"name": "mlp", "activation": "relo"}, TABULAR,
           "`model.activation`: unknown activation 'relo'. Did you mean `relu`? Valid activations:")  # fmt: skip
    raises({"name": "cnn", "output_activation": "softmx"}, DIGITS,
           "`model.output_activation`: unknown activation 'softmx'. Did you mean `softmax`?")  # fmt: skip
