# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGE_STAMP := $(VENV)/.package
VERSION = $$($(BIN)/python -c 'from importlib.metadata import version; print(version("kerbside"))')

.PHONY: mutation demo test test-packaging package lint audit bench screenshots clean

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

# PyInstaller into the project venv (the [package] extra), re-done when pyproject.toml changes.
$(PACKAGE_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[package]'
	touch $(PACKAGE_STAMP)

# The tablet build: dist/kerbside/ (self-contained app folder) and dist/kerbside_<v>_<arch>.deb.
package: $(PACKAGE_STAMP)
	rm -rf build/pyinstaller build/deb dist/kerbside dist/kerbside_*.deb
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/kerbside.spec
	packaging/linux/build-deb.sh "$(VERSION)"

# The slow tests that build and install the wheel and the tablet build (not run by `make test`).
test-packaging: $(PACKAGE_STAMP)
	packaging/linux/qt-runtime-deps.sh --gui
	packaging/linux/keychain-test-deps.sh
	packaging/linux/packaging-test-deps.sh
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest -m packaging tests/packaging
	packaging/linux/deb-install-check.sh

lint: $(STAMP)
	$(BIN)/ruff check app sync tests
	$(BIN)/ruff format --check app sync tests
	$(BIN)/mypy app sync

# SECURITY.md 16: known vulnerabilities in the pinned dependencies (needs the OSV/PyPI advisory API).
audit: $(STAMP)
	$(BIN)/pip install --quiet pip-audit
	$(BIN)/pip-audit --skip-editable

# Mutation check of the pinned security controls (about 5 min on 2 cores); see docs/security/mutation.md.
mutation: $(STAMP)
	$(BIN)/pip install --quiet mutmut
	QT_QPA_PLATFORM=offscreen $(BIN)/mutmut run
	$(BIN)/mutmut results

bench: $(STAMP)
	$(BIN)/python tests/bench/bench_search.py
	$(BIN)/python tests/bench/bench_sync.py
	$(BIN)/python tests/bench/bench_startup.py

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/kerbside screenshots --out docs/screenshots

clean:
	rm -rf $(VENV) build dist mutants *.egg-info .pytest_cache .mypy_cache .ruff_cache
