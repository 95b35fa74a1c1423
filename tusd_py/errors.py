"""One mapping from what can go wrong below the handlers to rows of the error table.

Handlers raise rows of `protocol.py`'s table; stores, locks and the OS raise their
own exceptions. The router (`routing.py`) turns whatever a request raised into a
row here, in one place, then lets the request's protocol answer it: as Starlette's
exception middleware maps exception classes to responses, and endpoints only raise.
"""

from __future__ import annotations

import errno
import logging

from tusd_py import protocol as p
from tusd_py.locks.base import LockLost, LockTimeout
from tusd_py.state.base import StateUnavailable
from tusd_py.storage.base import DataNotFound, DataTooLarge

logger = logging.getLogger("tusd_py")


def storage_error(error: OSError) -> p.TusError:
    """A data store's OSError: 404 for data that is not there, 413 for an upload too large
    for the store, 507 when the disk is full, else 503 (resumable later)."""
    if isinstance(error, DataNotFound):
        logger.warning("data not found: %s", error)
        return p.ERR_DATA_NOT_FOUND()
    if isinstance(error, DataTooLarge):
        return p.ERR_DATA_TOO_LARGE()
    logger.error("storage error: %s", error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return p.ERR_STORAGE_FULL(Retry_After="5")
    return p.ERR_STORAGE(Retry_After="5")


def to_tus_error(exc: BaseException) -> p.TusError | None:
    """The table row for `exc`, or None for what is no known failure (a bug: a 500)."""
    if isinstance(exc, p.TusError):
        return exc
    if isinstance(exc, StateUnavailable):
        logger.error("state store error: %s", exc)
        return p.ERR_STATE_UNAVAILABLE(Retry_After="1")
    if isinstance(exc, LockTimeout):
        return p.ERR_UPLOAD_LOCKED()
    if isinstance(exc, LockLost):
        return p.ERR_LOCK_LOST(Connection="close")
    if isinstance(exc, OSError):
        return storage_error(exc)
    return None
