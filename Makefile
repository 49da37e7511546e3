# Two commands set everything up on a fresh machine: `make quickstart` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of PyTorch, installed before anything else so no CUDA wheels are pulled in.
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: quickstart test test-fast lint typecheck clean

$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[all]"
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -q -e ".[all,dev]"
	touch $@

quickstart: $(VENV)/.base
	$(VENV)/bin/whetstone quickstart

test: $(VENV)/.dev
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q

test-fast: $(VENV)/.dev
	$(VENV)/bin/pytest -q -m "not slow"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) whetstone-quickstart .pytest_cache .mypy_cache .ruff_cache
