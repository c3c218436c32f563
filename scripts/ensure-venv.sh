#!/usr/bin/env bash
# Create .venv with Python 3.11 (installing Debian's venv support when it is
# missing and we are root) and install the given requirements file into it.
set -euo pipefail
cd "$(dirname "$0")/.."
requirements=${1:-requirements.txt}

python=${PYTHON:-}
if [[ -z $python ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
[[ -n $python ]] || { echo "Python 3.11 is required (python3.11 not found)." >&2; exit 1; }

if [[ ! -x .venv/bin/python ]]; then
  if ! "$python" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      echo "Installing Debian's python3-venv..." >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      apt-get install -y -qq "python${version}-venv" || apt-get install -y -qq python3-venv
      "$python" -m venv .venv
    else
      echo "'$python -m venv' failed: install the venv module (apt-get install python3-venv)." >&2
      exit 1
    fi
  fi
  .venv/bin/python -m pip install -q --upgrade pip
fi

# Reinstall only when the requirements changed since the last install.
stamp=.venv/.installed-$(basename "$requirements")
if [[ ! -f $stamp ]] || [[ -n $(find requirements*.txt -newer "$stamp" 2>/dev/null) ]]; then
  .venv/bin/python -m pip install -q -r "$requirements"
  touch "$stamp"
fi
