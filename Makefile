# Two entry points for a fresh machine: `make demo` and `make test`. Each installs what it needs
# into .venv first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared

# Real ImageNet weights and data sets, where this machine has them (never copied into the repo).
ifneq ($(wildcard $(SHARED)/weights/keras/models),)
export TLZOO_WEIGHTS_DIR ?= $(abspath $(SHARED)/weights/keras/models)
endif
ifneq ($(wildcard $(SHARED)/data),)
export TLZOO_DATA_DIR ?= $(abspath $(SHARED)/data)
endif
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test test-unit test-integration lint benchmark clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/tlzoo demo

# The lint first (seconds), then both tiers.
test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

# One tier of the suite (see README, Tests): unit alone, or integration alone.
test-unit: install
	$(BIN)/python -m pytest -m "not integration"

test-integration: install
	$(BIN)/python -m pytest -m integration

benchmark: install
	$(BIN)/python benchmarks/pneumonia_transfer.py

clean:
	rm -rf $(VENV) runs .pytest_cache
