# Two commands for a fresh clone: `make run` and `make test`. `make setup` is what both run first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp

.PHONY: setup run test test-fast lint bench clean

setup: $(STAMP) static/vendor/.npm-stamp

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "CloudSeam needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

static/vendor/.npm-stamp: package.json package-lock.json scripts/vendor_static.py
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Node.js and npm (Debian: apt-get install npm), then run make again." >&2; exit 1; }
	npm ci --silent --no-audit --no-fund
	$(BIN)/python scripts/vendor_static.py
	@touch $@

# `make run PORT=8001 HOST=0.0.0.0` (or CLOUDSEAM_PORT / CLOUDSEAM_HOST in the environment).
run: setup
	$(BIN)/python manage.py serve $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST))

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	CLOUDSEAM_TEST_DATABASE=postgres $(BIN)/python -m pytest -m postgres

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e and not browser"

lint: setup
	$(BIN)/ruff check .

bench: setup
	@$(BIN)/python -c 'import transitions' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) node_modules static/vendor var test-artifacts
