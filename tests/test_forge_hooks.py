"""Forge push webhooks over real HTTP: GitHub, GitLab and Gitea/Forgejo payloads (shaped as each
forge documents its push event) with computed, wrong and missing signatures; a replayed
delivery; an unknown repository; other events. Behind them a real fetch of a bare origin that
an agent's clone pushed to, and a real reconcile."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from core.backlog import Backlog
from core.git.refresh import Refresher
from core.git.repos import Repos
from core.models import Status
from gateway.app import create_app
from gateway.server import serving
from tests.filing import OP, file
from tests.test_git_helpers import Forge, GitRepo

SECRET = "correct horse battery staple"


@dataclass
class Hooks:
    url: str
    backlog: Backlog
    refresher: Refresher
    forge: Forge
    agent: GitRepo

    async def post(
        self, forge: str, payload: dict[str, Any] | bytes, headers: dict[str, str]
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        async with httpx.AsyncClient(timeout=30) as c:
            return await c.post(
                f"{self.url}/v1/hooks/{forge}",
                content=body,
                headers={"Content-Type": "application/json", **headers},
            )

    def push(self, message: str) -> str:
        sha = self.agent.commit(message)
        self.agent.git("push", "-q", "origin", "main")
        return sha

    async def until_done(self, key: str) -> None:
        for _ in range(600):  # a bound for a broken build, not a timing assertion
            if (await self.backlog.get(key)).status is Status.DONE:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{key} was not closed")


async def web_on_a_forge(backlog: Backlog, make_forge) -> tuple[Forge, GitRepo]:
    """A bare origin with one commit, an agent's clone of it, and the operator's clone
    registered as `web`."""
    forge = make_forge("web")
    agent = forge.clone("agent")
    agent.commit("init")
    agent.git("push", "-q", "origin", "main")
    mine = forge.clone("operator")
    await Repos(backlog).add(mine.path, OP, name="web")
    return forge, agent


@pytest.fixture
async def hooks(pool: asyncpg.Pool, settings, clean, make_forge) -> AsyncIterator[Hooks]:
    backlog = Backlog(pool, settings.model_copy(update={"forge_secret": SecretStr(SECRET)}))
    forge, agent = await web_on_a_forge(backlog, make_forge)
    refresher = Refresher(backlog)
    stop = asyncio.Event()
    loop = asyncio.create_task(refresher.run(stop))
    async with serving(partial(create_app, backlog, refresher=refresher), "127.0.0.1", 0) as gw:
        yield Hooks(gw.url, backlog, refresher, forge, agent)
    stop.set()
    await loop


def github_push(forge: Forge) -> dict[str, Any]:
    path = str(forge.path)
    return {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": forge.head(),
        "repository": {
            "name": "web",
            "full_name": "acme/web",
            "html_url": "https://github.com/acme/web",
            "url": "https://github.com/acme/web",
            "git_url": "git://github.com/acme/web.git",
            "ssh_url": "git@github.com:acme/web.git",
            "clone_url": path,  # the origin here is a local bare repository
        },
        "pusher": {"name": "codex", "email": "codex@example.com"},
        "commits": [],
    }


def gitlab_push(forge: Forge, name: str = "Web") -> dict[str, Any]:
    url = f"file://{forge.path}"
    return {
        "object_kind": "push",
        "event_name": "push",
        "ref": "refs/heads/main",
        "checkout_sha": forge.head(),
        "project": {
            "name": name,
            "path_with_namespace": f"acme/{name.lower()}",
            "web_url": f"https://gitlab.example.com/acme/{name.lower()}",
            "git_ssh_url": f"git@gitlab.example.com:acme/{name.lower()}.git",
            "git_http_url": url,
        },
        "repository": {"name": name, "url": url, "homepage": "https://gitlab.example.com"},
        "commits": [],
        "total_commits_count": 1,
    }


def gitea_push(forge: Forge) -> dict[str, Any]:
    return {
        "ref": "refs/heads/main",
        "after": forge.head(),
        "repository": {  # named otherwise on the forge: matched by its URL
            "name": "web-app",
            "full_name": "acme/web-app",
            "html_url": "https://gitea.example.com/acme/web-app",
            "ssh_url": "ssh://git@gitea.example.com:2222/acme/web-app.git",
            "clone_url": f"file://{forge.path}/",  # normalised: the same repository
        },
        "commits": [],
    }


def hmac_hex(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, event: str = "push", secret: str = SECRET) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + hmac_hex(body, secret),
    }


async def test_a_github_push_closes_the_task_at_once(hooks: Hooks) -> None:
    key = await file(hooks.backlog, "batch inserts", repo="web")
    sha = hooks.push(f"Batch inserts\n\nCloses {key}\n")
    body = json.dumps(github_push(hooks.forge)).encode()
    headers = github_headers(body)
    r = await hooks.post("github", body, headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "accepted" and r.json()["repos"] == ["web"]
    await hooks.until_done(key)
    task = await hooks.backlog.get(key)
    assert task.verified_at is not None and task.commits == [sha]
    notice = await hooks.backlog.pool.fetchval(
        "select payload ->> 'key' from outbox where kind = 'task_closed_by_commit'"
    )
    assert notice == key

    # the same delivery again: answered, and nothing happens twice
    for _ in range(600):
        if hooks.refresher.rounds:  # the round that closed it has ended
            break
        await asyncio.sleep(0.05)
    again = await hooks.post("github", body, headers)
    assert again.status_code == 200 and again.json()["status"] == "replayed"
    assert hooks.refresher.rounds == 1 and not hooks.refresher.pending


@pytest.mark.parametrize(
    ("headers", "said"),
    [
        ({}, "no X-Hub-Signature-256 header"),  # no signature at all
        (
            {"X-Hub-Signature-256": "sha256=" + "0" * 64},
            "the X-Hub-Signature-256 signature does not match OB_FORGE_SECRET",
        ),
        (
            {"X-Hub-Signature-256": "sha1=whatever"},
            "the X-Hub-Signature-256 signature does not match OB_FORGE_SECRET",
        ),
    ],
    ids=["missing", "wrong", "other-scheme"],
)
async def test_a_github_request_without_the_right_signature_does_nothing(
    hooks: Hooks, headers: dict[str, str], said: str
) -> None:
    key = await file(hooks.backlog, "x", repo="web")
    hooks.push(f"Closes {key}")
    body = json.dumps(github_push(hooks.forge)).encode()
    r = await hooks.post(
        "github", body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d1", **headers}
    )
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert r.json()["message"].startswith(said) and "nothing done" in r.json()["message"]
    signed_wrong = github_headers(body, secret="not the secret")
    assert (await hooks.post("github", body, signed_wrong)).status_code == 401
    assert not hooks.refresher.pending and hooks.refresher.rounds == 0
    assert await hooks.backlog.pool.fetchval("select count(*) from forge_deliveries") == 0
    assert (await hooks.backlog.get(key)).status is Status.OPEN


async def test_a_gitlab_push_with_its_token(hooks: Hooks) -> None:
    key = await file(hooks.backlog, "gitlab side", repo="web")
    hooks.push(f"Fixes {key}")
    body = json.dumps(gitlab_push(hooks.forge)).encode()
    event = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": str(uuid.uuid4())}
    # GitLab sends the secret itself as a token, not a signature: the refusal names it so
    r = await hooks.post("gitlab", body, {**event, "X-Gitlab-Token": "wrong"})
    assert r.status_code == 401
    said = r.json()["message"]
    assert said.startswith("the X-Gitlab-Token does not match OB_FORGE_SECRET")
    assert "signature" not in said and "secret token" in said, said
    r = await hooks.post("gitlab", body, event)
    assert r.status_code == 401
    assert r.json()["message"].startswith("no X-Gitlab-Token header"), r.text
    r = await hooks.post("gitlab", body, {**event, "X-Gitlab-Token": SECRET})
    assert r.status_code == 202 and r.json()["repos"] == ["web"]
    await hooks.until_done(key)
    replay = await hooks.post("gitlab", body, {**event, "X-Gitlab-Token": SECRET})
    assert replay.json()["status"] == "replayed"

    # a merge request event is not a push: ignored
    mr = json.dumps({"object_kind": "merge_request", "project": {"name": "web"}}).encode()
    r = await hooks.post(
        "gitlab", mr, {"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": SECRET}
    )
    assert r.status_code == 202 and r.json()["status"] == "ignored"


@pytest.mark.parametrize("flavour", ["Gitea", "Forgejo"])
async def test_a_gitea_or_forgejo_push_with_its_signature(hooks: Hooks, flavour: str) -> None:
    key = await file(hooks.backlog, "gitea side", repo="web")
    hooks.push(f"Resolves {key}")
    body = json.dumps(gitea_push(hooks.forge)).encode()
    base = {f"X-{flavour}-Event": "push", f"X-{flavour}-Delivery": str(uuid.uuid4())}
    r = await hooks.post("gitea", body, {**base, f"X-{flavour}-Signature": hmac_hex(b"x")})
    assert r.status_code == 401
    assert r.json()["message"].startswith(
        f"the X-{flavour}-Signature signature does not match OB_FORGE_SECRET"
    ), r.text
    r = await hooks.post("gitea", body, {**base, f"X-{flavour}-Signature": hmac_hex(body)})
    assert r.status_code == 202 and r.json()["repos"] == ["web"], r.text
    await hooks.until_done(key)
    issues = json.dumps({"action": "opened"}).encode()
    r = await hooks.post(
        "gitea",
        issues,
        {f"X-{flavour}-Event": "issues", f"X-{flavour}-Signature": hmac_hex(issues)},
    )
    assert r.status_code == 202 and r.json()["status"] == "ignored"


async def test_unknown_repositories_names_and_odd_requests(hooks: Hooks) -> None:
    # a repository ob does not know: 202, logged, nothing to do
    other = github_push(hooks.forge)
    other["repository"] = {"name": "elsewhere", "clone_url": "https://github.com/acme/elsewhere"}
    body = json.dumps(other).encode()
    r = await hooks.post("github", body, github_headers(body))
    assert r.status_code == 202 and r.json()["status"] == "unknown_repo"
    assert hooks.refresher.rounds == 0 and not hooks.refresher.pending

    # no URL matches, the name does (a forge that knows the repo under another URL)
    key = await file(hooks.backlog, "by name", repo="web")
    hooks.push(f"Closes {key}")
    payload = gitlab_push(hooks.forge, name="web")
    payload["project"]["git_http_url"] = "https://gitlab.example.com/acme/web.git"
    payload["repository"]["url"] = "git@gitlab.example.com:acme/web.git"
    body = json.dumps(payload).encode()
    r = await hooks.post("gitlab", body, {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"})
    assert r.status_code == 202 and r.json()["repos"] == ["web"]
    await hooks.until_done(key)

    # a ping, a body that is not JSON, a push larger than other gateway requests may be
    body = b'{"zen": "Design for failure."}'
    r = await hooks.post("github", body, github_headers(body, event="ping"))
    assert r.status_code == 202 and r.json()["status"] == "ignored"
    r = await hooks.post("github", b"not json", github_headers(b"not json"))
    assert r.status_code == 422
    big = github_push(hooks.forge)
    big["commits"] = [{"id": "x" * 40, "message": "m" * 1000} for _ in range(600)]
    body = json.dumps(big).encode()
    assert len(body) > hooks.backlog.settings.max_request_bytes
    r = await hooks.post("github", body, github_headers(body))
    assert r.status_code == 202 and r.json()["status"] == "accepted"


async def test_webhooks_are_off_without_a_secret(gateway: str) -> None:
    body = b"{}"
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{gateway}/v1/hooks/github", content=body, headers=github_headers(body))
    assert r.status_code == 404 and "OB_FORGE_SECRET" in r.json()["message"]
