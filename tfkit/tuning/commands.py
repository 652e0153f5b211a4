"""The `tfkit tune` command."""

from __future__ import annotations

import argparse

from tfkit.config import apply_overrides, read_yaml, validate


def tune_command(args: argparse.Namespace) -> int:
    """`tfkit tune CONFIG [--set ...] [--run-dir] [--overwrite] [--role --oracle --tuner-id]`."""
    from tfkit.tuning.search import run_search, tune_run_dir

    raw = apply_overrides(read_yaml(args.config), args.overrides)
    where = args.config + (" (with --set overrides)" if args.overrides else "")
    config = validate(raw, where)
    run_dir = tune_run_dir(config, args.run_dir, getattr(args, "runs_root", "runs"))
    run_search(
        config,
        raw,
        run_dir,
        overwrite=args.overwrite,
        role=args.role,
        oracle=args.oracle,
        tuner_id=args.tuner_id,
        oracle_timeout=args.oracle_timeout,
    )
    return 0
