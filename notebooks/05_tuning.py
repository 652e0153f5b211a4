# %% [markdown]
# # Hyperparameter search with Keras Tuner
#
# **Goal:** search the hyperparameters of the digits CNN from a config's `tune:`
# section, read the results table, and reuse the best trial.
#
# A search space maps *dotted config keys* (`model.dropout`,
# `train.optimizer.learning_rate`) to hyperparameters. Each trial is the experiment
# with the sampled values applied, built and trained by the same `tfkit.models.build`
# and `model.fit` as `tfkit train`, so anything a config can say can be tuned and the
# best trial is an ordinary config file.

# %% [markdown]
# ## Setup

# %%
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide TensorFlow's C++ info lines
sys.path.insert(0, str(Path.cwd().parent))  # the repository root, when run from notebooks/
WORK = Path(tempfile.mkdtemp(prefix="tfkit-nb-"))  # everything this notebook writes

import warnings

import pandas as pd

from tfkit.config import apply_overrides, diff_keys, read_yaml, validate
from tfkit.errors import UserError

# Keras warns that it cannot shuffle a tf.data dataset; tfkit's pipeline already shuffles it.
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")

# %% [markdown]
# ## The tune section
#
# `configs/tune_digits.yaml` searches the conv stack's width and depth, the dense
# width, dropout, batch norm and the learning rate with a random search. To keep this
# notebook short we run 5 trials of 4 epochs instead of 10 of 8, with the same
# overrides `tfkit tune --set` would apply.

# %%
config_path = Path.cwd().parent / "configs" / "tune_digits.yaml"
overrides = ["tune.max_trials=5", "train.epochs=4"]
raw = apply_overrides(read_yaml(config_path), overrides)
config = validate(raw, str(config_path))
print(
    f"tuner={config.tune.tuner}, objective={config.tune.objective.name} "
    f"({config.tune.objective.direction}), max_trials={config.tune.max_trials}"
)
for key, param in config.tune.space.items():
    print(f"  {key:32s} {param.model_dump(exclude_none=True, exclude_defaults=True)}")

# %% [markdown]
# Space keys are checked against the experiment before any trial runs; a typo lists
# the keys that exist:

# %%
import copy

from tfkit.tuning import space as space_lib

bad = copy.deepcopy(raw)
bad["tune"]["space"]["model.filterz"] = {"choice": [[8], [16]]}
try:
    space_lib.check_space(bad, validate(bad).tune)
except UserError as err:
    print("UserError:", err)

# %% [markdown]
# ## The search
#
# `run_search` (what `tfkit tune` calls) builds a Keras Tuner tuner around a
# `HyperModel` whose `build` applies the trial's values to the config and calls
# `tfkit.models.build`, and whose `fit` is the tfkit compile/fit path. It prints one
# line per trial, then the results table, and writes `trials.csv`, `best.yaml` and the
# best model into the run directory.

# %%
from tfkit.tuning.search import run_search

run_dir = WORK / "runs" / "tune_digits"
result = run_search(config, raw, run_dir)
print(f"{len(result['trials'])} trials in {result['seconds']:.0f} s")

# %% [markdown]
# ## The results table
#
# The trials as a DataFrame, best first:

# %%
table = pd.DataFrame(
    [
        {"trial": row["trial"], "val_accuracy": row["objective"], **row["values"]}
        for row in result["trials"]
    ]
).sort_values("val_accuracy", ascending=False)
print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

# %%
print(sorted(p.name for p in run_dir.iterdir()))
print((run_dir / "trials.csv").read_text().splitlines()[0])

# %% [markdown]
# ## The best trial
#
# `best.yaml` is the experiment with the best values applied: train it again with
# `tfkit train runs/.../best.yaml`. The differences from the base experiment are
# exactly the tuned keys (and the search section is dropped):

# %%
best = validate(read_yaml(run_dir / "best.yaml"), "best.yaml")
print("best trial:", result["best"]["trial"], "val_accuracy", round(result["best"]["objective"], 4))
print("changed keys:", diff_keys(config.model_dump(), best.model_dump()))

# %%
# The best model was saved too; check it on the held-out test split.
import keras

import tfkit.data

with warnings.catch_warnings():  # a trial checkpoint holds no optimizer state
    warnings.simplefilter("ignore", UserWarning)
    best_model = keras.saving.load_model(run_dir / "best_model.keras")
best_model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
test = tfkit.data.build(best.data, seed=best.runtime.seed).test
print(
    "test:",
    {k: round(v, 4) for k, v in best_model.evaluate(test, verbose=0, return_dict=True).items()},
)

# %% [markdown]
# ## Continuing a search
#
# The search state lives in the run directory, so running again with the same
# directory continues it: here, raising `max_trials` to 6 runs one more trial.
# A search whose space or objective changed is refused unless `--overwrite` is given.

# %%
more = apply_overrides(raw, ["tune.max_trials=6"])
result = run_search(validate(more), more, run_dir)
print(f"{len(result['trials'])} trials now")

# %% [markdown]
# ## In TensorBoard
#
# Each trial logs under `search/tb`, with its hyperparameters in the HParams
# dashboard: `tensorboard --logdir <run dir>/search/tb`.
#
# ## Takeaways
#
# - The space is a dict of dotted config keys; every trial is a valid config.
# - `best.yaml` reproduces the best trial with `tfkit train`.
# - Searches continue where they stopped; `tfkit launch --tune-workers N` runs trials
#   in parallel processes.
