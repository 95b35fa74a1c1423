#!/usr/bin/env bash
# Starts tusd-py from a checkout: makes .venv, installs the project, builds the upload page
# (when npm is there), then runs the server with the arguments given.
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
.venv/bin/python -m pip install -q --disable-pip-version-check -e .

if command -v npm >/dev/null 2>&1; then
  if [ ! -d clients/web/node_modules ] || [ clients/web/package-lock.json -nt clients/web/node_modules ]; then
    (cd clients/web && npm ci --no-audit --no-fund --loglevel=error)
  fi
  (cd clients/web && npm run --silent build)
else
  echo "npm not found: serving without the upload page (Debian: apt-get install nodejs npm)" >&2
fi

exec .venv/bin/tusd-py "$@"
