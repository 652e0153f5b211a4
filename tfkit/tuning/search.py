"""`run_search`: a Keras Tuner search from a config's `tune:` section.

Layout of a tune run directory (default `runs/<name>/tune`, the same on every re-run so a
re-run continues the search):

```
config.yaml          the resolved experiment (with its tune section)
search/              Keras Tuner's project (tune.directory), plus tfkit_search.json: the
                     fingerprint of space, objective and experiment it was made for
search/tb/<trial>/   one TensorBoard HParams session per trial
search/workers/      <tuner id>.json: the trials each distributed worker ran
trials.csv           one row per trial: id, status, objective, values
best.yaml            the full config of the best trial (`tfkit train best.yaml`)
best_model.keras     the best trial's model at its best epoch
```
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from tfkit.config import ExperimentConfig, save_config, validate
from tfkit.errors import UserError
from tfkit.runs import (
    TUNE_BEST_CONFIG_FILE,
    TUNE_BEST_MODEL_FILE,
    TUNE_TRIALS_FILE,
    TUNE_WORKERS_DIR,
    Run,
    save_model_atomic,
)
from tfkit.training.banner import start_line
from tfkit.tuning import space as space_lib
from tfkit.tuning.hypermodel import TRIALS_TB_DIR, TfkitHyperModel
from tfkit.tuning.launch import set_distributed_env, wait_for_oracle
from tfkit.tuning.space import tune_run_dir  # noqa: F401 - part of this module's API

PROJECT = space_lib.PROJECT
TRIALS_FILE = TUNE_TRIALS_FILE
BEST_CONFIG = TUNE_BEST_CONFIG_FILE
BEST_MODEL = TUNE_BEST_MODEL_FILE
WORKERS_DIR = TUNE_WORKERS_DIR


class _TfkitTuner:
    """Mixed into each Keras Tuner class: a progress line per trial, static space discovery."""

    def _activate_all_conditions(self) -> None:
        # tfkit's space is declared in full (conditions included) by `declare`, so the
        # model need not be built once per conditional branch to discover it
        hp = self.oracle.get_space()
        self.hypermodel.declare_hyperparameters(hp)
        self.oracle.update_space(hp)

    def on_trial_begin(self, trial) -> None:
        self._tfkit_start = time.perf_counter()
        super().on_trial_begin(trial)

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        seconds = time.perf_counter() - getattr(self, "_tfkit_start", time.perf_counter())
        done = self.oracle.get_trial(trial.trial_id)
        self._tfkit_ran.append(
            {"trial_id": done.trial_id, "score": done.score, "status": done.status}
        )
        values = space_lib.values_from_hp(done.hyperparameters, self.hypermodel.space)
        shown = " ".join(f"{k}={_short(v)}" for k, v in values.items())
        score = f"{done.score:.4f}" if done.score is not None else "-"
        total = getattr(self.oracle, "max_trials", None)
        count = self._tfkit_previous + len(self._tfkit_ran)
        print(
            f"trial {done.trial_id} [{count}{'/' + str(total) if total else ''}] "
            f"{done.status.lower()} {self.oracle.objective.name}={score} ({seconds:.1f}s) {shown}",
            flush=True,
        )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value) if not isinstance(value, str) else value


def _tuner_class(name: str) -> type:
    base = {
        "random": keras_tuner.RandomSearch,
        "hyperband": keras_tuner.Hyperband,
        "bayesian": keras_tuner.BayesianOptimization,
        "grid": keras_tuner.GridSearch,
    }[name]
    return type(f"Tfkit{base.__name__}", (_TfkitTuner, base), {})


class _HyperModel(TfkitHyperModel):
    def declare_hyperparameters(self, hp: keras_tuner.HyperParameters) -> None:
        space_lib.declare(hp, self.space)


@contextlib.contextmanager
def _without_reload_line() -> Iterator[None]:
    """Keep Keras Tuner's `Reloading Tuner from ...` (printed when a search continues) off
    stdout; anything else printed in the block passes through."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            yield
    finally:
        kept = [
            line
            for line in captured.getvalue().splitlines(keepends=True)
            if not line.startswith("Reloading Tuner from ")
        ]
        if kept:
            sys.stdout.write("".join(kept))


# --------------------------------------------------------------------------------------
# distributed set-up
# --------------------------------------------------------------------------------------


