"""The embedded state store: SQLite in the data directory.

Needs no server, survives restarts and crashes (WAL journal), and serves one
instance. `database.py` runs the statements (in batches, one transaction each, on
the loop or its own thread, WAL checkpoints, a full disk, errors as
StateUnavailable), `schema.py` holds the tables and an upload as a row,
`records.py` records, offsets, claims, lengths and expiry, `finals.py`
concatenation's waits.
"""

from __future__ import annotations

from tusd_py.state.local.finals import LocalFinals
from tusd_py.state.local.records import LocalRecords


class LocalStateStore(LocalRecords, LocalFinals):
    """Every capability of `state/base.py` (`FullStateStore`), for one instance."""

    name = "embedded (SQLite)"


__all__ = ["LocalStateStore"]
