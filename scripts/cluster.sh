#!/usr/bin/env bash
# The compose.yaml topology without Docker, on 127.0.0.1: redis-server (AOF), three tusd-py
# instances sharing one data directory, and nginx round-robin in front (deploy/nginx/tus-proxy.conf).
#   bash scripts/cluster.sh                          # tus endpoint http://127.0.0.1:8080/files/
#   bash scripts/cluster.sh --instances 5 --port 9000 --dir ./cluster-data
# Ctrl-C stops every process. Needs redis-server and nginx (scripts/test.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python -m tests.cluster "$@"
