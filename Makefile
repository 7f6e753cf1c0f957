# `make run` and `make test` work on a fresh Debian machine with Python 3.11 and Node:
# they create .venv, install the project, the Debian packages and the Node packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NPM_DIRS := $(patsubst %/package-lock.json,%,$(wildcard tests/js/package-lock.json web/package-lock.json tests/browser/uppy6/package-lock.json tests/browser/uppy5/package-lock.json))

.PHONY: run test lint format typecheck setup python-deps system-deps node-deps web-build proto clean

run: setup
	$(BIN)/buildpeer dev

# The suite in TEST_PROCESSES pytest processes, one test file per process at a time; each
# process starts its own services (every port is picked free), so they never meet.
TEST_PROCESSES ?= 3

test: setup
	$(BIN)/pytest -q -n $(TEST_PROCESSES) --dist loadfile

setup: python-deps system-deps node-deps web-build

# The dashboard bundle (web/ → server/static/dist/, not committed).
web-build: node-deps
	@cd web && node build.mjs

python-deps: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

system-deps:
	@scripts/system-packages.sh

node-deps:
	@for dir in $(NPM_DIRS); do \
	  if [ ! -d $$dir/node_modules ] || [ $$dir/package-lock.json -nt $$dir/node_modules/.package-lock.json ]; then \
	    echo "npm ci in $$dir"; (cd $$dir && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	  fi; \
	done

lint: python-deps
	$(BIN)/ruff check core server processors subscribers cli devstack tests bench infra
	$(BIN)/ruff format --check core server processors subscribers cli devstack tests bench infra

format: python-deps
	$(BIN)/ruff format core server processors subscribers cli devstack tests bench infra
	$(BIN)/ruff check --fix core server processors subscribers cli devstack tests bench infra

typecheck: python-deps
	$(BIN)/mypy

# The Centrifugo client protocol's message classes (server/realtime/proto/): regenerate after
# updating centrifugo_client.proto from centrifugal/protocol (keep its package line).
proto: python-deps
	cd server/realtime/proto && ../../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. centrifugo_client.proto

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
