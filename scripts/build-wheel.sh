#!/usr/bin/env bash
# Builds tusd-py's sdist and, from that sdist, its wheel (with the upload page) into OUTDIR.
# The one build path: tests/e2e/test_wheel.py runs it and installs the wheel into a fresh venv,
# and the Dockerfile's build stage runs it and installs the same wheel into the image.
#   bash scripts/build-wheel.sh [OUTDIR]      # default: dist/ (git-ignored)
#   PYTHON=/path/to/python bash scripts/build-wheel.sh /wheels
# Needs Python >= 3.11 and npm (setup.py builds the page from clients/web with npm ci + esbuild).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
python="${PYTHON:-python3}"

"$python" -c 'import build' 2>/dev/null || "$python" -m pip install -q --disable-pip-version-check build
mkdir -p "$out"
# Without --sdist/--wheel, build makes the sdist and then the wheel from the unpacked sdist,
# so the wheel proves the sdist carries everything (the page's sources and lock file).
"$python" -m build --outdir "$out" .

wheel=$(ls -t "$out"/tusd_py-*.whl | head -n 1)
if ! "$python" -c 'import sys, zipfile; sys.exit("tusd_py/static/dist/index.html" not in zipfile.ZipFile(sys.argv[1]).namelist())' "$wheel"; then
  if [ -n "${TUSD_PY_BUILD_WITHOUT_PAGE:-}" ]; then
    echo "built $wheel WITHOUT the upload page (TUSD_PY_BUILD_WITHOUT_PAGE is set)" >&2
  else
    echo "error: $wheel has no upload page (tusd_py/static/dist/index.html)" >&2
    exit 1
  fi
fi
echo "built $wheel"
