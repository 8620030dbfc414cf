"""The bot through the real Dispatcher: real Update objects, a recording session, real Postgres."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiogram import Bot, Dispatcher
from aiogram.types import Update

from bot.app import DEFAULTS, build_dispatcher
from bot.notifier import Notifier
from bot.storage import PostgresStorage
from core.backlog import Backlog
from core.botstore import BotStore
from core.models import Actor, Lane, Status
from core.spec import make_spec
from tests.fake_telegram import RecordingSession, callback_update, message_update

OP = 4242
STRANGER = 666


@dataclass
class BotEnv:
    backlog: Backlog
    bot: Bot
    dp: Dispatcher
    session: RecordingSession

    async def feed(self, update: Update) -> None:
        await self.dp.feed_update(self.bot, update)

    async def say(self, text: str, uid: int = OP) -> None:
        await self.feed(message_update(uid, text))

    async def tap(self, data: str, message_id: int = 1, uid: int = OP) -> None:
        await self.feed(callback_update(uid, data, message_id))

    def restart(self) -> None:
        """A new Dispatcher and storage instance over the same database (a process restart)."""
        self.dp = build_dispatcher(self.backlog, PostgresStorage(BotStore(self.backlog)))

    def last_markup(self):
        return self.session.of("SendMessage")[-1].reply_markup

    def buttons(self, markup=None) -> dict[str, str]:
        markup = markup or self.last_markup()
        return {b.text: b.callback_data for row in markup.inline_keyboard for b in row}


def make_env(backlog: Backlog) -> BotEnv:
    """The operator's bot over this backlog: a Dispatcher fed through a recording session."""
    settings = backlog.settings.model_copy(update={"operator_ids": [OP]})
    bl = Backlog(backlog.pool, settings)
    session = RecordingSession()
    bot = Bot("123456:TEST", session=session, default=DEFAULTS)
    return BotEnv(bl, bot, build_dispatcher(bl), session)


@pytest.fixture
async def env(backlog: Backlog) -> BotEnv:
    return make_env(backlog)


async def test_capture_then_save(env: BotEnv) -> None:
    await env.say(
        "Add retries to the uploader\nrepo: web\npriority: P1\nsteps:\n- wrap calls\n- test"
    )
    preview = env.session.texts()[-1]
    assert "Draft preview" in preview and "Add retries to the uploader" in preview
    buttons = env.buttons()
    save = next(data for text, data in buttons.items() if text.endswith("autonomous"))
    await env.tap(save, message_id=1000)
    task = await env.backlog.get("OB-1")
    assert (task.status, task.lane, task.repo, task.priority) == (
        Status.OPEN,
        Lane.AUTONOMOUS,
        "web",
        1,
    )
    assert task.steps == ["wrap calls", "test"] and task.created_by == f"operator:tg:{OP}"
    assert "Saved as <b>OB-1</b>" in env.session.of("EditMessageText")[-1].text
    await env.tap(save, message_id=1000)  # a double tap files nothing more
    assert env.session.answers()[-1] == "Already saved as OB-1."
    assert len(await env.backlog.list()) == 1


async def test_capture_edit_and_discard(env: BotEnv) -> None:
    await env.say("first idea")
    edit, discard = env.buttons()["✏️ Edit"], env.buttons()["🗑 Discard"]
    await env.tap(edit)
    await env.say("better idea\nrisks:\n- none known")
    assert "better idea" in env.session.texts()[-1]
    await env.tap(discard)  # the old preview's discard still refers to the same capture
    assert env.session.answers()[-1] == "Discarded"
    await env.tap(discard)
    assert env.session.answers()[-1] == "Already discarded."
    assert await env.backlog.list() == []


async def test_invalid_spec_gets_a_clear_reply(env: BotEnv) -> None:
    await env.say("repo: web\nsteps:\n- x")
    reply = env.session.texts()[-1]
    assert "could not read that as a task" in reply and "title" in reply
    assert await env.backlog.list() == []


async def test_five_thousand_character_messages(env: BotEnv) -> None:
    await env.say("x" * 5000)  # one 5,000-character title: too long, said clearly
    assert "at most 200" in env.session.texts()[-1]
    long_spec = "A long plan\nsteps:\n" + "\n".join(f"- step {i} " + "y" * 80 for i in range(55))
    assert len(long_spec) > 5000
    await env.say(long_spec)
    preview = env.session.texts()[-1]
    assert len(preview) <= 4096 and "A long plan" in preview and "more" in preview
    save = next(d for t, d in env.buttons().items() if t.startswith("💾"))
    await env.tap(save)
    assert len((await env.backlog.get("OB-1")).steps) == 55
    await env.say("/task OB-1")
    assert len(env.session.texts()[-1]) <= 4096


