"""Losses, optimizers, schedules and metrics built from config."""

import keras
import numpy as np
import pytest

from tfkit.config import LossConfig, OptimizerConfig, ScheduleConfig
from tfkit.data.spec import DataSpec, InputSpec
from tfkit.errors import UserError
from tfkit.training.losses import HuberLoss, build_loss, huber
from tfkit.training.metrics import build_metrics, resolve_class_weight
from tfkit.training.optimizers import WarmupSchedule, build_optimizer, build_schedule

MULTI = DataSpec(inputs=(InputSpec("x", (4,)),), task="multiclass", num_classes=3)
BINARY = DataSpec(inputs=(InputSpec("x", (4,)),), task="binary", num_classes=2)
REGRESSION = DataSpec(inputs=(InputSpec("x", (4,)),), task="regression", label_shape=(1,))


def _values():
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=(64, 3)).astype("float32")
    y_pred = (y_true + 3 * rng.normal(size=(64, 3))).astype("float32")
    return y_true, y_pred


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.5])
def test_huber_both_ways_equal_keras(threshold):
    y_true, y_pred = _values()
    expected = float(keras.losses.Huber(delta=threshold)(y_true, y_pred))
    assert float(HuberLoss(threshold)(y_true, y_pred)) == pytest.approx(expected, rel=1e-6)
    per_example = np.asarray(huber(threshold)(y_true, y_pred))
    assert per_example.shape == (64,)
    assert float(per_example.mean()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("make_loss", [lambda: huber(2.0), lambda: HuberLoss(threshold=2.0)])
def test_huber_survives_keras_round_trip(tmp_path, make_loss):
    y_true, y_pred = _values()
    x = np.random.default_rng(1).normal(size=(64, 5)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=make_loss())
    before = model.evaluate(x, y_true, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.evaluate(x, y_true, verbose=0) == pytest.approx(before, rel=1e-6)
    loss = loaded.loss
    assert getattr(loss, "threshold", None) == 2.0


def test_losses_by_name_with_args():
    focal = build_loss(
        LossConfig(name="binary_focal_crossentropy", gamma=3.0, from_logits=True), BINARY
    )
    assert isinstance(focal, keras.losses.BinaryFocalCrossentropy)
    assert focal.get_config()["gamma"] == 3.0 and focal.get_config()["from_logits"] is True
    assert isinstance(build_loss("mse", REGRESSION), keras.losses.MeanSquaredError)
    assert isinstance(build_loss("auto", MULTI), keras.losses.SparseCategoricalCrossentropy)
    assert isinstance(build_loss(LossConfig(name="huber", delta=2.0), REGRESSION), HuberLoss)
    summed = build_loss(LossConfig(name="mae", reduction="sum"), REGRESSION)
    assert float(summed(np.zeros((4, 1)), np.ones((4, 1)))) == pytest.approx(4.0)


def test_loss_errors_name_the_problem():
    with pytest.raises(
        UserError,
        match=r"Unknown loss `msee`.*Did you mean `mse`.*Valid loss.*mae, mape, mean_absolute_error",
    ):
        build_loss("msee")
    with pytest.raises(UserError, match=r"mse does not take gamma.*Received: gamma=3.0"):
        build_loss(LossConfig(name="mse", gamma=3.0))
    # a resolved config repeats every default: those are not refused
    assert isinstance(
        build_loss(LossConfig(**LossConfig(name="mae").model_dump())),
        keras.losses.MeanAbsoluteError,
    )
    with pytest.raises(UserError, match=r"expects one-hot labels"):
        build_loss("categorical_crossentropy", MULTI)
    with pytest.raises(UserError, match=r"for 0/1 labels.*regression"):
        build_loss("binary_crossentropy", REGRESSION)


def test_optimizers_by_name():
    sgd = build_optimizer(OptimizerConfig(name="sgd", momentum=0.9, nesterov=True, clipnorm=1.0))
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.clipnorm == 1.0
    adamw = build_optimizer(OptimizerConfig(name="adamw", use_ema=True, ema_momentum=0.9))
    assert (
        isinstance(adamw, keras.optimizers.AdamW) and adamw.use_ema and adamw.weight_decay == 0.004
    )
    rms = build_optimizer(OptimizerConfig(name="rmsprop", global_clipnorm=2.0))
    assert isinstance(rms, keras.optimizers.RMSprop) and rms.global_clipnorm == 2.0
    with pytest.raises(UserError, match="Unknown optimizer `adamm`.*Valid optimizers: adam, adamw"):
        build_optimizer("adamm")
    with pytest.raises(UserError, match="at most one of clipnorm, clipvalue"):
        build_optimizer(OptimizerConfig(clipnorm=1.0, clipvalue=1.0))


def test_schedules_with_warmup_values_and_serialization():
    cos = build_schedule(ScheduleConfig(name="cosine", decay_steps=100, warmup_steps=10), 0.1)
    assert isinstance(cos, WarmupSchedule)
    assert float(cos(0)) == pytest.approx(0.01)
    assert float(cos(9)) == pytest.approx(0.1)
    assert float(cos(10)) == pytest.approx(0.1)
    assert float(cos(60)) == pytest.approx(0.05, rel=1e-4)  # half-way through the cosine
    assert float(cos(110)) == pytest.approx(0.0, abs=1e-6)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cos))
    assert [float(again(s)) for s in (0, 5, 60)] == pytest.approx(
        [float(cos(s)) for s in (0, 5, 60)]
    )
    exp = build_schedule(ScheduleConfig(name="exponential", decay_steps=10, decay_rate=0.5), 1.0)
    assert float(exp(10)) == pytest.approx(0.5)
    pw = build_schedule(ScheduleConfig(name="piecewise", boundaries=[5], values=[1.0, 0.1]), 1.0)
    assert float(pw(3)) == pytest.approx(1.0) and float(pw(7)) == pytest.approx(0.1)
    with pytest.raises(UserError, match=r"len\(values\) == len\(boundaries\) \+ 1"):
        build_schedule(ScheduleConfig(name="piecewise", boundaries=[5], values=[1.0]), 1.0)


