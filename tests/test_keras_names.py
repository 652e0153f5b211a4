"""tfkit.keras_names (what `config validate` accepts without Keras) equals what Keras offers
and what `train` builds: the tables are regenerated from Keras here, so a drift fails."""

import inspect

import keras
import pytest
from keras.src.activations import ALL_OBJECTS_DICT as KERAS_ACTIVATIONS
from keras.src.losses import ALL_OBJECTS_DICT as KERAS_LOSSES
from keras.src.metrics import ALL_OBJECTS_DICT as KERAS_METRICS

from tfkit import keras_names
from tfkit.config import LossConfig, validate
from tfkit.errors import UserError
from tfkit.training import callbacks as tfkit_callbacks
from tfkit.training.losses import build_loss
from tfkit.training.metrics import build_metrics

# metric classes that are accumulators or bases, not metrics of (y_true, y_pred)
_NOT_METRICS = {"metric", "mean", "sum", "mean_metric_wrapper"}


def _loss_table_from_keras() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every lower-case loss name -> (class whose default name is that function's, args)."""
    by_default_name = {}
    for cls in KERAS_LOSSES.values():
        if inspect.isclass(cls) and issubclass(cls, keras.losses.Loss):
            try:
                by_default_name.setdefault(cls().name, cls.__name__)
            except TypeError:  # LossFunctionWrapper needs a function
                pass
    by_default_name["huber"] = by_default_name.pop("huber_loss")
    fields = set(LossConfig.model_fields) - {"name", "reduction"}
    table = {}
    for key, fn in KERAS_LOSSES.items():
        if key[0].islower():
            cls_name = by_default_name[fn.__name__]
            params = inspect.signature(getattr(keras.losses, cls_name).__init__).parameters
            table[key] = (cls_name, tuple(p for p in params if p in fields))
    return table


def test_loss_table_is_every_keras_loss():
    table = _loss_table_from_keras()
    assert {k: (c, set(a)) for k, (c, a) in table.items()} == {
        k: (c, set(a)) for k, (c, a) in keras_names.LOSSES.items()
    }


def test_metric_table_is_every_keras_metric_without_required_args():
    table = {}
    for key, cls in KERAS_METRICS.items():
        if key[0].islower() and key not in _NOT_METRICS and key != "accuracy":
            required = [
                p
                for name, p in inspect.signature(cls.__init__).parameters.items()
                if name != "self" and p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD
            ]
            if not required:
                table[key] = cls.__name__
    assert table == keras_names.METRICS


def test_activation_table_is_every_keras_activation():
    assert set(keras_names.ACTIVATIONS) == set(KERAS_ACTIVATIONS)
    for name in keras_names.ACTIVATIONS:
        assert callable(keras.activations.get(name))


def test_callback_table_matches_the_callbacks_train_builds():
    assert set(keras_names.CALLBACKS) == set(tfkit_callbacks._CALLBACKS)
    for name, cls in tfkit_callbacks._CALLBACKS.items():
        params = tfkit_callbacks._parameters(cls)
        assert list(keras_names.CALLBACKS[name]) == list(params), name
        for arg, p in params.items():
            kind = keras_names.CALLBACKS[name][arg]
            if p.default is not p.empty:  # the default itself is a value of the stated kind
                assert keras_names._fits(kind, p.default), (name, arg, kind, p.default)


@pytest.mark.parametrize("name", keras_names.LOSS_NAMES)
def test_every_loss_name_validates_and_builds(name):
    validate({"train": {"loss": name}})
    if name not in ("auto", "crossentropy"):
        assert isinstance(build_loss(name), keras.losses.Loss)


def test_every_metric_name_validates_and_builds_under_its_config_name():
    names = [m for m in keras_names.METRIC_NAMES if m != "accuracy"]
    validate({"train": {"metrics": names}})
    built = build_metrics(names)
    assert [m.name for m in built] == names


def test_loss_args_are_checked_alike_by_validate_and_build():
    for name, (_, takes) in keras_names.LOSSES.items():
        for arg in ("gamma", "delta", "label_smoothing"):
            value = {"gamma": 3.0, "delta": 2.0, "label_smoothing": 0.1}[arg]
            raw = {"train": {"loss": {"name": name, arg: value}}}
            if arg in takes:
                validate(raw)
                build_loss(LossConfig(name=name, **{arg: value}))
            else:
                with pytest.raises(UserError, match=f"does not take {arg}"):
                    validate(raw)
                with pytest.raises(UserError, match=f"does not take {arg}"):
                    build_loss(LossConfig(name=name, **{arg: value}))
