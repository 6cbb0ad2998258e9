# Two commands from a fresh clone: `make demo` and `make test`. Each bootstraps .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit bench dev clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## run a real lifetime end to end on the embedded dev server
	$(BIN)/graphrunner demo

test: lint unit  ## ruff + mypy --strict, then the test suite against a real Temporal server

lint: $(STAMP)
	$(BIN)/ruff check graphrunner tests bench examples
	$(BIN)/ruff format --check graphrunner tests bench examples
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 --dist worksteal

bench: $(STAMP)  ## graphrunner vs hand-written temporalio, same server, same run
	$(BIN)/python -m bench

dev: $(STAMP)  ## dev server with UI on :8233 plus a worker; Ctrl-C stops both
	$(BIN)/graphrunner dev

clean:
	rm -rf $(VENV) .graphrunner .mypy_cache .ruff_cache .pytest_cache *.egg-info
