# make run   - set up a virtualenv, migrate the embedded SQLite database, add the demo
#              marketplace the first time, serve the API on http://127.0.0.1:8000
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
	LEDGER_GATEWAY=simulated $(BIN)/ledger db upgrade
	LEDGER_GATEWAY=simulated $(BIN)/ledger demo --if-empty
	LEDGER_GATEWAY=simulated LEDGER_LOG_FORMAT=text $(BIN)/ledger serve --host 127.0.0.1 --port 8000

lint: $(BIN)/.installed
	$(BIN)/ruff check ledger tests migrations bench
	$(BIN)/ruff format --check ledger tests migrations bench
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: $(BIN)/.installed
	HYPOTHESIS_PROFILE=$(HYPOTHESIS_PROFILE) $(BIN)/python -m pytest

test: lint pytest

bench: $(BIN)/.installed
	$(BIN)/python -m bench.posting

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
