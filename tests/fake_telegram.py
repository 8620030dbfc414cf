"""Test doubles for the Bot API.

`FakeTelegram`: a small Bot API HTTP server (getMe, getUpdates, sendMessage, editMessageText,
answerCallbackQuery, setMyCommands, deleteWebhook) that records every call, queues updates for
long polling, and on demand answers what a real one (or a proxy in front of it) can: 429 with
retry_after, a JSON 502, an HTML 502 page, a plain-text 500, 400/403 refusals, a 404 for a
method it lacks, or a dropped connection.

`RecordingSession`: an aiogram session that records each method call and returns plausible
results without any network (files it `hosts` are served by getFile and download); it also
checks what a real Bot API would refuse (text over 4,096 characters, callback data over 64 bytes,
unbalanced HTML).

The fake server also answers sendPhoto (uploads or file ids), getFile and file downloads, and
setWebhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import TelegramRetryAfter, TelegramServerError
from aiogram.methods import TelegramMethod
from aiogram.types import (
    CallbackQuery,
    Chat,
    File,
    InlineKeyboardMarkup,
    Message,
    PhotoSize,
    Update,
    User,
)
from aiohttp import web

Fault = tuple[int, int | str]
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "ob", "username": "ob_test_bot"}
ALLOWED_TAGS = {"b", "i", "u", "s", "code", "pre", "a", "tg-spoiler", "blockquote"}


class _HTMLCheck(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        assert tag in ALLOWED_TAGS, f"Telegram does not support <{tag}>"
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack}"
        self.stack.pop()


def check_text(text: str) -> None:
    assert len(text) <= 4096, f"message of {len(text)} characters"
    parser = _HTMLCheck()
    parser.feed(text)
    parser.close()
    assert not parser.stack, f"unclosed tags {parser.stack}"


def check_markup(markup: Any) -> None:
    if isinstance(markup, InlineKeyboardMarkup):
        for row in markup.inline_keyboard:
            for button in row:
                if button.callback_data is not None:
                    assert len(button.callback_data.encode()) <= 64, button.callback_data


# ---------------------------------------------------------------- recording session


class RecordingSession(BaseSession):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, TelegramMethod]] = []
        self.failures: list[Exception] = []
        self._ids = itertools.count(1000)
        self.files: dict[str, bytes] = {}  # file id -> content, for getFile + download

    def host(self, file_id: str, content: bytes) -> None:
        self.files[file_id] = content

    def of(self, name: str) -> list[TelegramMethod]:
        return [m for n, m in self.calls if n == name]

    def texts(self, name: str = "SendMessage") -> list[str]:
        return [m.text for m in self.of(name)]

    def answers(self) -> list[str | None]:
        return [m.text for m in self.of("AnswerCallbackQuery")]

    def clear(self) -> None:
        self.calls.clear()

    async def make_request(self, bot: Bot, method: TelegramMethod, timeout: int | None = None):
        name = type(method).__name__
        if self.failures and name in ("SendMessage", "EditMessageText"):
            raise self.failures.pop(0)
        self.calls.append((name, method))
        if name in ("SendMessage", "EditMessageText"):
            check_text(method.text)
            check_markup(method.reply_markup)
        if name == "SendMessage":
            return Message(
                message_id=next(self._ids),
                date=datetime.now(UTC),
                chat=Chat(id=method.chat_id, type="private"),
                text=method.text,
                reply_markup=method.reply_markup,
            ).as_(bot)
        if name == "SendPhoto":
            check_text(method.caption or "")
            photo = method.photo if isinstance(method.photo, str) else f"uploaded-{len(self.calls)}"
            return Message(
                message_id=next(self._ids),
                date=datetime.now(UTC),
                chat=Chat(id=method.chat_id, type="private"),
                photo=[PhotoSize(file_id=photo, file_unique_id=photo, width=800, height=600)],
                caption=method.caption,
            ).as_(bot)
        if name == "SendMediaGroup":
            return [
                Message(
                    message_id=next(self._ids),
                    date=datetime.now(UTC),
                    chat=Chat(id=method.chat_id, type="private"),
                ).as_(bot)
                for _ in method.media
            ]
        if name == "GetFile":
            return File(
                file_id=method.file_id,
                file_unique_id=method.file_id,
                file_size=len(self.files[method.file_id]),
                file_path=f"files/{method.file_id}",
            )
        if name == "GetMe":
            return User(**BOT_USER)
        return True

    async def close(self) -> None:
        pass

    async def stream_content(self, url: str, *a: Any, **kw: Any) -> AsyncGenerator[bytes, None]:
        yield self.files[url.rsplit("/", 1)[1]]


def retry_after(seconds: int = 1) -> TelegramRetryAfter:
    from aiogram.methods import SendMessage

    return TelegramRetryAfter(
        method=SendMessage(chat_id=1, text="x"), message="Too Many Requests", retry_after=seconds
    )


def server_error() -> TelegramServerError:
    from aiogram.methods import SendMessage

    return TelegramServerError(method=SendMessage(chat_id=1, text="x"), message="Bad Gateway")


_update_ids = itertools.count(1)


def user(uid: int) -> User:
    return User(id=uid, is_bot=False, first_name=f"user{uid}")


def message_update(uid: int, text: str | None, **fields: Any) -> Update:
    """A message from `uid`; `fields` adds to it (forward_origin, reply_to_message, photo,
    document, caption)."""
    return Update(
        update_id=next(_update_ids),
        message=Message(
            message_id=next(_update_ids),
            date=datetime.now(UTC),
            chat=Chat(id=uid, type="private"),
            from_user=user(uid),
            text=text,
            **fields,
        ),
    )


def bot_message(chat_id: int, message_id: int, text: str) -> Message:
    """One of the bot's own messages, as a reply quotes it."""
    return Message(
        message_id=message_id,
        date=datetime.now(UTC),
        chat=Chat(id=chat_id, type="private"),
        from_user=User(**BOT_USER),
        text=text,
    )


