#!/usr/bin/env bash
# Installs tusd-py into .venv (idempotently) and starts it; arguments go to tusd-py.
#   bash scripts/serve.sh                       # embedded state, ./data, http://127.0.0.1:1080/files/
#   bash scripts/serve.sh --redis-url redis://127.0.0.1:6379/0 --port 8080
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/tusd-py "$@"
