"""Where an upload's objects live in the bucket.

An upload has up to four things in the bucket, all under the configured prefix:
- the object itself, at `prefix + key` (`key` is the upload's id unless the
  pre-create hook chose one), built by one multipart upload;
- `prefix + ".tusd/<id>.info"`: a small JSON record (object key, multipart
  upload id, part size), so any instance can find the rest from the upload id;
- `prefix + ".tusd/<id>.part"`: the incomplete part, the durable tail that did
  not fill a part yet (tusd's `.part` object), prepended to the next part;
- for a key the hook chose, `prefix + ".tusd/mpu/<hash of the multipart id>"`
  holding the upload id, so the sweeper can tell whose a multipart upload is.
Keys a hook chooses must stay inside the prefix and out of ".tusd/".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from tusd_py.protocol import RESERVED_KEY_PREFIX, object_key_problem

INTERNAL = RESERVED_KEY_PREFIX
_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


def check_id(upload_id: str) -> str:
    if not _ID.fullmatch(upload_id):
        raise ValueError(f"not an upload id the S3 store accepts: {upload_id!r}")
    return upload_id


def check_key(key: str) -> str:
    """A hook-chosen object key (relative to the prefix), or ValueError saying why not
    (the hooks refuse such keys first, with a 502: `protocol.object_key_problem`)."""
    problem = object_key_problem(key)
    if problem is not None:
        raise ValueError(problem)
    return key


def info_key(prefix: str, upload_id: str) -> str:
    return f"{prefix}{INTERNAL}{check_id(upload_id)}.info"


def incomplete_key(prefix: str, upload_id: str) -> str:
    return f"{prefix}{INTERNAL}{check_id(upload_id)}.part"


def owner_key(prefix: str, multipart_id: str) -> str:
    return f"{prefix}{INTERNAL}mpu/{hashlib.sha256(multipart_id.encode()).hexdigest()[:40]}"


def default_owner(prefix: str, key: str) -> str | None:
    """The upload id a key of the default form (prefix + id) names, if it is of that form."""
    rest = key[len(prefix):] if key.startswith(prefix) else ""
    return rest if _ID.fullmatch(rest) else None


_UNSAFE_META = re.compile(r"[^\x20-\x7E]")


def safe_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Object metadata S3 can carry: printable ASCII, as tusd's s3store does ('?' for the rest)."""
    safe: dict[str, str] = {}
    for name, value in metadata.items():
        clean = _UNSAFE_META.sub("", name).strip().lower()
        if clean and re.fullmatch(r"[a-z0-9_.-]+", clean):
            safe[clean] = _UNSAFE_META.sub("?", value)
    return safe
