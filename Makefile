# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv with Python 3.11 and installs salesflow with its dev tools when needed.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The browser tests (tests/report) drive Debian's Chromium through Playwright; Playwright's own
# browser download is never used. Installed once, by apt, only when missing.
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint install chromium postgres clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		chromium chromium-driver
	test -x $@

chromium: | $(CHROMIUM)

# The PostgreSQL tests use the machine's server on 127.0.0.1:5432: start it if it is down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
		$(SUDO) pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start && \
		for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

demo: $(STAMP)
	$(BIN)/salesflow demo

test: $(STAMP) postgres | $(CHROMIUM)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) salesflow-demo data .pytest_cache .ruff_cache .mypy_cache
