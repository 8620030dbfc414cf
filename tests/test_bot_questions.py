"""Agents' questions on the phone, through the real Dispatcher and the notifier: a card with one
button per option, a tap or a reply answers (and the agent waiting on the real gateway gets the
answer), the card shows the answer; /decide and /inbox come most-blocking first."""

from __future__ import annotations

import asyncio

from bot import render
from bot.callbacks import DrainMode, QuestionCB
from bot.notifier import Notifier
from core.backlog import Backlog
from core.botstore import BotStore
from core.deps import Prerequisites
from core.digest import Digests
from core.leases import Leases
from core.models import Actor, Lane
from core.questions import Questions
from core.spec import make_spec
from tests.fake_telegram import bot_message, message_update
from tests.test_bot_dispatcher import OP, BotEnv, make_env
from tests.test_waiting import client, until

CLI = Actor.operator("cli")


async def _asking(
    waiting_gateway, backlog: Backlog, make_agent, options: list[str]
) -> tuple[BotEnv, str, str, int, int]:
    """The operator's bot; an agent claims OB-1 over the gateway and asks; the notifier sends
    the card. Returns (the bot, the gateway's URL, the agent's token, the question's id, the
    card's message id)."""
    url = waiting_gateway[0]
    env = make_env(backlog)
    _, token = await make_agent("codex")
    await env.backlog.file(make_spec(title="a cache for sessions"), CLI, lane=Lane.AUTONOMOUS)
    async with client(url, token) as c:
        epoch = (await c.post("/v1/claim", json={})).json()["lease"]["epoch"]
        r = await c.post(
            "/v1/tasks/OB-1/questions",
            json={"epoch": epoch, "text": "Redis or Postgres?", "options": options},
        )
        assert r.status_code == 201, r.text
    assert await Notifier(env.bot, env.backlog, [OP], worker="test").drain_once() == 1
    qid = r.json()["id"]
    ((_, message_id),) = await BotStore(env.backlog).question_cards(qid)
    return env, url, token, qid, message_id


async def test_a_tap_answers_the_agent_waiting_on_the_gateway(
    waiting_gateway, backlog: Backlog, make_agent
) -> None:
    waits = waiting_gateway[1]
    env, url, token, qid, card = await _asking(
        waiting_gateway, backlog, make_agent, ["redis", "postgres"]
    )
    sent = env.session.of("SendMessage")[-1]
    assert "<b>codex</b> asks (Q1):" in sent.text and "Redis or Postgres?" in sent.text
    buttons = env.buttons()
    assert set(buttons) == {"1. redis", "2. postgres"}
    async with client(url, token) as c:
        waiting = asyncio.create_task(c.get(f"/v1/questions/{qid}", params={"wait": 60}))
        await until(lambda: waits.awaiting_answers == 1, "the agent waits for the answer")
        await env.tap(buttons["2. postgres"], message_id=card)
        assert env.session.answers()[-1] == "Q1 answered: postgres"
        got = (await asyncio.wait_for(waiting, 90)).json()
    assert (got["status"], got["answer"], got["answered_by"]) == (
        "answered",
        "postgres",
        f"operator:tg:{OP}",
    )
    assert (
        "Decision: postgres — answered by the operator (Telegram)"
        in (await env.backlog.get("OB-1")).notes
    )
    # the notifier edits the card: the answer, no buttons
    assert await Notifier(env.bot, env.backlog, [OP], worker="test").drain_once() == 1
    (edit,) = env.session.of("EditMessageText")
    assert edit.message_id == card and edit.reply_markup is None
    assert "✅ <b>postgres</b> — answered by you at" in edit.text
    # a second tap, here or on another phone, says what happened
    await env.tap(buttons["1. redis"], message_id=card)
    assert "already answered: 'postgres'" in env.session.answers()[-1]


