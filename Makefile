# One command per task, the same locally and in CI (.ci/run calls `make test`).
SHELL := /bin/bash
# Resolve the real interpreter once (python3 may be a slow shim); never download one.
PYTHON ?= $(shell python3 -c 'import sys; print(sys.executable)')
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export UV_PYTHON_DOWNLOADS := never
# Byte-compile what is installed: with PYTHONDONTWRITEBYTECODE set (as in many images) Python
# would otherwise compile every module again at every start (the server: seconds).
export UV_COMPILE_BYTECODE := 1
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR := examples/hello

.PHONY: install demo test lint typecheck fmt pytest check bench clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q uv

$(BIN)/rgrid: pyproject.toml uv.lock | $(UV)
	$(UV) sync --all-extras --frozen --python $(PYTHON)
	$(BIN)/python -m compileall -q -j 0 src/rgrid
	@touch $@

install: $(BIN)/rgrid

demo: install
	@scripts/ensure-services
	@echo "== rgrid run process.py data/input.csv  (in $(DEMO_DIR))"
	cd $(DEMO_DIR) && ../../$(BIN)/rgrid run process.py data/input.csv
	@echo "== the output file came back:"
	@cat $(DEMO_DIR)/out/report.json; echo
	@echo "== try: $(BIN)/rgrid list ; $(BIN)/rgrid doctor ; $(BIN)/rgrid server stop"

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

# The local grid's acceptance tests for running, exit codes, live logs, dependencies, batches,
# the cache and cost, run again unchanged against the cluster profile (PostgreSQL, S3, Ray).
CLUSTER_PROFILE_TESTS := $(addprefix tests/acceptance/test_,run_basic.py exit_codes.py \
	live_logs.py dependencies.py batches.py cache.py cost.py)

# The browser tests' accessibility checker (axe-core), a pinned release from the npm registry
# (npm checks its integrity); the tests inject it into each console page.
AXE_VERSION := 4.10.3
AXE := .tools/axe-core-$(AXE_VERSION)/axe.min.js

$(AXE):
	@mkdir -p $(dir $@)
	cd $(dir $@) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null \
		&& tar -xzf axe-core-$(AXE_VERSION).tgz package/axe.min.js \
		&& mv package/axe.min.js . && rm -rf package axe-core-$(AXE_VERSION).tgz

# Two workers: most tests wait on subprocesses, servers and sleeps, so two run in about 60 %
# of the time of one (a module runs whole on one worker; the Ray modules share one: see
# tests/conftest.py). The cluster profile runs in one (each worker would start a Ray cluster).
pytest: install $(AXE)
	@scripts/ensure-services --with-postgres
	$(BIN)/pytest -q --durations=15 -n 2 --dist loadgroup
	GRID_PROFILE=cluster $(BIN)/pytest -q --durations=5 $(CLUSTER_PROFILE_TESTS)

test: lint typecheck pytest

fmt: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

check: test

bench: install
	$(BIN)/python bench/single_run.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