async def test_new_conversation_survives_a_restart(env: BotEnv) -> None:
    await env.backlog.file(make_spec(title="seed", repo="nexus-ingest"), Actor.operator("t"))
    await env.say("/new")
    await env.say("Migrate ingest workers to asyncpg")
    repo_button = env.buttons()["nexus-ingest"]
    env.restart()  # the process restarts in the middle of the conversation
    await env.tap(repo_button)
    env.restart()
    await env.say("pool exhaustion alerts twice this week")
    await env.say("swap psycopg2 for asyncpg")
    env.restart()
    await env.say("run the 10k-row load test")
    await env.tap(env.buttons()["Done ✔"])
    await env.say("connection leak under cancellation")
    await env.tap(env.buttons()["Done ✔"])
    await env.tap(env.buttons()["autonomous"])
    assert "Save this task?" in env.session.texts()[-1]
    env.restart()
    await env.tap(env.buttons()["💾 Save"])
    task = await env.backlog.get("OB-2")
    assert task.title == "Migrate ingest workers to asyncpg"
    assert task.repo == "nexus-ingest" and task.lane == Lane.AUTONOMOUS
    assert task.trigger == "pool exhaustion alerts twice this week"
    assert task.steps == ["swap psycopg2 for asyncpg", "run the 10k-row load test"]
    assert task.risks == ["connection leak under cancellation"]
    assert "Saved <b>OB-2</b>" in env.session.texts()[-1]


async def test_cancel_anywhere(env: BotEnv) -> None:
    await env.say("/new")
    await env.say("/lanes")  # other commands work during a conversation, and do not end it
    assert "<b>Lanes</b>" in env.session.texts()[-1]
    await env.say("half an idea")
    assert "Which <b>repo</b>?" in env.session.texts()[-1]
    await env.say("/cancel")
    assert env.session.texts()[-1] == "Cancelled."
    await env.say("just text")  # back to capture
    assert "Draft preview" in env.session.texts()[-1]


async def _agent_draft(env: BotEnv, make_agent, title: str = "Add an index") -> Notifier:
    actor, _ = await make_agent("codex")
    await env.backlog.file(make_spec(title=title, steps=["create index"]), actor)
    notifier = Notifier(env.bot, env.backlog, [OP], worker="test")
    assert await notifier.drain_once() == 1
    return notifier


async def test_approval_card_approve_and_stale_tap(env: BotEnv, make_agent) -> None:
    notifier = await _agent_draft(env, make_agent)
    card = env.session.of("SendMessage")[-1]
    assert "OB-1" in card.text and "filed by codex" in card.text
    approve = env.buttons()["✅ autonomous"]
    card_id = 1000
    await env.tap(approve, message_id=card_id)
    assert env.session.answers()[-1] == "Approved OB-1 into autonomous"
    task = await env.backlog.get("OB-1")
    assert task.status == Status.OPEN and task.lane == Lane.AUTONOMOUS
    assert env.session.of("EditMessageText") == []  # the tap only answers ...
    assert await notifier.drain_once() == 1  # ... the notifier edits the card, from the outbox
    (edit,) = env.session.of("EditMessageText")
    assert edit.message_id == card_id and edit.reply_markup is None
    assert "Approved into autonomous by you at" in edit.text
    # a repeated tap (or reject on the stale card) answers with what already happened
    await env.tap(approve, message_id=card_id)
    await env.tap(approve.replace("c:ok", "c:rj"), message_id=card_id)
    answers = env.session.answers()
    assert all("already approved into autonomous by you" in a for a in answers[-2:])
    assert (await env.backlog.get("OB-1")).status == Status.OPEN
    kinds = [e.kind for e in await env.backlog.history("OB-1")]
    assert kinds.count("approved") == 1 and "rejected" not in kinds


