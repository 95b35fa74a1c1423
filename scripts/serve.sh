#!/usr/bin/env bash
# Starts tusd-py from a checkout: makes .venv, installs the project (which builds the upload
# page, when npm is there: setup.py), then runs the server with the arguments given.
#   bash scripts/serve.sh                       # http://127.0.0.1:1080/ (page) and /files/ (tus)
#   bash scripts/serve.sh --host 0.0.0.0 --redis-url redis://127.0.0.1:6379/0
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  python3 -m venv .venv
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: serving without the upload page (Debian: apt-get install nodejs npm)" >&2
  export TUSD_PY_BUILD_WITHOUT_PAGE=1
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .

exec .venv/bin/tusd-py "$@"
