"""Rendering for Telegram (parse_mode HTML): everything escaped, every message under 4,096."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from core.decisions import Ranked
from core.digest import Digest, Item, LaneLoad
from core.git.crossrepo import OpenAsks
from core.git.repos import TruthAge
from core.models import Event, Lane, Status, Task
from core.questions import Question
from core.spec import Spec
from core.todo_words import describe_status

TELEGRAM_LIMIT = 4096
SAFE_LIMIT = 4000
_TAG = re.compile(r"<[^>]+>")


def esc(value: object, limit: int | None = None) -> str:
    text = "" if value is None else str(value)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return html.escape(text, quote=False)


def fit(text: str, limit: int = SAFE_LIMIT) -> str:
    """An HTML message that Telegram accepts: unchanged when short enough, otherwise the plain
    text cut to size (cutting HTML could split a tag or an entity)."""
    if len(text) <= limit:
        return text
    plain = html.unescape(_TAG.sub("", text))
    out = html.escape(plain[: limit - 200], quote=False)
    while len(out) > limit - 20:
        plain = plain[: len(plain) * 9 // 10]
        out = html.escape(plain, quote=False)
    return out + "\n… (cut to fit Telegram)"


def plain(text: str, limit: int = TELEGRAM_LIMIT) -> str:
    """An HTML message as plain text (tags dropped, entities read), cut to fit."""
    out = html.unescape(_TAG.sub("", text))
    return out if len(out) <= limit else out[: limit - 1] + "…"


def waits(seconds: int) -> str:
    """How long a prompt waits for its answer, said in the prompt."""
    minutes = max(1, round(seconds / 60))
    return f"I wait {minutes} minute{'s' if minutes != 1 else ''} for it"


def when(at: datetime | None, tz: ZoneInfo) -> str:
    if at is None:
        return "-"
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


def age(at: datetime | None, now: datetime | None = None) -> str:
    if at is None:
        return "-"
    now = now or datetime.now(UTC)
    secs = max(0, int((now - at).total_seconds()))
    if secs < 3600:
        return f"{secs // 60}m"
    if secs < 86400:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def ago(at: datetime | None, now: datetime | None = None) -> str:
    """`just now`, `5m ago`, `3h ago`, `2d ago`."""
    if at is None:
        return "-"
    if ((now or datetime.now(UTC)) - at).total_seconds() < 60:
        return "just now"
    return f"{age(at, now)} ago"


def left(at: datetime | None, now: datetime | None = None) -> str:
    if at is None:
        return "-"
    now = now or datetime.now(UTC)
    secs = int((at - now).total_seconds())
    if secs <= 0:
        return "expired"
    return f"{secs // 60}m{secs % 60:02d}s left"


def _items(title: str, items: list[str], limit: int, numbered: bool) -> list[str]:
    if not items:
        return []
    out = [f"<b>{title}</b>"]
    for i, item in enumerate(items[:limit], 1):
        out.append(f"{i}. {esc(item, 300)}" if numbered else f"• {esc(item, 300)}")
    if len(items) > limit:
        out.append(f"… and {len(items) - limit} more")
    return out


def spec_body(spec: Spec | Task) -> list[str]:
    meta = [f"P{spec.priority}"]
    if spec.repo:
        meta.append(f"repo <code>{esc(spec.repo)}</code>")
    if spec.lane:
        meta.append(f"lane {esc(spec.lane.short)}")
    lines = [f"<b>{esc(spec.title, 200)}</b>", " · ".join(meta)]
    said = describe_status(spec.status_word, spec.status_date, spec.status_reason)
    if said:
        lines.append(f"📌 {esc(said, 300)}")
    if spec.trigger:
        lines.append(f"trigger: {esc(spec.trigger, 300)}")
    if spec.trigger_on:
        lines.append(f"trigger on: {spec.trigger_on.isoformat()}")
    lines += _items("Steps", spec.steps, 15, True)
    lines += _items("Risks", spec.risks, 10, False)
    if spec.notes:
        lines.append(f"<i>{esc(spec.notes, 600)}</i>")
    if getattr(spec, "findings", ""):
        lines.append(f"<b>Findings</b>\n{esc(spec.findings, 600)}")
    return lines


def actor_label(actor: str | None) -> str:
    """Who did it, as the operator reads it: "you" for the operator (from the bot or the CLI),
    the agent's name for an agent, "git" for a commit."""
    if not actor:
        return "?"
    kind, _, name = actor.partition(":")
    if kind == "operator":
        return "you (CLI)" if name == "cli" else "you"
    if kind == "agent":
        return name or "an agent"
    if kind == "git":
        return f"git ({name})" if name else "git"
    return actor