def serve_oracle(tuner, poll_s: float = 0.5, bind: str | None = None) -> None:
    """Serve the chief's oracle until every trial is done and every worker was told to stop.

    Keras Tuner's own `oracle_chief.start_server` polls every 20 s once stopping and never
    stops its gRPC server; this does the same work with a short poll and a clean stop.
    `bind` (e.g. `0.0.0.0:8888`) is where to listen, default the oracle's address.
    """
    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    tuner.save()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(tuner.oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    address = bind or address
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise UserError(
            f"The tuning oracle cannot listen on {address} (port in use or wrong host?); "
            "choose another with --oracle HOST:PORT (or runtime.cluster_port on a cluster)"
        )
    tuner.oracle.verbose = 0  # the chief prints one line per finished trial instead
    server.start()
    print(f"chief: oracle serving at {address}", flush=True)
    reported = {t for t, trial in tuner.oracle.trials.items() if trial.status != "RUNNING"}
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(tuner.oracle)):
            time.sleep(poll_s)
            for trial_id, trial in list(tuner.oracle.trials.items()):
                if trial_id not in reported and trial.status not in ("RUNNING", "IDLE"):
                    reported.add(trial_id)
                    score = f"{trial.score:.4f}" if trial.score is not None else "-"
                    print(
                        f"chief: trial {trial_id} [{len(reported)}/{tuner.oracle.max_trials}] "
                        f"{trial.status.lower()} {tuner.oracle.objective.name}={score}",
                        flush=True,
                    )
    finally:
        server.stop(grace=1.0)
    tuner.oracle.save()


# --------------------------------------------------------------------------------------
# checks before a search
# --------------------------------------------------------------------------------------


def _prepare_search_dir(
    config: ExperimentConfig, run_dir: Path, search_dir: Path, overwrite: bool, write: bool
) -> bool:
    """Refuse a search dir made for another space/objective/experiment (see
    `space.check_continuation`); return True to continue it. Otherwise (when `write`)
    start the search dir, save the config and the fingerprint."""
    changes = space_lib.check_continuation(config, run_dir, overwrite)
    run = Run(run_dir)
    if changes is not None:
        if write and run.config_file.is_file():  # a continued search keeps its config.yaml
            run.record_resume(changes)  # and records what changed
        elif write:
            run.path.mkdir(parents=True, exist_ok=True)
            save_config(config, run.config_file)
        return True
    if write:
        if overwrite and search_dir.exists():
            shutil.rmtree(search_dir)
        search_dir.mkdir(parents=True, exist_ok=True)
        path = search_dir / space_lib.FINGERPRINT_FILE
        path.write_text(json.dumps(space_lib.fingerprint(config), indent=1, sort_keys=True))
        run.path.mkdir(parents=True, exist_ok=True)
        run.resumes_file.unlink(missing_ok=True)
        save_config(config, run.config_file)
    return False


def available_metrics(hypermodel: TfkitHyperModel, hp: keras_tuner.HyperParameters) -> list[str]:
    """The metric names a trial's `fit` logs (`loss`, `accuracy`, `val_loss`, ...)."""
    config = hypermodel.trial_config(hp)
    splits = hypermodel.splits(config)
    model = hypermodel.build(hp)
    logs = model.evaluate(splits.train.take(1), verbose=0, return_dict=True)
    names = list(logs)
    if splits.val is not None:
        names += [f"val_{n}" for n in logs]
    keras.backend.clear_session()
    return names


def check_objective(hypermodel: TfkitHyperModel, space: dict, objective: str) -> None:
    """Refuse an objective the model does not log, naming the metrics it does."""
    hp = keras_tuner.HyperParameters()
    space_lib.declare(hp, space)
    names = available_metrics(hypermodel, hp)
    if objective not in names:
        raise UserError(
            f"tune.objective.name: the model does not produce `{objective}`. "
            f"Available metrics: {', '.join(names)} (set train.metrics to add more)"
        )


# --------------------------------------------------------------------------------------
# the search
# --------------------------------------------------------------------------------------


def _tuner_kwargs(config: ExperimentConfig, search_dir: Path, strategy) -> dict[str, Any]:
    """The Keras Tuner constructor arguments of `config.tune` (the oracle's and the
    tuner's), the search kept in `search_dir`."""
    tune = config.tune
    objective = keras_tuner.Objective(tune.objective.name, direction=tune.objective.direction)
    kwargs: dict[str, Any] = {
        "objective": objective,
        "executions_per_trial": tune.executions_per_trial,
        "seed": tune.seed if tune.seed is not None else config.runtime.seed,
        "directory": str(search_dir),
        "project_name": PROJECT,
        "overwrite": False,
    }
    if strategy.num_replicas_in_sync > 1:
        kwargs["distribution_strategy"] = strategy
    if tune.tuner == "hyperband":
        kwargs.update(
            max_epochs=tune.max_epochs,
            factor=tune.factor,
            hyperband_iterations=tune.hyperband_iterations,
        )
    else:
        kwargs["max_trials"] = tune.max_trials
    return kwargs


