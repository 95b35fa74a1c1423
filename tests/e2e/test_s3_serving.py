"""Serving the S3 data store: `--s3-bucket` and its flags on a real server process, on SeaweedFS.

A server on S3 answers OPTIONS and uploads with the bytes in the bucket (nothing of
them under --dir), tells hooks where the object is as tusd does, and is ready; a
bucket it cannot reach or write stops it at start with one line saying why, within a
bounded time; the sweeper removes expired uploads' objects and aborts multipart
uploads a crash left behind, but never a live upload's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from tests.support import ROOT, S3_CREDENTIALS, S3_READER_KEY, S3Server, TusServer, create, free_port, head, patch

STARTUP_BOUND = 40.0  # seconds a failing start-up may take in all (the check itself is bounded at 20 s)


@pytest.fixture
def data_backend() -> str:
    return "s3"


def keys(s3: S3Server, prefix: str) -> tuple[list[str], list[str]]:
    """(object keys, keys of multipart uploads in progress) under `prefix`."""
    client = s3.client()
    objects = [item["Key"] for item in client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix).get("Contents", [])]
    pending = [item["Key"] for item in client.list_multipart_uploads(Bucket=s3.bucket, Prefix=prefix).get("Uploads", [])]
    return objects, pending


def wait_until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not true after {timeout}s")


def test_a_server_on_s3_answers_options_and_stores_an_upload_in_the_bucket(make_server, s3_server: S3Server) -> None:
    server: TusServer = make_server()
    prefix = str(server.flags["s3_prefix"])
    options = requests.options(server.url, headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert options.status_code in (200, 204)
    assert "creation" in options.headers["Tus-Extension"].split(",")
    url = create(server.url, 11)
    upload_id = url.rsplit("/", 1)[1]
    assert patch(url, 0, b"hello ").status_code == 204
    assert patch(url, 6, b"world").headers["Upload-Offset"] == "11"
    assert head(url).headers["Upload-Offset"] == "11"
    assert requests.get(url, timeout=10).content == b"hello world"
    assert s3_server.client().get_object(Bucket=s3_server.bucket, Key=prefix + upload_id)["Body"].read() == b"hello world"
    assert not list(server.data_dir.rglob(f"*{upload_id}*"))  # no byte of it under --dir
    ready = requests.get(server.base + "/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["checks"]["data"] == "ok"
    assert "S3 bucket 'tusd'" in server.log()


def test_hooks_see_the_bucket_and_the_key(make_server, hook_log: Path) -> None:
    server: TusServer = make_server(hooks_module="tests.hooks_recorder")
    url = create(server.url, 3)
    assert patch(url, 0, b"abc").status_code == 204

    def finished() -> list[dict]:
        events = [json.loads(line) for line in hook_log.read_text().splitlines()] if hook_log.exists() else []
        return [event for event in events if event["type"] == "post-finish"]

    storage = wait_until(finished)[0]["upload"]["storage"]
    upload_id = url.rsplit("/", 1)[1]
    assert storage == {"type": "s3", "Type": "s3store", "Bucket": "tusd", "Key": f"{server.flags['s3_prefix']}{upload_id}"}


def start_failing(tmp_path: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    """`tusd-py` on S3 that must not start: it exits by itself, well within the bound."""
    command = [sys.executable, "-m", "tusd_py", "--port", str(free_port()), "--dir", str(tmp_path / "data"), "--s3-path-style",
               "--s3-region", "us-east-1", *flags]
    started = time.monotonic()
    done = subprocess.run(command, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=STARTUP_BOUND)
    assert time.monotonic() - started < STARTUP_BOUND
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    return done


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("no such bucket", "Error: S3 cannot reach bucket 'missing' at {endpoint}: no such bucket"),
        ("wrong secret", "Error: S3 cannot reach bucket 'tusd' at {endpoint}: access denied ("),
        ("read-only key", "Error: S3 cannot write to bucket 'tusd' at {endpoint}: access denied"),
        ("no credentials", "Error: S3 cannot reach bucket 'tusd' at {endpoint}: no credentials"),
        ("unreachable", "Error: S3 cannot reach bucket 'tusd' at {endpoint}: endpoint unreachable"),
    ],
)
def test_a_bucket_that_cannot_be_used_stops_the_start_with_one_line(
    tmp_path: Path, s3_server: S3Server, case: str, words: str
) -> None:
    endpoint = s3_server.endpoint if case != "unreachable" else f"http://127.0.0.1:{free_port()}"
    env = dict(S3_CREDENTIALS)
    bucket = "missing" if case == "no such bucket" else s3_server.bucket
    if case == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif case == "read-only key":
        env["AWS_ACCESS_KEY_ID"] = S3_READER_KEY
    elif case == "no credentials":
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    done = start_failing(tmp_path, env, "--s3-bucket", bucket, "--s3-endpoint", endpoint)
    errors = [line for line in done.stderr.splitlines() if "Error" in line]  # besides botocore's INFO line on credentials
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(words.format(endpoint=endpoint)), errors[0]


def test_expired_uploads_leave_nothing_in_the_bucket(make_server, s3_server: S3Server) -> None:
    server: TusServer = make_server(expire_after=1, sweep_interval=0.3)
    prefix = str(server.flags["s3_prefix"])
    kept = create(server.url, 2)
    assert patch(kept, 0, b"ok").status_code == 204  # finished: never expires
    url = create(server.url, 10)
    assert patch(url, 0, b"abc").status_code == 204  # under a part: the incomplete part object holds it
    upload_id = url.rsplit("/", 1)[1]
    assert any(upload_id in key for key in keys(s3_server, prefix)[0])
    wait_until(lambda: head(url).status_code == 410)

    def gone() -> bool:
        objects, pending = keys(s3_server, prefix)
        return not [key for key in objects if upload_id in key] and not pending

    wait_until(gone)
    assert requests.get(kept, timeout=10).content == b"ok"


def test_the_sweeper_aborts_orphaned_multipart_uploads_but_not_live_ones(make_server, s3_server: S3Server) -> None:
    server: TusServer = make_server(expire_after=2, sweep_interval=0.3)
    prefix = str(server.flags["s3_prefix"])
    client = s3_server.client()
    orphan = client.create_multipart_upload(Bucket=s3_server.bucket, Key=prefix + "left-by-a-crash")["UploadId"]
    stranger = client.create_multipart_upload(Bucket=s3_server.bucket, Key=prefix + "photos/not-an-upload-id.jpg")["UploadId"]
    url = create(server.url, 12)
    # A live upload older than the expiry: written to every second, so its expiry moves on.
    for offset in range(0, 6):
        assert patch(url, offset, b"x").status_code == 204
        time.sleep(0.8)

    def pending_ids() -> set[str]:
        return {item["UploadId"] for item in client.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix).get("Uploads", [])}

    wait_until(lambda: not {orphan, stranger} & pending_ids())
    assert len(pending_ids()) == 1  # the live upload's
    assert patch(url, 6, b"yyyyyy").status_code == 204
    assert requests.get(url, timeout=10).content == b"xxxxxxyyyyyy"
    assert "orphaned multipart upload" in server.log()
