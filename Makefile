# tfkit: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export NO_MKDOCS_2_WARNING ?= 1

.PHONY: install constraints demo notebooks test test-properties test-soak test-quality test-all lint format bench docs docs-serve tensorboard clean

# constraints.txt pins every package (transitive ones too) to the versions the tests passed
# with, so an install months from now gets the same ones
$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,tfds]'
	touch $(STAMP)

install: $(STAMP)

# Refresh constraints.txt: a throw-away venv gets the newest versions setup.cfg allows, and
# its `pip freeze` (tfkit itself left out) becomes the new constraints.txt. Then run
# `make test test-properties` and commit constraints.txt with the result.
CONSTRAINTS_VENV := .venv-constraints
constraints:
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	$(CONSTRAINTS_VENV)/bin/pip install --quiet --upgrade pip
	$(CONSTRAINTS_VENV)/bin/pip install --quiet -e '.[dev,tfds,bench]'
	{ echo "# The versions the tests passed with: \`make install\` installs with \`pip install -c constraints.txt\`."; \
	  echo "# Refresh with \`make constraints\` (newest versions setup.cfg allows), then run the test tiers."; \
	  $(CONSTRAINTS_VENV)/bin/pip freeze --exclude-editable | grep -v '^tfkit=='; } > constraints.txt
	rm -rf $(CONSTRAINTS_VENV)

demo: $(STAMP)
	$(VENV)/bin/tfkit train configs/digits_cnn.yaml

# the notebooks: edit a notebook's source, notebooks/0N_<name>.py (Jupytext percent format),
# then this writes its paired .ipynb from it and executes the notebooks so the committed
# .ipynb carry their outputs (NB="01 03": execute only those); `make test` fails while a
# committed .ipynb differs from its .py
NB ?=
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --to ipynb --update notebooks/[0-9][0-9]_*.py
	$(PY) notebooks/execute.py $(NB)

test: $(STAMP)
	$(PY) -m pytest -q -x --timeout=900

# tfkit's guarantees end to end: kill -9 / SIGTERM / Ctrl-C resume, launch, SLURM,
# replicas, the distributed tuner, tuning reproduction, the notebooks (CI runs it).
test-properties: $(STAMP)
	$(PY) -m pytest -q -m property --timeout=900

# The long quality runs (100 kimg GAN, digits >= 99 %) and the paper-size benchmark code:
# hours on a CPU, not run by CI.
test-quality: $(STAMP)
	$(PY) -m pytest -q -m quality --timeout=14400

# the soak tier: each long-lived mode for minutes; threads, open files and RSS stay flat
# (TFKIT_SOAK_REPORT: one JSON line of figures per case)
SOAK_REPORT ?= soak-report.jsonl
test-soak: $(STAMP)
	rm -f $(SOAK_REPORT)
	TFKIT_SOAK_REPORT=$(SOAK_REPORT) $(PY) -m pytest -q -m soak --timeout=1200 tests/test_soak.py

test-all: $(STAMP)
	$(PY) -m pytest -q -m '' --timeout=14400

lint: $(STAMP)
	$(VENV)/bin/ruff check tfkit tests benchmarks examples notebooks docs/hooks.py
	$(VENV)/bin/ruff format --check tfkit tests benchmarks examples notebooks docs/hooks.py

format: $(STAMP)
	$(VENV)/bin/ruff format tfkit tests benchmarks examples notebooks docs/hooks.py
	$(VENV)/bin/ruff check --fix tfkit tests benchmarks examples notebooks docs/hooks.py

BENCH_JSON ?= bench.json
BENCH_FLAGS ?= --quick
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_FLAGS) --json $(BENCH_JSON) --results benchmarks/RESULTS.md

# the documentation site: MkDocs + Material, built into site/ (a broken link fails the build)
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,tfds,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site
	TFKIT_SITE_DIR=site $(PY) -m pytest -q -m docs tests/test_docs_site.py

docs-serve: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --host 127.0.0.1

clean:
	rm -rf runs export data bench.json site .pytest_cache
