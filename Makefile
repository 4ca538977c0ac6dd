# One-command set-up on a fresh Linux machine with Python 3.11+: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench browser clean mutate mutate-db

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/leadengine demo

lint: $(BIN)/.installed
	$(BIN)/ruff check engine tests bench examples
	$(BIN)/mypy engine
	$(BIN)/lint-imports

# The HTML report is tested in a real headless Chromium: install Debian's if none is there.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  command -v google-chrome >/dev/null || [ -n "$$LEADENGINE_TEST_CHROMIUM" ] || \
	  { echo "installing Debian's chromium for the HTML report test"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	    $$SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 || \
	    { $$SUDO apt-get update -q >/dev/null && \
	      $$SUDO apt-get install -y --no-install-recommends chromium >/dev/null; }; }

# The suite on WORKERS pytest-xdist processes (each with its own template database and broker;
# the random order and the per-test timeout hold in each): much of its time is spent waiting on
# PostgreSQL, the broker and child processes. WORKERS=1: one process, no xdist.
WORKERS ?= 2
test: lint browser
	$(BIN)/python -m pytest -q $(if $(filter-out 1,$(WORKERS)),-n $(WORKERS))

bench: $(BIN)/.installed
	$(BIN)/python bench/ingest.py

# Mutation testing on demand (docs/mutation.md): mutate the modules [tool.mutmut] lists, run the
# unit tests against each mutant, print the score per module. MUTANTS='engine.domain.sla.*' narrows it.
MUTANTS ?=
MAX_CHILDREN ?= $(shell nproc)
mutate: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev,mutate]'
	PYTHONPATH= $(BIN)/mutmut run --max-children $(MAX_CHILDREN) $(MUTANTS) || true
	$(BIN)/python bench/mutation_score.py --survivors

# The DB- and broker-backed code (docs/mutation.md): hand-written mutants, each against its
# integration tests on a real PostgreSQL and broker. ONLY='kafka' narrows it.
ONLY ?=
mutate-db: $(BIN)/.installed
	$(BIN)/python bench/db_mutants.py $(if $(ONLY),--only $(ONLY))

clean:
	rm -rf $(VENV) .leadengine .pytest_cache .mypy_cache .ruff_cache mutants
