# Coffer: every target first runs the idempotent bootstrap (Debian packages, .venv, the project).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap demo test lint bench image image-test clean

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	@$(PY) -m scripts.demo

test: bootstrap
	@$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

bench: bootstrap
	@$(PY) -m bench

image: bootstrap
	@echo "image: not implemented yet (the board image builder lands with its own issue)" >&2; exit 3

image-test: image

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo .bench test-artifacts
