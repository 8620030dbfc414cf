"""Answers given below FastAPI: the body limit, and problem responses sent straight on the
ASGI channel (by the body limit and the MCP endpoint's bearer guard)."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import UNAVAILABLE
from core.errors import BacklogError
from gateway.schemas import Problem

RETRY_AFTER_SECONDS = 2
DRAIN_LIMIT = 16 * 1024 * 1024  # an oversize body is read this far before the 413 goes out
UNAVAILABLE_MESSAGE = "the backlog's database is unreachable or restarting; retry shortly"


async def send_problem(
    send: Send,
    status: int,
    error: str,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    body = Problem(error=error, message=message, details=details or {}).model_dump_json().encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def unavailable_headers() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}


# The HTTP status of each kind of refusal from core.
STATUS_OF = {
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "lease_refused": 409,
    "invalid_transition": 409,
    "invalid": 422,
}


# What problem_for answers: core's refusals and an unreachable database.
REFUSALS: tuple[type[Exception], ...] = (BacklogError, *UNAVAILABLE)


def problem_headers(status: int) -> dict[str, str] | None:
    return {401: {"WWW-Authenticate": "Bearer"}, 503: unavailable_headers()}.get(status)


def problem_for(
    err: Exception,
) -> tuple[int, str, str, dict[str, Any], dict[str, str] | None]:
    """The API's answer to a refusal from core, or to the database being unreachable (any
    other exception): status, error, message, details, headers."""
    if isinstance(err, BacklogError):
        status = STATUS_OF.get(err.code, 400)
        return status, err.code, err.message, err.details, problem_headers(status)
    return 503, "database_unavailable", UNAVAILABLE_MESSAGE, {}, unavailable_headers()


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, declared or chunked: the body is read
    (up to the limit) before the app sees it, then handed over whole. `larger`: paths (by
    prefix) allowed a larger body (a forge's push webhook)."""

    def __init__(self, app: ASGIApp, limit: int, larger: dict[str, int] | None = None):
        self.app = app
        self.limit = limit
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = next((n for p, n in self.larger.items() if path.startswith(p)), self.limit)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > limit:
                await self._drain(receive, more)
                await self._refuse(send, limit)
                return
            chunks.append(chunk)
            if not more:
                break
        first: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal first
            if first is not None:
                message, first = first, None
                return message
            return await receive()  # after the body: a disconnect, for streaming answers

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, more: bool) -> None:
        """Read (and drop) the rest of an oversize body, up to DRAIN_LIMIT, so the client that
        is still sending reads the 413 instead of a reset connection."""
        drained = 0
        while more and drained < DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)

    async def _refuse(self, send: Send, limit: int) -> None:
        await send_problem(
            send,
            413,
            "too_large",
            f"request body over {limit} bytes; send a smaller spec",
            headers={"Connection": "close"},
        )
