"""The agent verbs' side of the gateway: HTTP calls, and the lease epochs this machine holds.

Standard library only (urllib), so an agent's `ob heartbeat` starts fast. A 503 (the database
is restarting) or a refused connection (`ob serve` is restarting) is retried with backoff: the
request did nothing, so trying again is safe. Epochs are remembered per token in
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

RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)  # about half a minute in all
TIMEOUT = 30.0


class GatewayError(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        self.status = status
        self.body = body
        super().__init__(body.get("message") or f"HTTP {status}")

    @property
    def retryable(self) -> bool:
        """The request did nothing: the database was restarting, or nobody was listening."""
        return self.status == 503 or self.body.get("error") == "refused"


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
        self.url = settings.url.rstrip("/")
        self.sleep = sleep
        self.epochs = EpochStore(
            settings.data_dir / "leases.json", token_id(self.token) or "default"
        )

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, waits: int = 0
    ) -> Any:
        """The JSON answer; GatewayError for a refusal (after retrying what is safe to retry).
        `waits`: seconds the gateway may hold the request (a waiting claim or answer)."""
        for delay in RETRY_DELAYS:
            try:
                return self._once(method, path, body, TIMEOUT + waits)
            except GatewayError as err:
                if not err.retryable:
                    raise
            self.sleep(delay)
        return self._once(method, path, body, TIMEOUT + waits)

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
            refused = isinstance(reason, ConnectionRefusedError)
            raise GatewayError(
                0,
                {
                    "error": "refused" if refused else "unreachable",
                    "message": f"cannot reach the gateway at {self.url} ({reason}); is "
                    "`ob serve` running, and is OB_URL right?",
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
    def __init__(self, path: Path, token_id: str):
        self.path = path
        self.token_id = token_id

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict[str, int]]]:
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

    def remember(self, key: str, epoch: int) -> None:
        with self._locked() as data:
            data.setdefault(self.token_id, {})[key.upper()] = epoch

    def forget(self, key: str) -> None:
        with self._locked() as data:
            data.get(self.token_id, {}).pop(key.upper(), None)

    def get(self, key: str) -> int | None:
        with self._locked() as data:
            return data.get(self.token_id, {}).get(key.upper())
