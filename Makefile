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

# The whole suite, the board image included (docs/image.md "CI"): the image is built (or found up to date) and
# its static and QEMU tiers run in a pytest process of their own after the rest of the suite (their QEMU,
# swtpm and center processes never share a process with the other tiers). COFFER_IMAGE_TESTS=0 leaves the
# image out (build and tiers).
COFFER_IMAGE_TESTS ?= 1
test: bootstrap
ifeq ($(COFFER_IMAGE_TESTS),1)
	@COFFER_BOOTSTRAP_IMAGE=1 scripts/bootstrap.sh
	@image/build
endif
	@COFFER_IMAGE_TESTS=0 $(PY) -m pytest $(PYTEST_ARGS)
ifeq ($(COFFER_IMAGE_TESTS),1)
	@$(PY) -m pytest tests/image -m "image or qemu" -p no:cacheprovider $(PYTEST_ARGS)
endif

lint: bootstrap
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

bench: bootstrap
	@$(PY) -m bench

# The board image (docs/image.md): `make image [CENTER_ROOT=<64 hex>]` -> image/out/coffer-<version>-arm64.img.xz
image: bootstrap
	@COFFER_BOOTSTRAP_IMAGE=1 scripts/bootstrap.sh
	@CENTER_ROOT="$(CENTER_ROOT)" image/build

# static checks of the built image, then the QEMU boot test (swtpm, USB gadget on dummy_hcd)
image-test: image
	@$(PY) -m pytest tests/image -m "image or qemu" -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo .bench test-artifacts
