"""Hooks as Python functions: `--hooks-module pkg.module`.

The module defines functions named after the events, with underscores
(`pre_create`, `post_finish`, `authorize`, ...), each taking one `HookEvent`.
They may be plain functions (run on a hook thread, so they may block; see
`capacity.py`) or coroutines (run on the server's event loop, so they must not). A function
returns None to let the request go on, or a `HookResponse` (or a dict with its
fields), or raises `Reject(status, message)`.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Iterable

from tusd_py.hooks.answers import HookResponse, Reject
from tusd_py.hooks.capacity import HookCapacity
from tusd_py.hooks.events import BLOCKING, EVENTS, HookEvent


class ModuleTransport:
    name = "module"

    def __init__(self, module_name: str, *, events: Iterable[str] = EVENTS, capacity: HookCapacity | None = None) -> None:
        self.capacity = capacity or HookCapacity()
        module = importlib.import_module(module_name)
        self.module_name = module_name
        self.functions: dict[str, Callable[[HookEvent], Any]] = {}
        for event in events:
            function = getattr(module, event.replace("-", "_"), None)
            if callable(function):
                self.functions[event] = function
        if not self.functions:
            raise ValueError(f"hooks module {module_name!r} defines none of: {', '.join(e.replace('-', '_') for e in EVENTS)}")

    def handles(self, event_type: str) -> bool:
        return event_type in self.functions

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        function = self.functions[event.type]
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(event)
            else:
                # A request waiting on a blocking event never queues for a thread; a notification may.
                result = await self.capacity.run(function, event, wait=event.type not in BLOCKING)
                if inspect.isawaitable(result):
                    result = await result
        except Reject as rejected:
            return rejected.response
        return HookResponse.parse(result)

    async def close(self) -> None:
        pass
