#!/usr/bin/env bash
# Installs everything the tests need (idempotently, as root on Debian), then runs them.
#   bash scripts/test.sh            # the whole suite
#   bash scripts/test.sh -k patch   # extra arguments go to pytest
# Before the tests: ruff (lint) and mypy (strict on tusd_py/), as configured in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || [ -x /usr/bin/redis-sentinel ] || need_apt+=(redis-sentinel)  # the Sentinel tests
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)  # the scale-out tests' proxy
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing ${need_apt[*]}: install them (Debian: apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  echo "installing ${need_apt[*]} from apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Also builds the upload page (npm ci + esbuild in clients/web) when it is missing or stale: setup.py.
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if [ -f tests/js/package-lock.json ]; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

# The checks that keep the code as docs/architecture.md describes it (pyproject.toml has their settings).
.venv/bin/ruff check --quiet .
.venv/bin/mypy --no-error-summary

# A worker per core (at most 4), one test file per worker so module fixtures (clusters, shared servers) start
# once; `-n 0` runs everything in this process.
exec .venv/bin/python -m pytest -n auto --maxprocesses=4 --dist loadfile "$@"
