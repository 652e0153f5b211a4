"""`--set a.b=v` overrides: applied to the raw YAML tree before validation, so they are
type-checked like the file."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tfkit.config.base import field_names
from tfkit.config.tune import HyperParameterConfig
from tfkit.errors import UserError


def _parse_value(text: str) -> Any:
    """Parse an override value as YAML (`3`, `1e-3`, `true`, `[1, 2]`, `{a: 1}`, `adam`)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(tree: dict, overrides: list[str] | None, source: str = "--set") -> dict:
    """Return a copy of `tree` with `a.b.c=value` overrides applied (values parsed as YAML).

    Raises:
        UserError: an override without `=` or that walks through a non-mapping.
    """
    tree = copy.deepcopy(tree)
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"{source} expects KEY=VALUE (e.g. train.epochs=3). Received: {item!r}")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if not any(parts):
            raise UserError(
                f"{source} has an empty key; write KEY=VALUE (e.g. train.epochs=3). Received: {item!r}"
            )
        if not all(parts):
            fixed = ".".join(p for p in parts if p)
            raise UserError(
                f"{source} {key.strip()}: the dotted key has an empty part (a leading, trailing "
                f"or doubled dot); write {fixed}={text}. Received: {item!r}"
            )
        parts = _space_entry_path(parts, tree, text, f"{source} {key.strip()}")
        node = tree
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise UserError(
                    f"{source} {key}: `{where}` is {child!r}, not a section, so it has no `{parts[i + 1]}`"
                )
            node = child
        node[parts[-1]] = _parse_value(text)
    return tree


def _space_entry_path(parts: list[str], tree: dict, text: str, named: str) -> list[str]:
    """The path an override walks. A `tune.space` entry is named by a dotted config key, so
    `tune.space.model.units.choice` means the field `choice` of the entry `model.units`, and
    `tune.space.model.units` the whole entry (a mapping such as `{choice: [[8], [16]]}`).

    Raises:
        UserError: an override below an entry that names no field of it, or a whole entry
            that is not a mapping; naming the key and the accepted forms.
    """
    if parts[:2] != ["tune", "space"] or len(parts) < 3:
        return parts
    rest = parts[2:]
    fields = list(field_names(HyperParameterConfig))
    forms = (
        f"tune.space.KEY.FIELD=VALUE (FIELD: {', '.join(fields)}) or "
        "'tune.space.KEY={choice: [...]}', KEY a dotted config key such as model.units"
    )
    if len(rest) >= 2 and rest[-1] in fields:
        return ["tune", "space", ".".join(rest[:-1]), rest[-1]]
    entry = ".".join(rest)
    space = tree.get("tune", {}).get("space") if isinstance(tree.get("tune"), dict) else None
    for existing in space if isinstance(space, dict) else ():
        if entry.startswith(f"{existing}."):
            raise UserError(
                f"{named}: `{entry[len(existing) + 1 :]}` is not a field of the search-space "
                f"entry `{existing}`; expected {forms}"
            )
    if not isinstance(_parse_value(text), dict):
        raise UserError(f"{named}: a search-space entry is a mapping; expected {forms}")
    return ["tune", "space", entry]
