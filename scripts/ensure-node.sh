#!/usr/bin/env bash
# Make sure Node.js 20+ and npm are here and the Baileys bridge's packages are
# installed (bridges/baileys, `npm ci` from its committed lock file).
#
# Installs Debian's nodejs and npm first when node is missing and we are root,
# as ensure-redis.sh does for Redis. `npm ci` runs again only when the lock
# file changed since the last install. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

bridge=bridges/baileys

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Node.js is not installed: installing Debian's nodejs and npm..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq nodejs npm >&2
  else
    echo "Node.js 20 or newer and npm are needed for the bridge: install them (Debian: apt-get install nodejs npm)." >&2
    exit 1
  fi
fi

major=$(node -p 'process.versions.node.split(".")[0]')
if (( major < 20 )); then
  echo "The bridge needs Node.js 20 or newer; this machine has $(node --version)." >&2
  exit 1
fi

stamp="$bridge/node_modules/.blast-lock-sha256"
want=$(sha256sum "$bridge/package-lock.json" | cut -d' ' -f1)
# Two runs started together (two `make test`s) take turns: a second `npm ci`
# would delete the tree the first one is building.
exec 9>"$bridge/.npm-install.lock"
flock 9
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "Installing the bridge's packages (npm ci in $bridge)..." >&2
  # better-sqlite3 builds its native module from source when no prebuilt
  # binary can be fetched: that is what happens on a machine without GitHub.
  (cd "$bridge" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" >"$stamp"
fi
