# Two entry points: `make demo` (a short evolution run) and `make test` (`make test-fast`
# skips the slow Ray-cluster and kill-and-resume checks).
# Each creates .venv on first use; torch is installed first, pinned (TORCH=...),
# so that the project's `torch>=2.2` is already satisfied and pip resolves no
# other torch build. For a CPU-only build from PyPI's CUDA default, install
# torch first from the PyTorch CPU index, or set TORCH to the wheel you want.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: setup demo test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/innate demo

test: setup
	$(PY) -m pytest -q

# Without the Ray-cluster and kill-and-resume checks (marked slow); CI runs `make test`.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/generation.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
