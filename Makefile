# The two commands: `make run` (the product on its embedded default) and `make test` (the whole suite).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PORT ?= 8000
export PORT

.PHONY: run test bench lint typecheck install install-dev migrate clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

migrate: install
	$(PY) manage.py migrate --noinput

# honcho gives every process its own PORT (web 8000, worker 8100, beat 8200): HUBSYNC_BASE_URL pins the one
# address where the web server (and so the sandbox) is reached, for all three. `--env /dev/null`: .env is the
# docker compose configuration (hosts like "postgres"), not the embedded default's; export variables instead.
# honcho SIGKILLs whatever still runs 5 s after Ctrl-C; an idle Celery worker on the filesystem broker needs
# about 7 s for its warm shutdown (which hands unfinished messages back to the queue), so allow 30 s.
HONCHO := $(PY) -c "import honcho.manager, honcho.command; honcho.manager.KILL_WAIT = 30; honcho.command.main()"
run: migrate
	@echo "hubsync on http://127.0.0.1:$(PORT)  (Ctrl-C stops web, worker and beat)"
	PATH="$(CURDIR)/$(BIN):$$PATH" HUBSYNC_BASE_URL="$${HUBSYNC_BASE_URL:-http://127.0.0.1:$(PORT)}" \
		$(HONCHO) start -f Procfile --env /dev/null

# ruff (rules and the complexity ceiling in pyproject.toml), ruff format, the import layers, mypy.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	HUBSYNC_TESTING=1 $(BIN)/mypy

# mypy with django-stubs on the product apps ([tool.mypy] in pyproject.toml); not yet part of `lint`.
typecheck: install
	HUBSYNC_TESTING=1 $(BIN)/mypy

# Two test workers (pytest-xdist), one per core; a whole module runs in one worker (its fixtures start once).
# Each worker gets its own test database and Redis database. TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: lint
	HUBSYNC_TESTING=1 $(PY) manage.py makemigrations --check --dry-run
	HUBSYNC_TESTING=1 $(BIN)/pytest -m "not bench" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: install
	HUBSYNC_TESTING=1 $(BIN)/pytest -m bench -s bench $(PYTEST_ARGS)

clean:
	rm -rf var staticfiles .pytest_cache
