"""Python's cyclic garbage collector, set for a server with thousands of short-lived
objects in flight.

The collector runs a pass whenever the tracked objects made since the last pass
outnumber those freed by more than its threshold (700 by default). Serving small
uploads at concurrency 64, the objects of the requests in flight rise and fall by
more than that many times a second, so passes ran although there was no garbage
to find, and each full pass walked every object made at start as well (the
modules, the app: 30,000-45,000 objects): measured, 60-120 us of a small upload's
CPU on embedded state and more on Redis (docs/performance.md, round 5).

`settle()`, once the app is built: the objects made so far move to the permanent
generation (`gc.freeze`), which no pass walks, and the first generation's
threshold rises to 10,000, above what the requests in flight make and free. The
collector still runs for real garbage: what a request leaves in reference cycles
is found once 10,000 more objects are alive than were freed (requests leave none
on their usual paths: tests/unit/test_compat.py, test_redis_lock.py).
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what start-up made and raise the first generation's threshold (module docstring)."""
    gc.collect()  # what start-up left as garbage goes now, not into the permanent generation
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
