"""Hooks as HTTP webhooks: `--hooks-http URL`.

Each event is POSTed to the URL as JSON (`HookEvent.to_json`), with a `Hook-Name`
header naming the event and the client request's headers listed in
`--hooks-http-forward-headers` copied along. The receiver answers:
- 2xx with an empty body or a JSON object with `HookResponse`'s fields;
- 4xx: a rejection with that status, the body's first line as the message;
- 5xx, a broken connection or no answer within `timeout`: retried `retries`
  times, `backoff` seconds apart and doubling; then the delivery fails.
"""

from __future__ import annotations

import asyncio
import json
from typing import Iterable

import httpx

from tusd_py.hooks.answers import HookFailed, HookResponse, HookTimeout
from tusd_py.hooks.events import EVENTS, HookEvent

MAX_RESPONSE = 64 * 1024


class HttpTransport:
    name = "http"

    def __init__(
        self,
        url: str,
        *,
        events: Iterable[str] = EVENTS,
        forward_headers: Iterable[str] = (),
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 1.0,
    ) -> None:
        self.url = url
        self.events = frozenset(events)
        self.forward_headers = tuple(name.strip().lower() for name in forward_headers if name.strip())
        self.retries = retries
        self.backoff = backoff
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def handles(self, event_type: str) -> bool:
        return event_type in self.events

    async def deliver(self, event: HookEvent) -> HookResponse | None:
        headers = {"Content-Type": "application/json", "Hook-Name": event.type}
        if event.request is not None:
            for name in self.forward_headers:
                if name in event.request.headers:
                    headers[name] = event.request.headers[name]
        body = event.to_json().encode()
        failure: HookFailed = HookFailed("no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self.client.post(self.url, content=body, headers=headers)
            except httpx.TimeoutException as exc:
                failure = HookTimeout(f"{self.url}: {type(exc).__name__}")
                continue
            except httpx.HTTPError as exc:
                failure = HookFailed(f"{self.url}: {exc!r}")
                continue
            if response.status_code >= 500:
                failure = HookFailed(f"{self.url} answered {response.status_code}")
                continue
            return self._answer(response)
        raise failure

    @staticmethod
    def _answer(response: httpx.Response) -> HookResponse | None:
        text = response.content[:MAX_RESPONSE].decode("utf-8", "replace")
        if 400 <= response.status_code < 500:
            lines = text.strip().splitlines()
            return HookResponse(reject=True, status=response.status_code, message=lines[0] if lines else None)
        if not 200 <= response.status_code < 300:
            raise HookFailed(f"unexpected status {response.status_code} from the hook endpoint")
        if not text.strip():
            return None
        try:
            return HookResponse.parse(json.loads(text))
        except ValueError as exc:
            raise HookFailed(f"the hook endpoint answered with invalid JSON: {exc}") from None

    async def close(self) -> None:
        await self.client.aclose()