def test_optimizer_with_schedule_round_trips_in_keras_file(tmp_path):
    opt = build_optimizer(
        OptimizerConfig(schedule=ScheduleConfig(name="exponential", decay_steps=5, warmup_steps=3))
    )
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=opt, loss="mse")
    model.fit(np.ones((8, 2)), np.ones((8, 1)), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(
        loaded.optimizer.learning_rate_schedule
        if hasattr(loaded.optimizer, "learning_rate_schedule")
        else loaded.optimizer._learning_rate,
        WarmupSchedule,
    )


def test_metrics_and_class_weights():
    metrics = build_metrics(["accuracy", "auc"], BINARY)
    assert metrics[0] == "accuracy" and isinstance(metrics[1], keras.metrics.AUC)
    with pytest.raises(UserError, match=r"Unknown metric `acuracy`.*Did you mean `accuracy`"):
        build_metrics(["acuracy"])
    with pytest.raises(UserError, match="classification metric.*regression"):
        build_metrics(["accuracy"], REGRESSION)
    import tensorflow as tf

    labels = np.array([0] * 6 + [1] * 3 + [2] * 3)
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((12, 4)), labels)).batch(5)
    weights = resolve_class_weight("balanced", MULTI, ds)
    assert weights == pytest.approx({0: 12 / 18, 1: 12 / 9, 2: 12 / 9})
    assert resolve_class_weight({0: 1.0, 2: 3.0}, MULTI) == {0: 1.0, 2: 3.0}
    with pytest.raises(UserError, match=r"classes \[5\].*3 classes"):
        resolve_class_weight({5: 1.0}, MULTI)
