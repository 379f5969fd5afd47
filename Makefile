# make run   - set up a virtualenv, migrate the embedded SQLite database, audit it
# make test  - set up a virtualenv, lint, type-check and run the whole test suite
# make bench - print posting throughput figures (PostgreSQL and SQLite)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HYPOTHESIS_PROFILE ?= ci

.PHONY: run test lint pytest bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/ledger db upgrade
	$(BIN)/ledger audit

lint: $(BIN)/.installed
	$(BIN)/ruff check ledger tests migrations bench
	$(BIN)/ruff format --check ledger tests migrations bench
	$(BIN)/mypy

pytest: $(BIN)/.installed
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(BIN)/python -m pytest

test: lint pytest

bench: $(BIN)/.installed
	$(BIN)/python -m bench.posting

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
