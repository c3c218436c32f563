#!/usr/bin/env bash
# `make test`: install what the tests need and run the whole suite.
# Extra arguments go to pytest (e.g. `make test ARGS="-k breaker"`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-venv.sh requirements-dev.txt
scripts/ensure-keys.sh
scripts/ensure-chromium.sh >/dev/null
REDIS_URL=$(scripts/ensure-redis.sh)
export REDIS_URL
export PATH="$PWD/.venv/bin:$PATH"
exec python -m pytest "$@"
