"""The start-up check of the S3 store, as one line a person can act on.

`S3Store.check_bucket` (HeadBucket, then a probe object written and deleted)
says what failed; this module adds why, from S3's answer under it: the bucket
does not exist, the credentials or the bucket policy refuse us, or the
endpoint does not answer. The CLI runs it before serving and exits with that
line (no traceback), so a misconfigured deployment fails at once and visibly
instead of answering every upload with 503.
"""

from __future__ import annotations

import asyncio

from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from tusd_py.storage.s3.errors import S3StoreError, error_code
from tusd_py.storage.s3.options import S3Options
from tusd_py.storage.s3.store import S3Store

CHECK_SECONDS = 20.0  # the whole check, retries included: start-up never hangs on a black-holed endpoint

_MISSING = {"404", "NoSuchBucket", "NotFound"}
_DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "InvalidToken", "ExpiredToken"}


class BucketUnusable(Exception):
    """The bucket cannot be reached or written; the message is the whole story, in one line."""


def reason(error: BaseException) -> str:
    """Why an S3 call failed, in words: from the first botocore error in the chain of causes."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ClientError):
            code = error_code(seen)
            if code in _MISSING:
                return "no such bucket"
            if code in _DENIED:
                return f"access denied ({code}: check the credentials and the bucket policy)"
            return f"S3 answered {code or 'an error'}"
        if isinstance(seen, NoCredentialsError):
            return "no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        if isinstance(seen, (EndpointConnectionError, ConnectionError, asyncio.TimeoutError)):
            return "endpoint unreachable"
        seen = seen.__cause__ or seen.__context__
    return str(error)


async def check(options: S3Options, timeout: float = CHECK_SECONDS) -> None:
    """HeadBucket and a write probe with a store of its own; BucketUnusable says what and why."""
    where = f"bucket {options.bucket!r}" + (f" at {options.endpoint_url}" if options.endpoint_url else "")
    try:
        async with S3Store(options) as store:
            await asyncio.wait_for(store.check_bucket(), timeout)
    except asyncio.TimeoutError as error:
        raise BucketUnusable(f"S3 {where}: endpoint unreachable (no answer within {timeout:g}s)") from error
    except (S3StoreError, NoCredentialsError) as error:
        doing = "cannot write to" if "cannot write" in str(error) else "cannot reach"
        raise BucketUnusable(f"S3 {doing} {where}: {reason(error)}") from error
