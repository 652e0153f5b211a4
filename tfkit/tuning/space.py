"""The search space of `tune.space`: checking its keys, declaring it, applying sampled values.

A space maps dotted config keys to hyperparameters. Everything here is pure Python (no
TensorFlow, no Keras Tuner import): `declare` takes any object with Keras Tuner's
`HyperParameters` methods.

Keras Tuner's `Choice` holds only int, float, str and bool values of one type; a choice among
lists (`model.filters: {choice: [[16, 32], [32, 64]]}`) is declared over their JSON texts and
decoded by `values_from_hp`.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tfkit.config import (
    ExperimentConfig,
    HyperParameterConfig,
    TuneConfig,
    to_dict,
    validate,
)
from tfkit.errors import UserError
from tfkit.runs import TUNE_DIR, TUNE_SEARCH_DIR, Run, resume_changes
from tfkit.runs import TUNE_FINGERPRINT_FILE as FINGERPRINT_FILE
from tfkit.runs import TUNE_PROJECT_DIR as PROJECT  # Keras Tuner's project folder

# --------------------------------------------------------------------------------------
# keys
# --------------------------------------------------------------------------------------


def _members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (unwrapping Optional/Union/Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        out.extend(_members(arg))
    return out


def _pick_member(members: list[type[BaseModel]], node: Any) -> list[type[BaseModel]]:
    """The union member a raw mapping selects by its `kind`/`name` tag (all when unknown)."""
    if len(members) <= 1 or not isinstance(node, dict):
        return members
    for tag in ("kind", "name"):
        if tag in node:
            chosen = [
                m
                for m in members
                if tag in m.model_fields
                and node[tag] in typing.get_args(m.model_fields[tag].annotation)
            ]
            if chosen:
                return chosen
    return members


def config_keys(raw: dict) -> list[str]:
    """Every dotted leaf key a config could set, given the union members `raw` selects."""
    out: list[str] = []

    def walk(models: list[type[BaseModel]], node: Any, prefix: str) -> None:
        for model in models:
            for name, field in model.model_fields.items():
                key = f"{prefix}{name}"
                if key not in out:
                    out.append(key)
                sub = _members(field.annotation)
                if sub:
                    child = node.get(name) if isinstance(node, dict) else None
                    walk(_pick_member(sub, child), child, key + ".")

    walk([ExperimentConfig], raw, "")
    return [k for k in out if not k.startswith("tune")]


def check_keys(
    raw: dict, space: dict[str, HyperParameterConfig], where: str = "tune.space"
) -> None:
    """Refuse space keys that are not config keys, naming them and listing close matches.

    Raises:
        UserError: a key names no config field of this experiment (its model and data kinds).
    """
    valid = config_keys(raw)
    for key in space:
        if key.startswith("tune.") or key in ("tune", "name"):
            raise UserError(f"{where}: `{key}` cannot be tuned (it configures the search itself)")
        if key in valid:
            continue
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        prefix = key.rpartition(".")[0]
        siblings = [k.rpartition(".")[2] for k in valid if k.rpartition(".")[0] == prefix]
        hint = f" Close matches: {', '.join(close)}." if close else ""
        here = f" Valid keys under `{prefix}`: {', '.join(siblings)}." if siblings else ""
        raise UserError(f"{where}: unknown config key `{key}`.{hint}{here}")


# --------------------------------------------------------------------------------------
# declaring and reading hyperparameters
# --------------------------------------------------------------------------------------


def _plain(param: HyperParameterConfig) -> bool:
    """Whether a choice's values can be held by Keras Tuner as they are (scalars, one type)."""
    values = param.choice or []
    kinds = {type(v) for v in values}
    return len(kinds) == 1 and kinds <= {bool, int, float, str}


def encode_choice(param: HyperParameterConfig, value: Any) -> Any:
    """A choice value as Keras Tuner holds it (JSON text unless all values are plain scalars)."""
    return value if _plain(param) else json.dumps(value)


def _choice_values(param: HyperParameterConfig) -> list[Any]:
    return [encode_choice(param, v) for v in param.choice or []]


def _ordered(space: dict[str, HyperParameterConfig]) -> list[str]:
    """Space keys with every `when` parent before its children (declaration order)."""
    done: list[str] = []

    def visit(key: str, stack: tuple[str, ...]) -> None:
        if key in done:
            return
        if key in stack:
            raise UserError(f"tune.space: conditions form a cycle: {' -> '.join([*stack, key])}")
        for parent in (space[key].when or {}).keys():
            visit(parent, (*stack, key))
        done.append(key)

    for key in space:
        visit(key, ())
    return done


