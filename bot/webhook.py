"""Webhook mode: for a deployment with a public URL (OB_WEBHOOK_URL), Telegram posts each update
to `ob serve`'s HTTP server instead of the bot long-polling for it. Every post must carry the
secret token (X-Telegram-Bot-Api-Secret-Token, from OB_WEBHOOK_SECRET or derived from the bot
token, so every `ob serve` process agrees on it); anything else is refused with 401 before it is
read. An update is handled before the answer, so a failure (the database restarting) answers
5xx and Telegram delivers the update again."""

from __future__ import annotations

import hashlib
import hmac
import logging
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.settings import Settings

log = logging.getLogger("ob.bot.webhook")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_secret(settings: Settings) -> str:
    """OB_WEBHOOK_SECRET, else one derived from the bot token (hex: Telegram's alphabet)."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.get_secret_value()
    assert settings.bot_token is not None
    token = settings.bot_token.get_secret_value().encode()
    return hmac.new(token, b"ob webhook secret", hashlib.sha256).hexdigest()


class Webhook:
    def __init__(self, settings: Settings, dp: Dispatcher, bot: Bot):
        assert settings.webhook_url is not None
        self.url = settings.webhook_url
        self.path = urlsplit(self.url).path or "/"
        self.secret = webhook_secret(settings)
        self.dp = dp
        self.bot = bot

    async def register(self) -> None:
        """Tell Telegram where to post updates, with the secret (pending updates are kept)."""
        await self.bot.set_webhook(
            self.url,
            secret_token=self.secret,
            allowed_updates=self.dp.resolve_used_update_types(),
            drop_pending_updates=False,
        )

    async def handle(self, request: Request) -> Response:
        """The HTTP endpoint Telegram posts to."""
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("refused a webhook post from %s: wrong secret token", request.client)
            return JSONResponse({"ok": False, "error": "unauthorized"}, status_code=401)
        try:
            update = Update.model_validate(await request.json(), context={"bot": self.bot})
        except (ValueError, ValidationError):
            return JSONResponse({"ok": False, "error": "not a Telegram update"}, status_code=400)
        await self.dp.feed_update(self.bot, update)
        return JSONResponse({"ok": True})
