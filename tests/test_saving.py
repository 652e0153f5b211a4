"""Every registered tfkit Keras object round-trips through `.keras` in safe mode.

`CASES` holds one serialization case per registered object (`tfkit>Name`); a test walks
every tfkit module and fails when a registered object has no case, or when its module is
missing from `tfkit.saving.MODULES` (then `import tfkit.saving` would not register it).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import run_serialization_test

import tfkit
import tfkit.saving
from tfkit.models.cells import MinimalRNNCell
from tfkit.models.layers import Dense
from tfkit.models.subclassed import SimpleANN
from tfkit.stylegan import layers as sg
from tfkit.stylegan.augment import AugmentPipe
from tfkit.stylegan.discriminator import Discriminator
from tfkit.stylegan.mapping import MappingNetwork
from tfkit.stylegan.synthesis import Generator, SynthesisNetwork, num_ws_for
from tfkit.training.losses import HuberLoss, huber
from tfkit.training.optimizers import WarmupSchedule

RNG = np.random.default_rng(0)
SMALL = dict(channel_base=64, channel_max=8)


def _x(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape).astype("float32")


def _compiled(loss: Any = "mse", learning_rate: Any = 1e-3) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    return model


def _simple_ann() -> SimpleANN:
    model = SimpleANN(
        units=[5], dropout=0.1, outputs=2, output_activation="softmax", dtype="float64"
    )
    model.build((None, 6))
    return model


# registered name -> list of (object factory, input data, run_serialization_test kwargs)
Case = tuple[Callable[[], Any], Any, dict]
CASES: dict[str, list[Case]] = {
    "tfkit>Dense": [(lambda: Dense(3, activation="relu"), _x(4, 5), {})],
    "tfkit>SimpleANN": [(_simple_ann, _x(4, 6), {})],
    "tfkit>MinimalRNNCell": [
        (lambda: keras.layers.RNN(MinimalRNNCell(4, activation="relu")), _x(2, 5, 3), {}),
        (lambda: keras.layers.RNN(MinimalRNNCell(3), return_sequences=True), _x(2, 4, 2), {}),
    ],
    "tfkit>HuberFn": [(lambda: _compiled(huber(2.0)), _x(6, 4), {"y": _x(6, 2)})],
    "tfkit>HuberLoss": [(lambda: _compiled(HuberLoss(0.5)), _x(6, 4), {"y": _x(6, 2)})],
    "tfkit>WarmupSchedule": [
        (lambda: _compiled(learning_rate=WarmupSchedule(1e-3, 10)), _x(6, 4), {"y": _x(6, 2)}),
        (
            lambda: _compiled(
                learning_rate=WarmupSchedule(keras.optimizers.schedules.CosineDecay(1e-3, 100), 5)
            ),
            _x(6, 4),
            {"y": _x(6, 2)},
        ),
    ],
    "tfkit>FirUpsample2D": [(sg.FirUpsample2D, _x(2, 4, 4, 3), {})],
    "tfkit>FirDownsample2D": [(sg.FirDownsample2D, _x(2, 8, 8, 3), {})],
    "tfkit>BiasAct": [(lambda: sg.BiasAct("lrelu", clamp=0.5, lr_multiplier=2.0), _x(2, 4, 3), {})],
    "tfkit>EqualizedDense": [
        (lambda: sg.EqualizedDense(4, activation="lrelu", lr_multiplier=0.01), _x(2, 6), {})
    ],
    "tfkit>EqualizedConv2D": [
        (lambda: sg.EqualizedConv2D(4, 3, down=True, gain=0.7), _x(2, 8, 8, 3), {}),
        (lambda: sg.EqualizedConv2D(2, 3, up=True, activation="lrelu"), _x(2, 4, 4, 3), {}),
    ],
    "tfkit>PixelNorm": [(sg.PixelNorm, _x(2, 6), {})],
    "tfkit>AddNoise": [
        (lambda: sg.AddNoise("const"), _x(2, 4, 4, 3), {}),
        (lambda: sg.AddNoise("const", per_channel=True), _x(2, 4, 4, 3), {}),
    ],
    "tfkit>AdaIN": [(sg.AdaIN, [_x(2, 4, 4, 3), _x(2, 6)], {})],
    "tfkit>ModulatedConv2D": [
        (lambda: sg.ModulatedConv2D(4, up=True), [_x(2, 4, 4, 3), _x(2, 3)], {}),
        (
            lambda: sg.ModulatedConv2D(2, 1, demodulate=False, fused=True),
            [_x(2, 4, 4, 3), _x(2, 3)],
            {},
        ),
    ],
    "tfkit>SynthesisLayer": [
        (lambda: sg.SynthesisLayer(4, up=True, noise_mode="const"), [_x(2, 4, 4, 3), _x(2, 6)], {})
    ],
    "tfkit>ToRGB": [(lambda: sg.ToRGB(3, clamp=1.0), [_x(2, 4, 4, 5), _x(2, 6)], {})],
    "tfkit>AugmentPipe": [
        (
            lambda: AugmentPipe("bgcfnc", initial_p=0.5),
            _x(2, 8, 8, 3),
            {"call_kwargs": {"seed": [1, 2]}},
        )
    ],
    "tfkit>MinibatchStdDev": [(lambda: sg.MinibatchStdDev(2), _x(4, 4, 4, 3), {})],
    "tfkit>MappingNetwork": [(lambda: MappingNetwork(8, 8, num_ws=4, num_layers=2), _x(2, 8), {})],
    "tfkit>SynthesisNetwork": [
        (
            lambda: SynthesisNetwork(8, w_dim=8, noise_mode="const", **SMALL),
            _x(2, num_ws_for(8), 8),
            {},
        ),
        (
            lambda: SynthesisNetwork(8, w_dim=8, arch="stylegan", **SMALL),
            _x(2, num_ws_for(8), 8),
            {"call_kwargs": {"noise_mode": "const"}},
        ),
    ],
    "tfkit>Generator": [
        (  # the top resolution in bfloat16, as a mixed-precision GAN run builds G_ema
            lambda: Generator(8, z_dim=8, w_dim=8, num_fp16_res=1, precision="bfloat16", **SMALL),
            _x(3, 8),
            {"call_kwargs": {"noise_mode": "const"}},
        ),
        (
            lambda: Generator(8, z_dim=8, w_dim=8, mapping_layers=2, **SMALL),
            _x(3, 8),
            {"call_kwargs": {"noise_mode": "const", "psi": 0.7}},
        ),
        (
            lambda: Generator(8, z_dim=8, w_dim=8, num_classes=3, arch="stylegan", **SMALL),
            _x(3, 8),
            {"call_kwargs": {"c": tf.constant([0, 2, 1]), "noise_mode": "const"}},
        ),
    ],
    "tfkit>Discriminator": [
        (
            lambda: Discriminator(8, mbstd_group=2, num_fp16_res=1, precision="bfloat16", **SMALL),
            _x(4, 8, 8, 3),
            {},
        ),
        (lambda: Discriminator(8, mbstd_group=2, **SMALL), _x(4, 8, 8, 3), {}),
        (
            lambda: Discriminator(8, arch="stylegan", num_classes=3, mbstd_group=2, **SMALL),
            _x(4, 8, 8, 3),
            {"call_kwargs": {"c": tf.constant([0, 1, 2, 0])}},
        ),
    ],
}

PARAMS = [
    pytest.param(make, data, kwargs, id=f"{name.split('>')[1]}-{i}")
    for name, cases in CASES.items()
    for i, (make, data, kwargs) in enumerate(cases)
]


@pytest.mark.parametrize(("make", "data", "kwargs"), PARAMS)
def test_round_trip_in_safe_mode(make, data, kwargs, tmp_path):
    run_serialization_test(make(), data, tmp_path, **kwargs)


def _import_every_tfkit_module() -> None:
    for info in pkgutil.walk_packages(tfkit.__path__, prefix="tfkit."):
        importlib.import_module(info.name)


def test_every_registered_object_has_a_case_and_is_registered_by_tfkit_saving():
    _import_every_tfkit_module()
    registered = tfkit.saving.registered_objects()
    assert sorted(set(registered) - set(CASES)) == [], "registered objects without a case"
    assert sorted(set(CASES) - set(registered)) == [], "cases of objects no longer registered"
    modules = {name: obj.__module__ for name, obj in registered.items()}
    unlisted = {n: m for n, m in modules.items() if m not in tfkit.saving.MODULES}
    assert unlisted == {}, "add these modules to tfkit.saving.MODULES"


def test_every_tfkit_layer_model_loss_metric_and_schedule_is_registered():
    _import_every_tfkit_module()
    kinds = (
        keras.layers.Layer,
        keras.losses.Loss,
        keras.metrics.Metric,
        keras.optimizers.schedules.LearningRateSchedule,
    )
    defined = {
        obj
        for module_name, module in list(sys.modules.items())
        if module_name == "tfkit" or module_name.startswith("tfkit.")
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, kinds) and obj.__module__ == module_name
    }
    assert {Dense, Generator, HuberLoss, WarmupSchedule} <= defined  # the walk finds them
    registered = set(tfkit.saving.registered_objects().values())
    missing = sorted(f"{c.__module__}.{c.__qualname__}" for c in defined - registered)
    assert missing == [], "register these with keras.saving.register_keras_serializable"


def test_registered_names_use_the_tfkit_package():
    for name, obj in tfkit.saving.registered_objects().items():
        assert keras.saving.get_registered_name(obj) == name == f"tfkit>{obj.__name__}"