def declare(hp: Any, space: dict[str, HyperParameterConfig]) -> None:
    """Declare every hyperparameter of `space` on a Keras Tuner `HyperParameters` object.

    A `when` condition declares the hyperparameter inside `hp.conditional_scope`, so it is
    active (sampled, and applied) only when the parent takes one of the given values.
    """
    for key in _ordered(space):
        param = space[key]
        conditions = list((param.when or {}).items())
        scopes = []
        for parent, values in conditions:
            values = values if isinstance(values, list) else [values]
            parent_param = space[parent]
            if parent_param.kind == "choice":
                values = [encode_choice(parent_param, v) for v in values]
            scopes.append(hp.conditional_scope(parent, values))
        for scope in scopes:
            scope.__enter__()
        try:
            _declare_one(hp, key, param)
        finally:
            for scope in reversed(scopes):
                scope.__exit__(None, None, None)


def _declare_one(hp: Any, key: str, param: HyperParameterConfig) -> None:
    kind = param.kind
    if kind == "choice":
        values = _choice_values(param)
        default = encode_choice(param, param.default) if param.default is not None else None
        if default is not None and default not in values:
            raise UserError(
                f"tune.space.{key}.default must be one of the choices {param.choice}. "
                f"Received: default={param.default!r}"
            )
        hp.Choice(key, values, default=default)
    elif kind == "float":
        low, high = param.float_range
        hp.Float(key, low, high, step=param.step, sampling=param.sampling, default=param.default)
    elif kind == "int":
        low, high = param.int_range
        step = int(param.step) if param.step is not None else None
        hp.Int(key, low, high, step=step, sampling=param.sampling, default=param.default)
    else:
        hp.Boolean(key, default=bool(param.default) if param.default is not None else False)


def decode(param: HyperParameterConfig, value: Any) -> Any:
    """The config value of a sampled hyperparameter (undoing `encode_choice`)."""
    if param.kind != "choice":
        return value
    values = _choice_values(param)
    if value in values:
        return copy.deepcopy(param.choice[values.index(value)])
    return value


def values_from_hp(hp: Any, space: dict[str, HyperParameterConfig]) -> dict[str, Any]:
    """The active sampled values of `hp` as `{dotted key: config value}`."""
    out = {}
    for key in _ordered(space):
        if key in hp.values and hp.is_active(key):
            out[key] = decode(space[key], hp.values[key])
    return out


# --------------------------------------------------------------------------------------
# trials as configs
# --------------------------------------------------------------------------------------


