# tfkit: every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export NO_MKDOCS_2_WARNING ?= 1

.PHONY: install demo test test-soak test-all lint format bench docs docs-serve tensorboard clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tfkit train configs/digits_cnn.yaml

test: $(STAMP)
	$(PY) -m pytest -q -x --timeout=900

# the soak tier: each long-lived mode for minutes; threads, open files and RSS stay flat
# (TFKIT_SOAK_REPORT: one JSON line of figures per case)
SOAK_REPORT ?= soak-report.jsonl
test-soak: $(STAMP)
	TFKIT_SOAK_REPORT=$(SOAK_REPORT) $(PY) -m pytest -q -m soak --timeout=600 tests/test_soak.py

test-all: $(STAMP)
	$(PY) -m pytest -q -m '' --timeout=3600

lint: $(STAMP)
	$(VENV)/bin/ruff check tfkit tests benchmarks examples docs/hooks.py
	$(VENV)/bin/ruff format --check tfkit tests benchmarks examples docs/hooks.py

format: $(STAMP)
	$(VENV)/bin/ruff format tfkit tests benchmarks examples docs/hooks.py
	$(VENV)/bin/ruff check --fix tfkit tests benchmarks examples docs/hooks.py

BENCH_JSON ?= bench.json
BENCH_FLAGS ?= --quick
bench: $(STAMP)
	$(PY) benchmarks/run_all.py $(BENCH_FLAGS) --json $(BENCH_JSON) --results benchmarks/RESULTS.md

# the documentation site: MkDocs + Material, built into site/ (a broken link fails the build)
DOCS_STAMP := $(VENV)/.installed-docs
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,docs]'
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
