# bvae-tfx -- see README.md. Every target installs .venv first if needed.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONWARNINGS := ignore::FutureWarning

.PHONY: install test test-slow test-all demo lint format clean

install:
	@bash scripts/install.sh

## Fast tests (unit + e2e on tiny synthetic data); what CI runs.
test: install
	$(PY) -m pytest -m "(unit or e2e) and not slow and not gpu" $(PYTEST_ARGS)

## Real-data tests (../shared/data); skip cleanly when it is absent.
test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest $(PYTEST_ARGS)

## The main job on the embedded synthetic data.
demo: install
	$(PY) -m pipeline.demo

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf out .pytest_cache .ruff_cache
