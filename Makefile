# Patron — `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PG_TEST_URL := postgresql+psycopg://postgres@127.0.0.1:5432/test
RUN_DB := sqlite:///./var/patron.db

.PHONY: setup system run test test-sqlite test-postgres lint bench clean messages

# The translations (src/patron/web/locale: the pages' messages, the API's problems),
# compiled from their catalogs at build.
LOCALE := src/patron/web/locale
CATALOGS := $(wildcard $(LOCALE)/*/LC_MESSAGES/*.po)
COMPILED := $(CATALOGS:.po=.mo)

setup: system $(STAMP) $(COMPILED)

$(LOCALE)/%.mo: $(LOCALE)/%.po $(STAMP)
	@$(BIN)/pybabel compile --input-file $< --output-file $@ --statistics

# After changing a page's text: extract the messages and update every catalog (the new
# ones arrive untranslated; tests/web/test_catalog.py fails until they are translated).
messages: $(STAMP)
	$(BIN)/python -m patron.web.catalog

# What the project needs from Debian, installed in CI (elsewhere the browser tests skip
# without it): Chromium for the tests of pages, and CJK fonts to draw ja, zh and ko.
SYSTEM_PACKAGES := chromium fonts-noto-cjk
system:
ifeq ($(CI),true)
	@command -v chromium >/dev/null && test -d /usr/share/fonts/opentype/noto || { \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) \
		|| { apt-get update -q && apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); }; }
endif

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: setup
	@mkdir -p var
	PATRON_DATABASE_URL=$${PATRON_DATABASE_URL:-$(RUN_DB)} $(BIN)/patron db upgrade
	PATRON_DATABASE_URL=$${PATRON_DATABASE_URL:-$(RUN_DB)} $(BIN)/patron demo --if-empty
	PATRON_DATABASE_URL=$${PATRON_DATABASE_URL:-$(RUN_DB)} $(BIN)/patron serve --access-log

# Random ledger walks (tests/ledger/test_stateful.py): in CI 2,000 on SQLite and 200 on
# PostgreSQL; the test fails in CI if it is asked for fewer or Hypothesis runs fewer.
# Elsewhere the test's default (50) unless PATRON_HYPOTHESIS_EXAMPLES is set.
ifeq ($(CI),true)
WALKS_SQLITE = 2000
WALKS_POSTGRES = 200
endif

# The suite runs in TEST_WORKERS pytest-xdist worker processes (0: in this process), each
# with its own database (tests/conftest.py). 2 fits the 2-core CI machine and PostgreSQL's
# 100 connections: one live server at a time (2 x 25) + 2 workers x 20 (docs/configuration.md,
# "Connection budget"); more workers need a larger max_connections.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=25

# The suite runs on SQLite, then on PostgreSQL when PATRON_TEST_DATABASE_URL is set or in CI
# (where the PostgreSQL run is mandatory: an unreachable server fails the run).
test: setup
	$(MAKE) --no-print-directory test-sqlite
	@if [ -n "$$PATRON_TEST_DATABASE_URL" ] || [ "$$CI" = "true" ]; then \
		$(MAKE) --no-print-directory test-postgres; \
	else echo "PostgreSQL run skipped: set PATRON_TEST_DATABASE_URL or CI=true"; fi

test-sqlite: setup
	env -u PATRON_TEST_DATABASE_URL $(if $(WALKS_SQLITE),PATRON_HYPOTHESIS_EXAMPLES=$(WALKS_SQLITE)) \
		$(PYTEST)

test-postgres: setup
	PATRON_TEST_DATABASE_URL=$${PATRON_TEST_DATABASE_URL:-$(PG_TEST_URL)} \
		PATRON_REQUIRE_POSTGRES=1 $(if $(WALKS_POSTGRES),PATRON_HYPOTHESIS_EXAMPLES=$(WALKS_POSTGRES)) \
		$(PYTEST)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
