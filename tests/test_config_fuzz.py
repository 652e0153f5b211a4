"""Fuzzing the shipped configs: whatever a user does to them, `tfkit config validate` and
`tfkit train --dry-run` answer 0 or 2 (one message, no traceback), never 1, and quickly.

Mutations: a key set to a value of another type or out of range (inf, nan, huge, negative,
booleans, nested lists and maps), an unknown key added at any level, a key removed, and
`--set` arguments of odd syntax. `main()` runs in-process (no TensorFlow import: neither
command needs it), so a few hundred examples take seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfkit.cli import main

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
TREES = {p.name: yaml.safe_load(p.read_text()) for p in CONFIGS}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["auto", "adam", "relu", "mse", "val_loss", "", "none", "1e-3", "true"]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(tree, prefix=()):
    """Every key path of a YAML tree (mappings only)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


def _mutate(tree: dict, data) -> dict:
    tree = yaml.safe_load(yaml.safe_dump(tree))  # a deep copy
    paths = list(_paths(tree))
    kind = data.draw(st.sampled_from(["set", "add", "remove"]))
    path = data.draw(st.sampled_from(paths)) if paths else ("name",)
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if kind == "set":
        parent[path[-1]] = data.draw(values)
    elif kind == "add":
        target = parent[path[-1]] if isinstance(parent.get(path[-1]), dict) else parent
        target[data.draw(st.text(min_size=1, max_size=10))] = data.draw(values)
    else:
        parent.pop(path[-1], None)
    return tree


odd_sets = st.one_of(
    st.sampled_from(
        [
            "train.epochs",  # no '='
            "=3",
            "..=1",
            "train..epochs=2",
            "train.epochs==3",
            "train=3",
            "train.epochs.x=1",
            "data.source.kind=zzz",
            "data.batch_size=1e999",
            "data.batch_size=99999999999999999999999",
            "train.optimizer.learning_rate=.inf",
            "train.epochs=true",
            "model=[1, 2",
            "runtime.seed=-1",
            "tune.space={}",
            "train.monitor=val_f1",
            "data.split.val=0.0001",
            "train.loss={name: mse, gamma: 3}",
            "train.callbacks=[{name: early_stopping, args: {patience: x}}]",
        ]
    ),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["name", "data.batch_size", "train.epochs", "model.name", "gan.kimg"]),
        st.text(max_size=10).filter(lambda t: "\x00" not in t),
    ),
)


def _answer(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.mark.timeout(120)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.sampled_from(sorted(TREES)), data=st.data())
def test_mutated_configs_are_answered_cleanly(name, data, tmp_path, capsys):
    tree = _mutate(TREES[name], data)
    sets = data.draw(st.lists(odd_sets, max_size=2))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    overrides = [a for s in sets for a in ("--set", s)]
    for command in (["config", "validate"], ["train", "--dry-run"]):
        argv = [*command[:1], *command[1:2], str(path), *overrides]
        if command[0] == "train":
            train = ["gan", "train"] if "gan" in tree else ["train"]
            argv = [*train, str(path), "--dry-run", *overrides]
        rc, err = _answer(argv, capsys)
        assert rc in (0, 2), (argv, tree, err)
        assert "Traceback" not in err and "internal error" not in err, err
        if rc == 2:
            assert err.startswith("tfkit "), err
        else:
            assert err == ""


@pytest.mark.parametrize("name", sorted(TREES))
def test_shipped_configs_validate_and_dry_run(name, capsys):
    path = str(Path(__file__).parents[1] / "configs" / name)
    assert _answer(["config", "validate", path], capsys) == (0, "")
    command, other = (
        (["gan", "train"], ["train"]) if "gan" in TREES[name] else (["train"], ["gan", "train"])
    )
    assert _answer([*command, path, "--dry-run"], capsys) == (0, "")
    # the other training command refuses it in one line, naming the one that serves it
    rc, err = _answer([*other, path, "--dry-run"], capsys)
    assert rc == 2 and err.count("\n") == 1 and f"tfkit {' '.join(command)}" in err, err
