# bunga: `make help` lists the targets. Two commands on a fresh machine: `make run`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help run pipeline serve test lint typecheck unit bench audit clean web docs screenshots

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[serve,image]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run-installed

# The browser runtime for identification on the phone: onnxruntime-web from npm (web/package-lock.json),
# its WebAssembly build copied into the package's static files. Without npm the page identifies on the
# server only.
ORT := src/bunga/serving/static/ort
ORT_FILES := ort.wasm.min.js ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm

$(ORT)/.built: web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error && mkdir -p $(ORT) && \
	  for f in $(ORT_FILES); do cp web/node_modules/onnxruntime-web/dist/$$f $(ORT)/ && gzip -9 -n -k -f $(ORT)/$$f; done && \
	  touch $@; \
	else echo "npm not found: photos are identified on the server only (install Node 20 for on-phone identification)"; fi

web: $(ORT)/.built ## Build the on-phone runtime (onnxruntime-web, pinned by web/package-lock.json)

run: pipeline web ## Install, run the whole pipeline on the shipped data, then serve on http://127.0.0.1:8000
	$(BIN)/bunga serve --host $(HOST) --port $(PORT)

pipeline: $(VENV)/.run-installed ## Merge -> train -> evaluate -> gate -> promote (local SQLite MLflow)
	$(BIN)/bunga pipeline

serve: $(VENV)/.run-installed ## Serve the current champions
	$(BIN)/bunga serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.dev-installed ## ruff, and the import layers (lint-imports: contracts in pyproject.toml)
	$(BIN)/ruff check src tests benchmarks scripts research docs *.py
	$(BIN)/lint-imports --no-cache

typecheck: $(VENV)/.dev-installed ## mypy --strict on src/
	$(BIN)/mypy

docs: $(VENV)/.dev-installed ## Build the documentation site into site/ (strict: a broken link or anchor fails)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict --quiet

screenshots: $(VENV)/.dev-installed web ## Photograph the real pages in Chromium into docs/assets/ (the browser tests)
	$(BIN)/python scripts/screenshots.py

test: lint typecheck docs web ## Lint, type-check, build the docs and run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: $(VENV)/.dev-installed ## Only the fast unit tests
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

audit: $(VENV)/.dev-installed ## pip-audit the locked runtime dependencies (requirements/serve.txt)
	$(BIN)/pip-audit -r requirements/serve.txt --no-deps --disable-pip --progress-spinner off --strict

$(VENV)/.bench-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.dev-installed $(VENV)/.run-installed

bench: $(VENV)/.bench-installed ## Speed, memory and accuracy benchmarks -> benchmarks/RESULTS.md
	$(BIN)/python -m benchmarks

clean: ## Remove the venv, caches and local MLflow store
	rm -rf $(VENV) site web/node_modules $(ORT) .pytest_cache .mypy_cache .ruff_cache mlflow.db mlartifacts .bunga-cache bunga-model bunga-monitor.db* monitoring
