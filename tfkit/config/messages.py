"""Error messages a user can act on: a pydantic error as the file, the dotted key the
user wrote, what is expected and what was received; booleans given for numbers; names
the training code would refuse; settings that cannot work together, or an option the
chosen training path would ignore."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from tfkit.config.base import check_number_kinds, field_names, item_annotation
from tfkit.config.class_path import ClassPathConfig
from tfkit.config.experiment import ExperimentConfig
from tfkit.config.train import CUSTOM_LOOP_OPTIONS, CallbackConfig, LossConfig
from tfkit.errors import UserError


def _resolve_loc(loc: tuple) -> tuple[list[str], type[BaseModel] | None]:
    """Turn a pydantic error location into the user's dotted path and the owning model.

    Discriminated unions add the tag to the location (`model.cnn.filters`) while the user
    wrote `model.filters`, so tags are dropped; dict-valued fields (`tune.space`) take any
    key. The owner is the model class that holds the last key (for listing valid keys).
    """
    import typing

    path: list[str] = []
    current: Any = ExperimentConfig
    owner: type[BaseModel] | None = None
    for part in loc:
        if isinstance(part, int):
            path.append(f"[{part}]")
            continue
        members = _union_members(current, typing)
        holder = next((m for m in members if part in field_names(m)), None)
        if holder is not None:
            owner = holder
            path.append(part)
            current = holder.model_fields[field_names(holder)[part]].annotation
            continue
        tagged = next((m for m in members if part in _tags_of(m) or m.__name__ == part), None)
        if tagged is not None:
            current = tagged
            continue
        value_type = _dict_value_type(current, typing)
        if value_type is not None:
            path.append(part)
            current = value_type
            continue
        path.append(part)  # a key no model knows: the leaf of an extra_forbidden error
        owner = members[0] if len(members) == 1 else owner
        current = None
    return path, owner


def _dict_value_type(annotation, typing) -> Any:
    """The value type of a `dict[...]` annotation (inside Optional/Annotated), else None."""
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    for arg in typing.get_args(annotation):
        found = _dict_value_type(arg, typing)
        if found is not None:
            return found
    return None


def _union_members(annotation, typing) -> list[type[BaseModel]]:
    out = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in typing.get_args(annotation):
        out.extend(_union_members(arg, typing))
    return out


def _tags_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The discriminator values (`kind` or `name` literals) a union member accepts."""
    for key in ("kind", "name"):
        field = model.model_fields.get(key)
        if field is not None:
            args = getattr(field.annotation, "__args__", None) or ()
            if args and all(isinstance(a, str) for a in args):
                return tuple(args)
    return ()


def _member_for(annotation: Any, value: dict) -> type[BaseModel] | None:
    """The config model a mapping `value` is validated as (a union member picked by its tag)."""
    import typing

    members = _union_members(annotation, typing)
    if ClassPathConfig in members:  # `{class_path, args}` or the section it stands for
        if "class_path" in value:
            return ClassPathConfig
        members = [m for m in members if m is not ClassPathConfig]
    if len(members) == 1:
        return members[0]
    for member in members:
        for key in ("kind", "name"):
            if key in value and value[key] in _tags_of(member):
                return member
    return None


def number_problems(raw: Any, model: type[BaseModel], where: str, prefix: str = "") -> list[str]:
    """Booleans given for numbers and integers beyond 64 bits anywhere in a raw YAML tree.

    pydantic takes `true` for 1; YAML writes `epochs: true` for a mistake. One message per
    problem, naming the dotted key.
    """
    import typing

    if not isinstance(raw, dict):
        return []
    fields = field_names(model)
    out = []
    for key, value in raw.items():
        if key not in fields:
            continue  # pydantic reports unknown keys
        annotation = model.model_fields[fields[key]].annotation
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            member = _member_for(annotation, value)
            if member is not None:
                out += number_problems(value, member, where, f"{dotted}.")
                continue
            value_type = _dict_value_type(annotation, typing)
            if value_type is not None and _union_members(value_type, typing):
                for k, v in value.items():
                    sub = _member_for(value_type, v) if isinstance(v, dict) else None
                    if sub is not None:
                        out += number_problems(v, sub, where, f"{dotted}.{k}.")
                continue
        if isinstance(value, list):
            item = item_annotation(annotation)
            if item is not None and _union_members(item, typing):
                for i, v in enumerate(value):
                    sub = _member_for(item, v) if isinstance(v, dict) else None
                    if sub is not None:
                        out += number_problems(v, sub, where, f"{dotted}[{i}].")
                continue
        try:
            check_number_kinds(annotation, value)
        except ValueError as err:
            out.append(f"{where}: `{dotted}`: {err}")
    return out


