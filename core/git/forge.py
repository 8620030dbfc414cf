"""Forge push webhooks, as data: is the request signed with the secret, is it a push, which
registered repositories does it name, and has this delivery been handled already. No HTTP here
(the gateway answers the forge; see gateway/hooks.py), and nothing is trusted before the
signature is checked.

* GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, `X-GitHub-Event: push`,
  `X-GitHub-Delivery`.
* GitLab: `X-Gitlab-Token: <the secret>` (GitLab sends the token itself), a body whose
  `object_kind` is `push` (`X-Gitlab-Event: Push Hook`, or `System Hook`), `Idempotency-Key`
  (GitLab 17.4+, the same on retries) else `X-Gitlab-Event-UUID`.
* Gitea and Forgejo: `X-Gitea-Signature` / `X-Forgejo-Signature: <hex HMAC-SHA256 of the
  body>`, `X-Gitea-Event` / `X-Forgejo-Event: push`, `X-Gitea-Delivery` / `X-Forgejo-Delivery`.

The repository is matched by its URLs (every clone, ssh and web URL the payload names,
normalised as remotes.normalise_url does) against each registered repo's remote; only when none
matches, by name. A delivery id is recorded once (`forge_deliveries`): a replay does nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.errors import Invalid
from core.git.remotes import normalise_url
from core.service import Service

log = logging.getLogger(__name__)

DELIVERIES_KEPT_DAYS = 30

# Where each forge puts the repository's URLs and names in a push payload.
_URL_KEYS = (
    "clone_url",
    "ssh_url",
    "html_url",
    "git_url",
    "url",
    "web_url",
    "git_http_url",
    "git_ssh_url",
    "http_url",
    "homepage",
)
_NAME_KEYS = ("full_name", "path_with_namespace", "name", "path")


class Forge(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"  # and Forgejo


@dataclass
class Push:
    """What a verified webhook request says."""

    forge: Forge
    delivery: str
    event: str
    is_push: bool
    urls: list[str] = field(default_factory=list)  # normalised
    names: list[str] = field(default_factory=list)


def _first(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value.strip()
    return None


def refusal(forge: Forge, secret: str, headers: Mapping[str, str], body: bytes) -> str | None:
    """None when the request carries the secret as its forge sends it (headers lower-cased;
    compared in constant time); else why not, in one line naming the header: GitLab sends the
    secret itself as a token, GitHub and Gitea/Forgejo an HMAC signature of the body."""
    if forge is Forge.GITLAB:
        token = _first(headers, "x-gitlab-token")
        if token is None:
            return "no X-Gitlab-Token header: set the webhook's secret token to OB_FORGE_SECRET"
        if hmac.compare_digest(token.encode(), secret.encode()):
            return None
        return (
            "the X-Gitlab-Token does not match OB_FORGE_SECRET: the webhook's secret token "
            "must be OB_FORGE_SECRET"
        )
    if forge is Forge.GITHUB:
        name, header = "X-Hub-Signature-256", _first(headers, "x-hub-signature-256")
        given = header.removeprefix("sha256=") if header and header.startswith("sha256=") else ""
    else:
        name = "X-Forgejo-Signature" if "x-forgejo-signature" in headers else "X-Gitea-Signature"
        header = _first(headers, "x-gitea-signature", "x-forgejo-signature")
        given = header or ""
    if header is None:
        return f"no {name} header: set the webhook's secret to OB_FORGE_SECRET"
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if given and hmac.compare_digest(given.lower().encode(), digest.encode()):
        return None
    return f"the {name} signature does not match OB_FORGE_SECRET (the webhook's secret)"


def read_push(forge: Forge, headers: Mapping[str, str], body: bytes) -> Push:
    """The event a verified request carries. Raises Invalid for a body that is not a JSON
    object."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise Invalid("the webhook body is not a JSON object")
    if forge is Forge.GITHUB:
        event = _first(headers, "x-github-event") or ""
        delivery = _first(headers, "x-github-delivery")
        is_push = event == "push"
    elif forge is Forge.GITLAB:
        event = _first(headers, "x-gitlab-event") or ""
        delivery = _first(headers, "idempotency-key", "x-gitlab-event-uuid")
        is_push = payload.get("object_kind") == "push"
    else:
        event = _first(headers, "x-gitea-event", "x-forgejo-event") or ""
        delivery = _first(headers, "x-gitea-delivery", "x-forgejo-delivery")
        is_push = event == "push"
    push = Push(
        forge=forge,
        # no delivery id: the body itself (a replay of the same request is the same body)
        delivery=(delivery or "sha256:" + hashlib.sha256(body).hexdigest())[:200],
        event=event[:100],
        is_push=is_push,
    )
    if is_push:
        push.urls, push.names = _repository(payload)
    return push


def _repository(payload: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The payload's repository URLs (normalised) and names."""
    urls: list[str] = []
    names: list[str] = []
    for section in ("repository", "project"):
        repo = payload.get(section)
        if not isinstance(repo, dict):
            continue
        for key in _URL_KEYS:
            value = repo.get(key)
            if isinstance(value, str) and value.strip():
                urls.append(normalise_url(value))
        for key in _NAME_KEYS:
            value = repo.get(key)
            if isinstance(value, str) and value.strip():
                names.append(value.strip())
    return list(dict.fromkeys(urls)), list(dict.fromkeys(names))


_MATCH = """
select name from repos where remote_key = any($1::text[])
union
select name from repos
where $3 and (name = any($2::text[]) or lower(name) = any($2::text[]))
order by name
"""

_DELIVERY = """
with gone as (
    delete from forge_deliveries
    where received_at < now() - make_interval(days => $4) and ctid in (
        select ctid from forge_deliveries
        where received_at < now() - make_interval(days => $4) limit 100)
)
insert into forge_deliveries (forge, delivery, repos) values ($1, $2, $3)
on conflict (forge, delivery) do nothing
returning delivery
"""


class Pushes(Service):
    """Forge push webhooks: which registered repos a push is about, each delivery once."""

    async def repos_for(self, push: Push) -> list[str]:
        """The registered repos a push is about: by remote URL, else by name."""
        rows = await self.pool.fetch(_MATCH, push.urls, [], False)
        if not rows:
            names = push.names + [n.lower() for n in push.names]
            rows = await self.pool.fetch(_MATCH, [], names, True)
        return [r["name"] for r in rows]

    async def first_delivery(self, push: Push, repos: list[str]) -> bool:
        """Record the delivery; False when it was recorded before (a replay: do nothing)."""
        new = await self.pool.fetchval(
            _DELIVERY, push.forge.value, push.delivery, repos, DELIVERIES_KEPT_DAYS
        )
        return new is not None
