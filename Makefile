# Doorstep — two commands on a fresh machine:
#   make run   # venv + install + demo data (empty database) + serve on 127.0.0.1:8000 (SQLite)
#              # another address: make run PORT=8001 HOST=0.0.0.0
#   make test  # venv + dev extras + browser deps + the whole suite (SQLite and PostgreSQL)
#   make clean     # the venv and tool caches; never the database
#   make reset-db  # deletes the local SQLite database (doorstep.db): orders, conversations, the API key

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: run test install dev browser-deps lint typecheck bench clean reset-db docs-screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when the project's dependency declaration changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[rasa]"
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

run: install
	$(BIN)/doorstep serve --demo --host $(HOST) --port $(PORT)

# The browser test drives Debian's chromium; install it when missing (needs root, as on CI).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = "0" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); \
	  else echo "chromium is missing; install it with: sudo apt-get install -y chromium"; fi; }

test: dev browser-deps lint
	$(BIN)/pytest -q

# The inbox's pictures in docs/ (inbox.png, inbox-list.png, inbox-order-actions.png, inbox-phone*.png),
# taken by the real-browser tests; a plain test run never changes tracked files.
docs-screenshots: dev browser-deps
	DOORSTEP_UPDATE_DOCS=1 $(BIN)/pytest -q -m browser tests/handoff

# ruff everywhere; mypy on all code (strict on flows/ and intents/, see pyproject.toml); the rooms'
# import contracts (layers, one door to integrations/, no cycles: [tool.importlinter] in pyproject.toml)
lint: dev
	$(BIN)/ruff check bot intents flows integrations tests bench
	$(BIN)/mypy bot integrations flows intents
	$(BIN)/lint-imports

bench: dev
	$(BIN)/python bench/inbound.py

# The database holds real data (orders, conversations, the generated API key): `clean` keeps it.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Deleting the database is its own, explicitly named target.
reset-db:
	rm -f doorstep.db doorstep.db-wal doorstep.db-shm doorstep.db-journal
	@echo "Deleted the local SQLite database (doorstep.db). The next 'make run' starts empty, with demo data and a new API key."