def apply_values(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of the raw config tree with each dotted key set to its value."""
    tree = copy.deepcopy(raw)
    for key, value in values.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return tree


def trial_config(raw: dict, values: dict[str, Any], where: str = "trial") -> ExperimentConfig:
    """The validated experiment of one trial: `raw` with `values` applied and `tune` removed.

    Raises:
        UserError: the values make an invalid config (naming the key and value).
    """
    tree = apply_values(raw, values)
    tree.pop("tune", None)
    shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
    return validate(tree, f"{where} ({shown})" if shown else where)


def default_values(space: dict[str, HyperParameterConfig]) -> dict[str, Any]:
    """The value each hyperparameter takes first (its default or low end / first choice)."""
    out = {}
    for key, param in space.items():
        if param.default is not None:
            out[key] = param.default
        elif param.kind == "choice":
            out[key] = param.choice[0]
        elif param.kind == "float":
            out[key] = param.float_range[0]
        elif param.kind == "int":
            out[key] = param.int_range[0]
        else:
            out[key] = False
    return out


def check_space(raw: dict, tune: TuneConfig, where: str = "tune.space") -> None:
    """Check the space against the config: its keys exist and every choice makes a valid config.

    Each choice value (and each range end) is applied alone to the config and validated,
    so a bad value is reported before the search starts rather than as a failed trial.
    """
    check_keys(raw, tune.space, where)
    for key, param in tune.space.items():
        if param.kind == "choice":
            candidates = list(param.choice)
        elif param.kind == "float":
            candidates = list(param.float_range)
        elif param.kind == "int":
            candidates = list(param.int_range)
        else:
            candidates = [True, False]
        for value in candidates:
            trial_config(raw, {key: value}, where=f"{where}.{key}")


# --------------------------------------------------------------------------------------
# fingerprint: what a search directory was made for
# --------------------------------------------------------------------------------------


def fingerprint(config: ExperimentConfig) -> dict[str, Any]:
    """What a search directory depends on: the space, the objective, the tuner settings (but
    `max_trials`: raising it continues a search) and the rest of the experiment."""
    tune = to_dict(config.tune) if config.tune is not None else {}
    rest = to_dict(config)
    rest.pop("tune", None)
    rest.pop("name", None)
    # more trials continue a search; where it lives and whether the model is saved do not
    # change what its trials mean
    settings = {
        k: v
        for k, v in tune.items()
        if k not in ("space", "objective", "directory", "max_trials", "save_best_model")
    }
    out = {
        "space": tune.get("space", {}),
        "objective": tune.get("objective", {}),
        "tuner": settings,
        "experiment": rest,
    }
    out["hash"] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    return out


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable names of what differs between two fingerprints."""
    from tfkit.config import diff_keys

    changes = []
    for section, label in (
        ("space", "tune.space"),
        ("objective", "tune.objective"),
        ("tuner", "tune"),
        ("experiment", ""),
    ):
        a, b = old.get(section, {}), new.get(section, {})
        if section == "space":
            for key in sorted(set(a) | set(b)):
                if key not in a:
                    changes.append(f"tune.space.{key} (added)")
                elif key not in b:
                    changes.append(f"tune.space.{key} (removed)")
                elif a[key] != b[key]:
                    fields = diff_keys(a[key], b[key])
                    detail = ", ".join(
                        f"{f}: {a[key].get(f)!r} -> {b[key].get(f)!r}" for f in fields
                    )
                    changes.append(f"tune.space.{key} ({detail})")
            continue
        for key in diff_keys(a, b):
            full = f"{label}.{key}" if label else key
            va, vb = _get(a, key), _get(b, key)
            changes.append(f"{full} ({va!r} -> {vb!r})")
    return changes


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


# --------------------------------------------------------------------------------------
# continuing a search: checked before TensorFlow loads, nothing written
# --------------------------------------------------------------------------------------


def tune_run_dir(config: ExperimentConfig, run_dir: str | None, runs_root: str = "runs") -> Path:
    """The tune run directory: `--run-dir`, else `<runs_root>/<name>/tune` (stable across re-runs)."""
    return Path(run_dir) if run_dir else Path(runs_root) / config.name / TUNE_DIR


def search_dir(config: ExperimentConfig, run_dir: str | Path) -> Path:
    """Where Keras Tuner's project of the search lives: `tune.directory`, else
    `RUN_DIR/search`."""
    tune = config.tune
    return (
        Path(tune.directory)
        if tune is not None and tune.directory
        else Path(run_dir) / TUNE_SEARCH_DIR
    )


def check_continuation(
    config: ExperimentConfig, run_dir: str | Path, overwrite: bool = False
) -> list[dict[str, Any]] | None:
    """Whether running `config` in `run_dir` continues the search there, and under which
    config changes; reads only (no TensorFlow, nothing written).

    Returns:
        None for a new search (none there, or `overwrite`); else the changes from the
        run's saved config, each `{"key", "old", "new"}`, all allowed by the resume policy.

    Raises:
        UserError: a search made for another space, objective or experiment, a Keras Tuner
            project tfkit did not make, or a change the resume policy refuses; each names
            what changed and that `--overwrite` starts over.
    """
    folder = search_dir(config, run_dir)
    if overwrite or not (folder / PROJECT).exists():
        return None
    path = folder / FINGERPRINT_FILE
    if not path.exists():
        raise UserError(
            f"{folder} holds a Keras Tuner project that tfkit did not make (no "
            f"{FINGERPRINT_FILE}); pass --overwrite to start over or choose another --run-dir"
        )
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(
            f"{path} is not valid JSON ({err}); pass --overwrite to start over"
        ) from None
    changes = fingerprint_changes(old, fingerprint(config))
    if changes:
        raise UserError(
            f"The search in {folder} was made for another config; changed: "
            f"{'; '.join(changes)}. Keras Tuner would silently reuse the old trials. Pass "
            "--overwrite to start a new search there, or use another --run-dir"
        )
    run = Run(run_dir)
    if not run.config_file.is_file():
        return []
    try:
        return resume_changes(run.load_config(), config)
    except UserError as err:
        raise UserError(
            f"{run.path}: {err} (or pass --overwrite to start the search over)"
        ) from None
