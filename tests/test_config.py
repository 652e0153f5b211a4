"""Config loading: defaults, overrides, error messages that name file, key and values."""

import pytest
import yaml

from tfkit.config import (
    ExperimentConfig,
    apply_overrides,
    diff_keys,
    dump_yaml,
    load_config,
    validate,
)
from tfkit.errors import UserError


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_resolve_and_round_trip_through_yaml(tmp_path):
    cfg = load_config(None)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.data.source.kind == "digits"
    again = load_config(write(tmp_path, dump_yaml(cfg)))
    assert again == cfg


def test_every_shipped_config_validates():
    from pathlib import Path

    configs = sorted(Path(__file__).parent.parent.joinpath("configs").glob("*.yaml"))
    for path in configs:
        load_config(path)  # raises UserError on any problem


def test_overrides_are_type_checked(tmp_path):
    path = write(tmp_path, "name: a\ntrain: {epochs: 2}\n")
    cfg = load_config(
        path, ["train.epochs=5", "train.optimizer.learning_rate=3e-4", "data.source.kind=shapes"]
    )
    assert cfg.train.epochs == 5
    assert cfg.train.optimizer.learning_rate == pytest.approx(3e-4)
    assert cfg.data.source.kind == "shapes"
    with pytest.raises(UserError, match=r"`train.epochs`.*integer.*Received: 'many'"):
        load_config(path, ["train.epochs=many"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        load_config(path, ["train.epochs"])
    with pytest.raises(UserError, match=r"--set overrides"):
        load_config(path, ["train.epocs=3"])


def test_override_through_a_scalar_is_refused():
    with pytest.raises(UserError, match="`name` is 'x', not a section"):
        apply_overrides({"name": "x"}, ["name.sub=1"])


def test_unknown_key_names_file_key_and_valid_keys(tmp_path):
    path = write(tmp_path, "model:\n  name: cnn\n  filtres: [8]\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "`model.filtres`" in msg
    assert "Did you mean `filters`?" in msg
    assert "kernel_size" in msg  # valid keys listed


def test_unknown_top_level_section(tmp_path):
    with pytest.raises(
        UserError,
        match=r"unknown key `trian`.*Did you mean `train`.*Valid keys here: data, .*model, name, runtime, train",
    ):
        load_config(write(tmp_path, "trian: {epochs: 3}\n"))


def test_wrong_type_names_expected_and_received(tmp_path):
    with pytest.raises(
        UserError,
        match=r"`data.batch_size`: Input should be greater than or equal to 1. Received: 0",
    ):
        load_config(write(tmp_path, "data: {batch_size: 0}\n"))


def test_split_fractions_must_sum_to_one():
    with pytest.raises(UserError, match=r"sum to 1.*sum 0.7"):
        validate({"data": {"split": {"train": 0.5, "val": 0.1, "test": 0.1}}})


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(
        UserError, match=r"unknown model.name 'cnnx'. Expected one of: 'mlp'.*'cnn'"
    ):
        validate({"model": {"name": "cnnx"}})


def test_missing_required_field_in_tagged_union_drops_the_tag():
    with pytest.raises(UserError, match=r"`data.source.path` is required but missing"):
        validate({"data": {"source": {"kind": "csv"}}})


def test_invalid_yaml_names_line(tmp_path):
    with pytest.raises(UserError, match=r"exp.yaml \(line \d+, column \d+\): invalid YAML"):
        load_config(write(tmp_path, "name: a\ndata: [1, 2\n"))


@pytest.mark.parametrize(
    "text,key,lines",
    [
        ("name: x\nname: y\n", "name", (1, 2)),
        (
            "name: x\ntrain:\n  epochs: 2\ndata:\n  batch_size: 4\ntrain:\n  epochs: 3\n",
            "train",
            (2, 6),
        ),
        ("name: x\ntrain:\n  epochs: 2\n  verbose: 0\n  epochs: 3\n", "epochs", (3, 5)),
        ("name: x\nmodel: {name: mlp, units: [8], name: cnn}\n", "name", (2, 2)),
    ],
)
def test_duplicate_keys_are_refused_naming_file_key_and_both_lines(tmp_path, text, key, lines):
    path = write(tmp_path, text)
    message = f"exp.yaml: key `{key}` is given twice, at lines {lines[0]} and {lines[1]};"
    with pytest.raises(UserError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_merge_keys_may_still_be_overridden(tmp_path):
    text = "name: x\ntrain:\n  <<: {epochs: 2, verbose: 0}\n  epochs: 3\n"
    config = load_config(write(tmp_path, text))
    assert (config.train.epochs, config.train.verbose) == (3, 0)


@pytest.mark.parametrize("char", ["\x00", "\x07"])
def test_control_character_error_is_one_line_with_its_place(tmp_path, char):
    path = write(tmp_path, f"name: a\ndata: x{char}y\n")
    with pytest.raises(
        UserError, match=r"exp.yaml \(line 2, column 8\): invalid YAML: unacceptable"
    ) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_missing_and_directory_config(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a directory"):
        load_config(tmp_path)


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(UserError, match="mapping of sections"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_diff_keys():
    a = yaml.safe_load("model: {name: cnn, filters: [8, 16], dropout: 0.1}")
    b = yaml.safe_load("model: {name: cnn, filters: [8, 32], dropout: 0.1}")
    assert diff_keys(a, b) == ["model.filters"]


def test_unknown_key_inside_a_dict_valued_field_lists_that_models_keys():
    raw = {"tune": {"space": {"model.dropout": {"float": [0.0, 0.5], "stpe": 0.1}}}}
    with pytest.raises(UserError) as err:
        validate(raw, "t.yaml")
    msg = str(err.value)
    assert "unknown key `tune.space.model.dropout.stpe`" in msg
    assert "Did you mean `step`?" in msg
    assert "float" in msg and "choice" in msg  # aliases listed as the user writes them


@pytest.mark.parametrize(
    "override, message",
    [
        ("gan.augment=always", r"`gan.augment`.*'ada', 'fixed' or 'none'"),
        ("gan.ada_target=1.5", r"`gan.ada_target`.*less than or equal to 1"),
        ("gan.ada_target=-2", r"`gan.ada_target`.*greater than or equal to -1"),
        ("gan.ada_kimg=0", r"`gan.ada_kimg`.*greater than 0"),
        ("gan.ada_interval=0", r"`gan.ada_interval`.*greater than or equal to 1"),
        ("gan.augpipe=bgx", r"`gan.augpipe`.*unknown augmentation pipeline 'bgx'.*bgcfnc"),
        ("gan.augment_p=2", r"`gan.augment_p`.*less than or equal to 1"),
        ("gan.augment=fixed", r"`gan.augment: fixed` needs `gan.augment_p`"),
        ("gan.augment_p=0.3", None),  # only with fixed, which the preset is not: see below
    ],
)
def test_gan_augment_keys_are_validated_by_name(tmp_path, override, message):
    path = write(tmp_path, "name: g\ndata: {normalize: minus_one_one}\ngan: {preset: cifar}\n")
    if message is None:
        from tfkit.stylegan.presets import resolve_options

        cfg = load_config(path, [override])
        with pytest.raises(UserError, match=r"`gan.augment_p` is used with `gan.augment: fixed`"):
            resolve_options(cfg.gan, 32)
        return
    with pytest.raises(UserError, match=message):
        load_config(path, [override])


def test_gan_augment_defaults_follow_the_presets(tmp_path):
    from tfkit.stylegan.presets import resolve_options

    path = write(tmp_path, "name: g\ngan: {preset: paper256}\n")
    assert resolve_options(load_config(path).gan, 256).augment == "ada"
    assert resolve_options(load_config(path, ["gan.preset=auto"]).gan, 64).augment == "ada"
    assert resolve_options(load_config(path, ["gan.preset=shapes32"]).gan, 32).augment == "none"
    opts = resolve_options(
        load_config(path, ["gan.augment=fixed", "gan.augment_p=0.25", "gan.augpipe=bgcfnc"]).gan,
        256,
    )
    assert (opts.augment, opts.augment_p, opts.augpipe) == ("fixed", 0.25, "bgcfnc")
