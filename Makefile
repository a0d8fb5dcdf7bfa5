# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install vgbench and its dependencies, provision MNIST, run the
#               vanishing-gradient sweep on the local cores and write its report
#   make test   the same install, then the test suite on every core (make test-fast: the fast tier)
#   make lint   ruff's checks and its formatter, as CI runs them
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-fast lint clean-venv

# Python may keep the bytecode it compiles (some machines turn that off): with pip's --no-compile the
# install skips compiling every file of torch (most are never imported), and the first import of a
# module compiles it once.
export PYTHONDONTWRITEBYTECODE=

# Reinstall whenever pyproject.toml changes; the editable install keeps conf/ and src/ live.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile --editable '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/vgbench-data data=mnist
	scripts/sweep_vanishing.sh

# -n auto: a worker per core; worksteal: a worker that runs out takes tests from the other's queue
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist worksteal

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist worksteal -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts examples
	$(BIN)/ruff format --check src tests scripts examples

clean-venv:
	rm -rf $(VENV)
