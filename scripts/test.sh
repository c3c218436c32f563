#!/usr/bin/env bash
# `make test`: install what the tests need and run the whole suite: pytest,
# then the Baileys bridge's own tests (node --test). Extra arguments go to
# pytest (e.g. `make test ARGS="-k breaker"`); BRIDGE_TESTS=0 leaves the
# bridge's tests out.
#
# pytest runs the tests in two processes (pytest-xdist), each with its own
# test database and Redis database (tests/conftest.py): much of the suite
# waits on the processes its tests start, and two keep both cores busy.
# ARGS="-n 0" runs them in this one. Tests are handed out in pytest-django's
# order (--dist load), so each process still runs every test on the database
# before any test that empties it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-venv.sh requirements-dev.txt
scripts/ensure-keys.sh
scripts/ensure-node.sh
scripts/ensure-chromium.sh >/dev/null
REDIS_URL=$(scripts/ensure-redis.sh)
export REDIS_URL
export PATH="$PWD/.venv/bin:$PATH"
status=0
python -m pytest -n 2 --dist load "$@" || status=$?
if [[ ${BRIDGE_TESTS:-1} != 0 ]]; then
  echo "Bridge tests (bridges/baileys: npm test)"
  (cd bridges/baileys && npm test --silent) || status=$?
fi
exit "$status"
