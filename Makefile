# The two commands README.rst opens with: `make demo` and `make test`.
# Both create the virtual environment they need on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast system-deps lint typecheck docs pytest pytest-min bench stress clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/activate setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[tests]'
	touch $@

# The demo needs only its own extra, not the test tools: a marker of its own.
# `make demo PORT=5001` serves it on another port.
PORT ?= 5000

$(VENV)/.installed-demo: $(BIN)/activate setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/python -m example.app --port $(PORT)

test: system-deps lint typecheck docs pytest pytest-min

# The test suite starts its own redis-server processes on free loopback
# ports, drives the example app in Debian's headless Chromium, and runs the
# benchmark once in tiny sizes (PostgreSQL and wrk), and runs a worker whose
# clock is off (faketime). Install them when
# missing (CI runs as root on a fresh Debian machine).

system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v memcached >/dev/null || missing="$$missing memcached"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v faketime >/dev/null || missing="$$missing faketime"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing$$missing with apt-get"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Missing:$$missing (sudo apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

lint: $(VENV)/.installed
	$(BIN)/ruff check flask_pow tests example benchmarks
	$(BIN)/ruff format --check flask_pow tests example benchmarks

typecheck: $(VENV)/.installed
	$(BIN)/mypy

docs: $(VENV)/.installed
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

# The suite runs in WORKERS processes (pytest-xdist); each starts servers of
# its own on free ports. `make pytest WORKERS=0` runs it in one process.
WORKERS ?= auto

pytest: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(WORKERS)

# The loop while working: no test marked slow, the store matrix on the two
# stores that need no server, and no redis-server or memcached (a test that
# needs one skips). Under a minute; `make test` runs everything.
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(WORKERS) -m "not slow" \
	  --backends simple,filesystem --no-servers

# The suite once more, against the oldest versions setup.cfg allows
# (tests/requirements-min.txt), in a virtual environment of its own. It tests
# the dependencies, so the store matrix keeps one store per code path a
# floor can break: cachelib's SimpleCache, FileSystemCache and
# MemcachedCache, redis-py's Redis, RedisCluster and its client-side
# tracking (redis-local). valkey is left out (its client is not pinned, so
# it is the same version as above) and so is redis-local-cluster (two paths
# both run already). The browser and benchmark tests exercise the example
# and the benchmarks, not the dependencies: they run once, above.
MIN_VENV ?= .venv-min
MIN_BACKENDS ?= simple,filesystem,memcached,redis,redis-local,redis-cluster

$(MIN_VENV)/.installed: setup.cfg pyproject.toml tests/requirements-min.txt
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet -c tests/requirements-min.txt -e '.[tests]'
	touch $@

pytest-min: system-deps $(MIN_VENV)/.installed
	$(MIN_VENV)/bin/python -m pytest -p no:cacheprovider -n $(WORKERS) \
	  --backends $(MIN_BACKENDS) \
	  --ignore=tests/system/test_browser.py --ignore=tests/system/test_benchmarks.py

# The benchmark measures Redis with and without hiredis: it installs it.
$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[tests,hiredis]'
	touch $@

bench: system-deps $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks.run

# The full load and fault run (make test runs a short one): 100 clients for
# two minutes against 4 gunicorn workers on Redis, with faults injected.
stress: system-deps $(VENV)/.installed
	$(BIN)/python -m tests.apps.stress --clients 100 --seconds 120 --workers 4

clean:
	rm -rf $(VENV) $(MIN_VENV) build docs/_build *.egg-info .mypy_cache .ruff_cache .pytest_cache
