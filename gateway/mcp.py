"""The MCP endpoint (streamable HTTP, mounted at /mcp): the agent verbs as tools.

Same auth as the REST API: every request carries `Authorization: Bearer <token>`; requests
without a valid token are refused with 401 before they reach the MCP server, and each tool call
resolves the agent from the token again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from pydantic import Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from core.agents import Unauthorized
from core.db import UNAVAILABLE
from core.errors import BacklogError, plain_problems
from core.models import Actor
from core.questions import Question
from core.spec import MAX_SPEC_BYTES, SpecError, parse
from core.waiting import MAX_WAIT, Waits
from gateway.asgi import UNAVAILABLE_MESSAGE, send_problem, unavailable_headers
from gateway.schemas import (
    Commits,
    Epoch,
    FindingsText,
    Key,
    LeaseSeconds,
    Note,
    Options,
    QuestionText,
    Reason,
    RepoName,
    WaitSeconds,
)

INSTRUCTIONS = """\
Operator Backlog: the operator's approved work for coding agents. The loop:
1. claim_next -> you get a task, a lease and an `epoch`. Read the steps and the drift (what
   changed in the repo since the plan was approved) before acting. With nothing ready,
   claim_next(wait_seconds=60) waits for work instead of polling.
2. heartbeat(key, epoch) well before the lease expires (default lease: 30 minutes). A choice
   only the operator can make: ask_operator(key, epoch, question, options) waits for the answer
   (waiting keeps your lease); "pending" means ask get_answer(id) again later. The answer is
   also written into the task's notes.
3. Finish with complete_task(key, epoch, commits) for autonomous_safe tasks (put
   `Closes: KEY` in the commit message), report_findings(key, epoch, text) for
   requires_investigation tasks, hand_off(key, epoch, prerequisite) if something else must be
   done first, or release_task(key, epoch) to give it back.
Every write must present the epoch of your claim. A refused write says why: another agent holds
the task now (stop working on it), your lease expired (claim again), or the epoch is not your
claim's. New ideas go in with file_draft; the operator approves them.
"""

P = ParamSpec("P")
R = TypeVar("R")
Authenticate = Callable[[str | None], Awaitable[Actor]]


@dataclass
class MCPEndpoint:
    app: ASGIApp
    lifespan: Callable[[], AbstractAsyncContextManager[None]]


class BearerGuard:
    """401 for any MCP request without a valid agent token."""

    def __init__(self, app: ASGIApp, authenticate: Authenticate):
        self.app = app
        self.authenticate = authenticate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            try:
                await self.authenticate(_bearer(header))
            except Unauthorized as err:
                await send_problem(
                    send, 401, err.code, err.message, headers={"WWW-Authenticate": "Bearer"}
                )
                return
            except UNAVAILABLE:
                await send_problem(
                    send,
                    503,
                    "database_unavailable",
                    UNAVAILABLE_MESSAGE,
                    headers=unavailable_headers(),
                )
                return
        await self.app(scope, receive, send)


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Backlog errors reach the agent as tool errors with their plain message."""

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except SpecError as err:
            raise ToolError(str(err)) from err
        except BacklogError as err:
            raise ToolError(f"{err.code}: {err.message}") from err
        except UNAVAILABLE as err:
            raise ToolError(f"database_unavailable: {UNAVAILABLE_MESSAGE}") from err

    return wrapper


