# The two commands of the README: `make demo` and `make test`. Both build .venv from
# pyproject.toml on a fresh machine (Python 3.11 and nothing else) and reuse it afterwards.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit unasync bench chaos clean venv

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "deja needs Python >= 3.11 (found: $$($(PYTHON) --version))" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
	  { echo "could not create $(VENV): on Debian run 'apt-get install python3-venv'" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/deja demo

unasync: $(STAMP)
	$(BIN)/python scripts/unasync.py --check

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# two test processes (pytest-xdist): most tests wait on servers, sockets and timeouts, so two
# take ~0.6 of one's time on 2 cores; TEST_WORKERS=0 runs them in this one process
TEST_WORKERS ?= 2

unit: $(STAMP)
	$(BIN)/python -m pytest -q --durations=20 -n $(TEST_WORKERS)

test: unasync lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/core.py

# Randomized end-to-end runs under mixed load (tests/chaos; not part of `make test`): a few
# minutes. DEJA_CHAOS_SEED=N replays a seed, DEJA_CHAOS_OPS=N sets the operations per run.
chaos: $(STAMP)
	$(BIN)/python -m pytest tests/chaos -v -s

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
