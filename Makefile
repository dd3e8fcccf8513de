# The two commands README.rst opens with: `make demo` and `make test`.
# Both create the virtual environment they need on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test system-deps lint typecheck docs pytest bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/activate setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[tests]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python example/app.py

test: system-deps lint typecheck docs pytest

# The test suite starts its own redis-server processes on free loopback
# ports. Install it when missing (CI runs as root on a fresh Debian machine).
system-deps:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "redis-server is missing: sudo apt-get install redis-server" >&2; exit 1; \
	  fi; }

lint: $(VENV)/.installed
	$(BIN)/ruff check flask_pow tests example benchmarks
	$(BIN)/ruff format --check flask_pow tests example benchmarks

typecheck: $(VENV)/.installed
	$(BIN)/mypy

docs: $(VENV)/.installed
	$(BIN)/sphinx-build -q -W --keep-going -b html docs docs/_build/html

pytest: $(VENV)/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.request_cost
	$(BIN)/python -m benchmarks.redis_memory

clean:
	rm -rf $(VENV) build docs/_build *.egg-info .mypy_cache .ruff_cache .pytest_cache
