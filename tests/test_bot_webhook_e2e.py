"""End to end in webhook mode: `ob serve` as a subprocess, registered with the fake Bot API by
setWebhook; updates posted to its HTTP server. A wrong or missing secret is refused (401) and
changes nothing; with the right one: three quick messages make one preview, a TODO.md document
is downloaded (getFile) and imported in one tap, and /stats uploads the chart."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from bot.callbacks import CaptureAction, CaptureCB
from core.backlog import Backlog
from core.db import create_pool
from core.migrate import migrate
from core.models import Lane
from core.settings import load_settings
from tests.conftest import create_database, drop_database
from tests.fake_telegram import FakeTelegram
from tests.test_bot_e2e import OPERATOR, Serve, free_port

SECRET = "webhook-secret_42"
_ids = itertools.count(1)


def message(text: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "update_id": next(_ids),
        "message": {
            "message_id": next(_ids),
            "date": int(time.time()),
            "chat": {"id": OPERATOR, "type": "private"},
            "from": {"id": OPERATOR, "is_bot": False, "first_name": "op"},
            **({"text": text} if text is not None else {}),
            **extra,
        },
    }


def tap(data: str, message_id: int) -> dict[str, Any]:
    return {
        "update_id": next(_ids),
        "callback_query": {
            "id": str(next(_ids)),
            "from": {"id": OPERATOR, "is_bot": False, "first_name": "op"},
            "chat_instance": "ci",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": OPERATOR, "type": "private"},
                "text": "preview",
            },
        },
    }


async def test_webhook_mode_end_to_end(admin_url: str, tmp_path: Path) -> None:
    url = await create_database(admin_url)
    await migrate(url)
    pool = await create_pool(url, max_size=2)
    backlog = Backlog(pool, load_settings(database_url=url, _env_file=None))
    try:
        async with FakeTelegram() as fake:
            port = free_port()
            hook = f"http://127.0.0.1:{port}/telegram/updates"
            serve = Serve(url, fake, tmp_path, OB_WEBHOOK_URL=hook, OB_WEBHOOK_SECRET=SECRET)
            serve.port = port
            await serve.start()
            (registered,) = await fake.wait_for(lambda: fake.ok("setWebhook"))
            assert registered["url"] == hook and registered["secret_token"] == SECRET
            assert "message" in registered["allowed_updates"]

            async with httpx.AsyncClient(timeout=20) as c:

                async def post(update: dict[str, Any], secret: str | None = SECRET) -> int:
                    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
                    return (await c.post(hook, json=update, headers=headers)).status_code

                # 1. a wrong or missing secret: refused before anything is read
                assert await post(message("Forged idea"), secret="guess") == 401
                assert await post(message("Forged idea"), secret=None) == 401
                assert fake.ok("sendMessage") == []

                # 2. the right one: three quick messages, one preview of three
                for text in ("Cache the lane counts", "the digest gets slow", "- add an index"):
                    assert await post(message(text)) == 200
                assert len(fake.ok("sendMessage")) == 1
                edits = fake.ok("editMessageText")
                assert len({e["message_id"] for e in edits}) == 1 and len(edits) == 2
                assert "3 messages" in fake.messages[int(edits[-1]["message_id"])]["text"]

                # 3. a TODO.md document, downloaded through getFile, imported in one tap
                fake.files["doc-1"] = b"## Add an index\n- create it\n\n## Warm the cache\n"
                document = {"file_id": "doc-1", "file_unique_id": "u1", "file_name": "TODO.md"}
                assert await post(message(document=document, caption="web")) == 200
                assert fake.ok("getFile")
                imported = fake.ok("sendMessage")[-1]
                assert "Import preview" in imported["text"] and "2 ideas" in imported["text"]
                doc_preview = max(fake.messages)
                save = CaptureCB(action=CaptureAction.SAVE, capture=2, lane=Lane.TRIAGE).pack()
                assert await post(tap(save, doc_preview)) == 200
                assert "Saved 2 tasks into triage" in fake.messages[doc_preview]["text"]

                # 4. /stats uploads the chart
                assert await post(message("/stats")) == 200
                (photo,) = fake.photos
                assert isinstance(photo, bytes) and photo.startswith(b"\x89PNG")

            await serve.stop(signal.SIGTERM)
            assert fake.ok("getUpdates") == []  # webhook mode never polls
            tasks = {t.title: t for t in await backlog.list()}
            assert set(tasks) == {"Add an index", "Warm the cache"}  # the preview is unsaved
            assert tasks["Add an index"].repo == "web"
    finally:
        await pool.close()
        await drop_database(admin_url, url)
