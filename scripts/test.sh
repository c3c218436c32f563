#!/usr/bin/env bash
# `make test`: install what the tests need and run the whole suite: pytest,
# then the Baileys bridge's own tests (node --test). Extra arguments go to
# pytest (e.g. `make test ARGS="-k breaker"`); BRIDGE_TESTS=0 leaves the
# bridge's tests out.
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
python -m pytest "$@" || status=$?
if [[ ${BRIDGE_TESTS:-1} != 0 ]]; then
  echo "Bridge tests (bridges/baileys: npm test)"
  (cd bridges/baileys && npm test --silent) || status=$?
fi
exit "$status"
