"""The agent gateway: a REST API (and, mounted at /mcp, an MCP endpoint) over the core.

Identity comes from the bearer token only. There is no operator action here: approve, reject,
lane and edit answer 403 with an explanation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from core.auth import Authenticator
from core.backlog import Backlog
from core.db import UNAVAILABLE
from core.errors import plain_problems
from core.git.refresh import Refresher
from core.leases import Heartbeat
from core.models import Actor, Task
from core.outbox import Outbox, OutboxStats
from core.questions import Question
from core.spec import REPO_RE, SpecError
from core.supervise import Board, PartState
from core.waiting import MAX_WAIT, Waits
from gateway.asgi import REFUSALS, BodyLimit, problem_for, problem_headers, unavailable_headers
from gateway.hooks import HOOK_PREFIX, MAX_HOOK_BYTES, forge_hooks
from gateway.hot import HotPath, bearer, claim_response
from gateway.mcp import build_mcp
from gateway.schemas import (
    KEY_PATTERN,
    AskRequest,
    ClaimRequest,
    ClaimResponse,
    CompleteRequest,
    FindingsRequest,
    HandoffRequest,
    HeartbeatRequest,
    Problem,
    ReleaseRequest,
    SpecInput,
)

KEY_PATH = Path(..., max_length=40, pattern=KEY_PATTERN, description="Task key, e.g. OB-12")
OPERATOR_ACTIONS = ("approve", "reject", "lane", "edit")
T = TypeVar("T")


class GatewayApp(FastAPI):
    """The FastAPI app with `front` (the body limit and the work loop's hot path,
    gateway/hot.py) in front of FastAPI's own request handling, so that the hot routes skip it
    whole; `behind` is that handling, where `front` sends everything else."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.front or self.behind)(scope, receive, send)

    async def behind(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


class Health(BaseModel):
    status: Literal["ok", "degraded", "unavailable"]
    database: Literal["ok", "unavailable"]
    parts: dict[str, PartState]
    outbox: OutboxStats | None = None


async def current_agent(request: Request) -> Actor:
    """The agent the bearer token belongs to (401 otherwise)."""
    return await request.app.state.authenticate(bearer(request.scope["headers"]))


Agent = Annotated[Actor, Depends(current_agent)]
Key = Annotated[str, KEY_PATH]


def unreadable_body(cause: BaseException | None) -> str:
    """Why a request body could not be read, and what to send instead."""
    if isinstance(cause, UnicodeDecodeError):
        bad = cause.object[cause.start : cause.start + 1].hex()
        return (
            f"the body is not UTF-8 text (byte 0x{bad} at position {cause.start}); "
            "send JSON encoded as UTF-8"
        )
    if isinstance(cause, RecursionError):
        return "the body is nested too deeply to read; send a flatter JSON body"
    return "the body could not be read as JSON; send a JSON object"


def problem(
    status: int, error: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    return JSONResponse(
        Problem(error=error, message=message, details=details or {}).model_dump(mode="json"),
        status_code=status,
        headers=problem_headers(status),
    )


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (what the server receives after the request body)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_gone(request: Request, work: Awaitable[T]) -> T | None:
    """Run `work` for as long as the client waits for it: a client that hangs up while a claim
    waits takes no task (None; nobody reads the answer)."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()
    return None if job.cancelled() else job.result()


def create_app(
    backlog: Backlog,
    *,
    board: Board | None = None,
    with_mcp: bool = True,
    refresher: Refresher | None = None,
) -> FastAPI:
    """The gateway: REST under /v1 and, unless disabled, the MCP endpoint at /mcp. `board` is
    the status board of the `ob serve` this runs in (for the health endpoint); `refresher`
    fetches the repos forges' push webhooks name (gateway/hooks.py)."""
    waits = Waits(backlog)
    leases, questions = waits.leases, waits.questions
    settings = backlog.settings

    authenticator = Authenticator(backlog)
    mcp = build_mcp(waits, authenticator) if with_mcp else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await authenticator.start()
        await waits.start()
        try:
            if mcp is None:
                yield
            else:
                async with mcp.lifespan():
                    yield
        finally:
            await waits.stop()
            await authenticator.stop()

    app = GatewayApp(
        title="Operator Backlog agent gateway",
        version="1",
        description=(
            "Agents pull approved work here. Loop: `POST /v1/claim` (with `wait_seconds`, it "
            "waits for work instead of answering that nothing is ready) -> work, "
            "`POST /v1/tasks/{key}/heartbeat` well within the lease -> `complete` (with commit "
            "SHAs), `findings` (investigations), `handoff` (file a prerequisite and give the task "
            "back) or `release`. A decision only the operator can make: `POST "
            "/v1/tasks/{key}/questions`, then `GET /v1/questions/{id}?wait=60` until it is "
            "answered (waiting keeps your lease). Every write after the claim must present the "
            "claim's `epoch`; a stale epoch is refused with 409 naming the current holder. "
            "Authenticate with `Authorization: Bearer <token>` (from `ob agent add NAME`)."
        ),
        lifespan=lifespan,
    )
    # in front of everything: every body is measured, then the hot path answers its routes
    app.front = BodyLimit(
        HotPath(app.behind, leases=leases, authenticate=authenticator),
        limit=settings.max_request_bytes,
        larger={HOOK_PREFIX: MAX_HOOK_BYTES},
    )
    app.state.authenticate = authenticator
    app.state.waits = waits
    app.state.closing = waits.release  # waiting requests answer before the server drains

    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        status, error, message, details, _headers = problem_for(exc)
        return problem(status, error, message, details)

    for refusal in REFUSALS:
        app.add_exception_handler(refusal, _refused)

    @app.exception_handler(SpecError)
    async def _spec_error(_: Request, exc: SpecError) -> JSONResponse:
        return problem(422, "invalid_spec", str(exc), {"problems": exc.problems})

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = plain_problems(exc.errors())
        return problem(
            422, "invalid_request", "; ".join(problems)[:2000], {"problems": problems[:20]}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """The framework's own refusals (a body it cannot read, no such route) in the API's
        error shape."""
        where = f"{request.method} {request.url.path[:200]}"
        if exc.status_code == 400:
            return problem(400, "invalid_body", unreadable_body(exc.__cause__))
        if exc.status_code == 404:
            return problem(404, "not_found", f"no such endpoint: {where}; see /docs")
        if exc.status_code == 405:
            return problem(405, "method_not_allowed", f"{where} is not allowed; see /docs")
        return problem(exc.status_code, "http_error", str(exc.detail)[:500])

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": Problem} for code in (401, 403, 404, 409, 413, 422)
    }

    @app.get("/v1/health", tags=["meta"], responses={503: {"model": Health}})
    async def health() -> JSONResponse:
        """Is the backlog up? The database, this process's parts, and the notices waiting.
        Open to anyone: it names states and counts, never errors or internals."""
        parts = {p.name: p.state for p in board.parts.values()} if board else {}
        try:
            outbox = await Outbox(backlog).stats()
        except UNAVAILABLE:
            body = Health(status="unavailable", database="unavailable", parts=parts)
            return JSONResponse(
                body.model_dump(mode="json"), status_code=503, headers=unavailable_headers()
            )
        degraded = outbox.dead or any(s == PartState.FAILING for s in parts.values())
        body = Health(
            status="degraded" if degraded else "ok", database="ok", parts=parts, outbox=outbox
        )
        return JSONResponse(body.model_dump(mode="json"))

    @app.get("/v1/me", tags=["meta"], responses=errors)
    async def me(actor: Agent) -> dict[str, str]:
        """Who the token says you are."""
        return {"agent": actor.name}

    @app.post("/v1/claim", tags=["work loop"], responses=errors)
    async def claim(
        request: Request, actor: Agent, body: ClaimRequest | None = None
    ) -> ClaimResponse:
        """Take the best ready task (priority, then age) and a lease on it. With
        `wait_seconds`, wait up to that long for a task to become ready (approved, unblocked,
        released, a lease expired, a trigger date reached) instead of answering at once."""
        body = body or ClaimRequest()
        work = waits.claim(
            actor,
            repos=body.repos,
            lease_seconds=body.lease_seconds,
            wait_seconds=body.wait_seconds,
        )
        lease = await unless_gone(request, work) if body.wait_seconds else await work
        if lease is None and body.wait_seconds:
            return ClaimResponse(
                lease=None,
                message="nothing became ready for you while you waited; claim again to wait on",
            )
        return claim_response(lease)

    @app.post("/v1/tasks/{key}/heartbeat", tags=["work loop"], responses=errors)
    async def heartbeat(key: Key, body: HeartbeatRequest, actor: Agent) -> Heartbeat:
        """Extend your lease. Refused (409) if the epoch is stale or the lease expired."""
        return await leases.heartbeat(key, actor, body.epoch, lease_seconds=body.lease_seconds)

    @app.post("/v1/tasks/{key}/complete", tags=["work loop"], responses=errors)
    async def complete(key: Key, body: CompleteRequest, actor: Agent) -> Task:
        """Finish an autonomous_safe task; unverified until git shows the commits. After a
        commit closed it under your lease (same epoch), 200 with `already_closed_by`."""
        return await leases.complete(key, actor, body.epoch, commits=body.commits, note=body.note)

    @app.post("/v1/tasks/{key}/release", tags=["work loop"], responses=errors)
    async def release(key: Key, body: ReleaseRequest, actor: Agent) -> Task:
        """Give the task back to the queue without finishing it."""
        return await leases.release(key, actor, body.epoch, body.reason)

    @app.post("/v1/tasks/{key}/findings", tags=["work loop"], responses=errors)
    async def findings(key: Key, body: FindingsRequest, actor: Agent) -> Task:
        """Finish an investigation; the task moves to requires_decision for the operator."""
        return await leases.findings(key, actor, body.epoch, body.text)

    @app.post("/v1/tasks/{key}/handoff", tags=["work loop"], responses=errors)
    async def handoff(key: Key, body: HandoffRequest, actor: Agent) -> dict[str, Task]:
        """File a prerequisite, link it and release the task, atomically."""
        task, prereq = await leases.handoff(
            key, actor, body.epoch, body.prerequisite.to_spec(), body.reason
        )
        return {"task": task, "prerequisite": prereq}

    @app.post("/v1/tasks/{key}/questions", tags=["questions"], status_code=201, responses=errors)
    async def ask(key: Key, body: AskRequest, actor: Agent) -> Question:
        """Ask the operator to decide something about the task you hold (present your epoch).
        It reaches the operator's phone with one button per option; wait for the answer with
        `GET /v1/questions/{id}?wait=60`. Asking the same question again under the same lease
        gives the same question. If your lease ends with it unanswered, the task goes to the
        operator's decision lane."""
        return await questions.ask(key, actor, body.epoch, body.text, body.options)

    @app.get("/v1/questions/{question_id}", tags=["questions"], responses=errors)
    async def question(
        question_id: Annotated[int, Path(ge=1, le=2**62)],
        actor: Agent,
        wait: Annotated[
            int, Query(ge=0, le=MAX_WAIT, description="Seconds to wait for the answer")
        ] = 0,
    ) -> Question:
        """A question and its answer (`status`: `answered`, or `pending`). With `wait`, the
        request returns as soon as the operator answers, or `pending` when the time is up.
        Waiting for your own question keeps your lease on the task (up to OB_LEASE_TTL past
        the wait)."""
        return await waits.answer(question_id, actor, wait)

    @app.post("/v1/tasks", tags=["tasks"], status_code=201, responses=errors)
    async def file_draft(body: SpecInput, actor: Agent) -> Task:
        """File a task. From an agent it is a draft until the operator approves it."""
        return await backlog.file(body.to_spec(), actor)

    @app.get("/v1/tasks/{key}", tags=["tasks"], responses=errors)
    async def show(key: Key, actor: Agent) -> Task:
        """One task with its spec, status and lease (another agent's draft is no task)."""
        return await backlog.get_for(key, actor)

    @app.get("/v1/tasks", tags=["tasks"], responses=errors)
    async def ready(
        actor: Agent,
        repo: Annotated[str | None, Query(max_length=100, pattern=REPO_RE.pattern)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[Task]:
        """Ready work in the agent lanes (open, not blocked), best first."""
        return await leases.ready(repo, limit)

    @app.post("/v1/tasks/{key}/{action}", tags=["tasks"], responses=errors, include_in_schema=False)
    async def operator_only(key: Key, action: str, actor: Agent) -> JSONResponse:
        if action in OPERATOR_ACTIONS:
            return problem(
                403, "forbidden", f"agents cannot {action} tasks; that is the operator's decision"
            )
        return problem(404, "not_found", f"no action {action[:30]!r}")

    app.include_router(forge_hooks(backlog, refresher))
    if mcp is not None:
        app.mount("/mcp", mcp.app)
    return app
