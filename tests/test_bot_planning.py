"""Conversational planning through the real Dispatcher (recording session, real PostgreSQL):
messages in a row join one preview, many ideas saved in one tap or one by one, /plan … /done,
forwards keep their origin, replies amend, one-tap shaping and snooze, TODO.md documents and
photos."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiogram.types import (
    Chat,
    Document,
    InlineKeyboardMarkup,
    MessageOriginChannel,
    MessageOriginUser,
    PhotoSize,
)

from bot.callbacks import CaptureAction, CaptureCB, DrainMode, Shape, ShapeCB
from bot.digest_job import DigestJob
from bot.notifier import Notifier
from core.backlog import Backlog
from core.git.repos import Repos
from core.models import Actor, EventKind, Lane, Status
from core.shaping import local_today
from core.spec import make_spec
from tests.fake_telegram import bot_message, message_update, user
from tests.test_bot_dispatcher import OP, BotEnv, make_env
from tests.test_git_helpers import repo_factory

FIVE = """ideas for the bot:
- add /stats
- dark mode for cards
- export lanes as CSV
- retry failed uploads
- a weekly summary
"""


@pytest.fixture
async def env(backlog: Backlog) -> BotEnv:
    return make_env(backlog)


def save_button(env: BotEnv, markup: InlineKeyboardMarkup | None = None) -> str:
    return next(data for text, data in env.buttons(markup).items() if text.startswith("💾"))


async def test_three_quick_messages_make_one_preview_of_three(env: BotEnv) -> None:
    await env.say("Migrate ingest workers to asyncpg")
    await env.say("the pool runs dry twice a week")
    await env.say("- swap psycopg2 in ingest/db.py")
    (sent,) = env.session.of("SendMessage")  # one preview ...
    edits = env.session.of("EditMessageText")  # ... updated in place
    assert [e.message_id for e in edits] == [1000, 1000]
    assert "3 messages" in edits[-1].text and "swap psycopg2" in edits[-1].text
    await env.tap(save_button(env), message_id=1000)
    (task,) = await env.backlog.list()
    assert task.title == "Migrate ingest workers to asyncpg"
    assert task.notes == "the pool runs dry twice a week"
    assert task.steps == ["swap psycopg2 in ingest/db.py"]
    await env.say("A separate thought")  # the saved preview takes no more messages
    assert len(env.session.of("SendMessage")) == 2


async def test_a_message_that_cannot_join_starts_its_own_preview(env: BotEnv) -> None:
    await env.say("Fix the login page\npriority: P1")
    await env.say("Dark mode\npriority: P2")  # joined, `priority` would be given twice
    assert len(env.session.of("SendMessage")) == 2 and not env.session.of("EditMessageText")
    quiet = env.backlog.settings.model_copy(update={"capture_window": 0})
    env.dp["settings"] = quiet  # joining off: every message is its own preview
    await env.say("Third thing")
    assert len(env.session.of("SendMessage")) == 3


async def test_a_pasted_list_of_five_ideas_becomes_five_tasks_in_one_tap(env: BotEnv) -> None:
    await env.say(FIVE)
    summary = env.session.texts()[-1]
    assert "5 ideas" in summary and "dark mode for cards" in summary
    buttons = env.buttons()
    assert "💾 Save all 5 → triage" in buttons and "🔎 One by one" in buttons
    await env.tap(buttons["→ autonomous"], message_id=1000)
    tasks = await env.backlog.list()
    assert [t.title for t in tasks] == [
        "add /stats",
        "dark mode for cards",
        "export lanes as CSV",
        "retry failed uploads",
        "a weekly summary",
    ]
    assert {(t.status, t.lane) for t in tasks} == {(Status.OPEN, Lane.AUTONOMOUS)}
    assert "Saved 5 tasks into autonomous" in env.session.of("EditMessageText")[-1].text
    await env.tap(buttons["→ autonomous"], message_id=1000)  # a double tap files nothing
    assert env.session.answers()[-1] == "Already saved as OB-1, OB-2, OB-3, OB-4, OB-5."
    assert len(await env.backlog.list()) == 5


async def test_ideas_one_by_one(env: BotEnv) -> None:
    await env.say("todo:\n- first\n- second\n  - its step\n- third")
    await env.tap(env.buttons()["🔎 One by one"], message_id=1000)
    first = env.session.texts()[-1]
    assert "first" in first and "second" not in first
    await env.tap(save_button(env), message_id=1001)  # idea 1: saved
    assert "<b>second</b>" in env.session.texts()[-1] and "its step" in env.session.texts()[-1]
    await env.tap(env.buttons()["🗑 Discard"], message_id=1002)  # idea 2: dropped
    await env.tap(env.buttons()["✏️ Edit"])  # idea 3: edited, then saved
    await env.say("third, sharper\npriority: P0")
    await env.tap(save_button(env), message_id=1005)
    assert env.session.texts()[-1].startswith("✅ All 3 ideas decided: 2 saved (OB-1, OB-2)")
    summary = [e for e in env.session.of("EditMessageText") if e.message_id == 1000][-1]
    assert "All decided" in summary.text and "🗑" in summary.text
    tasks = await env.backlog.list()
    assert [(t.title, t.priority) for t in tasks] == [("third, sharper", 0), ("first", 2)]


async def test_plan_session_collects_until_done(env: BotEnv) -> None:
    await env.say("/plan")  # its message (1000) counts what is said
    for text in ("## Cache the lane counts", "repo: web", "- add an index", "---", "Warm-up job"):
        await env.say(text)
    assert "5 messages so far" in env.session.of("EditMessageText")[-1].text
    assert len(env.session.of("SendMessage")) == 1  # nothing else is said while planning
    await env.say("/done")
    preview = env.session.texts()[-1]
    assert "2 ideas" in preview and "Cache the lane counts" in preview
    assert "5 messages → 2 ideas" in env.session.of("EditMessageText")[-1].text
    assert env.session.of("EditMessageText")[-1].message_id == 1000
    await env.tap(save_button(env), message_id=1001)
    tasks = {t.title: t for t in await env.backlog.list()}
    assert tasks["Cache the lane counts"].repo == "web"
    assert tasks["Cache the lane counts"].steps == ["add an index"]
    await env.say("/done")
    assert "No planning session" in env.session.texts()[-1]


async def test_plan_that_does_not_read_asks_for_the_whole_text(env: BotEnv) -> None:
    await env.say("/plan")
    await env.say("/done")
    assert "Nothing was collected" in env.session.texts()[-1]
    await env.say("/plan")
    await env.say("A title\npriority: P1")
    await env.say("priority: P2")
    await env.say("/done")
    assert "given twice" in env.session.texts()[-1] and "corrected text" in env.session.texts()[-1]
    await env.say("A title\npriority: P2")
    assert "Draft preview" in env.session.texts()[-1]


async def test_a_forward_keeps_its_origin(env: BotEnv) -> None:
    sent = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    alice = user(77).model_copy(update={"first_name": "Alice", "username": "alice"})
    await env.feed(
        message_update(
            OP,
            "Rotate the API keys before the audit",
            forward_origin=MessageOriginUser(date=sent, sender_user=alice),
        )
    )
    preview = env.session.texts()[-1]
    assert "Forwarded from Alice (@alice), sent 2026-03-02 09:30 UTC" in preview
    await env.tap(save_button(env), message_id=1000)
    task = await env.backlog.get("OB-1")
    assert task.notes == "Forwarded from Alice (@alice), sent 2026-03-02 09:30 UTC"
    channel = Chat(id=-100, type="channel", title="Release notes", username="relnotes")
    await env.feed(
        message_update(
            OP,
            "Ship 2.0\nsteps:\n- tag it",
            forward_origin=MessageOriginChannel(date=sent, chat=channel, message_id=42),
        )
    )
    await env.tap(save_button(env), message_id=1001)
    task = await env.backlog.get("OB-2")
    assert task.steps == ["tag it"]
    assert "Release notes (https://t.me/relnotes/42)" in task.notes


async def test_a_reply_amends_the_task_with_an_event(env: BotEnv) -> None:
    op = Actor.operator("t")
    await env.backlog.file(make_spec(title="Add retries", steps=["wrap calls"]), op)
    await env.say("/task OB-1")
    card = env.session.of("SendMessage")[-1]
    card_id = 1000
    reply_to = bot_message(OP, card_id, card.text)
    await env.feed(
        message_update(OP, "step: write a test\nrisk: flaky network\nP0", reply_to_message=reply_to)
    )
    answer = env.session.texts()[-1]
    assert "+ step: write a test" in answer and "priority P2 → P0" in answer
    task = await env.backlog.get("OB-1")
    assert task.steps == ["wrap calls", "write a test"] and task.risks == ["flaky network"]
    assert task.priority == 0
    edited = [e for e in await env.backlog.history("OB-1") if e.kind == EventKind.EDITED]
    assert edited[-1].actor == f"operator:tg:{OP}"
    assert edited[-1].details["changes"]["steps"][1] == ["wrap calls", "write a test"]
    notifier = Notifier(env.bot, env.backlog, [OP], worker="test")
    assert await notifier.drain_once() == 1  # task_edited: the card shows the new spec
    refreshed = env.session.of("EditMessageText")[-1]
    assert refreshed.message_id == card_id and "write a test" in refreshed.text
    # free text goes to the notes; `lane decision` moves it
    await env.feed(message_update(OP, "asked Bob: retries are fine", reply_to_message=reply_to))
    await env.feed(message_update(OP, "lane decision", reply_to_message=reply_to))
    task = await env.backlog.get("OB-1")
    assert task.notes == "asked Bob: retries are fine" and task.lane == Lane.DECISION
    assert "lane triage → decision" in env.session.texts()[-1]
    # a reply to a message that names one task (a notice) amends it too
    notice = bot_message(OP, 5, "🏁 OB-1 Add retries\ncompleted by codex")
    await env.feed(message_update(OP, "repo: web", reply_to_message=notice))
    assert (await env.backlog.get("OB-1")).repo == "web"
    await env.feed(message_update(OP, "priority: P9", reply_to_message=reply_to))
    assert "could not apply" in env.session.texts()[-1]


async def test_a_reply_amends_a_preview_and_other_replies_are_captured(env: BotEnv) -> None:
    await env.say("Tidy the CI config")
    preview = bot_message(OP, 1000, env.session.texts()[-1])
    await env.feed(
        message_update(OP, "step: drop the py3.9 job\nlane autonomous", reply_to_message=preview)
    )
    updated = env.session.of("EditMessageText")[-1]
    assert updated.message_id == 1000 and "drop the py3.9 job" in updated.text
    assert "+ step: drop the py3.9 job" in env.session.texts()[-1]
    assert "💾 Save → autonomous" in env.buttons(updated.reply_markup)
    await env.tap(save_button(env, updated.reply_markup), message_id=1000)
    task = await env.backlog.get("OB-1")
    assert task.steps == ["drop the py3.9 job"] and task.lane == Lane.AUTONOMOUS
    mine = message_update(OP, "an old note of mine about OB-1").message
    assert mine is not None
    await env.feed(message_update(OP, "Follow up on the CI bill", reply_to_message=mine))
    assert "Follow up on the CI bill" in env.session.texts()[-1]  # captured, not an amendment
    assert (await env.backlog.get("OB-1")).notes == ""
    # a reply to the bot's question is its answer
    await env.tap(env.buttons()["✏️ Edit"])
    question = bot_message(OP, 1003, env.session.texts()[-1])
    await env.feed(
        message_update(OP, "Follow up on the CI bill\nrepo: web", reply_to_message=question)
    )
    assert "repo <code>web</code>" in env.session.texts()[-1]


async def test_one_tap_shaping_and_snooze_until_the_digest(env: BotEnv) -> None:
    op = Actor.operator("t")
    await env.backlog.file(make_spec(title="Decide on the cache"), op, lane=Lane.TRIAGE)
    await env.backlog.file(make_spec(title="Second thought"), op, lane=Lane.TRIAGE)
    await env.say("/task OB-1")
    buttons = env.buttons()
    assert {"• P2", "P0", "💤 tomorrow", "💤 next week", "→ autonomous"} <= set(buttons)
    await env.tap(buttons["P0"], message_id=1000)
    assert env.session.answers()[-1] == "OB-1 is P0 now"
    await env.tap(buttons["💤 tomorrow"], message_id=1000)
    today = local_today(env.backlog.settings.tz)
    tomorrow = today + timedelta(days=1)
    task = await env.backlog.get("OB-1")
    assert (task.priority, task.trigger_on) == (0, tomorrow)
    # hidden from the walk until its day ...
    await env.say("/triage")
    assert "card 1 of 1" in env.session.texts()[-1] and "Second thought" in env.session.texts()[-1]
    # ... and the digest of that day brings it back
    job = DigestJob(env.bot, env.backlog, [OP], "test", 3600)
    assert await job.send_for(tomorrow)
    digest = env.session.texts()[-1]
    assert "Back today" in digest and "OB-1 Decide on the cache" in digest
    assert env.session.of("SendPhoto")  # with the chart
    # on a drain card: a priority stays on the card, a snooze moves on
    await env.tap(ShapeCB(shape=Shape.P1, number=2, mode=DrainMode.TRIAGE).pack(), message_id=9)
    redrawn = env.session.of("EditMessageText")[-1]
    assert redrawn.message_id == 9 and "P1" in redrawn.text and "card 1 of 1" in redrawn.text
    await env.tap(ShapeCB(shape=Shape.NEXT_WEEK, number=2, mode=DrainMode.TRIAGE).pack(), 9)
    assert "snoozed 1" in env.session.of("EditMessageText")[-1].text
    assert (await env.backlog.get("OB-2")).trigger_on is not None
    await env.backlog.edit("OB-1", op, trigger_on=today)  # its day has come
    await env.say("/triage")
    assert "Decide on the cache" in env.session.texts()[-1]
    kinds = [e.kind for e in await env.backlog.history("OB-1")]
    assert kinds.count(EventKind.EDITED) == 3


async def test_a_todo_document_imports(env: BotEnv, tmp_path) -> None:
    todo = (
        "# TODO (web)\n\n## Add an index\nsteps:\n- create it concurrently\n\n"
        "## Old thing\nstatus: done\n\n## Cache warm-up\nrepo: api\npriority: P1\n"
    )
    env.session.host("doc-1", todo.encode())
    document = Document(file_id="doc-1", file_unique_id="u1", file_name="TODO.md")
    await env.feed(message_update(OP, None, document=document, caption="web"))
    preview = env.session.texts()[-1]
    assert "Import preview" in preview and "2 ideas" in preview and "left out: 1" in preview
    await env.tap(save_button(env), message_id=1000)
    tasks = {t.title: t for t in await env.backlog.list()}
    assert set(tasks) == {"Add an index", "Cache warm-up"}
    assert tasks["Add an index"].repo == "web" and tasks["Cache warm-up"].repo == "api"
    assert tasks["Add an index"].steps == ["create it concurrently"]
    assert "Imported from TODO.md" in tasks["Add an index"].notes
    # the same document again: nothing new
    await env.feed(message_update(OP, None, document=document, caption="web"))
    assert "nothing new" in env.session.texts()[-1]
    # no caption: the repo is asked, among the registered ones
    mobile = repo_factory(tmp_path)("mobile")
    mobile.commit("init")
    await Repos(env.backlog).add(mobile.path, Actor.operator("t"))
    env.session.host("doc-2", b"Ship the beta\n---\nCollect crash reports\n")
    other = Document(file_id="doc-2", file_unique_id="u2", file_name="ideas.txt")
    await env.feed(message_update(OP, None, document=other))
    assert "Which <b>repo</b>" in env.session.texts()[-1]
    await env.tap(env.buttons()["mobile"])
    await env.tap(save_button(env), message_id=1003)
    assert (await env.backlog.get("OB-3")).repo == "mobile"
    # not a text document
    pdf = Document(file_id="doc-3", file_unique_id="u3", file_name="plan.pdf")
    await env.feed(message_update(OP, None, document=pdf))
    assert "TODO.md-style" in env.session.texts()[-1]


async def test_a_photo_with_a_caption_is_kept_on_the_task(env: BotEnv) -> None:
    sizes = [
        PhotoSize(file_id=f"ph-{w}", file_unique_id=f"u-{w}", width=w, height=w) for w in (90, 800)
    ]
    await env.feed(message_update(OP, None, photo=sizes, caption="The header overlaps the logo"))
    preview = env.session.texts()[-1]
    assert "📷 1 photo" in preview and "The header overlaps the logo" in preview
    await env.feed(message_update(OP, None, photo=sizes[:1]))  # no caption: joins the preview
    await env.tap(save_button(env), message_id=1000)
    await env.say("/task OB-1")
    (album,) = env.session.of("SendMediaGroup")
    assert [m.media for m in album.media] == ["ph-800", "ph-90"]
    env.dp["settings"] = env.backlog.settings.model_copy(update={"capture_window": 0})
    await env.feed(message_update(OP, None, photo=sizes))
    assert "caption" in env.session.texts()[-1]


async def test_callback_data_of_the_new_buttons_is_typed(env: BotEnv) -> None:
    await env.backlog.file(make_spec(title="x"), Actor.operator("t"), lane=Lane.TRIAGE)
    for data in ("s:p9:1:", "s:tm:abc:", "s:p0:1:nowhere", "r:1:x", "p:rv:x:"):
        await env.tap(data)
        assert env.session.answers()[-1] == "That button is not valid (any more)."
    await env.tap(CaptureCB(action=CaptureAction.REVIEW, capture=999).pack())
    assert env.session.answers()[-1] == "That preview no longer exists."
    assert (await env.backlog.get("OB-1")).priority == 2


async def test_thinking_out_loud_ending_with_a_risk_gives_one_preview_with_it(env: BotEnv) -> None:
    await env.say("Cache the embeddings")
    await env.say("it belongs in nexus-ingest")
    await env.say("risk: a stale cache after a model upgrade")
    (sent,) = env.session.of("SendMessage")  # one preview, edited in place
    last = env.session.of("EditMessageText")[-1].text
    assert "3 messages" in last and "<b>Risks</b>" in last
    assert "a stale cache after a model upgrade" in last
    await env.tap(save_button(env), message_id=1000)
    (task,) = await env.backlog.list()
    assert task.risks == ["a stale cache after a model upgrade"]
    assert task.notes == "it belongs in nexus-ingest"


async def test_a_nul_character_is_named_not_something_went_wrong(env: BotEnv) -> None:
    await env.say("Fix the\x00 login")
    answer = env.session.texts()[-1]
    assert "NUL character (U+0000)" in answer and "went wrong" not in answer
    assert await env.backlog.list() == []
    await env.say("A fine idea")  # the chat goes on
    assert "A fine idea" in env.session.texts()[-1]


async def test_a_document_preview_says_what_import_todo_would_do(env: BotEnv) -> None:
    await env.backlog.file(make_spec(title="Rotate the keys", repo="web"), Actor.operator("t"))
    todo = (
        "# TODO\n\n*Last updated: 2026-11-19*\n\n"
        "## Rotate the keys, all of them\nkey: OB-1\npriority: P0\n\n"
        "## Cache warm-up\n**Status:** blocked (2026-11-18) — waiting for finance\n\n"
        "## Canary analysis\npriority: P9\n\n"
        "## Later\n- [ ] dark mode\n- [x] shipped thing\n"
    )
    env.session.host("doc-9", todo.encode())
    document = Document(file_id="doc-9", file_unique_id="u9", file_name="TODO.md")
    await env.feed(message_update(OP, None, document=document, caption="web"))
    preview = env.session.texts()[-1]
    assert "2 ideas" in preview and "Cache warm-up" in preview and "dark mode" in preview
    assert "OB-1 (line 5): title, priority" in preview
    assert "Could not read 1" in preview and "line 12: line 13: priority must be" in preview
    assert "shipped thing (checked)" in preview
    await env.tap(save_button(env), message_id=1000)
    tasks = {t.key: t for t in await env.backlog.list()}
    assert (tasks["OB-1"].title, tasks["OB-1"].priority) == ("Rotate the keys, all of them", 0)
    edited = (await env.backlog.history("OB-1"))[-1]
    assert edited.kind == EventKind.EDITED and edited.details["line"] == 5
    warm = next(t for t in tasks.values() if t.title == "Cache warm-up")
    assert (warm.status_word, warm.status_reason) == ("blocked", "waiting for finance")
    await env.say(f"/task {warm.key}")
    assert "📌 blocked since 2026-11-18 — waiting for finance" in env.session.texts()[-1]
