"""The search space: schema errors, key checks, declaration, conditions, trial configs."""

import keras_tuner
import pytest

from tfkit.config import load_config, read_yaml, validate
from tfkit.errors import UserError
from tfkit.tuning import space as space_lib

BASE = {
    "name": "t",
    "data": {"source": {"kind": "digits"}},
    "model": {"name": "cnn", "filters": [8, 16]},
}


def with_space(space, **tune):
    return {**BASE, "tune": {"space": space, **tune}}


@pytest.mark.parametrize(
    "param, message",
    [
        ({"choice": []}, "`choice` needs at least one value. Received: choice=[]"),
        ({"float": [0.5, 0.1]}, "range low must be <= high. Received: float=[0.5, 0.1]"),
        ({"int": [4, 1]}, "range low must be <= high. Received: int=[4, 1]"),
        (
            {"float": [0.0, 0.1], "sampling": "log"},
            "`sampling: log` needs positive bounds. Received: float=[0.0, 0.1]",
        ),
        ({"choice": [1], "int": [1, 2]}, "needs exactly one of"),
        ({"sampling": "log"}, "Received: none of them"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_the_key(param, message):
    with pytest.raises(UserError) as err:
        validate(with_space({"model.dropout": param}))
    assert "tune.space.model.dropout" in str(err.value)
    assert message in str(err.value)


def test_objective_string_infers_direction():
    space = {"model.dropout": {"float": [0.0, 0.5]}}
    assert validate(with_space(space, objective="val_accuracy")).tune.objective.direction == "max"
    assert validate(with_space(space, objective="val_loss")).tune.objective.direction == "min"


def test_empty_space_is_refused():
    with pytest.raises(UserError, match=r"`tune.space` is empty"):
        validate(with_space({}))


def test_when_must_name_a_space_key():
    with pytest.raises(
        UserError, match="refers to `train.optimizer.nam`, which is not a space key"
    ):
        validate(
            with_space(
                {
                    "train.optimizer.momentum": {
                        "float": [0, 0.9],
                        "when": {"train.optimizer.nam": "sgd"},
                    }
                }
            )
        )


def test_unknown_config_key_lists_close_matches():
    raw = with_space({"model.filter": {"choice": [[8], [16]]}})
    config = validate(raw)
    with pytest.raises(UserError) as err:
        space_lib.check_space(raw, config.tune)
    text = str(err.value)
    assert "unknown config key `model.filter`" in text
    assert "model.filters" in text  # close match
    assert "Valid keys under `model`" in text and "dense_units" in text


def test_keys_follow_the_selected_model_kind():
    # `units` is an mlp key, not a cnn one
    raw = with_space({"model.units": {"choice": [[8]]}})
    with pytest.raises(UserError, match="unknown config key `model.units`"):
        space_lib.check_space(raw, validate(raw).tune)
    raw["model"] = {"name": "mlp"}
    space_lib.check_space(raw, validate(raw).tune)


def test_a_value_that_makes_an_invalid_config_is_refused():
    raw = with_space({"model.dropout": {"choice": [0.1, 1.5]}})
    with pytest.raises(UserError) as err:
        space_lib.check_space(raw, validate(raw).tune)
    assert "tune.space.model.dropout" in str(err.value)
    assert "model.dropout" in str(err.value) and "1.5" in str(err.value)


def test_declare_apply_and_decode_every_kind():
    space = validate(
        with_space(
            {
                "model.filters": {"choice": [[8, 16], [16, 32, 64]]},
                "model.dropout": {"float": [0.0, 0.5], "step": 0.1},
                "model.kernel_size": {"int": [2, 4]},
                "model.batch_norm": {"boolean": True},
                "train.optimizer.learning_rate": {"float": [1e-4, 1e-2], "sampling": "log"},
            }
        )
    ).tune.space
    hp = keras_tuner.HyperParameters()
    space_lib.declare(hp, space)
    names = {p.name for p in hp.space}
    assert names == set(space)
    hp.values["model.filters"] = "[16, 32, 64]"
    hp.values["model.dropout"] = 0.3
    values = space_lib.values_from_hp(hp, space)
    assert values["model.filters"] == [16, 32, 64]
    config = space_lib.trial_config(BASE, values)
    assert config.model.filters == [16, 32, 64]
    assert config.model.dropout == pytest.approx(0.3)
    assert config.tune is None
    # random sampling stays inside the declared ranges
    for seed in range(5):
        sample = hp.copy()
        for p in sample.space:
            sample.values[p.name] = p.random_sample(seed)
        v = space_lib.values_from_hp(sample, space)
        assert 1e-4 <= v["train.optimizer.learning_rate"] <= 1e-2
        assert 2 <= v["model.kernel_size"] <= 4
        assert v["model.filters"] in ([8, 16], [16, 32, 64])


def test_conditional_parameter_is_active_only_when_parent_matches():
    space = validate(
        with_space(
            {
                "train.optimizer.momentum": {
                    "float": [0.0, 0.9],
                    "when": {"train.optimizer.name": "sgd"},
                },
                "train.optimizer.name": {"choice": ["adam", "sgd"]},
            }
        )
    ).tune.space
    hp = keras_tuner.HyperParameters()
    space_lib.declare(hp, space)
    hp.values["train.optimizer.name"] = "adam"
    assert "train.optimizer.momentum" not in space_lib.values_from_hp(hp, space)
    hp.values["train.optimizer.name"] = "sgd"
    hp.values["train.optimizer.momentum"] = 0.5
    values = space_lib.values_from_hp(hp, space)
    assert values == {"train.optimizer.name": "sgd", "train.optimizer.momentum": 0.5}
    config = space_lib.trial_config(BASE, values)
    assert config.train.optimizer.name == "sgd" and config.train.optimizer.momentum == 0.5


def test_fingerprint_names_what_changed():
    a = validate(with_space({"model.dropout": {"float": [0.0, 0.5]}}, objective="val_accuracy"))
    b = validate(with_space({"model.dropout": {"float": [0.0, 0.3]}}, objective="val_loss"))
    changes = space_lib.fingerprint_changes(space_lib.fingerprint(a), space_lib.fingerprint(b))
    text = "; ".join(changes)
    assert "tune.space.model.dropout (float: [0.0, 0.5] -> [0.0, 0.3])" in text
    assert "tune.objective.name ('val_accuracy' -> 'val_loss')" in text
    same = space_lib.fingerprint_changes(space_lib.fingerprint(a), space_lib.fingerprint(a))
    assert same == []


@pytest.mark.parametrize(
    "path", ["configs/tune_digits.yaml", "configs/tune_binary_mlp_hyperband.yaml"]
)
def test_shipped_configs_have_valid_spaces(path):
    config = load_config(path)
    space_lib.check_space(read_yaml(path), config.tune)


SEARCH = with_space(
    {"model.filters": {"choice": [[8, 16], [16, 32]]}, "train.epochs": {"int": [1, 3]}},
    objective={"name": "val_loss"},
)


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("tune.space.model.filters.choice=[[4, 8]]", "model.filters", {"choice": [[4, 8]]}),
        ("tune.space.train.epochs.int=[2, 5]", "train.epochs", {"int_range": (2, 5)}),
        ("tune.space.train.epochs.step=2", "train.epochs", {"int_range": (1, 3), "step": 2}),
        (
            "tune.space.train.optimizer.learning_rate.float=[0.001, 0.1]",
            "train.optimizer.learning_rate",
            {"float_range": (0.001, 0.1)},
        ),
        (
            "tune.space.model.dropout={float: [0.0, 0.5], step: 0.1}",
            "model.dropout",
            {"float_range": (0.0, 0.5), "step": 0.1},
        ),
    ],
)
def test_set_addresses_a_space_entry_by_its_dotted_key(tmp_path, override, key, expected):
    """`--set tune.space.<config key>[.<field>]=v` changes (or adds) that entry's field and
    leaves every other entry as the file has it."""
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(SEARCH))
    before = load_config(str(path)).tune.space
    space = load_config(str(path), [override]).tune.space
    assert {k: getattr(space[key], k) for k in expected} == expected
    assert {k: v for k, v in space.items() if k != key} == {
        k: v for k, v in before.items() if k != key
    }


@pytest.mark.parametrize(
    "override, named",
    [
        ("tune.space.model.filters.choise=[[4]]", "`choise` is not a field"),
        ("tune.space.train.epochs.int.low=1", "`int.low` is not a field"),
        ("tune.space.model.dropout.flot=[0, 0.5]", "a search-space entry is a mapping"),
        ("tune.space.model.dropout=0.5", "a search-space entry is a mapping"),
    ],
)
def test_set_below_a_space_entry_that_names_no_field_is_refused(tmp_path, override, named):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(SEARCH))
    with pytest.raises(UserError) as err:
        load_config(str(path), [override])
    message = str(err.value)
    assert message.startswith(f"--set {override.partition('=')[0]}: {named}"), message
    assert "tune.space.KEY.FIELD=VALUE (FIELD: choice, float, int, boolean," in message
    assert "\n" not in message