async def test_a_reply_to_the_card_answers_in_free_text(
    waiting_gateway, backlog: Backlog, make_agent
) -> None:
    env, url, token, qid, card = await _asking(waiting_gateway, backlog, make_agent, [])
    assert env.last_markup() is None  # no options: a reply answers
    card_message = bot_message(OP, card, env.session.texts()[-1])
    await env.feed(message_update(OP, "Postgres, we run it already", reply_to_message=card_message))
    assert env.session.texts()[-1] == ("✅ Q1 (OB-1) answered: <b>Postgres, we run it already</b>")
    q = await Questions(env.backlog).get(qid)
    assert q.answer == "Postgres, we run it already"
    # the same card again: already answered, said once; nothing is captured or amended
    await env.feed(message_update(OP, "no, Redis", reply_to_message=card_message))
    assert "already answered" in env.session.texts()[-1]
    assert (await env.backlog.get("OB-1")).notes.count("Decision:") == 1


async def test_forged_and_out_of_range_taps(waiting_gateway, backlog: Backlog, make_agent) -> None:
    env, url, token, qid, card = await _asking(waiting_gateway, backlog, make_agent, ["a", "b"])
    env.session.clear()
    for data in ("q:abc:1:", "q:99999:1:", f"q:{qid}:3:", f"q:{qid}:0:", f"q:{qid}:1:nope"):
        await env.tap(data, message_id=card)
    assert len(env.session.answers()) == 5 and env.session.of("SendMessage") == []
    assert (await Questions(env.backlog).get(qid)).status == "pending"


