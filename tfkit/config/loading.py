"""Reading an experiment: YAML files (one-line errors naming file and line), `--set`
overrides, validation; writing the resolved config back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from tfkit.config.experiment import ExperimentConfig
from tfkit.config.messages import format_validation_error, name_problems, number_problems
from tfkit.config.overrides import apply_overrides
from tfkit.errors import UserError


def validate(raw: Any, where: str = "config") -> ExperimentConfig:
    """Validate a raw YAML tree into an `ExperimentConfig`, or raise a `UserError`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(
            f"{where}: the top level must be a mapping of sections. Received: {type(raw).__name__}"
        )
    problems = number_problems(raw, ExperimentConfig, where)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        problems.append(format_validation_error(err, raw, where))
    else:
        problems += name_problems(config, where)
    if problems:
        raise UserError("\n".join(problems))
    return config


_MAX_CONFIG_BYTES = 10 * 2**20


class _DuplicateKey(yaml.YAMLError):
    """A mapping of a YAML file names one key twice."""

    def __init__(self, key: Any, first_line: int, second_line: int):
        super().__init__(key, first_line, second_line)
        self.key, self.first_line, self.second_line = key, first_line, second_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML silently keeps
    the last one: `name: x` then `name: y`, or two `train:` blocks). Keys brought in by a
    `<<:` merge may still be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise _DuplicateKey(key, seen[key], line)
                    seen[key] = line
                except TypeError:  # an unhashable key: construct_mapping reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    """Read a YAML file into a dict, with one-line errors that name the file and line.

    Raises:
        UserError: invalid YAML, a key given twice in one mapping (naming both lines), or
            an empty file.
    """
    text = read_config_text(path)
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except _DuplicateKey as err:
        raise UserError(
            f"{path}: key `{err.key}` is given twice, at lines {err.first_line} and "
            f"{err.second_line}; keep one (YAML would silently use the last)"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        if isinstance(err, yaml.reader.ReaderError):  # a control character such as NUL
            line = text.count("\n", 0, err.position) + 1
            column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
            at = f" (line {line}, column {column})"
            problem = f"unacceptable character #x{err.character:04x} ({err.reason})"
        else:
            problem = getattr(err, "problem", None) or str(err)
        problem = " ".join(str(problem).split())  # one line
        raise UserError(f"{path}{at}: invalid YAML: {problem}") from None
    if raw is None:
        raise UserError(
            f"{path}: the config file is empty (no sections); write at least `name:` and "
            "`data:`, or copy one of configs/*.yaml"
        )
    return raw


def read_config_text(path: str | Path) -> str:
    """The text of a config file: a regular UTF-8 file, never a FIFO, device or directory.

    Raises:
        UserError: missing, a directory, a special file (reading a FIFO would wait forever),
            unreadable, too large, or not UTF-8 text; naming the path.
    """
    import stat

    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"Config file not found: {path}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read the config file: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"Config path is a directory, expected a YAML file: {path}")
    if not stat.S_ISREG(mode):
        raise UserError(
            f"{path}: not a regular file (a pipe, socket or device); expected a YAML file"
        )
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise UserError(
            f"{path}: {path.stat().st_size} bytes is too large for a config file "
            f"(at most {_MAX_CONFIG_BYTES}); is it a data file?"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read the config file: {err.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save the config as UTF-8"
        ) from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Load an experiment from YAML (or defaults when `path` is None) with `--set` overrides.

    Args:
        path: the YAML file.
        overrides: `a.b.c=value` strings, applied before validation.

    Returns:
        The validated `ExperimentConfig`.

    Raises:
        UserError: the file is missing or invalid, naming the file and dotted key.
    """
    raw = read_yaml(path) if path is not None else {}
    raw = apply_overrides(raw, overrides)
    where = str(path) if path is not None else "config"
    if overrides:
        where += " (with --set overrides)"
    return validate(raw, where)


def to_dict(config: BaseModel) -> dict:
    """The config as plain data, every default filled in (what `config.yaml` holds)."""
    return config.model_dump(mode="json")


def dump_yaml(config: BaseModel) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=None)


def save_config(config: BaseModel, path: str | Path) -> Path:
    """Write the resolved config to `path` atomically (write a temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump_yaml(config))
    tmp.replace(path)
    return path


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