async def test_reject_with_reason_and_edit(env: BotEnv, make_agent) -> None:
    notifier = await _agent_draft(env, make_agent, "first")
    await _agent_draft_more(env, "second")
    await env.tap("c:ed:2:")
    assert "Editing <b>OB-2</b>" in env.session.texts()[-1]
    await env.say("second, sharper\npriority: P0\nsteps:\n- do it")
    edited = await env.backlog.get("OB-2")
    assert (edited.title, edited.priority, edited.status) == ("second, sharper", 0, Status.DRAFT)
    await env.tap("c:rr:1:", message_id=1000)
    assert "Why reject" in env.session.texts()[-1]
    await env.say("duplicate of OB-7")
    task = await env.backlog.get("OB-1")
    assert task.status == Status.REJECTED and task.rejected_reason == "duplicate of OB-7"
    assert task.rejected_by == f"operator:tg:{OP}"
    while await notifier.drain_once():
        pass
    card_edit = [e for e in env.session.of("EditMessageText") if e.message_id == 1000][-1]
    assert "Rejected by you at" in card_edit.text and "duplicate of OB-7" in card_edit.text


async def _agent_draft_more(env: BotEnv, title: str) -> None:
    actor = Actor.agent("codex", 1)
    await env.backlog.file(make_spec(title=title), actor)


async def test_cli_decision_edits_the_card(env: BotEnv, make_agent) -> None:
    notifier = await _agent_draft(env, make_agent)
    await env.backlog.reject("OB-1", Actor.operator("cli"), "not now")
    env.session.clear()
    await notifier.drain_once()
    (edit,) = env.session.of("EditMessageText")
    assert edit.message_id == 1000 and "Rejected by you (CLI)" in edit.text
    assert "not now" in edit.text
    # the stale approve button says so, and changes nothing
    await env.tap("c:ok:1:autonomous_safe", message_id=1000)
    assert "already rejected by you (CLI)" in env.session.answers()[-1]
    assert (await env.backlog.get("OB-1")).status == Status.REJECTED


async def test_stranger_gets_one_polite_refusal(env: BotEnv, make_agent) -> None:
    await env.say("hello bot", uid=STRANGER)
    await env.say("/inbox", uid=STRANGER)
    await env.say("/new", uid=STRANGER)
    await _agent_draft_more(env, "x")  # a draft exists, and the stranger tries to approve it
    await env.tap("c:ok:1:autonomous_safe", uid=STRANGER)
    sends = env.session.of("SendMessage")
    assert len(sends) == 1 and sends[0].chat_id == STRANGER and "private bot" in sends[0].text
    assert [a.text for a in env.session.of("AnswerCallbackQuery")] == [None]
    assert (await env.backlog.get("OB-1")).status == Status.DRAFT
    assert await env.backlog.pool.fetchval("select attempts from bot_strangers") == 4


FORGED = [
    "c:ok:abc:a",
    "c:ok:999:a",
    "c:ok:1:z",
    "c:zz:1:a",
    "c:ok",
    "c:rj:1",
    "p:sv:99999:a",
    "p:sv:1:a",
    "d:inbox:ok:1:a",
    "n:repo:5:-",
    "n:save:0:-",
    "g:nope",
    "garbage",
    "",
    "x" * 64,
    "c:ok:99999999999999999999999:a",
    "c:ok:-1:a",
    "c:ok:1:a:extra:fields",
]


async def test_forged_or_malformed_callback_data(env: BotEnv) -> None:
    await _agent_draft_more(env, "keep me a draft")
    for i, data in enumerate(FORGED, 1):
        await env.tap(data)
        answers = env.session.of("AnswerCallbackQuery")
        assert len(answers) == i, data  # answered safely, exactly once
        assert env.session.of("SendMessage") == [], data
        assert (await env.backlog.get("OB-1")).status == Status.DRAFT, data


async def test_drain_inbox(env: BotEnv) -> None:
    for title in ("one", "two", "three"):
        await _agent_draft_more(env, title)
    await env.say("/inbox")
    first = env.session.texts()[-1]
    assert "card 1 of 3" in first and "one" in first
    await env.tap("d:inbox:ok:1:requires_investigation", message_id=77)
    assert "card 2 of 3" in env.session.of("EditMessageText")[-1].text
    await env.tap("d:inbox:ok:1:requires_investigation", message_id=77)  # stale: card 1 is gone
    assert "no longer current" in env.session.answers()[-1]
    await env.backlog.approve("OB-3", Actor.operator("cli"))  # decided elsewhere meanwhile
    await env.tap("d:inbox:skip:2:", message_id=77)
    summary = env.session.of("EditMessageText")[-1].text
    assert "finished" in summary and "approved 1" in summary and "skipped 1" in summary
    assert "changed elsewhere 1" in summary
    assert (await env.backlog.get("OB-1")).lane == Lane.INVESTIGATION


