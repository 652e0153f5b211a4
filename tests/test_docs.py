"""The documentation: the generated references cover the code, and the pages a user reads
carry no lab notebook (clock times, issue numbers, load averages)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tfkit.config import ExperimentConfig

ROOT = Path(__file__).resolve().parent.parent


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def schema_keys(schema: dict) -> dict[str, set[str]]:
    """Every dotted key the JSON schema of the config accepts (`a.b`, `a.b[].c` for list
    items, `a.<key>.c` for map values), with the discriminator values ("kind: npz") of the
    union members that accept it. Walks pydantic's JSON schema, not the generator's code."""
    defs = schema.get("$defs", {})
    keys: dict[str, set[str]] = {}

    def tag_of(node: dict) -> str:
        for tag in ("kind", "name"):
            prop = node.get("properties", {}).get(tag, {})
            if "const" in prop:
                return f"{tag}: {prop['const']}"
            if "enum" in prop and tag == "kind":
                return f"{tag}: {prop['enum'][0]}"
        return ""

    def walk(node: dict, path: str, variant: str, seen: frozenset) -> None:
        if "$ref" in node:
            name = node["$ref"].split("/")[-1]
            if name in seen:
                return
            target = defs[name]
            # a section's keys belong to its own variant; a nested section has none
            inner = tag_of(target) if "properties" in target else variant
            walk(target, path, inner, seen | {name})
            return
        for union in ("anyOf", "oneOf", "allOf"):
            for member in node.get(union, []):
                walk(member, path, variant, seen)
        if node.get("type") == "array" or "items" in node or "prefixItems" in node:
            for item in [node.get("items", {}), *node.get("prefixItems", [])]:
                if isinstance(item, dict):
                    walk(item, f"{path}[]", variant, seen)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.<key>", variant, seen)
        for name, sub in node.get("properties", {}).items():
            key = f"{path}.{name}" if path else name
            keys.setdefault(key, set()).add(variant)
            walk(sub, key, variant, seen)

    walk(schema, "", "", frozenset())
    return keys


def _sections(markdown: str) -> dict[str, str]:
    """The reference's `##` sections by heading."""
    parts = re.split(r"^## ", markdown, flags=re.M)
    return {p.splitlines()[0]: p for p in parts[1:]}


def test_config_reference_lists_every_key_the_schema_accepts():
    reference = _hooks().config_reference()
    keys = schema_keys(ExperimentConfig.model_json_schema())
    # the walk found the deep ones: a union member's, a list item's, a map value's, an alias
    for key in ("data.source.outlier_fraction", "data.source.features[].encoded",
                "train.callbacks[].class_path", "tune.space.<key>.float", "gan.ada_kimg",
                "model.cell.class_path", "data.test_source.layout"):  # fmt: skip
        assert key in keys, key
    missing = [key for key in keys if f"| `{key}` |" not in reference]
    assert not missing, f"keys not in the configuration reference: {missing}"
    # a key of one union member is listed in that member's section
    sections = _sections(reference)
    for key, variants in keys.items():
        for variant in variants - {""}:
            tag, value = variant.split(": ")
            if key.count(".") == 0:
                continue
            owners = [
                body
                for heading, body in sections.items()
                if f"{tag}: `{value}`" in heading and f"| `{key}` |" in body
            ]
            if key.split(".")[0] in ("model", "data"):
                assert owners, f"{key} is not in the section of {variant}"


def test_config_reference_gives_type_default_allowed_values_and_the_codes_comment():
    reference = _hooks().config_reference()
    rows = {
        line.split("|")[1].strip(" `"): [c.strip() for c in line.split("|")[1:-1]]
        for line in reference.splitlines()
        if line.startswith("| `")
    }
    key, kind, default, allowed, text = rows["runtime.strategy"]
    assert kind == "str" and default == "`auto`"
    assert allowed == "`auto`, `default`, `one_device`, `mirrored`, `multi_worker`"
    key, kind, default, allowed, text = rows["train.checkpoint_every"]
    assert kind == "int" and default == "`0`" and allowed == ">= 0"
    assert text == "steps; 0 = at each epoch end"  # the field's comment in tfkit/config/train.py
    # a comment block above the field, joined
    assert rows["model.batch_norm_momentum"][4].startswith("0.9 (PyTorch's 0.1)")
    assert rows["data.source.count"][2] in ("`2000`", "`4000`")
    assert rows["gan.grid"][2] == "`[8, 4]`"


def test_cli_reference_has_every_command_and_flag():
    from tfkit.cli import build_parser

    reference = _hooks().cli_reference()
    for heading in ("tfkit", "tfkit train", "tfkit gan generate", "tfkit data convert",
                    "tfkit config validate", "tfkit launch", "tfkit export", "tfkit tune"):  # fmt: skip
        assert f"## `{heading}`\n" in reference, heading
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    flags = {o for a in sub.choices["train"]._actions for o in a.option_strings}
    assert {"--resume", "--set", "--dry-run"} <= flags
    train = reference.split("## `tfkit train`")[1].split("## ")[0]
    for flag in flags:
        assert flag in train, flag


def test_benchmarks_page_includes_results_or_says_how_to_make_them(tmp_path, monkeypatch):
    hooks = _hooks()
    template = "# Benchmarks\n\n## Latest results\n\n{{ results }}\n"
    monkeypatch.setattr(hooks, "RESULTS", tmp_path / "RESULTS.md")
    page = hooks.benchmarks_page(template)
    assert "make bench" in page and "{{ results }}" not in page
    (tmp_path / "RESULTS.md").write_text("# Benchmark results\n\n- commit: `abc`\n\n## Fit\n")
    page = hooks.benchmarks_page(template)
    assert "- commit: `abc`" in page and "make bench" not in page
    assert "Benchmark results" not in page and "\n### Fit\n" in page  # one level down


CLOCK = re.compile(r"\b[0-2]\d:[0-5]\d\b")
LAB = re.compile(r"\bissue \d+|load average|machine restart|helpers/quiet|quiet\.sh", re.I)


def _user_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_introduces_in_at_most_300_lines():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    for command in ("make demo", "make test", "make test-properties", "model.fit"):
        assert command in text, command


@pytest.mark.parametrize("page", _user_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_user_pages_carry_no_clock_times_or_lab_notes(page):
    text = page.read_text()
    assert not CLOCK.findall(text), CLOCK.findall(text)
    assert not LAB.findall(text), LAB.findall(text)


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target
