# The two commands: `make run` starts the whole platform with demo data,
# `make test` installs what the tests need and runs them. `make manage`
# runs one manage.py command with the environment `make run` gives its
# processes.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help run test manage lint bench bench-report clean stop-redis

help:
	@echo "make run    set everything up and start the platform with demo data"
	@echo "make test   install what the tests need and run the whole suite"
	@echo "make manage ARGS=\"createsuperuser\"   a manage.py command, with make run's environment (Redis)"
	@echo "make lint   ruff and mypy"
	@echo "make bench  run the benchmarks into bench/results/ and write docs/BENCHMARKS.md (30 to 40 minutes)"
	@echo "            a subset: make bench BENCH=\"connections health\" (also: messages inbound campaign_health baseline scaleout chaos)"
	@echo "make bench-report   only regenerate docs/BENCHMARKS.md from bench/results/"

run:
	@scripts/run.sh

test:
	@scripts/test.sh $(ARGS)

# As scripts/run.sh prepares its processes: the virtualenv, the kept keys,
# the Redis that answers (REDIS_URL, or the private one), .venv/bin first on
# PATH. Only the command's own output goes to stdout, so that
# `KEY=$(make manage ARGS="create_api_key ...")` captures the key alone.
manage:
	@scripts/ensure-venv.sh requirements.txt >&2
	@scripts/ensure-keys.sh
	@REDIS_URL=$$(scripts/ensure-redis.sh) PATH="$$PWD/$(VENV)/bin:$$PATH" PYTHONUNBUFFERED=1 $(PY) manage.py $(ARGS)

lint:
	@scripts/ensure-venv.sh requirements-dev.txt
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m blast.layers

bench:
	@scripts/bench.sh $(BENCH)

bench-report:
	@scripts/bench.sh report

stop-redis:
	@if [[ -f .run/redis/redis.pid ]]; then kill $$(cat .run/redis/redis.pid) && echo "private Redis stopped"; fi

clean: stop-redis
	rm -rf .run staticfiles test-db.sqlite3*
