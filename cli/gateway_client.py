"""The agent verbs' side of the gateway: HTTP calls, and the lease epochs this machine holds.

Standard library only (urllib), so an agent's `ob heartbeat` starts fast. A 503 (the database
is restarting) is retried with backoff for about half a minute, a refused connection (`ob serve`
is restarting, or is not running) for a moment: the request did nothing, so trying again is
safe. Epochs are remembered per token in
`<data dir>/leases.json` so that a plain `ob done OB-12` presents the epoch its `ob next`
received.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.tokens import token_id

if TYPE_CHECKING:
    from core.settings import Settings

RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)  # about half a minute in all, while the gateway says 503
REFUSED_DELAYS = (0.3, 0.7)  # nothing listening: a moment for a restart, then say so
TIMEOUT = 30.0


class GatewayError(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        self.status = status
        self.body = body
        super().__init__(body.get("message") or f"HTTP {status}")

    @property
    def retryable(self) -> bool:
        """The request did nothing: the database was restarting, or nobody was listening."""
        return self.status == 503 or self.refused

    @property
    def refused(self) -> bool:
        return self.body.get("error") == "refused"


class GatewayClient:
    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep):
        if settings.agent_token is None:
            raise GatewayError(
                0,
                {
                    "error": "no_token",
                    "message": "OB_AGENT_TOKEN is not set; the operator gets "
                    "you one with `ob agent add NAME`",
                },
            )
        self.token = settings.agent_token.get_secret_value()
        self.url = settings.gateway_url
        self.sleep = sleep
        self.epochs = EpochStore(
            settings.data_dir / "leases.json", token_id(self.token) or "default"
        )

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, waits: int = 0
    ) -> Any:
        """The JSON answer; GatewayError for a refusal (after retrying what is safe to retry:
        a 503 for about half a minute, nothing listening for a moment). `waits`: seconds the
        gateway may hold the request (a waiting claim or answer)."""
        waited = {False: iter(RETRY_DELAYS), True: iter(REFUSED_DELAYS)}
        while True:
            try:
                return self._once(method, path, body, TIMEOUT + waits)
            except GatewayError as err:
                delay = next(waited[err.refused], None) if err.retryable else None
                if delay is None:
                    raise
            self.sleep(delay)

    def remembered_epoch(self, key: str) -> int | None:
        """The epoch `ob next` got for this task on this machine (with this token, or with
        this agent's token before it was rotated)."""
        epoch = self.epochs.get(key)
        if epoch is None and self.epochs.held_elsewhere(key):
            epoch = self.epochs.adopt(key, self.call("GET", "/v1/me")["agent"])
        return epoch

    def _once(self, method: str, path: str, body: dict[str, Any] | None, timeout: float) -> Any:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as err:
            raise GatewayError(err.code, _problem(err.read(), err.code)) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, ConnectionRefusedError):
                error, message = "refused", f"nothing is listening at {self.url}"
            else:
                error, message = "unreachable", f"cannot reach the gateway at {self.url} ({reason})"
            raise GatewayError(
                0,
                {
                    "error": error,
                    "message": f"{message} (is `ob serve` running? The URL is OB_URL, else "
                    "OB_GATEWAY_HOST and OB_GATEWAY_PORT)",
                },
            ) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise GatewayError(status, _problem(raw, status)) from None


def _problem(raw: bytes, status: int) -> dict[str, Any]:
    """The gateway's JSON problem body, or a description of whatever else came back."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    return {"error": "bad_response", "message": f"HTTP {status}: {raw[:300]!r}"}


class EpochStore:
    """The epochs this machine's claims got, per token: {token id: {KEY: epoch}}, and under
    AGENTS {token id: agent name}, so that an agent whose token was rotated finds the epochs
    its earlier token's claims got."""

    AGENTS = "_agents"

    def __init__(self, path: Path, token_id: str):
        self.path = path
        self.token_id = token_id

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {}
            except ValueError:
                data = {}
            yield data
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)

    def remember(self, key: str, epoch: int, agent: str | None = None) -> None:
        with self._locked() as data:
            data.setdefault(self.token_id, {})[key.upper()] = epoch
            if agent:
                data.setdefault(self.AGENTS, {})[self.token_id] = agent

    def held_elsewhere(self, key: str) -> bool:
        """Whether a claim made here with another token remembers this task."""
        with self._locked() as data:
            return any(
                key.upper() in epochs
                for tid, epochs in data.items()
                if tid not in (self.token_id, self.AGENTS)
            )

    def adopt(self, key: str, agent: str) -> int | None:
        """The epoch a claim of this same agent made with an earlier token (before `ob agent
        rotate`), moved under the current token; None when there is none."""
        with self._locked() as data:
            names = data.get(self.AGENTS, {})
            for tid in [t for t, name in names.items() if name == agent and t != self.token_id]:
                epoch = data.get(tid, {}).pop(key.upper(), None)
                if epoch is not None:
                    data.setdefault(self.token_id, {})[key.upper()] = epoch
                    names[self.token_id] = agent
                    return int(epoch)
            return None

    def forget(self, key: str) -> None:
        with self._locked() as data:
            data.get(self.token_id, {}).pop(key.upper(), None)

    def get(self, key: str) -> int | None:
        with self._locked() as data:
            return data.get(self.token_id, {}).get(key.upper())
