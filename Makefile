# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint audit bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev,demo,reference]'
	touch $(STAMP)

demo: $(STAMP)
	packaging/linux/qt-runtime-deps.sh --gui
	$(BIN)/kerbside demo

test: $(STAMP)
	packaging/linux/qt-runtime-deps.sh
	packaging/linux/keychain-test-deps.sh
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check app sync tests
	$(BIN)/ruff format --check app sync tests
	$(BIN)/mypy app sync

# SECURITY.md 16: known vulnerabilities in the pinned dependencies (needs the OSV/PyPI advisory API).
audit: $(STAMP)
	$(BIN)/pip install --quiet pip-audit
	$(BIN)/pip-audit --skip-editable

bench: $(STAMP)
	$(BIN)/python tests/bench/bench_search.py
	$(BIN)/python tests/bench/bench_sync.py
	$(BIN)/python tests/bench/bench_startup.py

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/kerbside screenshots --out docs/screenshots

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
