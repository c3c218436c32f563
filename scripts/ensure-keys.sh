#!/usr/bin/env bash
# Keep the single machine's keys under .run/ (or $BLAST_RUN_DIR): SECRET_KEY,
# the token key and the bridge's store key, each generated once and reused by
# every later run, so that sessions, signed links, encrypted secrets and the
# bridge's pairings survive a restart.
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
# The Baileys bridge reads 32 bytes as 64 hex digits (BRIDGE_STORE_KEY).
if [[ ! -s "$dir/bridge-key" ]]; then
  (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/bridge-key.tmp")
  mv "$dir/bridge-key.tmp" "$dir/bridge-key"
  echo "generated $dir/bridge-key" >&2
fi
