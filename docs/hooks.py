"""MkDocs hook: the configuration and CLI references, generated from the code at build time.

`reference/config.md` comes from the pydantic schema in `tfkit.config` (every key, its type,
default, allowed values and the comment or docstring that explains it); `reference/cli.md`
from `tfkit.cli.build_parser()` (every command's `--help`); `benchmarks.md` includes
`benchmarks/RESULTS.md` (written by `make bench`) or says how to produce it. None of these
pages is stored in docs/, so none can drift from the code.

The generators import no MkDocs and no TensorFlow, so the tests call them directly.
"""

from __future__ import annotations

import argparse
import inspect
import io
import os
import re
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

try:
    from mkdocs.plugins import event_priority
except ImportError:  # the tests call the generators without MkDocs installed

    def event_priority(priority):  # noqa: D103 - stands in for MkDocs' decorator
        return lambda function: function


ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
NOTEBOOKS = ROOT / "notebooks"

# --------------------------------------------------------------------------------------
# configuration reference
# --------------------------------------------------------------------------------------


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (Union, types.UnionType)


def _models_in(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The config models reachable from a field's annotation, each with the path suffix
    that reaches it: "" (the field itself), "[]" (an item of a list) or ".<key>" (a value of
    a map)."""
    annotation = _strip_annotated(annotation)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if _is_union(annotation):
        return [found for arg in args for found in _models_in(arg)]
    if origin in (list, tuple, set):
        return [("[]" + s, m) for arg in args for s, m in _models_in(arg)]
    if origin is dict:
        return [(".<key>" + s, m) for s, m in _models_in(args[1])]
    return []


def _literals(annotation: Any) -> list[Any]:
    """Every literal value a field accepts (empty when it accepts other values too)."""
    annotation = _strip_annotated(annotation)
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if _is_union(annotation):
        out = []
        for arg in typing.get_args(annotation):
            arg = _strip_annotated(arg)
            if arg is type(None):
                out.append(None)
            elif typing.get_origin(arg) is Literal:
                out.extend(typing.get_args(arg))
            else:
                return []
        return out
    return []


def _type_name(annotation: Any) -> str:
    """A short, readable name of a field's type (`int`, `list[int]`, `str | null`)."""
    annotation = _strip_annotated(annotation)
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return "section"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        kinds = sorted({type(a).__name__ for a in args})
        return " | ".join("str" if k == "str" else k for k in kinds)
    if _is_union(annotation):
        names = []
        for arg in args:
            name = _type_name(arg)
            if name not in names:
                names.append(name)
        return " | ".join(names)
    if origin in (list, set):
        return f"list[{_type_name(args[0])}]"
    if origin is tuple:
        return f"[{', '.join(_type_name(a) for a in args)}]"
    if origin is dict:
        return f"map[{_type_name(args[0])}, {_type_name(args[1])}]"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field) -> str:
    """The numeric bounds of a field (`>= 1`, `> 0, < 1`), from its pydantic metadata."""
    out = []
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "length >="}
    for meta in field.metadata:
        for attr, symbol in symbols.items():
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{symbol} {value}")
    return ", ".join(out)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, tuple):
        value = list(value)
    return repr(value).replace("'", "") if isinstance(value, (list, dict)) else str(value)


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return _show(field.default_factory())
    if field.default is PydanticUndefined:
        return "required"
    return _show(field.default)


