"""The few exceptions the S3 store raises, and the one place S3 errors become them.

The engine answers a request from these alone: `StorageUnavailable` is a 503
with Retry-After (the service is down, slow, throttling, or refuses our
credentials: nothing the client can fix), `UploadNotFound` a 404 and
`UploadTooLarge` a 413 (as the contract's `DataNotFound` and `DataTooLarge`,
mapped in `tusd_py/errors.py`). Nothing from botocore or aiohttp leaves this package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from tusd_py.storage.base import DataNotFound, DataTooLarge

_NOT_FOUND = {"NoSuchKey", "NoSuchUpload", "NotFound", "404"}
_TOO_LARGE = {"EntityTooLarge"}


class S3StoreError(OSError):
    """Base of everything this package raises.

    An OSError, so the Writer contract (`error: OSError | None`) and the
    engine's OSError -> 503 mapping (`tusd_py/errors.py` `storage_error`) hold for it.
    """


class StorageUnavailable(S3StoreError):
    """S3 did not answer in time, answered with an error, or refused us: retry later."""


class UploadNotFound(S3StoreError, DataNotFound):
    """The upload's objects are not (or no longer) in the bucket."""


class UploadTooLarge(S3StoreError, DataTooLarge):
    """The upload cannot be stored as one S3 object (5 TiB, 10,000 parts)."""


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def is_not_found(error: BaseException) -> bool:
    return isinstance(error, ClientError) and error_code(error) in _NOT_FOUND


@contextlib.contextmanager
def mapped(what: str) -> Iterator[None]:
    """Run an S3 call, turning its failures into this package's exceptions.

    `what` names the operation for the message ("upload part 3 of abc").
    """
    try:
        yield
    except S3StoreError:
        raise
    except ClientError as error:
        code = error_code(error)
        if code in _NOT_FOUND:
            raise UploadNotFound(f"{what}: {code}") from error
        if code in _TOO_LARGE:
            raise UploadTooLarge(f"{what}: {code}") from error
        raise StorageUnavailable(f"{what}: S3 answered {code or 'an error'}") from error
    except (TimeoutError, BotoCoreError, aiohttp.ClientError, OSError) as error:
        raise StorageUnavailable(f"{what}: {type(error).__name__}: {error}") from error
