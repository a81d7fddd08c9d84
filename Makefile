# The one entry point for people and CI alike.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check lint typecheck imports unit bench clean lock

# Installs come from the lock files (exact versions with hashes, shared with the image build)
# through uv, itself pinned and installed into the virtualenv; `make lock` regenerates them.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes \
	--no-header --quiet

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: requirements/run.lock pyproject.toml | $(BIN)/python
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes -r requirements/run.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements/dev.lock pyproject.toml | $(BIN)/python
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes -r requirements/dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@ $(VENV)/.installed

## make lock: pin every dependency of pyproject.toml (with hashes) into requirements/*.lock
# (the dev lock first: the run lock takes the same versions, so the two never disagree)
lock: | $(BIN)/python
	$(UV) pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o requirements/dev.lock
	$(UV) pip compile pyproject.toml -c requirements/dev.lock $(LOCK_FLAGS) -o requirements/run.lock

## make run [PORT=8000]: install, migrate the embedded SQLite database and start the demo
PORT ?= 8000
run: $(VENV)/.installed
	$(BIN)/jitprov dev --port $(PORT)

## make test: install the dev extras, run the linters and the whole suite
test: $(VENV)/.installed-dev check
	$(BIN)/pytest

check: lint typecheck imports

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench examples clients

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

imports: $(VENV)/.installed-dev
	$(BIN)/lint-imports

unit: $(VENV)/.installed-dev
	$(BIN)/pytest tests/core -q

## make bench: run every benchmark in bench/ and write bench/results/report.{json,md}
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
