"""Data stores: the bytes of uploads (see `base.DataStore`).

`open_data_store` is the one place a Config chooses the data store: the S3
store when `--s3-bucket` is set (then `--dir` keeps only the embedded state and
the temporary files of bodies waiting on their checksum), else files under
`--dir`. The S3 package (aiobotocore) is imported only when it is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tusd_py.config import Config
from tusd_py.storage.base import DataStore, Writer
from tusd_py.storage.files import FileStore

if TYPE_CHECKING:
    from tusd_py.storage.s3 import S3Options

S3_TEMP_DIR = ".s3-tmp"  # under --dir: bodies held until their checksum is checked (unlinked at once, so a crash leaves nothing)


def s3_options(config: Config) -> S3Options:
    """The S3 store's settings from the `--s3-*` flags (credentials stay with the AWS chain)."""
    from tusd_py.storage.s3 import S3Options

    if not config.s3_bucket:
        raise ValueError("s3_options needs s3_bucket")
    return S3Options(
        bucket=config.s3_bucket,
        endpoint_url=config.s3_endpoint,
        region=config.s3_region,
        prefix=config.s3_prefix,
        part_size=config.s3_part_size,
        path_style=config.s3_path_style,
        request_checksums=config.s3_request_checksums,
        concurrency=config.s3_concurrency,
        max_in_flight=config.s3_max_in_flight,
        read_timeout=config.s3_timeout,
        attempts=config.s3_attempts,
        temp_dir=str(config.data_dir / S3_TEMP_DIR),
    )


def open_data_store(config: Config) -> DataStore:
    """The data store `config` names; an S3 store still needs `start()` (the app's lifespan)."""
    if config.s3_bucket:
        from tusd_py.storage.s3 import S3Store

        options = s3_options(config)
        (config.data_dir / S3_TEMP_DIR).mkdir(parents=True, exist_ok=True)
        return S3Store(options)
    return FileStore(config.data_dir, fsync=config.fsync, batch_size=config.write_batch_size, direct=config.direct_io)


__all__ = ["DataStore", "FileStore", "Writer", "open_data_store", "s3_options"]
