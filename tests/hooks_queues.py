"""A hooks module with slow notification receivers (`--hooks-module tests.hooks_queues`):
`post_create` and `post_receive` take HOOKS_PROGRESS_DELAY seconds each, `post_finish`
and `post_terminate` HOOKS_OUTCOME_DELAY (default 0); each appends
`<type> <upload id>` to HOOKS_TEST_LOG once delivered."""

from __future__ import annotations

import os
import time

from tusd_py.hooks import HookEvent


def _record(event: HookEvent, delay_variable: str) -> None:
    time.sleep(float(os.environ.get(delay_variable, "0")))
    line = f"{event.type} {event.upload.id if event.upload else ''}\n".encode()
    fd = os.open(os.environ["HOOKS_TEST_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def post_create(event: HookEvent) -> None:
    _record(event, "HOOKS_PROGRESS_DELAY")


def post_receive(event: HookEvent) -> None:
    _record(event, "HOOKS_PROGRESS_DELAY")


def post_finish(event: HookEvent) -> None:
    _record(event, "HOOKS_OUTCOME_DELAY")


def post_terminate(event: HookEvent) -> None:
    _record(event, "HOOKS_OUTCOME_DELAY")
