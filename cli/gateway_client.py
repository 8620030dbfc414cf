"""The agent verbs' side of the gateway: HTTP calls, and the lease epochs this machine holds.

Epochs are remembered per token in `<data dir>/leases.json` so that a plain `ob done OB-12`
presents the epoch its `ob next` received.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from core.agents import TOKEN_RE
from core.settings import Settings


class GatewayError(Exception):
    def __init__(self, status: int, body: dict[str, Any]):
        self.status = status
        self.body = body
        super().__init__(body.get("message") or f"HTTP {status}")


class GatewayClient:
    def __init__(self, settings: Settings):
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
        match = TOKEN_RE.match(self.token)  # epochs are kept per token id
        self.epochs = EpochStore(
            settings.data_dir / "leases.json", match.group(1) if match else "default"
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = httpx.request(
                method,
                self.url + path,
                json=body,
                timeout=30,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        except httpx.HTTPError as err:
            raise GatewayError(
                0,
                {
                    "error": "unreachable",
                    "message": f"cannot reach the gateway at {self.url} ({err}); is `ob serve` "
                    "running, and is OB_URL right?",
                },
            ) from None
        try:
            data = r.json()
        except ValueError:
            data = {"error": "bad_response", "message": r.text[:500]}
        if r.status_code >= 400:
            raise GatewayError(
                r.status_code, data if isinstance(data, dict) else {"message": str(data)}
            )
        return data


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
