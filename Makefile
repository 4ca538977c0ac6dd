# One-command set-up on a fresh Linux machine with Python 3.11+: `make demo`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/leadengine demo

lint: $(BIN)/.installed
	$(BIN)/ruff check engine tests bench
	$(BIN)/mypy engine

test: lint
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .leadengine .pytest_cache .mypy_cache .ruff_cache