def _worker_result(tuner, search_dir: Path, tuner_id: str, seconds: float) -> dict[str, Any]:
    """A distributed search's worker: record the trials it ran (the chief reports them
    all) and return them."""
    workers = search_dir / WORKERS_DIR
    workers.mkdir(parents=True, exist_ok=True)
    (workers / f"{tuner_id}.json").write_text(json.dumps(tuner._tfkit_ran, indent=1))
    print(f"worker {tuner_id}: ran {len(tuner._tfkit_ran)} trials in {seconds:.1f}s", flush=True)
    return {
        "trials": tuner._tfkit_ran,
        "best": None,
        "seconds": seconds,
        "search_dir": str(search_dir),
    }


def _trial_strategy(config: ExperimentConfig):
    """The strategy every trial trains under, this process's runtime set up for it.

    Raises:
        UserError: `runtime.strategy: multi_worker` (a search spreads trials instead).
    """
    from tfkit import distribute

    if config.runtime.strategy == "multi_worker":
        raise UserError(
            "runtime.strategy: multi_worker: tfkit tune trains each trial in one process (a "
            "distributed search spreads the trials over the processes); use auto, mirrored "
            "or one_device"
        )
    # the processes of a cluster run different trials: each trial is local to its process
    runtime = config.runtime.model_copy(update={"cluster": "local"})
    distribute.setup_runtime(runtime)
    return distribute.strategy(runtime)


def run_search(
    config: ExperimentConfig,
    raw: dict,
    run_dir: str | Path,
    *,
    overwrite: bool = False,
    role: str | None = None,
    oracle: str | None = None,
    tuner_id: str | None = None,
    oracle_timeout: float = 60.0,
    bind: str | None = None,
) -> dict[str, Any]:
    """Run (or continue) the search of `config.tune` and write its results into `run_dir`.

    Args:
        config: the validated experiment; it must have a `tune` section.
        raw: its raw tree (file plus `--set` overrides): trials apply values to it.
        run_dir: the tune run directory; re-running with the same one continues the search.
        overwrite: discard a search made for another space/objective/experiment.
        role: None (local search), `chief` (serves the oracle) or `worker` (runs trials).
        oracle: `HOST:PORT` of the chief's oracle (with `role`).
        tuner_id: a worker's id (default `worker<pid>`).
        oracle_timeout: seconds a worker waits for the oracle before giving up.
        bind: where the chief's oracle listens (default: the `oracle` address itself).

    Returns:
        `{"trials": [...], "best": {...} | None, "seconds": s, "search_dir": path,
        "replicas": n}` (replicas of each trial's strategy); a worker returns the trials it ran.

    Raises:
        UserError: no tune section, a bad space key or value, an objective the model does
            not produce, a changed search without `overwrite`, an unreachable oracle.
    """
    tune = config.tune
    if tune is None:
        raise UserError("The config has no `tune:` section; add one (see configs/tune_digits.yaml)")
    if (role is None) != (oracle is None):
        raise UserError(
            "--role and --oracle go together (e.g. --role worker --oracle 127.0.0.1:8000)"
        )
    run_dir = Path(run_dir)
    search_dir = space_lib.search_dir(config, run_dir)
    space_lib.check_space(raw, tune)

    is_worker = role == "worker"
    if role is not None:
        tuner_id = set_distributed_env(role, oracle, tuner_id)
    if is_worker:
        wait_for_oracle(oracle, oracle_timeout)
        if not (search_dir / space_lib.FINGERPRINT_FILE).exists():
            raise UserError(f"{search_dir}: the chief has not created this search; check --run-dir")
    resuming = _prepare_search_dir(config, run_dir, search_dir, overwrite, write=not is_worker)

    strategy = _trial_strategy(config)
    hypermodel = _HyperModel(raw, tune.space, search_dir / TRIALS_TB_DIR)
    if not resuming and not is_worker:
        check_objective(hypermodel, tune.space, tune.objective.name)

    kwargs = _tuner_kwargs(config, search_dir, strategy)
    with _without_reload_line():  # tfkit's own line below says the search continues
        tuner = _tuner_class(tune.tuner)(hypermodel, **kwargs)
    tuner._tfkit_ran = []
    tuner._tfkit_previous = 0 if is_worker else len(tuner.oracle.trials)

    objective_text = f"objective {tune.objective.name}/{tune.objective.direction}"
    if role:
        objective_text += f" as {role} {tuner_id}"
    details = [tune.tuner, objective_text, "continuing" if resuming else None]
    print(start_line("tfkit tune", config.name, run_dir, details), flush=True)
    start = time.perf_counter()
    if role == "chief":
        serve_oracle(tuner, bind=bind)
    else:
        from tfkit.training.stop import StopSignals

        # SIGTERM / Ctrl-C stop the running trial at its next step (`Stopped`); the search
        # keeps every completed trial, and running it again reruns the stopped one
        with StopSignals() as hypermodel.stop:
            tuner.search(verbose=0)
    seconds = time.perf_counter() - start

    if is_worker:
        return _worker_result(tuner, search_dir, tuner_id, seconds)

    result = write_results(tuner, config, raw, run_dir, search_dir, seconds)
    result["replicas"] = strategy.num_replicas_in_sync
    return result


