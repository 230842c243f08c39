# recap-label — set-up and everyday commands. Everything installs into ./.venv.
#
# CPU hosts (and CI) get the small CPU build of torch from TORCH_SPEC; on a GPU host run
#   make install TORCH_SPEC=torch        # pip then resolves the CUDA build
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.recap-installed
DEVICE ?= auto

.PHONY: install lint test test-fast demo bench chaos clean gpu-check wheel-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# the linter, then the whole suite (what CI runs)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest

# everything but the `slow` tests (the kill/fault/fuzz sweeps, inference kills, torchrun, bench):
# under a minute on two cores; still one kill, one fault and one corruption case of the sweeps
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

demo: install
	$(BIN)/python -m recap_label.demo

chaos: install
	RECAP_CHAOS=1 $(BIN)/python -m pytest tests/reliability

bench: install
	$(BIN)/python -m benchmarks.bench --device $(DEVICE)

# on a bare GPU host: no venv, no pip install, no network; the system python's CUDA torch
# (+ PyAV) runs the package from this checkout, within GPU_CHECK_BUDGET seconds
GPU_CHECK_OUT ?= gpu-check-out
GPU_CHECK_BUDGET ?= 480
gpu-check:
	PYTHONPATH=$(CURDIR) $(PYTHON) -m benchmarks.gpu_check $(GPU_CHECK_OUT) --budget-s $(GPU_CHECK_BUDGET)

# a wheel of this checkout in a fresh venv (dependencies from $(VENV), offline), run from outside the repo
wheel-check: install
	$(BIN)/python -m benchmarks.wheel_check

clean:
	rm -rf $(VENV) demo-out .pytest_cache