async def test_drain_triage_moves_and_rejects(env: BotEnv) -> None:
    op = Actor.operator("t")
    await env.backlog.file(make_spec(title="raw a"), op)
    await env.backlog.file(make_spec(title="raw b"), op)
    await env.say("/triage")
    await env.tap("d:triage:mv:1:autonomous_safe", message_id=5)
    await env.tap("d:triage:rj:2:", message_id=5)
    assert "moved 1, rejected 1" in env.session.of("EditMessageText")[-1].text
    assert (await env.backlog.get("OB-1")).lane == Lane.AUTONOMOUS
    await env.say("/decide")
    assert "nothing waiting" in env.session.texts()[-1]
    await env.backlog.file(make_spec(title="raw c"), op)
    await env.tap("g:triage")  # the digest's buttons lead into the drain modes
    assert "<b>Triage</b> · card 1 of 1" in env.session.texts()[-1]


async def test_views(env: BotEnv, make_agent) -> None:
    from core.leases import Leases

    actor, _ = await make_agent("claude")
    op = Actor.operator("t")
    await env.backlog.file(
        make_spec(title="indexing <b>work</b> & more", repo="web"), op, lane=Lane.AUTONOMOUS
    )
    await Leases(env.backlog).claim(actor)
    for cmd in (
        "/help",
        "/start",
        "/task OB-1",
        "/task OB-99",
        "/task",
        "/find indexing",
        "/find zzz",
        "/lanes",
        "/agents",
        "/digest",
        "/unknown",
    ):
        await env.say(cmd)
    texts = env.session.texts()
    assert len(texts) == 11
    assert "/inbox" in texts[0] and "OB-1" in texts[2] and "History" in texts[2]
    assert "&lt;b&gt;work&lt;/b&gt; &amp; more" in texts[2]
    assert "no task" in texts[3] and "Usage" in texts[4]
    assert "1 match" in texts[5] and "Nothing matches" in texts[6]
    assert "autonomous: 1 (1 claimed)" in texts[7]
    assert "claude" in texts[8] and "left" in texts[8]
    assert "Daily lane digest" in texts[9] and "did not understand" in texts[10]


async def test_a_prompt_expires_and_a_later_idea_is_a_new_capture(env: BotEnv) -> None:
    from datetime import UTC, datetime, timedelta

    from bot.forms import LAST_SEEN

    op = Actor.operator("t")
    await env.backlog.file(make_spec(title="first idea"), op)
    await env.tap("c:ed:1:")
    assert "I wait 15 minutes for it" in env.session.texts()[-1]
    # an hour passes before the next message
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    await env.backlog.pool.execute(
        "update bot_fsm set data = jsonb_set(data, $1, to_jsonb($2::text))",
        [LAST_SEEN],
        an_hour_ago,
    )
    await env.say("a brand new idea")
    note, preview = env.session.texts()[-2:]
    assert "I stopped waiting for your edit of OB-1" in note and "a brand new idea" in preview
    assert (await env.backlog.get("OB-1")).title == "first idea"
    # answered in time, the edit applies and says what changed
    await env.tap("c:ed:1:")
    await env.say("first idea, sharper\npriority: P0")
    assert env.session.texts()[-1].startswith("✏️ <b>OB-1</b> updated: title, priority P2 → P0")


async def test_find_says_how_many_and_how_to_narrow(env: BotEnv) -> None:
    await env.backlog.pool.execute(
        """insert into tasks (title, status, lane, created_by, approved_by)
           select 'alpha ' || g, 'open', 'requires_triage', 'operator:t', 'operator:t'
           from generate_series(1, 200) g"""
    )
    await env.say("/find alpha")
    text = env.session.texts()[-1]
    assert "first 25 of 200 matches" in text and "Narrow it" in text
    await env.say("/find alpha 7")
    assert "<b>" in env.session.texts()[-1]


async def test_a_long_task_card_keeps_its_frame(env: BotEnv) -> None:
    op = Actor.operator("t")
    steps = [f"step {i} " + "x" * 880 for i in range(60)]
    await env.backlog.file(make_spec(title="a long plan", steps=steps), op)
    await env.backlog.reject("OB-1", op, "too big")
    await env.say("/task OB-1")
    text = env.session.texts()[-1]
    assert len(text) <= 4096
    assert "<b>OB-1</b>" in text and "<b>History</b>" in text and "Rejected by you" in text
    assert "the spec is cut here" in text and "filed by you just now" in text
