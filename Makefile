# The two commands: `make run` starts the whole platform with demo data,
# `make test` installs what the tests need and runs them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help run test lint bench clean stop-redis

help:
	@echo "make run    set everything up and start the platform with demo data"
	@echo "make test   install what the tests need and run the whole suite"
	@echo "make lint   ruff and mypy"

run:
	@scripts/run.sh

test:
	@scripts/test.sh $(ARGS)

lint:
	@scripts/ensure-venv.sh requirements-dev.txt
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

stop-redis:
	@if [[ -f .run/redis/redis.pid ]]; then kill $$(cat .run/redis/redis.pid) && echo "private Redis stopped"; fi

clean: stop-redis
	rm -rf .run staticfiles test-db.sqlite3*
