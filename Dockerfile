# tusd-py, one instance, from the wheel that scripts/build-wheel.sh builds (the same script
# tests/e2e/test_wheel.py runs and installs into a fresh venv, so the image and the tested
# path cannot drift apart). compose.yaml runs three of these behind nginx.
#
#   docker build -t tusd-py .      # then: docker run -p 1080:1080 tusd-py

# -- build: node for the upload page (npm ci + esbuild), Python for the sdist and wheel ------
FROM node:20-bookworm-slim AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/build-venv
WORKDIR /src
COPY . .
RUN PYTHON=/opt/build-venv/bin/python bash scripts/build-wheel.sh /wheels

# -- runtime: slim Python with the wheel (server, tus-upload, the page) and nothing else ------
FROM python:3.11-slim-bookworm
COPY --from=build /wheels/*.whl /tmp/wheels/
RUN pip install --no-cache-dir /tmp/wheels/tusd_py-*.whl \
    && rm -rf /tmp/wheels \
    && useradd --uid 1000 --no-create-home --shell /usr/sbin/nologin tusd \
    && mkdir /data && chown tusd /data

USER tusd
WORKDIR /data
# Every flag can be set as TUSD_PY_<FLAG> (see `tusd-py --help`).
ENV TUSD_PY_HOST=0.0.0.0 \
    TUSD_PY_PORT=1080 \
    TUSD_PY_DATA_DIR=/data
EXPOSE 1080
VOLUME ["/data"]
# /healthz answers 200 while the process serves (readiness, with state and disk, is /readyz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('TUSD_PY_PORT', '1080')}/healthz\", timeout=2).status != 200)"]
# SIGTERM: running PATCHes stop reading, commit what arrived and answer 503; clients resume elsewhere.
STOPSIGNAL SIGTERM
CMD ["tusd-py"]
