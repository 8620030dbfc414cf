"""A commit in one repo that says it closes another repo's task: the notice with [Close it] /
[Ignore], through the real Dispatcher and the notifier (real PostgreSQL, real git)."""

from __future__ import annotations

from bot import render
from bot.callbacks import CrossRepoAction, CrossRepoCB
from bot.notifier import Notifier
from core.backlog import Backlog
from core.digest import Digests
from core.git.reconcile import Reconciler
from core.models import Status
from tests.filing import file, kinds
from tests.test_bot_dispatcher import OP, make_env
from tests.test_git_remotes import ingest_and_web


async def test_close_it_and_ignore_through_the_dispatcher(backlog: Backlog, make_repo) -> None:
    env = make_env(backlog)
    ingest, web = await ingest_and_web(backlog, make_repo)
    k1 = await file(backlog, "pool exhaustion", repo="nexus-ingest")
    k2 = await file(backlog, "retry storms", repo="nexus-ingest")
    rec = Reconciler(backlog)
    await rec.run()
    sha = web.commit(f"Client retries\n\nCloses {k1}\nFixes {k2}\n")
    (res,) = [r for r in (await rec.run()).repos if r.name == "web"]
    assert res.closed == 0 and res.asked == 2
    assert (await backlog.get(k1)).status is Status.OPEN

    # the digest lists them until they are decided
    digest = await Digests(backlog).build()
    assert [(a.key, a.repo, a.sha) for a in digest.cross_repo.items] == [
        (k1, "web", sha),
        (k2, "web", sha),
    ]
    text = render.digest(digest, backlog.settings.tz)
    assert "🔗 <b>Commits that say they close another repo's task</b>: 2" in text
    assert f"• {k1} pool exhaustion ← web <code>{sha[:10]}</code> Client retries" in text

    notifier = Notifier(env.bot, env.backlog, [OP], worker="test")
    assert await notifier.drain_once() == 2
    sent = env.session.of("SendMessage")
    assert len(sent) == 2
    assert f"<b>{k1}</b>" in sent[0].text and "in <b>web</b>" in sent[0].text
    assert "says it closes this nexus-ingest task" in sent[0].text
    close = env.buttons(sent[0].reply_markup)["✅ Close it"]
    ignore = env.buttons(sent[1].reply_markup)["🙈 Ignore"]
    assert CrossRepoCB.unpack(close).action is CrossRepoAction.CLOSE

    await env.tap(close, message_id=1)
    assert env.session.answers()[-1] == f"{k1} closed"
    task = await backlog.get(k1)
    assert task.status is Status.DONE and task.verified_at is not None and task.commits == [sha]
    hist = await backlog.history(k1)
    assert hist[-1].kind == "closed_by_commit" and hist[-1].actor == f"operator:tg:{OP}"
    assert hist[-1].details["cross_repo"] is True and hist[-1].details["repo"] == "web"
    edited = env.session.of("EditMessageText")[-1]
    assert "closed by you with commit" in edited.text and edited.reply_markup is None
    await env.tap(close, message_id=1)  # a second tap: already decided, nothing more happens
    assert "already closed by" in env.session.answers()[-1]
    assert (await kinds(backlog, k1)).count("closed_by_commit") == 1

    await env.tap(ignore, message_id=2)
    assert env.session.answers()[-1] == f"Ignored; {k2} stays as it is"
    assert (await backlog.get(k2)).status is Status.OPEN
    assert (await kinds(backlog, k2))[-1] == "cross_repo_ignored"
    assert (await Digests(backlog).build()).cross_repo.total == 0

    # git decides: reverting the commit in web costs k1 its verification
    web.git("revert", "--no-edit", sha)
    (res,) = [r for r in (await rec.run()).repos if r.name == "web"]
    assert res.evidence_lost == 1
    task = await backlog.get(k1)
    assert task.status is Status.DONE and task.verified_at is None


async def test_close_it_after_the_commit_was_reverted_closes_nothing(
    backlog: Backlog, make_repo
) -> None:
    env = make_env(backlog)
    ingest, web = await ingest_and_web(backlog, make_repo)
    key = await file(backlog, "pool exhaustion", repo="nexus-ingest")
    sha = web.commit(f"Closes {key}")
    rec = Reconciler(backlog)
    await rec.run()
    notifier = Notifier(env.bot, env.backlog, [OP], worker="test")
    await notifier.drain_once()
    close = env.buttons()["✅ Close it"]
    web.git("revert", "--no-edit", sha)
    await rec.run()
    await env.tap(close)
    assert "was reverted by" in env.session.answers()[-1]
    assert (await backlog.get(key)).status is Status.OPEN
    await env.tap(CrossRepoCB(action=CrossRepoAction.CLOSE, ask=999).pack())
    assert "no cross-repo close #999" in env.session.answers()[-1]