def decision_line(task: Task, tz: ZoneInfo) -> str | None:
    """How the operator decided the task, from its columns; None while it is a draft."""
    if task.status == Status.REJECTED:
        reason = f": {esc(task.rejected_reason, 300)}" if task.rejected_reason else ""
        who = f" by {esc(actor_label(task.rejected_by))}" if task.rejected_by else ""
        return f"❌ Rejected{who} at {when(task.status_at, tz)}{reason}"
    if task.approved_at is None or task.status == Status.DRAFT:
        return None
    into = task.approved_lane or task.lane
    line = (
        f"✅ Approved into {esc(into.short if into else '-')} by "
        f"{esc(actor_label(task.approved_by))} at {when(task.approved_at, tz)}"
    )
    if task.lane is not None and into is not None and task.lane != into:
        line += f"; now in {esc(task.lane.short)}"
    return line


def card(
    task: Task,
    tz: ZoneInfo,
    *,
    history: list[Event] | None = None,
    questions: Sequence[Question] = (),
) -> str:
    """A task as a message: head, spec, state (with the agents' `questions` that wait for the
    operator's answer) and outcome, history. A spec too long for one message is cut; the frame
    around it (state, outcome, history) always shows."""
    head = (
        f"<b>{esc(task.key)}</b> · {esc(task.display_status)} · filed by "
        f"{esc(actor_label(task.created_by))} {ago(task.created_at)}"
    )
    if task.status == Status.DRAFT:
        head = f"🆕 {head}"
    tail: list[str] = []
    if task.status == Status.DRAFT and task.duplicate_of:
        tail.append(f"♊ likely a duplicate of {esc(task.duplicate_of)} (the same title)")
    if task.blocked_by:
        tail.append(f"⛔ blocked by {esc(', '.join(task.blocked_by[:20]))}")
    if task.status == Status.CLAIMED:
        tail.append(f"🔒 {esc(task.lease_holder)} · {left(task.lease_expires_at)}")
    for q in questions:
        tail += open_question(q)
    if task.status == Status.DONE:
        commits = ", ".join(c[:10] for c in task.commits[:10]) or "no commits"
        verified = "verified" if task.verified_at else "unverified"
        tail.append(
            f"🏁 done by {esc(actor_label(task.completed_by))} · {esc(commits)} · {verified}"
        )
    outcome = decision_line(task, tz)
    if outcome:
        tail += ["", outcome]
    if history:
        tail += ["", "<b>History</b>"]
        for ev in history[-10:]:
            tail.append(
                f"{when(ev.at, tz)} · {esc(actor_label(ev.actor), 60)} · {esc(ev.kind, 40)}"
            )
    body = spec_body(task)
    text = "\n".join([head, "", *body, *tail])
    if len(text) <= SAFE_LIMIT:
        return text
    budget = SAFE_LIMIT - len("\n".join([head, "", *tail])) - 200
    kept: list[str] = []
    for line in body:
        if len(line) + 1 > budget:
            break
        kept.append(line)
        budget -= len(line) + 1
    cut = f"<i>… the spec is cut here to fit; `ob spec {esc(task.key)}` shows all of it</i>"
    return fit("\n".join([head, "", *kept, cut, *tail]))


def open_question(q: Question) -> list[str]:
    """An open question on its task's card: who asks what, the options, why the task waits in
    decision if the lease ended, and how to answer."""
    who = esc(actor_label(q.asked_by))
    lines = [f"❓ <b>{esc(q.ref)}</b> {who} asks: {esc(q.text, 500)}"]
    if q.options:
        lines.append(" · ".join(f"{i}. {esc(o, 100)}" for i, o in enumerate(q.options, 1)))
    if q.left_open_at is not None:
        back = (
            f"; your answer sends it back to {esc(q.lane.short)}" if q.lane != Lane.DECISION else ""
        )
        lines.append(f"<i>{who}'s lease ended before an answer: it waits in decision{back}.</i>")
    lines.append(
        "<i>Answer on the question's card (tap an option or reply to it), or "
        f"<code>ob answer {esc(q.ref)} …</code></i>"
    )
    return lines


