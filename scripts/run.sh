#!/usr/bin/env bash
# `make run`: set everything up, seed demo data and start every process of
# the Procfile in the foreground (scripts/procfile.py). Ctrl-C, SIGTERM or
# SIGHUP stops them all, children included, even when the output is piped and
# the reader died first. Each process also logs to logs/<name>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-venv.sh requirements.txt
scripts/ensure-keys.sh
scripts/ensure-node.sh
REDIS_URL=$(scripts/ensure-redis.sh)
export REDIS_URL
export PATH="$PWD/.venv/bin:$PATH"
export PYTHONUNBUFFERED=1
mkdir -p logs

python manage.py migrate --noinput
python manage.py rotate_token_key >/dev/null
python manage.py collectstatic --noinput -v 0
python manage.py seed_demo

echo
echo "Starting the platform (Redis at ${REDIS_URL}). Ctrl-C stops every process."
echo "  admin:     http://127.0.0.1:${WEB_PORT:-8000}/admin/"
echo "  gateway:   ws://127.0.0.1:${GATEWAY_PORT:-8765} (simulator, used by the demo instances)"
echo "  bridge:    ws://127.0.0.1:${BRIDGE_PORT:-8766} (WhatsApp, through Baileys: README, \"A real WhatsApp account\")"
echo "  logs:      logs/<process>.log (logs/system.log: starts and stops)"
echo
exec python scripts/procfile.py -f Procfile --log-dir logs
