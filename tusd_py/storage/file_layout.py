"""Where the file store keeps an upload's file: `<directory>/<shard>/<id>`, and the move
of a directory written by an older release (every file at the top) into that layout.

Why shards: one directory holding every upload's file grows without bound, and every
lookup, create and unlink in it, and every listing of it, gets slower as it grows
(1,000,000 uploads would be 1,000,000 entries in one directory). 4,096 shards named by
three hex digits of a hash of the id keep each one at about n/4,096 entries (244 at
1,000,000 uploads) whatever the ids look like (a pre-create hook may choose them).
Upload ids never contain '.', so the top level's other names (the embedded state's
database, the marker below, `.s3-tmp`) can never be taken for an upload's file.

The migration runs when the store opens, before the instance serves: it moves each
top-level upload file into its shard (a rename: no byte is copied) and then writes the
marker, so later starts cost one stat. Renames are atomic, so instances that start at
once share the work safely; an instance of an older release must not write to the
directory meanwhile (stop them all, then start the new release).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

MARKER = ".tusd-py-layout"  # no upload id has a '.'
LAYOUT = "shards of 3 hex digits of blake2b(id)\n"
ASSEMBLY_SUFFIX = ".concat-"  # the temporary file of a final upload's assembly: `<id>.concat-<random>` (file_concat.py)

logger = logging.getLogger("tusd_py.storage")


def shard(upload_id: str) -> str:
    """The subdirectory of the upload's file: one of 4,096."""
    return hashlib.blake2b(upload_id.encode(), digest_size=2).hexdigest()[:3]


def relative(upload_id: str) -> str:
    """The upload's file, relative to the data directory."""
    return f"{shard(upload_id)}/{upload_id}"


def migrate(directory: Path, *, fsync: bool = False) -> int:
    """Bring `directory` to the sharded layout (once: the marker says it is done); returns the files moved."""
    marker = directory / MARKER
    if marker.exists():
        return 0
    moved = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue  # the shards themselves, and whatever else is not a file
            if ASSEMBLY_SUFFIX in entry.name:  # left by a crash of an older release mid-assembly
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            if "." in entry.name:
                continue  # not an upload's file (the embedded state's database, ...)
            target = directory / shard(entry.name)
            target.mkdir(exist_ok=True)
            try:
                os.rename(entry.path, target / entry.name)
            except FileNotFoundError:
                continue  # another instance starting at the same time moved it
            moved += 1
    if fsync and moved:
        os.sync()  # the renames are on disk before the marker says they are done
    temporary = directory / f"{MARKER}.{os.getpid()}"
    try:
        temporary.write_text(LAYOUT)
        os.replace(temporary, marker)
    except OSError as exc:  # a read-only directory: nothing was moved, and the next start looks again
        logger.warning("could not record the layout of %s (%s)", directory, exc)
    if moved:
        logger.warning("moved %d upload files of %s into the sharded layout", moved, directory)
    return moved
