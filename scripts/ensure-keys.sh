#!/usr/bin/env bash
# Keep the single machine's keys under .run/ (or $BLAST_RUN_DIR): SECRET_KEY
# and the token key, each generated once and reused by every later run, so
# that sessions, signed links and encrypted secrets survive a restart.
# Variables set in the environment win over these files (blast/settings.py).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${BLAST_RUN_DIR:-.run}
mkdir -p "$dir"
for name in secret-key token-key; do
  if [[ ! -s "$dir/$name" ]]; then
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(50))' >"$dir/$name.tmp")
    mv "$dir/$name.tmp" "$dir/$name"
    echo "generated $dir/$name" >&2
  fi
done
