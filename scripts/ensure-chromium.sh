#!/usr/bin/env bash
# Make sure Debian's Chromium is installed, for the dashboard's browser test
# (tests/monitoring/test_dashboard.py drives it with Playwright's Python
# package; Playwright's own browser download is never used). Installs the
# `chromium` package when it is missing and we are root; prints its path.
set -euo pipefail

find_chromium() {
  command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null || true
}

path=$(find_chromium)
if [[ -z $path ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "Chromium is not installed: installing Debian's chromium..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq chromium >&2
    path=$(find_chromium)
  fi
fi
if [[ -z $path ]]; then
  echo "Chromium is missing and cannot be installed here (apt-get install chromium as root)." >&2
  exit 1
fi
echo "$path"
