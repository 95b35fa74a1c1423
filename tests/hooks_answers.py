"""A hooks module whose `authorize` and `pre_create` answer what the request's
`X-Answer` header names (`--hooks-module tests.hooks_answers`): every malformed
answer a hook can give, on each path (raised, returned, a dict), and good ones."""

from __future__ import annotations

from typing import Any, Callable

from tusd_py.hooks import HookEvent, HookResponse, Reject


def _raise(error: Reject) -> Callable[[], Any]:
    def answer() -> Any:
        raise error

    return answer


ANSWERS: dict[str, Callable[[], Any]] = {
    # Reject(...), raised
    "reject-302": _raise(Reject(302, "see other", {"Location": "https://elsewhere.example/"})),
    "reject-200": _raise(Reject(200, "fine")),
    "reject-99": _raise(Reject(99)),
    "reject-string-status": _raise(Reject("403")),  # type: ignore[arg-type]
    "reject-bad-name": _raise(Reject(403, "no", {"Bad Name": "x"})),
    "reject-colon-name": _raise(Reject(403, "no", {"X-A:b": "x"})),
    "reject-not-latin1": _raise(Reject(403, "no", {"X-Why": "\u20ac"})),
    "reject-control": _raise(Reject(403, "no", {"X-Why": "a\x01b"})),
    "reject-newline": _raise(Reject(403, "no", {"X-Why": "a\r\nSet-Cookie: x=1"})),
    "reject-int-value": _raise(Reject(403, "no", {"X-Why": 5})),  # type: ignore[dict-item]
    "reject-int-message": _raise(Reject(403, 5)),  # type: ignore[arg-type]
    "reject-content-length": _raise(Reject(403, "no", {"Content-Length": "0"})),
    # a HookResponse, returned or raised
    "response-302": lambda: HookResponse(reject=True, status=302),
    "response-bool-status": lambda: HookResponse(reject=True, status=True),
    "response-bad-name": lambda: HookResponse(reject=True, status=403, headers={"X(Y)": "1"}),
    "response-transfer-encoding": lambda: HookResponse(reject=True, status=403, headers={"Transfer-Encoding": "chunked"}),
    # dicts
    "dict-301": lambda: {"reject": True, "status": 301},
    "dict-string-reject": lambda: {"reject": "no", "status": 403},
    "dict-bad-name": lambda: {"reject": True, "status": 403, "headers": {"a b": "c"}},
    "dict-not-latin1": lambda: {"reject": True, "status": 403, "headers": {"X-Why": "\u2603"}},
    # good answers: the controls
    "good-reject": _raise(Reject(429, "slow down", {"Retry-After": "7", "X-Reason": "caf\u00e9 quota"})),
    "good-response": lambda: HookResponse(reject=True, status=451, message="legal", headers={"Link": "<https://example.com/why>; rel=blocked-by"}),
}
CASES = [name for name in ANSWERS if not name.startswith("good-")]


def _answer(event: HookEvent) -> Any:
    name = event.request.headers.get("x-answer", "") if event.request else ""
    return ANSWERS[name]() if name in ANSWERS else None


def authorize(event: HookEvent) -> Any:
    return _answer(event) if event.request and event.request.headers.get("x-answer-in") != "pre-create" else None


async def pre_create(event: HookEvent) -> Any:
    return _answer(event) if event.request and event.request.headers.get("x-answer-in") == "pre-create" else None
