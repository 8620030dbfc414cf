"""Forge push webhooks: `POST /v1/hooks/github`, `/v1/hooks/gitlab`, `/v1/hooks/gitea` (Gitea
and Forgejo), signed with OB_FORGE_SECRET (GitLab sends it as a token).

The forge gets its answer at once; the fetch and the reconcile of the repo run in the
background of `ob serve` (core.git.refresh). A request without the right signature or token
gets 401, naming the header, and nothing else happens (nothing is read, nothing is written); a
replayed delivery is answered 200 and does nothing; a repository ob does not know, 202 and a
log line; any other event than a push, 202 and ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from core.backlog import Backlog
from core.git.forge import Forge, Pushes, read_push, refusal
from core.git.refresh import Refresher
from gateway.schemas import Problem

log = logging.getLogger("ob.gateway.hooks")

HOOK_PREFIX = "/v1/hooks/"
MAX_HOOK_BYTES = 25 * 1024 * 1024  # GitHub's largest webhook payload


class HookAnswer(BaseModel):
    status: str  # accepted | ignored | unknown_repo | replayed
    message: str
    repos: list[str] = []


def _answer(code: int, status: str, message: str, repos: list[str] | None = None) -> JSONResponse:
    body = HookAnswer(status=status, message=message, repos=repos or [])
    return JSONResponse(body.model_dump(), status_code=code)


def _refused(code: int, error: str, message: str) -> JSONResponse:
    return JSONResponse(Problem(error=error, message=message).model_dump(), status_code=code)


def forge_hooks(backlog: Backlog, refresher: Refresher | None) -> APIRouter:
    """The webhook routes; they answer 404 (saying how to turn them on) while OB_FORGE_SECRET
    is unset or nothing runs the refreshes."""
    router = APIRouter(tags=["forge webhooks"])
    secret = backlog.settings.forge_secret
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": Problem} for code in (401, 404, 422)
    }

    @router.post(
        HOOK_PREFIX + "{forge}", status_code=202, response_model=HookAnswer, responses=responses
    )
    async def hook(forge: Forge, request: Request) -> JSONResponse:
        """A forge's push: fetch and reconcile that repository now."""
        if secret is None or refresher is None:
            return _refused(
                404,
                "not_found",
                "forge webhooks are off on this ob serve: set OB_FORGE_SECRET and restart it",
            )
        body = await request.body()
        why = refusal(forge, secret.get_secret_value(), request.headers, body)
        if why is not None:
            log.warning("%s webhook refused: %s", forge.value, why)
            return _refused(401, "unauthorized", f"{why}; nothing done")
        push = read_push(forge, request.headers, body)
        if not push.is_push:
            what = push.event or "this event"
            return _answer(202, "ignored", f"{what} is not a push; ignored")
        repos = await Pushes(backlog).repos_for(push)
        if not await Pushes(backlog).first_delivery(push, repos):
            return _answer(200, "replayed", f"delivery {push.delivery} was handled already", repos)
        if not repos:
            log.warning(
                "%s push for a repository ob does not know (%s); `ob repo add` it",
                forge.value,
                ", ".join(push.urls or push.names)[:300] or "no URL in the payload",
            )
            return _answer(202, "unknown_repo", "no registered repo matches; nothing to do")
        refresher.request(repos)
        return _answer(202, "accepted", "fetching and reconciling now", repos)

    return router