def _trial_rows(tuner, space: dict) -> list[dict[str, Any]]:
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        values = space_lib.values_from_hp(trial.hyperparameters, space)
        if "tuner/epochs" in trial.hyperparameters.values:
            values["train.epochs"] = trial.hyperparameters.values["tuner/epochs"]
        rows.append(
            {"trial": trial_id, "status": trial.status, "objective": trial.score, "values": values}
        )
    return rows


def format_results(rows: list[dict[str, Any]], objective: str) -> str:
    """The results table: trial, status, objective and each value."""
    keys = []
    for row in rows:
        keys += [k for k in row["values"] if k not in keys]
    header = ["trial", "status", objective, *keys]
    lines = [header]
    for row in rows:
        score = f"{row['objective']:.4f}" if row["objective"] is not None else "-"
        lines.append(
            [row["trial"], row["status"].lower(), score]
            + [_short(row["values"][k]) if k in row["values"] else "-" for k in keys]
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def write_results(
    tuner, config: ExperimentConfig, raw: dict, run_dir: Path, search_dir: Path, seconds: float
) -> dict[str, Any]:
    """Print the results table; write trials.csv, best.yaml and the best model."""

    tune = config.tune
    rows = _trial_rows(tuner, tune.space)
    print(format_results(rows, tune.objective.name), flush=True)
    with open(run_dir / TRIALS_FILE, "w", newline="") as f:
        keys = []
        for row in rows:
            keys += [k for k in row["values"] if k not in keys]
        writer = csv.writer(f)
        writer.writerow(["trial", "status", tune.objective.name, *keys])
        for row in rows:
            writer.writerow(
                [row["trial"], row["status"], "" if row["objective"] is None else row["objective"]]
                + [json.dumps(row["values"][k]) if k in row["values"] else "" for k in keys]
            )
    best = None
    best_trials = tuner.oracle.get_best_trials(1)
    if best_trials and best_trials[0].score is not None:
        trial = best_trials[0]
        values = space_lib.values_from_hp(trial.hyperparameters, tune.space)
        if "tuner/epochs" in trial.hyperparameters.values:
            values["train.epochs"] = trial.hyperparameters.values["tuner/epochs"]
        best_config = space_lib.trial_config(raw, values, where=f"best trial {trial.trial_id}")
        save_config(best_config, run_dir / BEST_CONFIG)
        best = {"trial": trial.trial_id, "objective": trial.score, "values": values}
        if tune.save_best_model:
            with warnings.catch_warnings():  # the checkpoint holds no optimizer slots
                warnings.simplefilter("ignore", UserWarning)
                model = tuner.load_model(trial)
            save_model_atomic(model, run_dir / BEST_MODEL)
        print(
            f"best: trial {trial.trial_id} {tune.objective.name}={trial.score:.4f} -> "
            f"{run_dir / BEST_CONFIG} (search time {seconds:.1f}s)",
            flush=True,
        )
    else:
        print(f"no trial completed (search time {seconds:.1f}s)", flush=True)
    return {"trials": rows, "best": best, "seconds": seconds, "search_dir": str(search_dir)}


def load_best(run_dir: str | Path) -> ExperimentConfig:
    """The best trial's config saved by a search."""
    from tfkit.config import read_yaml

    path = Path(run_dir) / BEST_CONFIG
    return validate(read_yaml(path), str(path))
