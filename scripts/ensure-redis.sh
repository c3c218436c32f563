#!/usr/bin/env bash
# Make sure a Redis answers and print its URL on stdout.
#
# Uses $REDIS_URL when something answers there (default
# redis://127.0.0.1:6379/0). Otherwise starts a private redis-server on
# 127.0.0.1:$BLAST_PRIVATE_REDIS_PORT (default 6390) with its files under
# .run/redis, installing Debian's redis-server first when it is missing and we
# are root. Progress goes to stderr so callers can capture the URL.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
url=${REDIS_URL:-redis://127.0.0.1:6379/0}

answers() {
  "$PY" - "$1" <<'PYEOF' >/dev/null 2>&1
import sys
import redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1, socket_timeout=2).ping()
PYEOF
}

if answers "$url"; then
  echo "$url"
  exit 0
fi

port=${BLAST_PRIVATE_REDIS_PORT:-6390}
private="redis://127.0.0.1:${port}/0"
if answers "$private"; then
  echo "Using the private Redis already running on port ${port}." >&2
  echo "$private"
  exit 0
fi

if ! command -v redis-server >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Redis is not installed: installing Debian's redis-server..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq redis-server >&2
  else
    echo "No Redis answers at ${url} and redis-server is not installed." >&2
    echo "Install it (apt-get install redis-server) or set REDIS_URL." >&2
    exit 1
  fi
fi

mkdir -p .run/redis
echo "No Redis answers at ${url}: starting a private redis-server on 127.0.0.1:${port}." >&2
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$PWD/.run/redis" --pidfile "$PWD/.run/redis/redis.pid" --logfile "$PWD/.run/redis/redis.log" >&2
for _ in $(seq 1 50); do
  if answers "$private"; then
    echo "$private"
    exit 0
  fi
  sleep 0.2
done
echo "The private redis-server did not answer; see .run/redis/redis.log" >&2
exit 1