async def test_decide_walks_the_most_blocking_first(backlog: Backlog, make_agent) -> None:
    env = make_env(backlog)
    codex, _ = await make_agent("codex")
    leases = Leases(env.backlog)
    await env.backlog.file(make_spec(title="held and asking"), CLI, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(codex)
    q = await Questions(env.backlog).ask(
        lease.key, codex, lease.epoch, "Which queue?", ["sqs", "pg"]
    )
    await env.backlog.file(make_spec(title="lonely decision"), CLI, lane=Lane.DECISION)  # OB-2
    await env.backlog.file(make_spec(title="blocking decision"), CLI, lane=Lane.DECISION)  # 3
    for title in ("waits a", "waits b"):
        waiting = await env.backlog.file(make_spec(title=title), CLI)
        await Prerequisites(env.backlog).add(waiting.key, "OB-3", CLI)
    await env.say("/decide")
    first = env.session.texts()[-1]
    assert "card 1 of 3" in first and "Which queue?" in first  # an agent waits on it
    tap = QuestionCB(question=q.id, option=2, mode=DrainMode.DECIDE).pack()
    await env.tap(tap, message_id=50)
    assert env.session.answers()[-1] == "OB-1 answered"
    second = env.session.of("EditMessageText")[-1]
    assert "card 2 of 3" in second.text and "blocking decision" in second.text  # unblocks 2
    await env.tap("d:decide:skip:3:", message_id=50)
    third = env.session.of("EditMessageText")[-1]
    assert "card 3 of 3" in third.text and "lonely decision" in third.text
    await env.tap("d:decide:stop:2:", message_id=50)
    summary = env.session.of("EditMessageText")[-1].text
    assert "answered 1" in summary and "skipped 1" in summary
    assert (await Questions(env.backlog).get(q.id)).answer == "pg"


async def test_inbox_puts_the_draft_others_wait_on_first(backlog: Backlog, make_agent) -> None:
    env = make_env(backlog)
    codex, _ = await make_agent("codex")
    await env.backlog.file(make_spec(title="older idea"), codex)  # OB-1
    await env.backlog.file(make_spec(title="prerequisite idea"), codex)  # OB-2
    blocked = await env.backlog.file(make_spec(title="waits for OB-2"), CLI)
    await Prerequisites(env.backlog).add(blocked.key, "OB-2", CLI)
    await env.say("/inbox")
    assert "card 1 of 2" in env.session.texts()[-1]
    assert "prerequisite idea" in env.session.texts()[-1]


async def test_a_question_left_open_comes_with_its_buttons(
    waiting_gateway, backlog: Backlog, make_agent
) -> None:
    env, url, token, qid, _ = await _asking(waiting_gateway, backlog, make_agent, ["yes", "no"])
    async with client(url, token) as c:
        r = await c.post("/v1/tasks/OB-1/release", json={"epoch": 1})
        assert r.json()["lane"] == "requires_decision"
    assert await Notifier(env.bot, env.backlog, [OP], worker="test").drain_once() >= 1
    notice = [m for m in env.session.of("SendMessage") if "lease ended" in m.text][-1]
    assert "waits in decision" in notice.text and "back to autonomous" in notice.text
    cards = await BotStore(env.backlog).question_cards(qid)
    assert len(cards) == 2  # the first card and this notice both take the answer
    await env.tap(QuestionCB(question=qid, option=1).pack(), message_id=cards[1][1])
    task = await env.backlog.get("OB-1")
    assert (task.lane, task.lease_holder) == (Lane.AUTONOMOUS, None)
    assert "Decision: yes" in task.notes
    async with client(url, token) as c:  # ... and the next claim takes it, decision and all
        lease = (await c.post("/v1/claim", json={})).json()["lease"]
        assert lease["key"] == "OB-1" and "Decision: yes" in lease["task"]["notes"]


async def test_the_task_card_shows_its_open_questions(backlog: Backlog, make_agent) -> None:
    env = make_env(backlog)
    codex, _ = await make_agent("codex")
    leases, questions, store = Leases(env.backlog), Questions(env.backlog), BotStore(env.backlog)
    notifier = Notifier(env.bot, env.backlog, [OP], worker="test")
    await env.backlog.file(make_spec(title="a cache"), CLI, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(codex)
    assert lease is not None
    await env.say("/task OB-1")  # a card from before the question
    (card,) = await store.cards(1)
    q = await questions.ask(lease.key, codex, lease.epoch, "Redis or Postgres?", ["redis", "pg"])
    await notifier.drain_once()  # the question's card; the task's card now names it
    edited = [e for e in env.session.of("EditMessageText") if e.message_id == card.message_id]
    assert "❓ <b>Q1</b> codex asks: Redis or Postgres?" in edited[-1].text

    # its lease ends before an answer: /task says why it waits in decision, and the question
    # comes with its buttons, ready to answer
    await leases.release(lease.key, codex, lease.epoch, "need an answer")
    env.session.clear()
    await env.say("/task OB-1")
    shown, asked = env.session.of("SendMessage")
    assert "❓ <b>Q1</b> codex asks: Redis or Postgres?" in shown.text
    assert "1. redis · 2. pg" in shown.text
    assert "codex's lease ended before an answer: it waits in decision" in shown.text
    assert "<code>ob answer Q1 …</code>" in shown.text
    assert "Redis or Postgres?" in asked.text and set(env.buttons(asked.reply_markup)) == {
        "1. redis",
        "2. pg",
    }
    cards = await store.question_cards(q.id)
    await env.tap(env.buttons(asked.reply_markup)["2. pg"], message_id=cards[-1][1])
    assert (await questions.get(q.id)).answer == "pg"
    env.session.clear()
    await notifier.drain_once()  # answered: no card of the task names it any more
    task_cards = {c.message_id for c in await store.cards(1)}
    refreshed = [e for e in env.session.of("EditMessageText") if e.message_id in task_cards]
    assert refreshed and all("codex asks" not in e.text for e in refreshed)


def test_question_buttons_fit_telegram() -> None:
    data = QuestionCB(question=2**62, option=6, mode=DrainMode.DECIDE).pack()
    assert len(data.encode()) <= 64


async def test_the_digest_lists_what_waits_for_a_decision(backlog: Backlog, make_agent) -> None:
    codex, _ = await make_agent("codex")
    leases = Leases(backlog)
    await backlog.file(make_spec(title="a cache"), CLI, lane=Lane.AUTONOMOUS)
    lease = await leases.claim(codex)
    await Questions(backlog).ask(lease.key, codex, lease.epoch, "Redis or Postgres?", ["r", "p"])
    await backlog.file(make_spec(title="pick a queue"), CLI, lane=Lane.DECISION)
    d = await Digests(backlog).build()
    assert [(p.kind, p.key) for p in d.decide.items] == [("question", "OB-1"), ("decision", "OB-2")]
    text = render.digest(d, backlog.settings.tz)
    assert "Waiting for your decision</b>: 2 (/decide)" in text
    assert "❓ Q1 OB-1 Redis or Postgres? (codex is waiting, " in text
    assert "• OB-2 pick a queue (" in text
