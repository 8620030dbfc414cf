"""The work loop's hot path: `POST /v1/claim`, `/v1/tasks/{key}/heartbeat` and `/complete`
answered straight on the ASGI channel.

An agent's loop is mostly these three requests, and FastAPI's per-request machinery (routing,
dependency injection, body parsing, validating the answer against its response model and
encoding it again) cost more than the claim itself. Here a request is read with the same
pydantic models, answered by the same core calls and encoded once (`model_dump_json`). Anything
else — another route, a waiting claim, a body the models refuse, a key that is not one —
goes on to FastAPI untouched, which answers it as before (its routes still document these
three in the OpenAPI schema); a refusal from core is answered in the same problem shape.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.agents import Unauthorized
from core.leases import Lease, Leases
from core.models import Actor
from gateway.asgi import REFUSALS, problem_for, send_problem
from gateway.schemas import ClaimRequest, ClaimResponse, CompleteRequest, HeartbeatRequest

_TASK_WRITE = re.compile(r"^/v1/tasks/([A-Za-z0-9-]{1,40})/(complete|heartbeat)$")
_JSON = [(b"content-type", b"application/json")]

Authenticate = Callable[[str | None], Awaitable[Actor]]


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of a request (None: none given); a header in another scheme is
    refused as the API refuses it."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                raise Unauthorized("use 'Authorization: Bearer <token>'")
            return token.strip() or None
    return None


class HotPath:
    """ASGI middleware in front of FastAPI for the three hot routes (see the module)."""

    def __init__(self, app: ASGIApp, leases: Leases, authenticate: Authenticate):
        self.app = app
        self.leases = leases
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        task = _TASK_WRITE.match(path)
        if path != "/v1/claim" and task is None:
            await self.app(scope, receive, send)
            return
        message = await receive()  # the whole body: BodyLimit, outside, read it already
        body: bytes = message.get("body", b"") if message["type"] == "http.request" else b""
        request = _parse(ClaimRequest if task is None else _BODIES[task.group(2)], body)
        if request is None or (isinstance(request, ClaimRequest) and request.wait_seconds):
            await self.app(scope, _replay(message, receive), send)  # FastAPI's to answer
            return
        try:
            actor = await self.authenticate(bearer(scope["headers"]))
            if task is None:
                assert isinstance(request, ClaimRequest)
                answer: BaseModel = await self._claim(actor, request)
            elif isinstance(request, CompleteRequest):
                answer = await self.leases.complete(
                    task.group(1), actor, request.epoch, commits=request.commits, note=request.note
                )
            else:
                assert isinstance(request, HeartbeatRequest)
                answer = await self.leases.heartbeat(
                    task.group(1), actor, request.epoch, lease_seconds=request.lease_seconds
                )
        except REFUSALS as err:
            status, error, text, details, headers = problem_for(err)
            await send_problem(send, status, error, text, headers=headers, details=details)
            return
        raw = answer.model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_JSON, (b"content-length", str(len(raw)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    async def _claim(self, actor: Actor, request: ClaimRequest) -> ClaimResponse:
        lease = await self.leases.claim(
            actor, repos=request.repos, lease_seconds=request.lease_seconds
        )
        return claim_response(lease)


def claim_response(lease: Lease | None) -> ClaimResponse:
    """The answer to a claim that did not wait: the lease and what to do with it, or that
    nothing is ready (REST's claim route says the same)."""
    if lease is None:
        return ClaimResponse(lease=None, message="nothing is ready for you; try again later")
    return ClaimResponse(
        lease=lease,
        message=f"you hold {lease.key} until {lease.lease_expires_at:%H:%M:%S} UTC; "
        f"present epoch {lease.epoch} on every write",
    )


_BODIES: dict[str, type[BaseModel]] = {
    "complete": CompleteRequest,
    "heartbeat": HeartbeatRequest,
}


def _parse(model: type[BaseModel], body: bytes) -> BaseModel | None:
    """The request body as its model, or None when it is not one (FastAPI then answers)."""
    if not body.strip():
        return model() if model is ClaimRequest else None  # a claim's body is optional
    try:
        return model.model_validate_json(body)
    except (ValidationError, RecursionError):
        return None


def _replay(first: Message, receive: Receive) -> Receive:
    """A receive channel that gives the body read already once more, then the real one."""
    pending: Message | None = first

    async def again() -> Message:
        nonlocal pending
        if pending is not None:
            message, pending = pending, None
            return message
        return await receive()

    return again
