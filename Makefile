# The README's two set-up commands are `make run` and `make test`; both build .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run dev test test-unit lint format bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_RUN): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(STAMP_DEV): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(STAMP_RUN)

run: $(STAMP_RUN)  ## gunicorn (gthread) on HOST:PORT, default 0.0.0.0:5000
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

dev: $(STAMP_RUN)  ## flask's reloading development server
	$(BIN)/flask --app wsgi run --reload --port $${PORT:-5000}

# Debian packages the integration tests drive for real (nginx for SSE, redis for the shared
# cache). Installed when missing and when we are root; otherwise those tests skip with a reason.
system-deps:
	@missing=""; for p in nginx redis-server docker-compose curl jq; do command -v $$p >/dev/null 2>&1 || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
			|| echo "could not install:$$missing (tests that need them will skip)"; \
	elif [ -n "$$missing" ]; then echo "not installed:$$missing (tests that need them will skip)"; fi

test: $(STAMP_DEV) system-deps  ## the whole suite, unit and integration
	$(BIN)/python -m pytest -q

test-unit: $(STAMP_DEV)
	$(BIN)/python -m pytest -q --ignore=tests/integration

lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -c "import app"

format: $(STAMP_DEV)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP_DEV)
	$(BIN)/python benchmarks/bench_proxy.py
	$(BIN)/python benchmarks/bench_tokens.py
	$(BIN)/python benchmarks/bench_context.py
	$(BIN)/python benchmarks/bench_condensation.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
