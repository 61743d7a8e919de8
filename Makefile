# mergelab — `make run` runs the whole embedded pipeline, `make test` the test suite.
# Both set up the locked environment (.venv) first if it is missing or stale.

PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
CORES  ?= all
PYTEST_ARGS ?=
# pytest-xdist: one worker per core (at most 4), whole test modules per worker, slowest first
# (tests/conftest.py). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
PYTEST_XDIST = -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder

.PHONY: env run dry-run test test-fast lint lock report push pull clean-results help

help:
	@echo "make run      set up .venv (if needed) and run 'snakemake --cores all' on config/config.yaml"
	@echo "make test     set up .venv (if needed) and run the test suite"
	@echo "make test-fast  unit and property tests only (no Snakemake runs): the edit loop"
	@echo "make lint     snakemake --lint"
	@echo "make lock     re-resolve requirements.lock from requirements.in"
	@echo "make report   HTML report of the tables and figures: results/report.html"
	@echo "make push     version the run's artifacts with DVC (dvc commit + push; then commit dvc.lock)"
	@echo "make pull     restore them from the DVC remote; Snakemake then has nothing to redo"

env: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "$$(grep '^uv==' requirements.lock)"
	$(BIN)/uv pip sync -q --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

run: env
	$(BIN)/snakemake --cores $(CORES)

dry-run: env
	$(BIN)/snakemake --cores $(CORES) -n

test: env
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-fast: env
	$(BIN)/python -m pytest $(PYTEST_XDIST) -m "not slow" $(PYTEST_ARGS)

lint: env
	$(BIN)/snakemake --lint

report: env
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

# DVC (docs/reproducibility.md). DVC_REMOTE=<name> picks a remote other than the default.
DVC_REMOTE ?=

push: env
	$(BIN)/python -m mergelab.cli artifacts push $(if $(DVC_REMOTE),--remote $(DVC_REMOTE))

pull: env
	$(BIN)/python -m mergelab.cli artifacts pull $(if $(DVC_REMOTE),--remote $(DVC_REMOTE))

lock:
	$(BIN)/uv pip compile requirements.in -o requirements.lock --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 -q

clean-results:
	rm -rf results/mini .snakemake/metadata
