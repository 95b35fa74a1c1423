# tusd-py, one instance. compose.yaml runs three of these behind nginx.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tusd_py ./tusd_py
RUN pip install --no-cache-dir . \
    && useradd --uid 1000 --no-create-home tusd \
    && mkdir /data && chown tusd /data

USER tusd
# Every flag can be set as TUSD_PY_<FLAG> (see `tusd-py --help`).
ENV TUSD_PY_HOST=0.0.0.0 \
    TUSD_PY_PORT=1080 \
    TUSD_PY_DATA_DIR=/data
EXPOSE 1080
VOLUME ["/data"]
# SIGTERM: running PATCHes stop reading, commit what arrived and answer 503; clients resume elsewhere.
STOPSIGNAL SIGTERM
CMD ["tusd-py"]