def callback_update(uid: int, data: str, message_id: int = 1, text: str = "card") -> Update:
    return Update(
        update_id=next(_update_ids),
        callback_query=CallbackQuery(
            id=str(next(_update_ids)),
            from_user=user(uid),
            chat_instance="ci",
            data=data,
            message=Message(
                message_id=message_id,
                date=datetime.now(UTC),
                chat=Chat(id=uid, type="private"),
                text=text,
            ),
        ),
    )


# ---------------------------------------------------------------- fake HTTP server


class FakeTelegram:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.messages: dict[int, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []
        self.faults: dict[str, list[Fault]] = {}
        self._message_ids = itertools.count(500)
        self._update_ids = itertools.count(1)
        self.confirmed = 0
        self.files: dict[str, bytes] = {}  # file id -> content (getFile, downloads)
        self.photos: list[bytes | str] = []  # what sendPhoto received: an upload, or a file id
        self._new_update = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    # -- control
    def fail(self, method: str, *faults: Fault) -> None:
        """Queue failures for a method, each used once: (429, retry_after), (502, 0) (a JSON
        502), (502, "html"), (500, "text"), (400, "description"), (403, "description"),
        (404, "missing") or (0, "drop") (the connection closes without an answer)."""
        self.faults.setdefault(method, []).extend(faults)

    def ok(self, method: str) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c["method"] == method and c["status"] == 200]

    def statuses(self, method: str) -> list[int]:
        return [c["status"] for c in self.calls if c["method"] == method]

    def push_callback(self, uid: int, data: str, message_id: int) -> None:
        msg = self.messages[message_id]
        self._push(
            {
                "callback_query": {
                    "id": str(time.time_ns()),
                    "from": {"id": uid, "is_bot": False, "first_name": "op"},
                    "chat_instance": "ci",
                    "data": data,
                    "message": self._message_json(message_id, msg),
                }
            }
        )

    def push_message(self, uid: int, text: str) -> None:
        self._push(
            {
                "message": {
                    "message_id": next(self._message_ids),
                    "date": int(time.time()),
                    "chat": {"id": uid, "type": "private"},
                    "from": {"id": uid, "is_bot": False, "first_name": "op"},
                    "text": text,
                }
            }
        )

    def _push(self, update: dict[str, Any]) -> None:
        update["update_id"] = next(self._update_ids)
        self.updates.append(update)
        self._new_update.set()

    async def wait_for(self, predicate, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out; calls so far: {[c['method'] for c in self.calls]}")

    # -- server
    async def __aenter__(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/files/{file_id}", self._download)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _message_json(self, message_id: int, msg: dict[str, Any]) -> dict[str, Any]:
        out = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": msg["chat_id"], "type": "private"},
            "from": BOT_USER,
            "text": msg["text"],
        }
        if msg.get("reply_markup"):
            out["reply_markup"] = msg["reply_markup"]
        return out

    async def _download(self, request: web.Request) -> web.Response:
        content = self.files.get(request.match_info["file_id"])
        return web.Response(body=content) if content is not None else web.Response(status=404)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        form = await request.post()
        params: dict[str, Any] = {}
        for k, v in form.items():
            if isinstance(v, str) and v[:1] in "[{":
                try:
                    params[k] = json.loads(v)
                    continue
                except ValueError:
                    pass
            params[k] = v
        call = {"method": method, "params": params, "status": 200, "at": time.monotonic()}
        self.calls.append(call)
        faults = self.faults.get(method)
        if faults:
            return self._fault(request, call, *faults.pop(0))
        result = await self._result(method, params)
        if result is None:
            call["status"] = 404
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        return web.json_response({"ok": True, "result": result})

    def _fault(
        self, request: web.Request, call: dict[str, Any], status: int, arg: int | str
    ) -> web.Response:
        call["status"] = status
        if status == 0:  # drop the connection
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if arg == "html":
            page = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
            return web.Response(status=status, text=page, content_type="text/html")
        if arg == "text":
            return web.Response(status=status, text=f"{status} Internal Server Error")
        body: dict[str, Any] = {"ok": False, "error_code": status}
        if status == 429:
            body["description"] = f"Too Many Requests: retry after {arg}"
            body["parameters"] = {"retry_after": arg}
        elif status in (400, 403, 404) and isinstance(arg, str):
            body["description"] = arg if arg != "missing" else "Not Found"
        else:
            body["description"] = "Bad Gateway"
        return web.json_response(body, status=status)

    async def _result(self, method: str, p: dict[str, Any]) -> Any:
        if method == "getMe":
            return BOT_USER
        if method in ("deleteWebhook", "setMyCommands", "answerCallbackQuery", "setWebhook"):
            return True
        if method == "getFile":
            content = self.files.get(p["file_id"])
            if content is None:
                return None
            return {
                "file_id": p["file_id"],
                "file_unique_id": p["file_id"],
                "file_size": len(content),
                "file_path": f"files/{p['file_id']}",
            }
        if method == "sendPhoto":
            photo = p["photo"]
            if isinstance(photo, str) and photo.startswith("attach://"):  # an upload
                photo = p[photo.removeprefix("attach://")]
            self.photos.append(photo if isinstance(photo, str) else photo.file.read())
            check_text(p.get("caption", ""))
            mid = next(self._message_ids)
            self.messages[mid] = {"chat_id": int(p["chat_id"]), "text": p.get("caption", "")}
            size = {
                "file_id": f"photo-{mid}",
                "file_unique_id": f"u{mid}",
                "width": 800,
                "height": 600,
            }
            return {**self._message_json(mid, self.messages[mid]), "photo": [size]}
        if method == "getUpdates":
            # like Telegram: an offset confirms every earlier update, for every later poller
            self.confirmed = max(self.confirmed, int(p.get("offset", 0) or 0))
            offset = self.confirmed
            wait = min(float(p.get("timeout", 0) or 0), 0.5)
            deadline = time.monotonic() + wait
            while True:
                ready = [u for u in self.updates if u["update_id"] >= offset]
                if ready or time.monotonic() >= deadline:
                    return ready
                self._new_update.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._new_update.wait(), timeout=max(0.01, deadline - time.monotonic())
                    )
        if method == "sendMessage":
            check_text(p["text"])
            mid = next(self._message_ids)
            self.messages[mid] = {
                "chat_id": int(p["chat_id"]),
                "text": p["text"],
                "reply_markup": p.get("reply_markup"),
            }
            return self._message_json(mid, self.messages[mid])
        if method == "editMessageText":
            check_text(p["text"])
            mid = int(p["message_id"])
            msg = self.messages.setdefault(mid, {"chat_id": int(p["chat_id"]), "text": ""})
            msg["text"] = p["text"]
            msg["reply_markup"] = p.get("reply_markup")
            return self._message_json(mid, msg)
        return None
