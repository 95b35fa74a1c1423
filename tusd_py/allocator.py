"""glibc allocator settings for a server that streams large bodies.

uvicorn hands each request body over in fresh `bytes` objects of up to a few
hundred KiB. With glibc's defaults, blocks that large are mmap'ed and unmapped
one by one, or trimmed off the heap as soon as they are freed, so every chunk
costs page faults on memory the process just gave back: about 350k faults per
GiB received, and about half the throughput of a single stream on this kind of
machine (see docs/performance.md). Keeping blocks below 4 MiB on the heap and
trimming only past 1 GiB of free heap lets the same few MiB be reused for every
chunk; peak RSS stays the same, because at most a few chunks are alive at once.

These are the settings of `MALLOC_MMAP_THRESHOLD_=4194304 MALLOC_TRIM_THRESHOLD_=1073741824`.
glibc reads those variables only when a process starts, so `tune()` applies the
same values with mallopt(3) in the running process (the documented equivalent)
and also puts them in the environment, for processes started from this one
(uvicorn's workers). Settings already given in the environment win.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3

SETTINGS = {
    "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, 4 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": (M_TRIM_THRESHOLD, 1024 * 1024 * 1024),
}


def tune() -> bool:
    """Apply the settings (unless the environment already chose); False where there is no glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    for name, (parameter, value) in SETTINGS.items():
        if name in os.environ:  # glibc applied the caller's own value at start
            continue
        if mallopt(parameter, value) != 1:
            return False
        os.environ[name] = str(value)
    return True
