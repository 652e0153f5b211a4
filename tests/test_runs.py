"""Run directories: numbering, atomic config, resume checks."""

import pytest

from tfkit.config import load_config, validate
from tfkit.errors import UserError
from tfkit.runs import check_resume_compatible, create_run_dir, is_run_dir, load_run_config


def test_numbered_run_dirs_hold_the_resolved_config(run_root):
    cfg = validate({"name": "exp", "train": {"epochs": 3}})
    first = create_run_dir(cfg, root=run_root)
    second = create_run_dir(cfg, root=run_root)
    assert first.name == "00000" and second.name == "00001"
    assert first.parent == run_root / "exp"
    assert is_run_dir(first)
    assert load_run_config(first) == cfg
    assert not list(first.glob("*.tmp"))


def test_explicit_run_dir_refuses_an_existing_run(tmp_path):
    cfg = load_config(None)
    path = create_run_dir(cfg, run_dir=tmp_path / "mine")
    assert path == tmp_path / "mine"
    with pytest.raises(UserError, match="already holds a run; use --resume"):
        create_run_dir(cfg, run_dir=path)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(UserError, match="not a tfkit run directory"):
        load_run_config(tmp_path)
    with pytest.raises(UserError, match="not found"):
        load_run_config(tmp_path / "missing")


def test_resume_with_changed_model_names_the_keys(tmp_path):
    cfg = validate({"model": {"name": "cnn", "filters": [8]}})
    path = create_run_dir(cfg, run_dir=tmp_path / "r")
    check_resume_compatible(path, cfg)  # unchanged: fine
    changed = validate({"model": {"name": "cnn", "filters": [16]}})
    with pytest.raises(UserError, match=r"changed at model.filters"):
        check_resume_compatible(path, changed)
