"""End to end: `ob serve` as a subprocess against the fake Bot API server, with kills and
restarts between steps, a 429 with retry_after and a 502 — nothing lost, nothing sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from core.agents import Agents
from core.backlog import Backlog
from core.db import create_pool
from core.migrate import migrate
from core.models import Actor
from core.settings import load_settings
from tests.conftest import create_database, drop_database
from tests.fake_telegram import FakeTelegram

OPERATOR = 4242


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    def __init__(self, url: str, fake: FakeTelegram, tmp: Path, **env: str):
        self.url, self.fake, self.tmp = url, fake, tmp
        self.extra_env = env  # more OB_ settings
        self.port = 0
        self.proc: asyncio.subprocess.Process | None = None
        self.gateway = ""
        self.runs = 0
        # keep the digest out of the way: its time is hours from now
        at = (datetime.now(UTC) + timedelta(hours=8)).strftime("%H:%M")
        self.digest_at = at

    async def start(self) -> None:
        port = self.port or free_port()
        self.gateway = f"http://127.0.0.1:{port}"
        self.runs += 1
        env = {
            **os.environ,
            "OB_DATABASE_URL": self.url,
            "OB_GATEWAY_PORT": str(port),
            "OB_BOT_TOKEN": "123456:TEST",
            "OB_OPERATOR_IDS": str(OPERATOR),
            "OB_TELEGRAM_API_URL": self.fake.url,
            "OB_DIGEST_AT": self.digest_at,
            "OB_DIGEST_GRACE": "60",
            "OB_DATA_DIR": str(self.tmp / "data"),
            **self.extra_env,
        }
        log = open(self.tmp / f"serve-{self.runs}.log", "wb")  # noqa: SIM115 - lives with proc
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            "serve",
            env=env,
            cwd=self.tmp,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as c:
            while time.monotonic() < deadline:
                assert self.proc.returncode is None, self.logs()
                try:
                    if (await c.get(self.gateway + "/v1/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("ob serve did not come up:\n" + self.logs())

    async def stop(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        await asyncio.wait_for(self.proc.wait(), 20)
        if sig == signal.SIGTERM:
            assert self.proc.returncode == 0, self.logs()

    def logs(self) -> str:
        return (self.tmp / f"serve-{self.runs}.log").read_text(errors="replace")[-4000:]


async def test_serve_end_to_end(admin_url: str, tmp_path: Path) -> None:
    url = await create_database(admin_url)
    await migrate(url)
    pool = await create_pool(url, max_size=2)
    backlog = Backlog(pool, load_settings(database_url=url, _env_file=None))
    _, token = await Agents(backlog).add("codex", Actor.operator("test"))
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with FakeTelegram() as fake:
            serve = Serve(url, fake, tmp_path)
            await serve.start()
            await fake.wait_for(lambda: fake.ok("setMyCommands") and fake.ok("getUpdates"))
            assert fake.ok("deleteWebhook")
            commands = fake.ok("setMyCommands")[0]["commands"]
            assert {"inbox", "triage", "decide", "task", "digest"} <= {
                c["command"] for c in commands
            }

            # 1. an agent files a draft; Telegram says 429 (retry after 1 s), then 502
            fake.fail("sendMessage", (429, 1), (502, 0))
            async with httpx.AsyncClient(base_url=serve.gateway, headers=auth) as c:
                r = await c.post("/v1/tasks", json={"text": "Add an index\nsteps:\n- create it"})
                assert r.status_code == 201 and r.json()["key"] == "OB-1"
            card = await fake.wait_for(
                lambda: [m for m in fake.ok("sendMessage") if "OB-1" in m["text"]]
            )
            assert fake.statuses("sendMessage") == [429, 502, 200]
            times = [c["at"] for c in fake.calls if c["method"] == "sendMessage"]
            assert times[1] - times[0] >= 0.9  # retry-after honoured
            assert card[0]["chat_id"] == str(OPERATOR)
            mid = next(k for k, m in fake.messages.items() if "OB-1" in m["text"])
            buttons = {
                b["text"]: b["callback_data"]
                for row in fake.messages[mid]["reply_markup"]["inline_keyboard"]
                for b in row
            }

            # 2. once the card's delivery is recorded, ob serve dies hard; the operator taps
            # approve meanwhile; a new one picks it up. (A kill in the milliseconds between
            # Telegram accepting a message and its record is the one window where a message
            # can go twice: Telegram has no idempotency key, so delivery is at-least-once.)
            for _ in range(100):
                if await pool.fetchval(
                    "select count(*) from outbox where kind = 'draft_filed'"
                    " and delivered_at is not null"
                ):
                    break
                await asyncio.sleep(0.05)
            await serve.stop(signal.SIGKILL)
            fake.push_callback(OPERATOR, buttons["✅ autonomous"], mid)
            await serve.start()
            await fake.wait_for(
                lambda: "Approved into autonomous by you" in fake.messages[mid]["text"]
            )
            assert fake.ok("answerCallbackQuery")

            # 3. an agent claims; ob serve restarts (SIGTERM); the agent completes
            async with httpx.AsyncClient(base_url=serve.gateway, headers=auth) as c:
                lease = (await c.post("/v1/claim", json={})).json()["lease"]
                assert lease["key"] == "OB-1"
            await serve.stop(signal.SIGTERM)
            await serve.start()
            async with httpx.AsyncClient(base_url=serve.gateway, headers=auth) as c:
                r = await c.post(
                    "/v1/tasks/OB-1/complete",
                    json={"epoch": lease["epoch"], "commits": ["abc1234"]},
                )
                assert r.status_code == 200, r.text
            await fake.wait_for(
                lambda: [m for m in fake.ok("sendMessage") if "completed by codex" in m["text"]]
            )

            # 4. nothing more arrives: no duplicate card, edit or notice after the restarts
            await asyncio.sleep(1.0)
            await serve.stop(signal.SIGTERM)
            sends = [m["text"] for m in fake.ok("sendMessage")]
            assert len(sends) == 2, sends  # the card and the completion, once each
            edits = [m for m in fake.ok("editMessageText") if int(m["message_id"]) == mid]
            assert len(edits) == 1
            assert len(fake.ok("answerCallbackQuery")) == 1
            pending = await pool.fetch(
                "select id, kind, attempts, last_error, gave_up_at from outbox"
                " where delivered_at is null"
            )
            assert pending == [], [dict(r) for r in pending]
    finally:
        await pool.close()
        await drop_database(admin_url, url)


async def test_polling_starts_without_set_my_commands_and_status_shows_each_part(
    admin_url: str, tmp_path: Path
) -> None:
    """Some Bot API servers lack setMyCommands: the menu is cosmetic, the bot answers anyway;
    `ob status` (another process) shows every part of the running `ob serve`."""
    import json
    import subprocess

    url = await create_database(admin_url)
    await migrate(url)
    try:
        async with FakeTelegram() as fake:
            fake.fail("setMyCommands", *[(404, "missing")] * 50)
            serve = Serve(url, fake, tmp_path)
            await serve.start()
            fake.push_message(OPERATOR, "/lanes")
            await fake.wait_for(
                lambda: [m for m in fake.ok("sendMessage") if "<b>Lanes</b>" in m["text"]]
            )
            assert fake.statuses("setMyCommands")[:1] == [404]
            assert "setMyCommands failed" in serve.logs()
            env = {k: v for k, v in os.environ.items() if not k.startswith("OB_")}
            env["OB_DATABASE_URL"] = url
            r = subprocess.run(
                [sys.executable, "-m", "cli.main", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert r.returncode == 0, r.stderr
            (process,) = json.loads(r.stdout)["processes"]
            parts = {p["name"]: p["state"] for p in process["parts"]}
            assert {k: parts.get(k) for k in ("gateway", "polling", "notifier")} == {
                "gateway": "running",
                "polling": "running",
                "notifier": "running",
            }, parts
            await serve.stop(signal.SIGTERM)
    finally:
        await drop_database(admin_url, url)