class AskedQuestion(Protocol):
    """What a question card shows: core's Question, or an outbox payload about one."""

    @property
    def key(self) -> str: ...
    @property
    def id(self) -> int: ...
    @property
    def asked_by(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def options(self) -> list[str]: ...


def question(q: AskedQuestion, title: str, tz: ZoneInfo, *, head: str = "❓") -> str:
    """An agent's question as a card: the options numbered, and how to answer; or the answer,
    once given (a question or payload with `answer`, `answered_by` and `answered_at`)."""
    answer = getattr(q, "answer", None)
    lines = [
        f"{'✅' if answer is not None else head} <b>{esc(q.key)}</b> {esc(title, 200)}",
        f"<b>{esc(actor_label(q.asked_by))}</b> asks (Q{q.id}):",
        esc(q.text, 2500),
    ]
    lines += [f"{i}. {esc(option, 200)}" for i, option in enumerate(q.options, 1)]
    if answer is None:
        how = "Tap an answer, or reply" if q.options else "Reply"
        lines += ["", f"<i>{how} to this message with your answer.</i>"]
    else:
        by = actor_label(getattr(q, "answered_by", None))
        at = when(getattr(q, "answered_at", None), tz)
        lines += ["", f"✅ <b>{esc(answer, 1000)}</b> — answered by {esc(by)} at {at}"]
    return fit("\n".join(lines))


def lane_lines(loads: list[LaneLoad], now: datetime | None = None) -> list[str]:
    """One line per lane (and the drafts): how many wait, how many are claimed, the oldest."""
    out = []
    for load in loads:
        name = load.lane.short if load.lane else "drafts"
        claimed = f" ({load.claimed} claimed)" if load.claimed else ""
        oldest = f" · oldest {age(load.oldest_at, now)}" if load.total and load.oldest_at else ""
        out.append(f"{esc(name)}: {load.total}{claimed}{oldest}")
    return out


def truth_lines(t: TruthAge, now: datetime) -> list[str]:
    """The truth's age: repos whose last good fetch is older than OB_TRUTH_MAX_AGE, and why."""
    if not t.stale_total:
        return []
    hours = f"{t.max_age / 3600:g} h" if t.max_age >= 3600 else f"{t.max_age // 60} min"
    out = [
        "",
        f"🕰 <b>Truth age</b>: {t.stale_total} of {t.fetched} repo(s) not fetched for over {hours}",
    ]
    for r in t.stale:
        good = (
            f"last good fetch {ago(r.last_fetch_at, now)}" if r.last_fetch_at else "never fetched"
        )
        why = f": {esc(r.fetch_error, 160)}" if r.fetch_error else ""
        out.append(f"• {esc(r.name)} ({good}){why}")
    return out


def _said(it: Item) -> str:
    """The status as written, after a digest line: ` · 📌 blocked since 2026-11-18`."""
    return f" · 📌 {esc(it.said, 100)}" if it.said else ""


def decide_lines(found: Ranked, now: datetime) -> list[str]:
    """What waits for the operator's decision, most-blocking first (the digest's section)."""
    if not found.total:
        return []
    out = ["", f"⚖️ <b>Waiting for your decision</b>: {found.total} (/decide)"]
    if found.starved:
        out.append("<i>agents are idle: nothing is ready for them</i>")
    for p in found.items:
        why = []
        if p.agent_waiting:
            why.append(f"{esc(actor_label(p.by))} is waiting")
        if p.unblocks:
            why.append(f"unblocks {p.unblocks}")
        why.append(age(p.at, now))
        what = (
            f"❓ {esc(p.question.ref)} {esc(p.key)} {esc(p.question.text, 80)}"
            if p.question is not None
            else f"• {esc(p.key)} {esc(p.title, 80)}"
        )
        out.append(f"{what} ({', '.join(why)})")
    return out


def cross_repo_lines(asks: OpenAsks, now: datetime) -> list[str]:
    """The commits that say they close another repo's task, waiting for the operator."""
    if not asks.total:
        return []
    out = ["", f"🔗 <b>Commits that say they close another repo's task</b>: {asks.total}"]
    for a in asks.items:
        out.append(
            f"• {esc(a.key)} {esc(a.title, 60)} ← {esc(a.repo)} <code>{esc(a.sha[:10])}</code> "
            f"{esc(a.subject, 60)} ({age(a.asked_at, now)})"
        )
    out.append("<i>Close it or ignore it on its notice, or with <code>ob cross-repo</code></i>")
    return out


def digest(d: Digest, tz: ZoneInfo) -> str:
    now = d.built_at
    out = [f"☀️ <b>Daily lane digest</b> · {when(now, tz)}", "", "<b>Lanes</b>"]
    out += lane_lines(d.lanes, now)
    out += decide_lines(d.decide, now)
    out += cross_repo_lines(d.cross_repo, now)
    aw = d.awaiting_approval
    out += ["", f"<b>Awaiting approval</b>: {aw.total}"]
    for it in aw.items:
        releases = f" · unblocks {it.unblocks}" if it.unblocks else ""
        out.append(
            f"• {esc(it.key)} {esc(it.title, 80)} ({esc(actor_label(it.who))}, "
            f"{age(it.at, now)}){releases}" + _said(it)
        )
    back = d.back_today
    if back.total:
        out += ["", f"💤 <b>Back today</b> (snoozed until today): {back.total}"]
        for it in back.items:
            lane = f" · {esc(it.lane.short)}" if it.lane else ""
            out.append(f"• {esc(it.key)} {esc(it.title, 80)}{lane}{_said(it)}")
    out += ["", "<b>In progress</b>"]
    if not d.in_progress:
        out.append("nobody holds a task")
    for agent, items in d.in_progress.items():
        keys = ", ".join(f"{esc(i.key)} ({left(i.at, now)})" for i in items[:10])
        out.append(f"• {esc(agent)}: {keys}")
    out += ["", f"<b>Done in the last 24 h</b>: {d.done_24h_total}"]
    for who, items in d.done_24h.items():
        out.append(f"• {esc(actor_label(who))}")
        for i in items:
            ev = ", ".join(c[:10] for c in i.commits[:3]) or "no evidence"
            mark = "✔ verified" if i.verified else "unverified"
            out.append(f"   {esc(i.key)} {esc(i.title, 60)} [{esc(ev)}] {mark}")
    if d.done_without_evidence:
        out.append(f"⚠️ {d.done_without_evidence} completed without a commit")
    out += ["", f"<b>Blocked</b>: {d.blocked.total}"]
    for it in d.blocked.items:
        out.append(
            f"• {esc(it.key)} {esc(it.title, 60)} ← {esc(', '.join(it.blocked_by))}{_said(it)}"
        )
    out += ["", f"<b>Drifted plans</b>: {d.drifted.total}"]
    for p in d.drifted.items:
        out.append(
            f"• {esc(p.key)} {esc(p.title, 60)} ({p.commits_since} commit(s) on "
            f"{esc(p.repo)} since approval)"
        )
    un = d.unverified
    out += [
        "",
        f"<b>Unverified completions</b>: {un.total}"
        + (f" ({un.flagged} for more than {un.days} day(s))" if un.flagged else ""),
    ]
    for u in un.items:
        flag = "⚠️ " if u.flagged else ""
        out.append(
            f"• {flag}{esc(u.task.key)} {esc(u.task.title, 60)} "
            f"({esc(actor_label(u.task.completed_by))}, {esc(u.evidence)})"
        )
    out += truth_lines(d.truth, now)
    n = d.notices
    if n.dead:
        out += ["", f"⚠️ <b>{n.dead} notice(s) could not be delivered</b>: ob outbox --dead"]
    if n.pending and n.oldest_pending_at and now - n.oldest_pending_at > timedelta(hours=1):
        out += ["", f"⏳ {n.pending} notice(s) waiting, the oldest {age(n.oldest_pending_at, now)}"]
    return fit("\n".join(out))