def format_validation_error(err: ValidationError, raw: dict, where: str) -> str:
    """One readable message per problem: file, dotted key, expected and received."""
    lines = []
    for e in err.errors():
        path, owner = _resolve_loc(tuple(e["loc"]))
        key = ".".join(path).replace(".[", "[") or "(top level)"
        received = e.get("input")
        if e["type"] == "extra_forbidden":
            valid = sorted(field_names(owner)) if owner else []
            leaf = path[-1] if path else ""
            hint = ""
            close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.6)
            if close:
                hint = f" Did you mean `{close[0]}`?"
            lines.append(f"{where}: unknown key `{key}`.{hint} Valid keys here: {', '.join(valid)}")
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            tag_key = str(ctx.get("discriminator", "tag")).strip("'")
            lines.append(
                f"{where}: unknown {key}.{tag_key} {ctx.get('tag')!r}. "
                f"Expected one of: {ctx.get('expected_tags')}"
            )
        elif e["type"] == "union_tag_not_found":
            ctx = e.get("ctx", {})
            lines.append(f"{where}: `{key}` needs a {ctx.get('discriminator', 'tag')} key")
        elif e["type"] == "missing":
            lines.append(f"{where}: `{key}` is required but missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            tail = "" if "Received" in msg else f". Received: {received!r}"
            lines.append(f"{where}: `{key}`: {msg}{tail}")
    return "\n".join(lines)


def name_problems(config: ExperimentConfig, where: str) -> list[str]:
    """Names the config gives that `train`/`tune` would refuse, without importing Keras.

    Loss, metric, activation and callback names (and callback arguments) are checked against
    `tfkit.keras_names`, the tables the training code builds from; `monitor` keys against
    the logs the configured metrics produce; a tune section needs a search space.
    """
    from tfkit import keras_names as kn

    out: list[str] = []

    def check(key: str, fn, value) -> None:
        try:
            fn(value)
        except ValueError as err:
            out.append(f"{where}: `{key}`: {err}")

    train = config.train
    if isinstance(train.loss, LossConfig):
        check("train.loss.name", kn.check_loss_name, train.loss.name)
    if isinstance(train.loss, LossConfig) and train.loss.name.lower() in kn.LOSS_NAMES:
        takes = set(kn.loss_arguments(train.loss.name))
        given = sorted(
            k
            for k in train.loss.model_fields_set - {"name", "reduction"}
            if getattr(train.loss, k) != LossConfig.model_fields[k].default and k not in takes
        )
        if given:
            out.append(
                f"{where}: `train.loss`: {train.loss.name} does not take {', '.join(given)}. "
                f"It accepts: {', '.join(['reduction', *sorted(takes)])}"
            )
    metric_names = []
    for i, name in enumerate(train.metrics):
        if isinstance(name, ClassPathConfig):  # logged under its `name` argument, if given
            metric_names.append(name.args.get("name"))
        else:
            check(f"train.metrics[{i}]", kn.check_metric_name, name)
            metric_names.append(name)
    shown = [m.class_path if isinstance(m, ClassPathConfig) else m for m in train.metrics]
    # a class_path metric without a `name` argument logs under a name only its class knows
    logs_known = all(isinstance(n, str) for n in metric_names)
    logs = kn.log_keys([n for n in metric_names if isinstance(n, str)])
    monitors = [("train.monitor", train.monitor)]
    for i, cb in enumerate(train.callbacks):
        if isinstance(cb, CallbackConfig):
            out += [
                f"{where}: `train.callbacks[{i}]`: {p}"
                for p in kn.callback_problems(cb.name, cb.args)
            ]
        if isinstance(cb.args.get("monitor"), str):
            monitors.append((f"train.callbacks[{i}].args.monitor", cb.args["monitor"]))
    for key, monitor in monitors:
        if logs_known and monitor not in logs:
            out.append(
                f"{where}: `{key}`: no metric `{monitor}` is logged by this config "
                f"(train.metrics: {shown}). Logged: {', '.join(logs)}"
            )
    for field_name in type(config.model).model_fields:
        if field_name.endswith("activation"):
            value = getattr(config.model, field_name)
            if isinstance(value, str):
                check(f"model.{field_name}", kn.check_activation_name, value)
    out += [f"{where}: {p}" for p in combination_problems(config)]
    if config.tune is not None:
        if not config.tune.space:
            out.append(
                f"{where}: `tune.space` is empty: a search needs at least one key, e.g. "
                "`model.dropout: {float: [0.0, 0.5]}`"
            )
        objective = config.tune.objective.name
        if logs_known and objective not in logs and "train.metrics" not in config.tune.space:
            out.append(
                f"{where}: `tune.objective.name`: no metric `{objective}` is logged by this "
                f"config (train.metrics: {shown}). Logged: {', '.join(logs)}"
            )
    return out


def combination_problems(config: ExperimentConfig) -> list[str]:
    """Settings that are each valid but cannot work together."""
    out = []
    data, train = config.data, config.train
    if data.repeat and train.steps_per_epoch is None and config.gan is None:
        out.append(
            "`data.repeat: true` makes the train split endless, so an epoch never ends; set "
            "`train.steps_per_epoch` too (or repeat: false)"
        )
    weighted = [
        f"data.{key}.sample_weight"
        for key in ("source", "val_source", "test_source")
        if getattr(getattr(data, key), "sample_weight", None)
    ]
    if train.class_weight is not None and weighted:
        out.append(
            f"`train.class_weight` and `{weighted[0]}` cannot be combined (Keras refuses "
            "both at once); fold the class weights into the sample weights"
        )
    return out


def check_loop_options(
    config: ExperimentConfig, where: str, multi_worker: Callable[[], bool]
) -> None:
    """Refuse a custom-loop option that `train.loop: fit` would ignore, naming the key.

    A multi-worker run trains with the custom loop whatever `train.loop` says, so
    `multi_worker()` (asked only when an option is set) lets such a run keep them. `tfkit
    train` and `tfkit config validate` both call this: validate accepts what train does.

    Raises:
        UserError: `where`: `train.<option>` is set while the fit path would run.
    """
    if config.gan is not None or config.train.loop != "fit":
        return
    for option, default in CUSTOM_LOOP_OPTIONS.items():
        value = getattr(config.train, option)
        if value != default and not multi_worker():
            raise UserError(
                f"{where}: `train.{option}: {value}` is read by the custom loop only; set "
                f"`train.loop: custom` to use it, or remove it (`train.loop: fit` ignores it)"
            )
