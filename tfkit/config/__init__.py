"""Experiment configuration: YAML files parsed into strict pydantic models.

One experiment file has the sections `name`, `data`, `model`, `train`, `runtime` (and, for
the later capabilities, `tune` and `gan`). Every model forbids unknown keys, so a typo is
an error that names the dotted key and lists the valid ones. `--set a.b=v` overrides are
applied to the raw YAML tree before validation, so they are type-checked like the file.

One module per noun: `base` (what every section shares), one schema module per section
(`data`, `model`, `train`, `runtime`, `tune`, `gan`, `experiment`; `class_path` for
classes of the user's own), `gan_names` (the GAN vocabulary), `overrides` (`--set`),
`messages` (error formatting), `loading` (YAML in and out). Import names from here.

This package imports no TensorFlow: `tfkit config validate` stays instant.
"""

from tfkit.config.base import Seed, Strict, check_number_kinds, check_power_of_two
from tfkit.config.class_path import ClassPathConfig
from tfkit.config.data import (
    AugmentConfig,
    DataConfig,
    DigitsSource,
    ImagesSource,
    NpzSource,
    RegressionSource,
    SequencesSource,
    ShapesSource,
    SourceConfig,
    SplitConfig,
    TableSource,
    TabularBinarySource,
    TfdsSource,
    TFRecordFeature,
    TFRecordSource,
    TwoInputSource,
)
from tfkit.config.experiment import ExperimentConfig
from tfkit.config.gan import GanConfig, augment_p_error, gan_default
from tfkit.config.gan_names import (
    AUGMENT_GROUPS,
    AUGPIPES,
    GAN_PRESET_NAMES,
    GAN_RESOLUTIONS,
    parse_augpipe,
)
from tfkit.config.loading import (
    diff_keys,
    dump_yaml,
    load_config,
    read_config_text,
    read_yaml,
    save_config,
    to_dict,
    validate,
)
from tfkit.config.messages import (
    check_loop_options,
    combination_problems,
    format_validation_error,
    name_problems,
    number_problems,
)
from tfkit.config.model import (
    CNNModel,
    InputShape,
    LayerSpec,
    MLPModel,
    ModelConfig,
    Outputs,
    PosInt,
    RNNModel,
    SimpleANNModel,
    TwoInputModel,
)
from tfkit.config.overrides import apply_overrides
from tfkit.config.runtime import RuntimeConfig
from tfkit.config.train import (
    CUSTOM_LOOP_OPTIONS,
    CallbackConfig,
    LossConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from tfkit.config.tune import HyperParameterConfig, ObjectiveConfig, TuneConfig

__all__ = [
    "AUGMENT_GROUPS",
    "AUGPIPES",
    "CUSTOM_LOOP_OPTIONS",
    "GAN_PRESET_NAMES",
    "GAN_RESOLUTIONS",
    "AugmentConfig",
    "CNNModel",
    "CallbackConfig",
    "ClassPathConfig",
    "DataConfig",
    "DigitsSource",
    "ExperimentConfig",
    "GanConfig",
    "HyperParameterConfig",
    "ImagesSource",
    "InputShape",
    "LayerSpec",
    "LossConfig",
    "MLPModel",
    "ModelConfig",
    "NpzSource",
    "ObjectiveConfig",
    "OptimizerConfig",
    "Outputs",
    "PosInt",
    "RNNModel",
    "RegressionSource",
    "RuntimeConfig",
    "ScheduleConfig",
    "Seed",
    "SequencesSource",
    "ShapesSource",
    "SimpleANNModel",
    "SourceConfig",
    "SplitConfig",
    "Strict",
    "TFRecordFeature",
    "TFRecordSource",
    "TableSource",
    "TabularBinarySource",
    "TfdsSource",
    "TrainConfig",
    "TuneConfig",
    "TwoInputModel",
    "TwoInputSource",
    "apply_overrides",
    "augment_p_error",
    "check_loop_options",
    "check_number_kinds",
    "check_power_of_two",
    "combination_problems",
    "diff_keys",
    "dump_yaml",
    "format_validation_error",
    "gan_default",
    "load_config",
    "name_problems",
    "number_problems",
    "parse_augpipe",
    "read_config_text",
    "read_yaml",
    "save_config",
    "to_dict",
    "validate",
]