def field_comments(model: type[BaseModel]) -> dict[str, str]:
    """Each field's explanation from the class source: the comment lines just above it and
    the comment at the end of its line."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    out: dict[str, str] = {}
    pending: list[str] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(comments.get(number, ""))
            continue
        match = re.match(r"^    (\w+)\s*:", line)
        if match and not stripped.startswith(("def ", "class ", "@")):
            text = [*pending]
            if number in comments:
                text.append(comments[number])
            text = [t for t in text if t and not t.startswith("noqa")]
            if text:
                out[match.group(1)] = " ".join(text)
        pending = []
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _doc(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    return "" if doc.startswith(("Usage docs:", "!!! abstract")) else doc


def _sections(
    model: type[BaseModel], path: str, title: str, out: list[tuple[str, str, type[BaseModel]]]
) -> None:
    """Collect (path, heading, model) for `model` at `path` and every section below it."""
    out.append((path, title, model))
    for name, field in model.model_fields.items():
        key = field.alias or name
        found = _models_in(field.annotation)
        for suffix, sub in found:
            sub_path = f"{path}.{key}{suffix}" if path else f"{key}{suffix}"
            tag = _variant_tag(sub) if len(found) > 1 else ""
            _sections(sub, sub_path, f"`{sub_path}`{tag}", out)


def _variant_tag(model: type[BaseModel]) -> str:
    """` (kind: npz)` for a member of a tagged union, ` (ClassPathConfig)` otherwise."""
    for tag in ("kind", "name"):
        field = model.model_fields.get(tag)
        if field is not None and typing.get_origin(field.annotation) is Literal:
            values = ", ".join(f"`{v}`" for v in typing.get_args(field.annotation))
            return f" ({tag}: {values})"
    return f" ({model.__name__})"


def _anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")


def config_reference() -> str:
    """The configuration reference page: one table per config section, every key."""
    from tfkit.config import ExperimentConfig

    sections: list[tuple[str, str, type[BaseModel]]] = []
    _sections(ExperimentConfig, "", "Top level", sections)
    parts = [
        "# Configuration reference\n",
        "Generated from the config schema (the `tfkit/config/` package) when the site is built: every "
        "key `tfkit config validate` accepts, with its type, default, allowed values and the "
        "explanation in the code. A key written `a.b[]` is an item of a list, `a.<key>` a value "
        "of a map (e.g. `tune.space.<key>`, where `<key>` is a dotted config key). A section "
        "with several forms (a `data.source` kind, a `model` name) lists each form apart.\n",
        "Every key can be set in the YAML file or on the command line with "
        "`--set key=value` (the value is parsed as YAML and checked like the file).\n",
    ]
    for path, title, model in sections:
        parts.append(f"## {title} {{ #{_anchor(title)} }}\n")
        doc = _doc(model)
        if doc:
            parts.append(doc + "\n")
        comments = field_comments(model)
        parts.append("| key | type | default | allowed values | description |")
        parts.append("|---|---|---|---|---|")
        for name, field in model.model_fields.items():
            key = field.alias or name
            full = f"{path}.{key}" if path else key
            literals = _literals(field.annotation)
            allowed = ", ".join(f"`{_show(v)}`" for v in literals) if literals else _bounds(field)
            subs = _models_in(field.annotation)
            described = comments.get(name, "")
            if subs:
                links = []
                for suffix, sub in subs:
                    tag = _variant_tag(sub) if len(subs) > 1 else ""
                    heading = f"`{full}{suffix}`{tag}"
                    links.append(
                        f"[{tag.strip(' ()') or f'`{full}{suffix}`'}](#{_anchor(heading)})"
                    )
                described = (described + " " if described else "") + "See " + ", ".join(links)
            parts.append(
                f"| `{full}` | {_cell(_type_name(field.annotation))} | "
                f"`{_cell(_default(field))}` | {_cell(allowed)} | {_cell(described)} |"
            )
        parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------
# CLI reference
# --------------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, words: list[str], out: list) -> None:
    out.append((words, parser))
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                _commands(sub, [*words, name], out)


def cli_reference() -> str:
    """The CLI reference page: every command's `--help`, from `tfkit.cli.build_parser()`."""
    from tfkit.cli import build_parser

    commands: list[tuple[list[str], argparse.ArgumentParser]] = []
    _commands(build_parser(), ["tfkit"], commands)
    parts = [
        "# CLI reference\n",
        "Generated from `tfkit.cli.build_parser()` when the site is built: the `--help` of "
        "every command. A user error (a bad argument, config, file or run directory) prints "
        "one line naming it and exits with status 2; `--verbose` shows TensorFlow's own "
        "start-up log.\n",
    ]
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal: the same page everywhere
    try:
        for words, parser in commands:
            parser.prog = " ".join(words)
            parts.append(f"## `{' '.join(words)}`\n")
            parts.append("```text\n" + parser.format_help().rstrip() + "\n```\n")
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(parts)


# --------------------------------------------------------------------------------------
# benchmarks page
# --------------------------------------------------------------------------------------


def benchmarks_page(template: str) -> str:
    """docs/benchmarks.md with `{{ results }}` replaced by benchmarks/RESULTS.md (without
    its title, its headings one level down), or by how to produce it when it does not exist."""
    if RESULTS.exists():
        text = RESULTS.read_text(encoding="utf-8")
        text = re.sub(r"\A# [^\n]*\n", "", text)  # the page's own title: under "Latest results"
        text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M)
    else:
        text = (
            '!!! note "No results yet"\n'
            "    `benchmarks/RESULTS.md` does not exist in this checkout: run `make bench` "
            "on a quiet machine to measure and write it, then build the docs again.\n"
        )
    return template.replace("{{ results }}", text)


# --------------------------------------------------------------------------------------
# MkDocs events
# --------------------------------------------------------------------------------------


@event_priority(100)  # before mkdocs-jupyter, which turns the notebooks into pages
def on_files(files, config):  # noqa: D103 - MkDocs' hook
    from mkdocs.structure.files import File

    # the notebooks stay in notebooks/ (the tests execute them there); the site reads them
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    for uri, content in (
        ("reference/config.md", config_reference()),
        ("reference/cli.md", cli_reference()),
    ):
        old = files.get_file_from_path(uri)
        if old is not None:
            files.remove(old)
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown, page, config, files):  # noqa: D103 - MkDocs' hook
    if page.file.src_uri == "benchmarks.md":
        return benchmarks_page(markdown)
    return markdown