class _Server(MCPServer[Any]):
    """The MCP server, with REST's plain messages: an argument of the wrong type reads
    `invalid_request: epoch: Input should be a valid integer` (not pydantic's dump with a
    link), a refusal reads as the backlog says it (without the SDK's prefix)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError:
            raise
        except ToolError as err:
            cause = err.__cause__
            if isinstance(cause, ValidationError):
                problems = "; ".join(plain_problems(cause.errors()))
                raise ToolError(f"invalid_request: {problems}"[:2000]) from cause
            if isinstance(cause, ToolError):  # raised by _tool_errors: already plain
                raise ToolError(str(cause)) from cause.__cause__
            raise


def _answer(q: Question) -> dict[str, Any]:
    """What an agent needs of a question: its answer, or that it is still pending."""
    out: dict[str, Any] = {"id": q.id, "key": q.key, "status": q.status, "question": q.text}
    if q.answered_at is not None:
        out |= {"answer": q.answer, "answered_by": q.answered_by}
    elif q.moot:
        out["message"] = f"{q.key} is {q.task_status.value}; no answer is coming"
    else:
        out["message"] = (
            f"not answered yet; call get_answer(question_id={q.id}) to wait again "
            "(waiting keeps your lease)"
        )
    return out


def build_mcp(waits: Waits, authenticate: Authenticate) -> MCPEndpoint:
    leases = waits.leases
    backlog = leases.backlog
    server = _Server(name="operator-backlog", instructions=INSTRUCTIONS, version="1")

    async def agent(ctx: Context) -> Actor:
        headers = ctx.headers or {}
        return await authenticate(_bearer(headers.get("authorization", "")))

    @server.tool(
        description="Claim the best ready task (priority, then age) and a lease on it. "
        "Returns the task, its epoch and lease expiry, or lease=null when nothing is "
        f"ready. With wait_seconds (at most {MAX_WAIT}) it waits for a task to become ready "
        "instead of answering at once."
    )
    @_tool_errors
    async def claim_next(
        ctx: Context,
        repos: Annotated[
            list[RepoName] | None, Field(max_length=200, description="Only tasks in these repos")
        ] = None,
        lease_seconds: LeaseSeconds | None = None,
        wait_seconds: WaitSeconds = 0,
    ) -> dict[str, Any]:
        lease = await waits.claim(
            await agent(ctx), repos=repos, lease_seconds=lease_seconds, wait_seconds=wait_seconds
        )
        return {"lease": lease.model_dump(mode="json") if lease else None}

    @server.tool(
        description="Ask the operator to decide something about the task you hold (its key "
        "and your epoch): a question and the options you expect (one button each on the "
        "operator's phone; a free-text answer is possible too). Waits up to wait_seconds "
        "for the answer and returns it, or status 'pending' with the question's id: then "
        "call get_answer. Waiting keeps your lease. The answer is also written into the "
        "task's notes."
    )
    @_tool_errors
    async def ask_operator(
        ctx: Context,
        key: Key,
        epoch: Epoch,
        question: QuestionText,
        options: Options = [],  # noqa: B006 - pydantic copies defaults
        wait_seconds: WaitSeconds = 30,
    ) -> dict[str, Any]:
        actor = await agent(ctx)
        asked = await waits.questions.ask(key, actor, epoch, question, options)
        return _answer(await waits.answer(asked.id, actor, wait_seconds))

    @server.tool(
        description="The answer to a question you asked with ask_operator: waits up to "
        "wait_seconds for it, else status 'pending' (ask again later; waiting keeps your "
        "lease)."
    )
    @_tool_errors
    async def get_answer(
        ctx: Context,
        question_id: Annotated[int, Field(strict=True, ge=1, le=2**62)],
        wait_seconds: WaitSeconds = 30,
    ) -> dict[str, Any]:
        return _answer(await waits.answer(question_id, await agent(ctx), wait_seconds))

    @server.tool(description="Extend your lease on a task. Refused if your epoch is stale.")
    @_tool_errors
    async def heartbeat(
        ctx: Context, key: Key, epoch: Epoch, lease_seconds: LeaseSeconds | None = None
    ) -> dict[str, Any]:
        hb = await leases.heartbeat(key, await agent(ctx), epoch, lease_seconds=lease_seconds)
        return hb.model_dump(mode="json")

    @server.tool(
        description="Complete an autonomous_safe task with the commit SHAs that did it. "
        "It stays unverified until git shows the commits on the default branch. If your "
        "`Closes:` commit already closed it while you held it, the answer says so "
        "(already_closed_by) and your note and commits are recorded."
    )
    @_tool_errors
    async def complete_task(
        ctx: Context,
        key: Key,
        epoch: Epoch,
        commits: Commits = [],  # noqa: B006 - pydantic copies defaults
        note: Note | None = None,
    ) -> dict[str, Any]:
        task = await leases.complete(key, await agent(ctx), epoch, commits=commits, note=note)
        return task.model_dump(mode="json")

    @server.tool(description="Give a task back to the queue without finishing it.")
    @_tool_errors
    async def release_task(
        ctx: Context, key: Key, epoch: Epoch, reason: Reason | None = None
    ) -> dict[str, Any]:
        return (await leases.release(key, await agent(ctx), epoch, reason)).model_dump(mode="json")

    @server.tool(
        description="Finish a requires_investigation task with what you found; it "
        "moves to requires_decision for the operator."
    )
    @_tool_errors
    async def report_findings(
        ctx: Context, key: Key, epoch: Epoch, text: FindingsText
    ) -> dict[str, Any]:
        return (await leases.findings(key, await agent(ctx), epoch, text)).model_dump(mode="json")

    @server.tool(
        description="Your task cannot go on until something else is done: file that "
        "prerequisite (spec text form: title line, then repo:/priority:/steps: ...), "
        "link it, and release your task, atomically."
    )
    @_tool_errors
    async def hand_off(
        ctx: Context,
        key: Key,
        epoch: Epoch,
        prerequisite_spec: Annotated[
            str,
            Field(max_length=MAX_SPEC_BYTES, description="The prerequisite in the spec text form"),
        ],
        reason: Reason | None = None,
    ) -> dict[str, Any]:
        task, prereq = await leases.handoff(
            key, await agent(ctx), epoch, parse(prerequisite_spec), reason
        )
        return {
            "task": task.model_dump(mode="json"),
            "prerequisite": prereq.model_dump(mode="json"),
        }

    @server.tool(
        description="File a new task in the spec text form. It is a draft until the "
        "operator approves it."
    )
    @_tool_errors
    async def file_draft(
        ctx: Context,
        spec: Annotated[str, Field(max_length=MAX_SPEC_BYTES, description="The spec text form")],
    ) -> dict[str, Any]:
        return (await backlog.file(parse(spec), await agent(ctx))).model_dump(mode="json")

    @server.tool(description="Show one task: spec, status, lease, blockers.")
    @_tool_errors
    async def show_task(ctx: Context, key: Key) -> dict[str, Any]:
        return (await backlog.get_for(key, await agent(ctx))).model_dump(mode="json")

    @server.tool(description="List ready work in the agent lanes, best first.")
    @_tool_errors
    async def list_ready(
        ctx: Context,
        repo: RepoName | None = None,
        limit: Annotated[int, Field(strict=True, ge=1, le=200)] = 20,
    ) -> dict[str, Any]:
        await agent(ctx)
        tasks = await leases.ready(repo, limit)
        return {"tasks": [t.model_dump(mode="json") for t in tasks]}

    http_app = server.streamable_http_app(
        streamable_http_path="/",
        stateless_http=True,
        json_response=True,
        host=backlog.settings.gateway_host,
    )
    return MCPEndpoint(app=BearerGuard(http_app, authenticate), lifespan=server.session_manager.run)
