"""The `tfkit tune` command (and `tfkit launch --tune-workers`).

Checks that need no TensorFlow run first: the config and its space, and, on a worker, that
the chief's oracle answers, so a mistake is reported before TensorFlow is imported.
"""

from __future__ import annotations

import argparse
import shlex

from tfkit.cluster import announce
from tfkit.config import ExperimentConfig, apply_overrides, read_yaml, validate
from tfkit.errors import Stopped, UserError


def check_request(args: argparse.Namespace) -> tuple[ExperimentConfig, dict]:
    """Every check of `tfkit tune` that needs no TensorFlow: the config and its space, the
    `--role`/`--oracle` pair, and whether the run directory holds a search this config may
    continue (the fingerprint and the resume policy). Writes nothing.

    Returns:
        The validated config and its raw tree (file plus `--set` overrides).
    """
    from tfkit.tuning import space as space_lib
    from tfkit.tuning.launch import parse_oracle

    raw = apply_overrides(read_yaml(args.config), args.overrides)
    where = args.config + (" (with --set overrides)" if args.overrides else "")
    config = validate(raw, where)
    if config.tune is None:
        raise UserError(f"{args.config} has no `tune:` section (see configs/tune_digits.yaml)")
    space_lib.check_space(raw, config.tune)
    if (args.role is None) != (args.oracle is None):
        raise UserError(
            "--role and --oracle go together (e.g. --role worker --oracle 127.0.0.1:8000)"
        )
    if args.oracle:
        parse_oracle(args.oracle)
    run_dir = space_lib.tune_run_dir(config, args.run_dir, getattr(args, "runs_root", "runs"))
    space_lib.check_continuation(config, run_dir, args.overwrite)
    return config, raw


def tune_command(args: argparse.Namespace) -> int:
    """`tfkit tune CONFIG [--set ...] [--run-dir] [--overwrite] [--role --oracle --tuner-id]`.

    Without --role, a cluster of several processes (`runtime.cluster`: an srun step, a
    TF_CONFIG) runs a distributed search: its chief serves the oracle, the others run trials.
    """
    from tfkit.tuning import space as space_lib
    from tfkit.tuning.launch import parse_oracle, wait_for_oracle

    config, raw = check_request(args)
    bind = None
    if args.role is None:
        # under SLURM or TF_CONFIG the roles and the oracle come from the cluster: the
        # chief (SLURM task 0) serves the oracle on its own address, the others are workers
        cluster = announce(config.runtime)
        if cluster.multi_worker:
            args.role, args.tuner_id, args.oracle = cluster.tuner_role()
            bind = f"0.0.0.0:{args.oracle.rpartition(':')[2]}"
    if args.oracle:
        parse_oracle(args.oracle)
    if args.role == "worker":
        wait_for_oracle(args.oracle, args.oracle_timeout)

    from tfkit.runs import Run
    from tfkit.tuning.search import run_search

    run = Run(space_lib.tune_run_dir(config, args.run_dir, getattr(args, "runs_root", "runs")))
    chief = args.role != "worker"  # a local search or the chief: one process per run dir
    if chief:
        run.path.mkdir(parents=True, exist_ok=True)
    try:
        with run.locked(chief):
            run_search(
                config,
                raw,
                run.path,
                overwrite=args.overwrite,
                role=args.role,
                oracle=args.oracle,
                tuner_id=args.tuner_id,
                oracle_timeout=args.oracle_timeout,
                bind=bind,
            )
    except Stopped as err:  # the same command continues the search
        sets = "".join(f" --set {shlex.quote(o)}" for o in args.overrides or [])
        err.resume_hint = f"tfkit tune {shlex.quote(args.config)}{sets} --run-dir {run.path}"
        raise
    return 0
