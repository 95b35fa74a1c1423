"""tusd-py as a plain ASGI app, for trying other ASGI servers (granian, hypercorn) in bench/compare.

    TUSD_BENCH_DIR=/some/dir granian --interface asgi bench.peers.tusd_asgi:app

Not for production: the CLI (`tusd-py`) runs uvicorn with the request-head guard
and the graceful shutdown that these servers do not get here.
"""

import os
from pathlib import Path

from tusd_py import allocator
from tusd_py.app import create_app
from tusd_py.config import Config

allocator.tune()
app = create_app(Config(data_dir=Path(os.environ["TUSD_BENCH_DIR"]), ui=False, log_level="warning", expose_metrics=True))
