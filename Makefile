# Two commands matter: `make run` and `make test`. Both set everything up from a bare machine
# with python3 (>= 3.11): a virtualenv in .venv with Ferry, its embedded stack and dev tools.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest chaos schemas bench bench-cpu bench-import bench-webhooks bench-relay clean

run: $(STAMP)
	$(BIN)/ferry dev --demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	# Two processes: the fault-injection scenarios in one, the whole-stack tests in the other,
	# the rest spread over both; the slowest tests listed, for whoever makes the suite faster.
	$(BIN)/pytest -n 2 --dist loadgroup --durations=15

# The fault-injection suite alone (it is also part of `make test`).
chaos: $(STAMP)
	$(BIN)/pytest tests/chaos

# Regenerate schemas/ after changing a contract, a dataset or the API.
schemas: $(STAMP)
	$(BIN)/ferry schemas

bench: $(STAMP)
	$(BIN)/python bench/export.py

# Ferry's own CPU per row (worker process), next to the bare Arrow path: issue 15's figures.
bench-cpu: $(STAMP)
	$(BIN)/python bench/cpu.py

bench-import: $(STAMP)
	$(BIN)/python bench/import.py

bench-webhooks: $(STAMP)
	$(BIN)/python bench/webhooks.py

bench-relay: $(STAMP)
	$(BIN)/python bench/relay.py

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Ferry needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[embedded,tracing,dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .ferry .mypy_cache .ruff_cache .pytest_cache
